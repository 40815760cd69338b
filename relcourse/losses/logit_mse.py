"""Distillation by regression on logits: the student copies the teacher's raw scores.

    loss = mean_i (s_i - t_i)^2,    s_i the student's logit, t_i the teacher's logit

Reference: note 001, "蒸馏" (distillation: fit the teacher's logits with MSE, often better than
fitting its probabilities with cross-entropy; claim D10); sentence-transformers' cross-encoder
`MSELoss` does the same with a teacher's logits as labels. Why logits and not probabilities:
where the teacher is confident, sigmoid(t) sits near 0 or 1 and a probability loss barely sees
the difference between t = 4 and t = 8, while the teacher's *ranking* of two confident
documents is exactly in that difference. On logits every difference counts the same.

Shapes: scores (B,) student logits; teacher (B,) teacher logits (any real numbers); query_ids
(B,) accepted and unused, so every distillation loss is called the same way. Returns a scalar.

>>> import torch
>>> round(LogitMSELoss()(torch.tensor([1.0, -2.0]), torch.tensor([3.0, -2.0])).item(), 4)   # (4 + 0) / 2
2.0
"""
from __future__ import annotations

import torch
from torch import nn

from .mse import check_scores


def check_teacher(teacher: torch.Tensor) -> None:
    """Teacher logits must be finite: a NaN would silently poison every gradient step."""
    if not torch.isfinite(teacher).all():
        raise ValueError("teacher logits must be finite numbers; rescore the distillation pairs with the teacher")


class LogitMSELoss(nn.Module):
    """Mean squared difference between the student's and the teacher's logits."""

    def forward(self, scores: torch.Tensor, teacher: torch.Tensor, query_ids: torch.Tensor | None = None):
        check_scores(scores, teacher=teacher)
        check_teacher(teacher)
        return (scores - teacher.to(scores.dtype)).pow(2).mean()
