"""Pointwise cross-entropy with soft labels: binary classification where the target is a degree.

    loss = mean_i -[t_i ln p_i + (1 - t_i) ln(1 - p_i)],   p_i = sigmoid(s_i),   t_i = y_i / 3

Reference: note 001, "交叉熵损失函数 (类似二分类, 用 soft label)". Like MSE it "keeps the value"
and favours AUC (claim F1), but its gradient p_i - t_i does not vanish when the sigmoid saturates,
so a confidently wrong score is corrected quickly. It is the default pointwise half of CE + pairwise.

Computed from the logit with BCE-with-logits, which never forms ln(sigmoid(s)) and so stays finite
where sigmoid rounds to 0 or 1.

Shapes: scores (B,) logits; labels (B,) tiers 0..3, or, with target="soft", targets in [0, 1].
Returns a scalar.

>>> import torch
>>> scores, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([3, 1, 0])
>>> # ln 2 = 0.6931;  (1/3) * 0.1269 + (2/3) * 2.1269 = 1.4603;  ln(1 + e^-1) = 0.3133
>>> round(SoftCrossEntropyLoss()(scores, labels).item(), 4)
0.8222
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mse import check_scores, check_target_kind, to_targets


class SoftCrossEntropyLoss(nn.Module):
    """Binary cross-entropy of sigmoid(score) against target = tier / 3 (or a soft label)."""

    def __init__(self, target: str = "tier"):
        super().__init__()
        self.target = check_target_kind(target)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor | None = None):
        # query_ids is accepted, and unused, so every loss in LOSSES is called the same way.
        check_scores(scores, labels=labels)
        return F.binary_cross_entropy_with_logits(scores, to_targets(labels, self.target, scores.dtype))
