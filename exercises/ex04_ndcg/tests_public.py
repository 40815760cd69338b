"""Public checks of exercise 4 (NDCG@k, gain 2^y - 1): the settings and the docstring's example.

Shipped to students with the starter. The other checks, and their answer keys (sums by hand,
sklearn.metrics.ndcg_score, relcourse.metrics), are in tests_grade.py, which stays with the
instructor.
"""
from __future__ import annotations

import math

from exercises._checks import call_text, check, expect_close

TITLE = "NDCG@k with gain 2^y - 1"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse.metrics", "sklearn.metrics")
POINTS = 10


@check(2)
def check_docstring_example(sub):
    """The example of the docstring: query 0 is ordered perfectly, query 1 is not."""
    args = ([3, 1, 0, 2, 0], [0.9, 0.8, 0.1, 0.3, 0.5], [0, 0, 0, 1, 1])
    expect_close(sub.ndcg_at_k(*args, k=5), (1 + (3 / math.log2(3)) / 3) / 2, call_text("ndcg_at_k", *args, k=5),
                 hint="query 0: NDCG 1; query 1 puts its gain-3 document at rank 2: (3 / log2(3)) / 3; mean of the two")
