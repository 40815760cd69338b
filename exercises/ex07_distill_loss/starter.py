"""Exercise 7: distillation losses, logit MSE and Margin-MSE, in torch. The task is in README.md.

Fill in the three functions below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex07

Use torch; not relcourse.losses (that is the answer key).
"""
from __future__ import annotations

import torch


def logit_mse(scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (scores[i] - teacher[i])^2: the student copies the teacher's logits.

    scores:  (B,) float tensor of the student's logits; may require grad
    teacher: (B,) float tensor of the teacher's logits for the same (query, document) pairs

    Returns a 0-d tensor on the autograd graph of `scores`.

    >>> logit_mse(torch.tensor([1.0, -2.0]), torch.tensor([3.0, -2.0])).item()     # ((1 - 3)^2 + 0^2) / 2
    2.0
    """
    raise NotImplementedError("logit_mse: the mean squared difference of the logits")


def margin_mse_triples(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Margin-MSE on (query, positive, negative) triples (Hofstätter et al., 2020).

    student: (B, 2) float tensor, the student's logits: column 0 the positive document of a triple,
             column 1 its negative; may require grad
    teacher: (B, 2) the teacher's logits of the same documents

        loss = mean over the B triples of ((s_pos - s_neg) - (t_pos - t_neg))^2

    Returns a 0-d tensor on the autograd graph of `student`.

    >>> student = torch.tensor([[2.0, 1.0], [0.0, 0.5]])
    >>> teacher = torch.tensor([[5.0, 1.0], [1.0, 0.0]])
    >>> margin_mse_triples(student, teacher).item()     # ((1 - 4)^2 + (-0.5 - 1)^2) / 2 = (9 + 2.25) / 2
    5.625
    """
    raise NotImplementedError("margin_mse_triples: the student's margin against the teacher's")


def margin_mse(scores: torch.Tensor, teacher: torch.Tensor, query_ids: torch.Tensor) -> torch.Tensor:
    """Margin-MSE on per-query lists: every pair of documents of the same query, once.

    scores:    (B,) float tensor of the student's logits; may require grad
    teacher:   (B,) the teacher's logits of the same (query, document) pairs
    query_ids: (B,) int tensor; pairs are formed only within a query (its rows need not be adjacent)

        loss = mean over the pairs (i, j), i < j, of the same query of ((s_i - s_j) - (t_i - t_j))^2

    Returns a 0-d tensor on the autograd graph of `scores`. A batch without two documents of one
    query returns a zero that is still on the graph (scores.sum() * 0).

    >>> scores, teacher = torch.tensor([1.0, 0.0, 2.0, 7.0]), torch.tensor([3.0, 0.0, 1.0, 2.0])
    >>> # query 5: pairs (0,1) (1 - 3)^2 = 4, (0,2) (-1 - 2)^2 = 9, (1,2) (-2 + 1)^2 = 1; query 6: none
    >>> round(margin_mse(scores, teacher, torch.tensor([5, 5, 5, 6])).item(), 4)      # (4 + 9 + 1) / 3
    4.6667
    """
    raise NotImplementedError("margin_mse: build the same-query pairs, then compare the margins")
