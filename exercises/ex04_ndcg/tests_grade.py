"""Hidden checks of exercise 4 (NDCG@k, gain 2^y - 1): the instructor's copy only.

Answer keys, run here in the grader: sums worked out by hand, and sklearn.metrics.ndcg_score
(given the gains 2^y - 1 as its relevances, since sklearn's gain is linear), which
tests/test_exercises.py checks against relcourse.metrics.ndcg. The settings and the public
example are in tests_public.py.
"""
from __future__ import annotations

import math

import numpy as np

from exercises._checks import call_text, check, expect_close, expect_raises


def sklearn_ndcg(labels, scores, query_ids, k):
    """Mean over queries with a relevant document of sklearn's NDCG@k of the gains 2^y - 1.
    (Every query must have at least 2 documents: sklearn refuses a list of one.)"""
    from sklearn.metrics import ndcg_score
    labels, scores, query_ids = map(np.asarray, (labels, scores, query_ids))
    values = []
    for q in np.unique(query_ids):
        rows = query_ids == q
        gains = 2.0 ** labels[rows] - 1
        if gains.max() > 0:
            values.append(ndcg_score(gains[None, :], scores[rows][None, :], k=k))
    return float(np.mean(values))


@check(2)
def check_dcg_by_hand(sub):
    """dcg_at_k of a short list, for cutoffs 1, 3 and 10 (longer than the list)."""
    gains = [7, 3, 0, 1]
    for k, expected, how in [(1, 7.0, "7 / log2(2)"),
                             (3, 7 + 3 / math.log2(3), "7 / log2(2) + 3 / log2(3) + 0 / log2(4)"),
                             (10, 7 + 3 / math.log2(3) + 1 / math.log2(5), "the list ends at rank 4")]:
        expect_close(sub.dcg_at_k(gains, k), expected, call_text("dcg_at_k", gains, k=k), hint=how)


@check(1)
def check_cutoff(sub):
    """k = 1 looks at the top document only; k larger than a list is fine."""
    labels, scores, query_ids = [0, 3, 2, 1], [0.9, 0.8, 0.7, 0.6], ["q"] * 4
    expect_close(sub.ndcg_at_k(labels, scores, query_ids, k=1), 0.0, call_text("ndcg_at_k", labels, scores, query_ids, k=1),
                 hint="the top document has label 0: its gain is 2^0 - 1 = 0")
    expected = sklearn_ndcg(labels, scores, query_ids, k=50)
    expect_close(sub.ndcg_at_k(labels, scores, query_ids, k=50), expected,
                 call_text("ndcg_at_k", labels, scores, query_ids, k=50), hint="4 documents, cutoff 50")


@check(1)
def check_all_zero_queries(sub):
    """Queries with only label-0 documents are left out of the mean; none left is a ValueError."""
    args = ([2, 0, 0, 0, 1, 0], [0.1, 0.9, 0.5, 0.4, 0.3, 0.2], [1, 1, 2, 2, 3, 3])
    expect_close(sub.ndcg_at_k(*args, k=5), sklearn_ndcg(*args, k=5), call_text("ndcg_at_k", *args, k=5),
                 hint="query 2 has only label 0: no ideal gain, so it has no NDCG; average queries 1 and 3")
    zeros = ([0, 0, 0], [0.3, 0.2, 0.1], [1, 1, 2])
    expect_raises(ValueError, lambda: sub.ndcg_at_k(*zeros, k=5), call_text("ndcg_at_k", *zeros, k=5),
                  hint="every query has only label-0 documents, so NDCG is undefined")


def random_set(rng, n_queries, ties: bool):
    sizes = rng.integers(2, 15, n_queries)
    query_ids = np.repeat(rng.choice(10_000, n_queries, replace=False), sizes)
    labels = rng.integers(0, 4, len(query_ids))
    scores = rng.normal(labels * 0.4, 1.0)
    if ties:
        scores = np.round(scores, 0)            # whole numbers: many ties within a query
    shuffle = rng.permutation(len(query_ids))
    return labels[shuffle], scores[shuffle], query_ids[shuffle]


@check(2)
def check_random_against_sklearn(sub):
    """30 random sets of queries (distinct scores, rows shuffled), k = 5 and 10, against sklearn."""
    rng = np.random.default_rng(5)
    for case in range(30):
        labels, scores, query_ids = random_set(rng, 1 + case // 3, ties=False)
        for k in (5, 10):
            expect_close(sub.ndcg_at_k(labels, scores, query_ids, k), sklearn_ndcg(labels, scores, query_ids, k),
                         call_text("ndcg_at_k", labels, scores, query_ids, k=k), rel=1e-7)


@check(2)
def check_ties_averaged(sub):
    """Tied scores share the mean gain of their group, as sklearn does (30 random sets with many ties)."""
    labels, scores, query_ids = [3, 0, 1], [0.5, 0.5, 0.1], [0, 0, 0]
    expect_close(sub.ndcg_at_k(labels, scores, query_ids, 5), sklearn_ndcg(labels, scores, query_ids, 5),
                 call_text("ndcg_at_k", labels, scores, query_ids, k=5),
                 hint="the labels 3 and 0 tie at ranks 1-2: each counts the mean gain (7 + 0) / 2 there, "
                      "whatever order your sort left them in")
    rng = np.random.default_rng(6)
    for case in range(30):
        labels, scores, query_ids = random_set(rng, 1 + case // 3, ties=True)
        for k in (5, 10):
            expect_close(sub.ndcg_at_k(labels, scores, query_ids, k), sklearn_ndcg(labels, scores, query_ids, k),
                         call_text("ndcg_at_k", labels, scores, query_ids, k=k), rel=1e-7)
