"""Distillation by cross-entropy on probabilities: the student fits sigmoid(teacher logit).

    loss = mean_i BCE(sigmoid(s_i), sigmoid(t_i))

Reference: Hinton et al. 2015 (soft targets, here at temperature 1); note 001 names it as the
usual alternative to fitting logits with MSE (claim D10: the logits often win). It is the soft
cross-entropy of fine-tuning (`soft_ce.py`) with the teacher's probability as the soft label,
so it shares that module's code. Its gradient, sigmoid(s) - sigmoid(t), vanishes where both are
confident: two documents the teacher scores 4 and 8 give almost the same target.

Shapes: scores (B,) student logits; teacher (B,) teacher logits; query_ids (B,) unused.

>>> import torch
>>> # targets sigmoid(0) = 0.5 and sigmoid(0) = 0.5: BCE at s = 0 is ln 2 for both
>>> round(TeacherProbabilityCELoss()(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])).item(), 4)
0.6931
"""
from __future__ import annotations

import torch
from torch import nn

from .logit_mse import check_teacher
from .soft_ce import SoftCrossEntropyLoss


class TeacherProbabilityCELoss(nn.Module):
    """Binary cross-entropy of sigmoid(student) against sigmoid(teacher)."""

    def __init__(self):
        super().__init__()
        self.soft_ce = SoftCrossEntropyLoss(target="soft")

    def forward(self, scores: torch.Tensor, teacher: torch.Tensor, query_ids: torch.Tensor | None = None):
        check_teacher(teacher)
        return self.soft_ce(scores, torch.sigmoid(teacher.to(scores.dtype)))
