"""Pairwise logistic loss: within a query, the better document should score higher.

    loss = mean over pairs (i, j) of the same query with y_i > y_j of ln(1 + exp(-γ (s_i - s_j)))

Reference: note 001, "Pairwise logistic 损失函数" (a sum there; the mean keeps the loss's scale
independent of how many pairs a batch happens to hold); RankNet (Burges et al., 2005). It "keeps
the order": only differences of scores within a query matter, which is what PNR rewards (claim F1).
γ sets how sharply a pair counts as ordered: the loss of a pair is ln 2 at a tie and falls to 0
as its margin grows. ln(1 + exp(x)) is softplus(x), which torch computes without overflow.

Shapes: scores (B,) logits; labels (B,) tiers 0..3 or soft targets in [0, 1] (only their order
within a query matters); query_ids (B,) ints. Returns a scalar.

Pairs come from the batch itself, so a query needs at least two documents of different labels in
the batch to contribute (use query-grouped batches, `relcourse.data.query_grouped_batch`). A batch
with no such pair returns scores.sum() * 0: a zero still attached to the graph, so backward() and
the optimizer step run as usual and change nothing. The number of pairs used is returned by
`pairwise_logistic_loss` and kept in `PairwiseLogisticLoss.last_num_pairs`, for logging.

>>> import torch
>>> scores, labels = torch.tensor([2.0, 0.0, 1.0, 5.0]), torch.tensor([3, 1, 0, 2])
>>> query_ids = torch.tensor([0, 0, 0, 1])      # query 1 has a single document: no pair
>>> # pairs (0,1), (0,2), (1,2) with margins 2, 1, -1:  (0.1269 + 0.3133 + 1.3133) / 3
>>> loss, num_pairs = pairwise_logistic_loss(scores, labels, query_ids)
>>> round(loss.item(), 4), num_pairs
(0.5845, 3)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mse import MAX_TIER, check_scores


def pairwise_logistic_loss(scores: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor,
                           gamma: float = 1.0) -> tuple[torch.Tensor, int]:
    """The loss and the number of (better, worse) pairs it averages over."""
    check_scores(scores, labels=labels, query_ids=query_ids)
    bad = labels[(labels < 0) | (labels > MAX_TIER) | labels.isnan()]
    if bad.numel():
        raise ValueError(f"labels must be tiers 0..3 or soft targets in [0, 1], found {bad.unique()[:5].tolist()}")
    # All B x B pairs at once: a batch holds a few hundred documents, so the mask is cheap and
    # simpler than grouping by query first. Each unordered pair is kept once, from its better end.
    better_in_same_query = (labels[:, None] > labels[None, :]) & (query_ids[:, None] == query_ids[None, :])
    margins = (scores[:, None] - scores[None, :])[better_in_same_query]
    if not margins.numel():
        return scores.sum() * 0, 0
    return F.softplus(-gamma * margins).mean(), margins.numel()


class PairwiseLogisticLoss(nn.Module):
    """Mean of ln(1 + exp(-γ (s_i - s_j))) over same-query pairs with y_i > y_j."""

    def __init__(self, gamma: float = 1.0):
        super().__init__()
        if not gamma > 0:
            raise ValueError(f"gamma must be positive (it scales the score margins), got {gamma!r}")
        self.gamma = gamma
        self.last_num_pairs = 0

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor):
        loss, self.last_num_pairs = pairwise_logistic_loss(scores, labels, query_ids, self.gamma)
        return loss
