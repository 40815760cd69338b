"""Exercise 1: PNR, the positive-negative ratio, from scratch. The task is in README.md.

Fill in the two functions below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex01

Use plain Python, numpy or pandas; not relcourse.metrics (that is the answer key).
"""
from __future__ import annotations


def pair_counts(labels, scores, query_ids):
    """Count the document pairs a ranking gets right, inverts, and ties.

    labels:    n integer tiers 0..3 (3 high, 2 mid, 1 low, 0 none)
    scores:    n floats, the model's scores (higher means more relevant)
    query_ids: n hashable query ids (ints or strings); row i is one (query, document) pair
    (lists or 1-D numpy arrays; the rows of a query need not be next to each other)

    Look at every pair of rows (i, j) with the SAME query id and DIFFERENT labels, once.
    Call i the row with the higher label. The pair is
        correct   if scores[i] > scores[j]
        inverted  if scores[i] < scores[j]
        tied      if scores[i] == scores[j]
    Pairs of rows with equal labels, and pairs of rows of different queries, are not counted.

    Returns (correct, inverted, tied): three ints, summed over all queries.

    >>> pair_counts([3, 1, 0, 2, 0], [0.9, 0.8, 0.1, 0.3, 0.5], [0, 0, 0, 1, 1])
    (3, 1, 0)
    """
    raise NotImplementedError("pair_counts: count the correct, inverted and tied pairs")


def pnr(labels, scores, query_ids):
    """Pooled PNR: all correct pairs / all inverted pairs, over all queries (tied pairs dropped).

    Same inputs as pair_counts. Returns a float:
        - correct / inverted, pooled (add up the counts of all queries first, then divide);
        - float("inf") when no pair is inverted (but at least one is correct);
    and raises ValueError when there is no correct and no inverted pair at all (nothing to measure).

    >>> pnr([3, 1, 0, 2, 0], [0.9, 0.8, 0.1, 0.3, 0.5], [0, 0, 0, 1, 1])
    3.0
    """
    raise NotImplementedError("pnr: divide the pooled counts")
