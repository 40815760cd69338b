"""Public checks of exercise 1 (PNR): the settings and the worked example of the docstrings.

Shipped to students with the starter. The other checks, and their answer key (a brute-force loop
over all pairs), are in tests_grade.py, which stays with the instructor.
"""
from __future__ import annotations

from exercises._checks import call_text, check, expect_close, show

TITLE = "PNR from scratch"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse.metrics", "sklearn.metrics")
POINTS = 10


def counts_of(sub, labels, scores, query_ids):
    """The student's pair_counts as a tuple of 3 ints, and the call as text for messages."""
    what = call_text("pair_counts", labels, scores, query_ids)
    got = sub.pair_counts(labels, scores, query_ids)
    try:
        values = tuple(got)
        ok = len(values) == 3 and all(float(v) == int(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AssertionError(f"{what} returned {show(got)}; expected a tuple of three ints (correct, inverted, tied)")
    return tuple(int(v) for v in values), what


@check(2)
def check_docstring_example(sub):
    """The example of the docstrings: 3 pairs right, 1 inverted, PNR 3."""
    args = ([3, 1, 0, 2, 0], [0.9, 0.8, 0.1, 0.3, 0.5], [0, 0, 0, 1, 1])
    got, what = counts_of(sub, *args)
    if got != (3, 1, 0):
        raise AssertionError(f"{what} returned {got}, expected (3, 1, 0): query 0 has pairs (3, 1), (3, 0) and "
                             "(1, 0), all ordered right; query 1 has (2, 0), inverted")
    expect_close(sub.pnr(*args), 3.0, call_text("pnr", *args))
