"""Exercise 4: NDCG@k with the exponential gain 2^y - 1. The task is in README.md.

Fill in the two functions below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex04

Use plain Python or numpy; not relcourse.metrics or sklearn.metrics (those are the answer keys).
"""
from __future__ import annotations


def dcg_at_k(gains, k):
    """Discounted cumulative gain of a ranked list, cut at rank k.

    gains: the gain of the document at rank 1, 2, 3, ... (already 2^y - 1), in ranked order
    k:     the cutoff, a positive int; a list shorter than k simply ends early

        DCG@k = sum over ranks r = 1 .. min(k, len(gains)) of gains[r - 1] / log2(r + 1)

    >>> round(dcg_at_k([7, 3, 0, 1], k=3), 4)      # 7 / log2(2) + 3 / log2(3) + 0 / log2(4)
    8.8928
    """
    raise NotImplementedError("dcg_at_k: sum the discounted gains")


def ndcg_at_k(labels, scores, query_ids, k):
    """Mean NDCG@k over queries, gain 2^y - 1.

    labels:    n integer tiers 0..3
    scores:    n floats, the model's scores; each query's documents are ranked by descending score
    query_ids: n hashable query ids (rows of a query need not be next to each other)
    k:         the cutoff, a positive int (5 and 10 in the course)

    For each query: NDCG@k = DCG@k of the documents in the model's order / DCG@k in the ideal
    order (labels sorted from high to low). Return the mean over queries.

    - A query whose labels are all 0 has an ideal DCG of 0: leave it out of the mean.
      Raise ValueError if every query is like that.
    - Equal scores (the 2-point tie check): a group of documents with the same score takes the
      ranks it covers together, and each of them gets the MEAN gain of the group (as if you
      averaged over every order of the ties; this is what sklearn.metrics.ndcg_score does).

    >>> round(ndcg_at_k([3, 1, 0, 2, 0], [0.9, 0.8, 0.1, 0.3, 0.5], [0, 0, 0, 1, 1], k=5), 4)
    0.8155
    """
    raise NotImplementedError("ndcg_at_k: rank each query's documents, compare with the ideal order")
