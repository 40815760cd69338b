"""Pointwise regression: the squared error between the predicted probability and the target.

    loss = mean_i (sigmoid(s_i) - t_i)^2,    t_i = y_i / 3 for a human tier y_i in 0..3

Reference: note 001, "微调: 回归任务" (fine-tuning as regression; it writes (1/2)(y - p)^2, and the
1/2 only halves the gradient). Regression "keeps the value": p is pushed towards y, which is what
AUC rewards (claim F1).

Why sigmoid(s) and not s itself: every loss in `relcourse.losses` reads the model's single output
as a logit, so a model trained with one loss can be evaluated, combined (CE + pairwise) and
distilled like a model trained with another; sigmoid maps the logit onto the targets' [0, 1].

Shapes: scores (B,) logits; labels (B,) tiers 0..3, or, with target="soft", targets already in
[0, 1] (a teacher's pseudo-labels). Returns a scalar.

This module also holds the input checks that every loss shares.

>>> import torch
>>> scores, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([3, 1, 0])
>>> # targets 1, 1/3, 0; errors (0.5 - 1)^2 = 0.25, (0.8808 - 0.3333)^2 = 0.2997, 0.2689^2 = 0.0723
>>> round(MSELoss()(scores, labels).item(), 4)
0.2073
"""
from __future__ import annotations

import torch
from torch import nn

MAX_TIER = 3
TARGET_KINDS = ("tier", "soft")


def check_scores(scores: torch.Tensor, **aligned: torch.Tensor) -> None:
    """scores must be a (B,) float tensor, and each tensor in `aligned` (labels, query_ids) (B,) too."""
    if not scores.is_floating_point() or scores.dim() != 1:
        hint = "; squeeze the model's last dimension" if scores.dim() == 2 and scores.shape[1] == 1 else ""
        raise ValueError(f"scores must be a 1-D float tensor of logits, one per (query, document) pair, "
                         f"got {scores.dtype} of shape {tuple(scores.shape)}{hint}")
    for name, tensor in aligned.items():
        if tensor.shape != scores.shape:
            raise ValueError(f"{name} must have the shape of scores {tuple(scores.shape)}, got {tuple(tensor.shape)}")


def check_tiers(labels: torch.Tensor) -> None:
    """labels must be whole tiers 0..3 (any dtype: batches often carry them as floats)."""
    bad = labels[(labels != labels.round()) | (labels < 0) | (labels > MAX_TIER)]
    if bad.numel():
        raise ValueError(f"labels must be tiers 0..3, found {bad.unique()[:5].tolist()}; "
                         "for a teacher's pseudo-labels in [0, 1] use target='soft'")


def to_targets(labels: torch.Tensor, target: str, dtype: torch.dtype) -> torch.Tensor:
    """The [0, 1] target of each pair: tier / 3, or the soft label itself."""
    if target == "tier":
        check_tiers(labels)
        return labels.to(dtype) / MAX_TIER
    bad = labels[(labels < 0) | (labels > 1) | labels.isnan()]
    if bad.numel():
        raise ValueError(f"soft targets must lie in [0, 1], found {bad.unique()[:5].tolist()}; "
                         "for tiers 0..3 use target='tier'")
    return labels.to(dtype)


def check_target_kind(target: str) -> str:
    if target not in TARGET_KINDS:
        raise ValueError(f"target must be 'tier' (labels 0..3) or 'soft' (targets in [0, 1]), got {target!r}")
    return target


class MSELoss(nn.Module):
    """Mean of (sigmoid(score) - target)^2; target = tier / 3, or the soft label (target="soft")."""

    def __init__(self, target: str = "tier"):
        super().__init__()
        self.target = check_target_kind(target)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor | None = None):
        # query_ids is accepted, and unused, so every loss in LOSSES is called the same way.
        check_scores(scores, labels=labels)
        return (torch.sigmoid(scores) - to_targets(labels, self.target, scores.dtype)).pow(2).mean()
