"""Exercise 1, instructor solution: PNR by looking at every pair of a query once.

O(n^2) per query, which is fine for result lists of tens of documents. relcourse.metrics does the
same count in O(n log n) by sorting each query by score; compare the two once this one works.
"""
from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations


def pair_counts(labels, scores, query_ids):
    """(correct, inverted, tied) over the pairs of rows with the same query and different labels."""
    docs_of = defaultdict(list)                       # query id -> [(label, score), ...]
    for y, s, q in zip(labels, scores, query_ids):
        docs_of[q].append((y, s))
    correct = inverted = tied = 0
    for docs in docs_of.values():
        for (y1, s1), (y2, s2) in combinations(docs, 2):
            if y1 == y2:
                continue                              # same tier: no preferred order
            if y1 < y2:                               # make (y1, s1) the better document
                (y1, s1), (y2, s2) = (y2, s2), (y1, s1)
            if s1 > s2:
                correct += 1
            elif s1 < s2:
                inverted += 1
            else:
                tied += 1
    return correct, inverted, tied


def pnr(labels, scores, query_ids):
    """Pooled correct / inverted; inf without an inverted pair; ValueError without any untied pair."""
    correct, inverted, _ = pair_counts(labels, scores, query_ids)
    if correct + inverted == 0:
        raise ValueError("PNR is undefined: no query has two documents of different labels with different scores")
    return correct / inverted if inverted else math.inf
