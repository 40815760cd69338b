"""Margin-MSE: the student copies the teacher's score *differences* within a query.

    loss = mean over pairs (i, j) of the same query, i < j, of ((s_i - s_j) - (t_i - t_j))^2

Reference: Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models with
Cross-Architecture Knowledge Distillation" (their (query, positive, negative) triples are the
special case of two documents); sentence-transformers' cross-encoder `MarginMSELoss`. A ranker
is judged by the order of the documents of one query, so this loss spends the student's
capacity on exactly that: it ignores a shift that moves every score of a query together, which
logit MSE would pay to copy. The price: the student's scores are comparable within a query
only, not across queries (a threshold "relevant if s > 0" no longer has a meaning).

Shapes: scores (B,) student logits; teacher (B,) teacher logits; query_ids (B,) ints. Pairs come
from the batch (use query-grouped batches, `relcourse.data.query_grouped_batch`); a batch
without two documents of one query returns scores.sum() * 0, a zero attached to the graph.

>>> import torch
>>> scores, teacher = torch.tensor([1.0, 0.0, 7.0]), torch.tensor([3.0, 0.0, 2.0])
>>> # one pair (0, 1): student margin 1, teacher margin 3, error (1 - 3)^2 = 4; doc 2 is alone
>>> MarginMSELoss()(scores, teacher, torch.tensor([5, 5, 6])).item()
4.0
"""
from __future__ import annotations

import torch
from torch import nn

from .logit_mse import check_teacher
from .mse import check_scores


class MarginMSELoss(nn.Module):
    """Mean squared error between the student's and the teacher's same-query score margins."""

    def forward(self, scores: torch.Tensor, teacher: torch.Tensor, query_ids: torch.Tensor):
        check_scores(scores, teacher=teacher, query_ids=query_ids)
        check_teacher(teacher)
        # All B x B pairs at once, as in pairwise.py; each unordered pair once (i < j).
        n = scores.shape[0]
        same_query = (query_ids[:, None] == query_ids[None, :]) & torch.ones(n, n, dtype=torch.bool,
                                                                             device=scores.device).triu(1)
        teacher = teacher.to(scores.dtype)
        errors = ((scores[:, None] - scores[None, :]) - (teacher[:, None] - teacher[None, :]))[same_query]
        if not errors.numel():
            return scores.sum() * 0
        return errors.pow(2).mean()
