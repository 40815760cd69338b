"""Four-class cross-entropy over the tiers: the anti-pattern, kept as a baseline.

    loss = mean_i -ln softmax(z_i)[y_i],   z_i (4,) logits, one per tier
    score_i = sum_k k · softmax(z_i)[k]     (the expected tier, to rank by)

Reference: note 001, "不要把估计相关性看作多分类任务!" (do not treat relevance as multi-class
classification); claim F2 measures it against CE + pairwise.

Why it is worse: cross-entropy only looks at the probability of the right class, so it treats the
tiers as unordered names. For a "high" document, putting the rest of the probability on "mid" or
on "none" costs exactly the same (see below), although one is nearly right and the other is the
worst possible answer. The order 3 > 2 > 1 > 0, the most useful thing the labels say, has to be
rediscovered from data, with four outputs instead of one; and there is no score to rank by, so
`expected_tier` makes one after the fact for the same metrics as the other losses.

Shapes: logits (B, 4); labels (B,) tiers 0..3. Returns a scalar. (The model needs a 4-way head
here, where the other losses need one logit.)

>>> import torch
>>> label = torch.tensor([3])
>>> near = torch.tensor([[0.0, 0.0, 3.0, 1.0]])   # probabilities 0.04, 0.04, 0.81, 0.11
>>> far = torch.tensor([[3.0, 0.0, 0.0, 1.0]])    # probabilities 0.81, 0.04, 0.04, 0.11
>>> loss = FourClassCrossEntropyLoss()
>>> round(loss(near, label).item(), 4), round(loss(far, label).item(), 4)   # -ln 0.1096 both times
(2.211, 2.211)
>>> round(expected_tier(near).item(), 2), round(expected_tier(far).item(), 2)
(1.99, 0.45)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mse import MAX_TIER, check_tiers

NUM_TIERS = MAX_TIER + 1


def expected_tier(logits: torch.Tensor) -> torch.Tensor:
    """(B, 4) tier logits -> (B,) ranking score sum_k k * p_k, in [0, 3]."""
    tiers = torch.arange(NUM_TIERS, dtype=logits.dtype, device=logits.device)
    return logits.softmax(dim=-1) @ tiers


class FourClassCrossEntropyLoss(nn.Module):
    """Cross-entropy of (B, 4) tier logits against the tier, as if the tiers had no order."""

    expected_tier = staticmethod(expected_tier)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor | None = None):
        # query_ids is accepted, and unused, so every loss in LOSSES is called the same way.
        if not logits.is_floating_point() or logits.dim() != 2 or logits.shape[1] != NUM_TIERS:
            raise ValueError(f"logits must be a float tensor of shape (B, {NUM_TIERS}), one logit per tier, "
                             f"got {logits.dtype} of shape {tuple(logits.shape)}")
        if labels.shape != logits.shape[:1]:
            raise ValueError(f"labels must have shape ({logits.shape[0]},), one tier per row of logits, "
                             f"got {tuple(labels.shape)}")
        check_tiers(labels)
        return F.cross_entropy(logits, labels.long())
