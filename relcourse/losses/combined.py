"""Pointwise + pairwise: keep the values and the order at once.

    loss = pointwise(s, y) + λ · pairwise(s, y, q)

Reference: note 001, "如果同时用 AUC 和正逆序比作为离线评价指标, 则同时使用 CE 和 pairwise
logistic 损失": the pointwise term (cross-entropy with soft labels by default) holds each score
near its target, which AUC rewards; the pairwise term orders documents within a query, which PNR
rewards. Claim F1 expects the sum to get both. λ trades one against the other.

Shapes: scores (B,) logits, labels (B,) tiers 0..3, query_ids (B,) ints. Returns a scalar.

>>> import torch
>>> scores, labels = torch.tensor([2.0, 0.0, 1.0, 5.0]), torch.tensor([3, 1, 0, 2])
>>> query_ids = torch.tensor([0, 0, 0, 1])
>>> loss = CombinedLoss(pairwise_weight=0.5)
>>> # soft CE (0.1269 + 0.6931 + 1.3133 + 1.6734) / 4 = 0.9517 (targets 1, 1/3, 0, 2/3),
>>> # plus 0.5 * pairwise 0.5845 (see pairwise.py)
>>> round(loss(scores, labels, query_ids).item(), 4), loss.pairwise.last_num_pairs
(1.2439, 3)
"""
from __future__ import annotations

import torch
from torch import nn

from .pairwise import PairwiseLogisticLoss
from .soft_ce import SoftCrossEntropyLoss


class CombinedLoss(nn.Module):
    """pointwise + pairwise_weight * pairwise; defaults: soft cross-entropy and pairwise logistic."""

    def __init__(self, pointwise: nn.Module | None = None, pairwise: nn.Module | None = None,
                 pairwise_weight: float = 1.0):
        super().__init__()
        if not pairwise_weight >= 0:
            raise ValueError(f"pairwise_weight must be >= 0 (0 leaves the pointwise loss alone), "
                             f"got {pairwise_weight!r}")
        self.pointwise = pointwise if pointwise is not None else SoftCrossEntropyLoss()
        self.pairwise = pairwise if pairwise is not None else PairwiseLogisticLoss()
        self.pairwise_weight = pairwise_weight

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor):
        return (self.pointwise(scores, labels, query_ids)
                + self.pairwise_weight * self.pairwise(scores, labels, query_ids))
