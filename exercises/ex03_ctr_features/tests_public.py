"""Public checks of exercise 3 (smoothed and position-aware CTR): the settings and one log by hand.

Shipped to students with the starter. The other checks, and their answer keys (values worked out
by hand, and relcourse.features on random logs), are in tests_grade.py, which stays with the
instructor.
"""
from __future__ import annotations

from fractions import Fraction as F

import pandas as pd

from exercises._checks import check, close, show

TITLE = "Smoothed and position-aware CTR"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse.features", "relcourse")
POINTS = 10


def hand_log() -> pd.DataFrame:
    """4 searches, 11 impressions, 5 clicks (log-wide CTR 5/11)."""
    rows = [  # search, query, doc, position, click
        (0, 7, 70, 1, True), (0, 7, 71, 2, False), (0, 7, 72, 3, False),
        (1, 7, 71, 1, True), (1, 7, 70, 2, True), (1, 7, 72, 3, False),
        (2, 7, 70, 1, False), (2, 7, 72, 2, False), (2, 7, 71, 3, True),
        (3, 8, 80, 1, True), (3, 8, 81, 2, False),
    ]
    return pd.DataFrame(rows, columns=["search_id", "query_id", "doc_id", "position", "click"])


# By hand. Rank 1: 4 impressions (70, 71, 70, 80), 3 clicks; rank 2: 4 (71, 70, 72, 81), 1 click;
# rank 3: 3 (72, 72, 71), 1 click.
HAND_POSITION_CTR = {1: F(3, 4), 2: F(1, 4), 3: F(1, 3)}


def as_mapping(got, what: str) -> dict:
    """A Series (or dict) of the student's, as {int key: float value}."""
    if not hasattr(got, "items"):
        raise AssertionError(f"{what} returned {show(got)} ({type(got).__name__}); expected a pandas Series")
    try:
        return {int(k): float(v) for k, v in got.items()}
    except (TypeError, ValueError, OverflowError):
        raise AssertionError(f"{what} returned {show(got)}; expected numbers indexed by an integer id") from None


def expect_mapping(got, expected: dict, what: str, rel=1e-9, hint=""):
    got = as_mapping(got, what)
    more = f" — {hint}" if hint else ""
    if set(got) != set(expected):
        raise AssertionError(f"{what} is indexed by {sorted(got)}, expected {sorted(expected)}{more}")
    for key, value in expected.items():
        if not close(got[key], float(value), rel=rel):
            raise AssertionError(f"{what}[{key}] is {got[key]!r}, expected {float(value)!r}"
                                 f"{f' (= {value})' if isinstance(value, F) else ''}{more}")


@check(2)
def check_position_ctr_by_hand(sub):
    """position_ctr of a small log worked out by hand."""
    expect_mapping(sub.position_ctr(hand_log()), HAND_POSITION_CTR, "position_ctr(hand_log)",
                   hint="rank 1 has 4 impressions and 3 clicks, rank 2 4 and 1, rank 3 3 and 1")
