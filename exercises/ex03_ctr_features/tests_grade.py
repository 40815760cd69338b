"""Hidden checks of exercise 3 (smoothed and position-aware CTR): the instructor's copy only.

Answer keys: the values of a tiny log worked out by hand (as fractions, below), and, on random
logs, relcourse.features (features_from_counts(count_shard(...)), columns ctr and coec), run here
in the grader. The settings, the log and the public check are in tests_public.py.
"""
from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pandas as pd

from exercises._checks import check
from exercises.ex03_ctr_features.tests_public import as_mapping, expect_mapping, hand_log

# By hand (see tests_public.hand_log): rank 1 has 4 impressions and 3 clicks, rank 2 4 and 1, rank 3 3 and 1.
HAND_CTR = {70: F(122, 253), 71: F(122, 253), 72: F(100, 253), 80: F(37, 77), 81: F(100, 231)}
# Expected clicks: 70 at ranks 1, 2, 1 -> 3/4 + 1/4 + 3/4 = 7/4;  71 at 2, 1, 3 -> 4/3;
# 72 at 3, 3, 2 -> 11/12;  80 at 1 -> 3/4;  81 at 2 -> 1/4.  COEC = (clicks + 2) / (expected + 2).
HAND_COEC = {70: F(16, 15), 71: F(6, 5), 72: F(24, 35), 80: F(12, 11), 81: F(8, 9)}


@check(2)
def check_smoothed_ctr_by_hand(sub):
    """smoothed_ctr of the small log, prior weight 20, towards the log-wide CTR 5/11."""
    expect_mapping(sub.smoothed_ctr(hand_log()), HAND_CTR, "smoothed_ctr(hand_log)",
                   hint="doc 70: (2 + 20 * 5/11) / (3 + 20); p0 = 5 clicks / 11 impressions of the whole log")


@check(1)
def check_smoothed_ctr_prior_weight(sub):
    """prior_weight 0 gives the raw CTR; a huge prior_weight gives the log-wide CTR for every document."""
    raw = {70: F(2, 3), 71: F(2, 3), 72: F(0), 80: F(1), 81: F(0)}
    expect_mapping(sub.smoothed_ctr(hand_log(), prior_weight=0.0), raw, "smoothed_ctr(hand_log, prior_weight=0)",
                   hint="without a prior, it is clicks / impressions")
    expect_mapping(sub.smoothed_ctr(hand_log(), prior_weight=1e9), {d: F(5, 11) for d in raw},
                   "smoothed_ctr(hand_log, prior_weight=1e9)", rel=1e-6,
                   hint="an overwhelming prior pulls every document to p0 = 5/11, the CTR of the whole log")


@check(2)
def check_coec_by_hand(sub):
    """coec of the small log: expected clicks from the click prior of each rank, prior 2."""
    expect_mapping(sub.coec(hand_log()), HAND_COEC, "coec(hand_log)",
                   hint="doc 70 was shown at ranks 1, 2, 1: expected clicks 3/4 + 1/4 + 3/4 = 7/4, "
                        "so coec = (2 + 2) / (7/4 + 2) = 16/15")


def random_log(rng: np.random.Generator) -> pd.DataFrame:
    """A log of 1..5 queries with 2..8 documents each, position bias, rows shuffled."""
    rows, search = [], 0
    for q in rng.choice(np.arange(1, 60), size=rng.integers(1, 6), replace=False):
        docs = q * 100 + np.arange(rng.integers(2, 9))
        appeal = rng.uniform(0.05, 0.9, len(docs))
        for _ in range(rng.integers(3, 30)):
            shown = rng.permutation(len(docs))[: rng.integers(1, len(docs) + 1)]
            for rank, d in enumerate(shown, start=1):
                rows.append((search, int(q), int(docs[d]), rank, bool(rng.random() < appeal[d] / rank ** 0.7)))
            search += 1
    log = pd.DataFrame(rows, columns=["search_id", "query_id", "doc_id", "position", "click"])
    return log.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def course_features(log: pd.DataFrame) -> pd.DataFrame:
    """The course's own ctr and coec of the log (relcourse.features needs a few more columns)."""
    from relcourse import features
    full = log.assign(ranker_score=0.0, dwell_s=0.0,
                      **{c: False for c in (*features.INTERACTIONS, "resorted_by_newest", "reformulated")})
    queries = pd.DataFrame({"query_id": sorted(log.query_id.unique()), "bucket": 0})
    return features.features_from_counts(features.count_shard(full), queries)


@check(2)
def check_random_logs_against_course(sub):
    """20 random logs: smoothed_ctr and coec equal the course's relcourse.features."""
    from relcourse import features
    rng = np.random.default_rng(3)
    for case in range(20):
        log = random_log(rng)
        x = course_features(log)
        what = f"on a random log of {len(log)} impressions ({log.doc_id.nunique()} documents), "
        expect_mapping(sub.smoothed_ctr(log, prior_weight=features.IMPRESSION_PRIOR), x["ctr"].to_dict(),
                       what + f"smoothed_ctr(log, prior_weight={features.IMPRESSION_PRIOR:g})")
        expect_mapping(sub.coec(log, prior=features.COEC_PRIOR), x["coec"].to_dict(),
                       what + f"coec(log, prior={features.COEC_PRIOR:g})")


@check(1)
def check_hygiene(sub):
    """The input is left unchanged; 0/1 clicks and shuffled rows give the same results."""
    before = hand_log()
    replies = {name: sub._remote(name, before, watch=True) for name in ("position_ctr", "smoothed_ctr", "coec")}
    results = {name: as_mapping(reply.value, f"{name}(hand_log)") for name, reply in replies.items()}
    if any(reply.mutated for reply in replies.values()):
        raise AssertionError("the functions changed the impressions DataFrame they were given "
                             "(added or overwrote a column?): work on a copy, or on new Series")
    variants = {"clicks as 0/1 integers": before.assign(click=before.click.astype(int)),
                "rows in another order": before.iloc[::-1].reset_index(drop=True)}
    for how, variant in variants.items():
        for name, expected in results.items():
            expect_mapping(getattr(sub, name)(variant), expected, f"{name}(hand_log with {how})",
                           hint="the result should not depend on that")
