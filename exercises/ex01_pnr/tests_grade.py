"""Hidden checks of exercise 1 (PNR): the instructor's copy only, never in the student release.

The answer key is a brute-force loop over all ordered pairs of rows (brute_force_pair_counts);
tests/test_exercises.py checks that it agrees with relcourse.metrics. The settings and the public
worked example are in tests_public.py.
"""
from __future__ import annotations

import math

import numpy as np

from exercises._checks import as_number, call_text, check, expect_close, expect_raises
from exercises.ex01_pnr.tests_public import counts_of


def brute_force_pair_counts(labels, scores, query_ids):
    """Every ordered pair (i, j) of rows of the same query with labels[i] > labels[j], once."""
    correct = inverted = tied = 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if query_ids[i] == query_ids[j] and labels[i] > labels[j]:
                correct += scores[i] > scores[j]
                inverted += scores[i] < scores[j]
                tied += scores[i] == scores[j]
    return int(correct), int(inverted), int(tied)


def brute_force_pnr(labels, scores, query_ids):
    correct, inverted, _ = brute_force_pair_counts(labels, scores, query_ids)
    if correct + inverted == 0:
        raise ValueError("no untied pair")
    return correct / inverted if inverted else math.inf


def expect_counts(sub, labels, scores, query_ids, hint=""):
    got, what = counts_of(sub, labels, scores, query_ids)
    expected = brute_force_pair_counts(labels, scores, query_ids)
    if got != expected:
        raise AssertionError(f"{what} returned {got}, expected {expected}" + (f" — {hint}" if hint else ""))


@check(2)
def check_ties_dropped(sub):
    """A pair the model scores equally is counted as tied, and PNR leaves it out."""
    args = ([3, 2, 1, 0], [0.9, 0.9, 0.2, 0.5], ["q", "q", "q", "q"])
    hint = ("labels 3 and 2 get the same score 0.9: that pair is tied, neither right nor wrong; "
            "of the other five pairs four are right and one (1 vs 0) is inverted")
    expect_counts(sub, *args, hint=hint)
    expect_close(sub.pnr(*args), 4.0, call_text("pnr", *args), hint=hint)


@check(2)
def check_only_pairs_within_a_query(sub):
    """Pairs of different queries, and pairs with equal labels, are not counted."""
    args = ([2, 2, 0, 1, 0], [0.1, 0.9, 0.5, 0.2, 0.95], ["a", "a", "a", "b", "b"])
    hint = ("query a has one right pair (0.9 > 0.5) and one inverted (0.1 < 0.5), its two label-2 "
            "documents make no pair; query b has one inverted pair; rows of a and b never pair up")
    expect_counts(sub, *args, hint=hint)
    expect_close(sub.pnr(*args), 0.5, call_text("pnr", *args), hint=hint)


@check(1)
def check_pooled_not_averaged(sub):
    """PNR pools the counts of all queries before dividing; it is not a mean of per-query ratios."""
    labels = [1, 0, 0, 0, 1, 0, 1, 0, 0, 0]
    scores = [0.5, 0.1, 0.2, 0.3, 0.1, 0.9, 0.9, 0.1, 0.95, 0.99]
    query_ids = [1, 1, 1, 1, 2, 2, 3, 3, 3, 3]
    expect_close(sub.pnr(labels, scores, query_ids), 4 / 3, call_text("pnr", labels, scores, query_ids),
                 hint="the queries have (right, inverted) = (3, 0), (0, 1), (1, 2): pooled 4 / 3")


@check(1)
def check_edge_cases(sub):
    """inf when no pair is inverted; ValueError when there is no untied pair to measure."""
    args = ([3, 2, 0], [0.9, 0.5, 0.1], [7, 7, 7])
    got = as_number(sub.pnr(*args), call_text("pnr", *args))
    if not (math.isinf(got) and got > 0):
        raise AssertionError(f"{call_text('pnr', *args)} returned {got!r}, expected inf: "
                             "no pair is inverted, so the ratio has nothing to divide by")
    for labels, scores, query_ids, why in [
        ([2, 2, 2], [0.1, 0.2, 0.3], [0, 0, 0], "every label is the same, so there is no pair"),
        ([3, 0], [0.4, 0.4], [0, 0], "the only pair is tied"),
        ([3, 0], [0.9, 0.1], [0, 1], "each query has a single document"),
    ]:
        expect_raises(ValueError, lambda: sub.pnr(labels, scores, query_ids),
                      call_text("pnr", labels, scores, query_ids), hint=why)


@check(2)
def check_random_against_brute_force(sub):
    """200 random result lists (shuffled rows, many ties) against a brute-force loop over all pairs."""
    rng = np.random.default_rng(20240501)
    for case in range(200):
        n = 1 + case // 8                                   # small cases first: the first failure is readable
        query_ids = rng.choice([3, 17, 42, 1000, 99], size=n)
        labels = rng.integers(0, 4, size=n)
        scores = np.round(rng.normal(labels * 0.3, 0.5), 1)  # one decimal: ties are common
        expect_counts(sub, labels, scores, query_ids)
        what = call_text("pnr", labels, scores, query_ids)
        try:
            expected = brute_force_pnr(labels, scores, query_ids)
        except ValueError:
            expect_raises(ValueError, lambda: sub.pnr(labels, scores, query_ids), what,
                          hint="no untied pair of different labels")
            continue
        expect_close(sub.pnr(labels, scores, query_ids), expected, what)
