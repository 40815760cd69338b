"""Exercise 4, instructor solution: NDCG@k per query, in plain Python."""
from __future__ import annotations

import math
from collections import defaultdict


def dcg_at_k(gains, k):
    """sum over ranks r = 1..min(k, n) of gains[r - 1] / log2(r + 1)."""
    return float(sum(g / math.log2(r + 1) for r, g in enumerate(list(gains)[:k], start=1)))


def _dcg_of_ranking(gains, scores, k):
    """DCG@k with documents ranked by descending score; a tie group shares its mean gain."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    total, start = 0.0, 0
    while start < len(order) and start < k:
        end = start                              # the tie group is order[start:end]
        while end < len(order) and scores[order[end]] == scores[order[start]]:
            end += 1
        mean_gain = sum(gains[i] for i in order[start:end]) / (end - start)
        total += sum(mean_gain / math.log2(rank + 2) for rank in range(start, min(end, k)))
        start = end
    return total


def ndcg_at_k(labels, scores, query_ids, k):
    """Mean over queries with a relevant document of DCG@k / ideal DCG@k, gain 2^y - 1."""
    docs_of = defaultdict(list)
    for y, s, q in zip(labels, scores, query_ids):
        docs_of[q].append((2.0 ** int(y) - 1, float(s)))
    per_query = []
    for docs in docs_of.values():
        gains = [g for g, _ in docs]
        ideal = dcg_at_k(sorted(gains, reverse=True), k)
        if ideal > 0:                            # all-zero queries: every order is as good as any
            per_query.append(_dcg_of_ranking(gains, [s for _, s in docs], k) / ideal)
    if not per_query:
        raise ValueError("NDCG is undefined: every query has only label-0 documents")
    return sum(per_query) / len(per_query)
