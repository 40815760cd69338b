"""Exercise 7, instructor solution: squared errors of logits, or of margins.

The per-query version forms all B x B pairs at once with a boolean mask (a training batch holds a
few hundred documents), keeping each unordered pair once (i < j, the upper triangle). The same
losses are in relcourse.losses (logit_mse.py, margin_mse.py), where stage 4 uses them.
"""
from __future__ import annotations

import torch


def logit_mse(scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the student's and the teacher's logits."""
    return (scores - teacher.to(scores.dtype)).pow(2).mean()


def margin_mse_triples(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over triples of (student margin - teacher margin)^2, both margins positive minus negative."""
    student_margin = student[:, 0] - student[:, 1]
    teacher_margin = (teacher[:, 0] - teacher[:, 1]).to(student.dtype)
    return (student_margin - teacher_margin).pow(2).mean()


def margin_mse(scores: torch.Tensor, teacher: torch.Tensor, query_ids: torch.Tensor) -> torch.Tensor:
    """Mean over same-query pairs i < j of ((s_i - s_j) - (t_i - t_j))^2."""
    n = scores.shape[0]
    upper = torch.ones(n, n, dtype=torch.bool).triu(diagonal=1)
    pairs = (query_ids[:, None] == query_ids[None, :]) & upper
    teacher = teacher.to(scores.dtype)
    errors = ((scores[:, None] - scores[None, :]) - (teacher[:, None] - teacher[None, :]))[pairs]
    if errors.numel() == 0:
        return scores.sum() * 0          # no pair: a zero on the graph, so backward() still runs
    return errors.pow(2).mean()
