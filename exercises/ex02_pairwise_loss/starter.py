"""Exercise 2: the pairwise logistic loss, in torch. The task is in README.md.

Fill in the function below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex02

Use torch; not relcourse.losses (that is the answer key).
"""
from __future__ import annotations

import torch


def pairwise_logistic_loss(scores: torch.Tensor, labels: torch.Tensor, query_ids: torch.Tensor,
                           gamma: float = 1.0) -> torch.Tensor:
    """Mean over the pairs (i, j) of the same query with labels[i] > labels[j] of

        ln(1 + exp(-gamma * (scores[i] - scores[j])))

    scores:    (B,) float tensor of logits, one per (query, document) pair; may require grad
    labels:    (B,) tiers 0..3, or soft targets in [0, 1]; only their order within a query matters
    query_ids: (B,) int tensor; pairs are only formed within a query
    gamma:     > 0, how sharply the loss turns a score margin into "ordered"

    Returns a 0-d tensor on the autograd graph of `scores`, so loss.backward() trains the model.
    A batch with no such pair returns a zero that is still on the graph (scores.sum() * 0), so
    backward() runs and changes nothing. The loss must stay finite for margins of +-1000.

    >>> scores, labels = torch.tensor([2.0, 0.0, 1.0, 5.0]), torch.tensor([3, 1, 0, 2])
    >>> round(pairwise_logistic_loss(scores, labels, torch.tensor([0, 0, 0, 1])).item(), 4)
    0.5845
    """
    raise NotImplementedError("pairwise_logistic_loss: build the pairs, then average the loss")
