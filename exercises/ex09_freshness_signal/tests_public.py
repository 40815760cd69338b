"""Exercise 9 is a written design answer, graded by hand with the rubric in solution.md (7 points),
plus an optional part checked by code (3 points): the quality signal the answer proposes, written
as `feature(logs, pairs)` in quality.py, the interface of exercise 8.

The autograder lists the exercise as "manual" and does not run the checks below; run them with

    .venv/bin/python -m exercises.ex09_freshness_signal.autocheck [SUBMISSION]

(a submission folder holding ex09_freshness_signal/quality.py; default: this copy). They run the
student's file confined, like every autograded check, and reuse exercise 8's world and validity
checks; they hold no answer key, so they ship to students.
"""
from __future__ import annotations

from exercises._checks import check
from exercises.ex08_teacher_feature import harness
from exercises.ex08_teacher_feature.tests_public import remembered, verified

TITLE = "Design: behaviour signals for freshness and content quality"
MANUAL = True
POINTS = 10
STUDENT_FILE = "answer.md"
SOLUTION_FILE = "solution.md"

# The optional code part (exercises/ex09_freshness_signal/autocheck.py)
CODE_FILE = "quality.py"
CODE_SOLUTION = "solution.py"
CODE_FORBIDDEN_IMPORTS = ("relcourse", "data_gen", "exercises")
ALONE_AUC = 0.55         # the signal alone against the human labels (a random one: 0.50 ± 0.012)
TEACHER_GAIN = 0.003     # over exercise 8's baseline teacher (a random column: ±0.001, at most +0.002 in 30)


@check(1)
def check_signal_valid_and_leak_free(sub):
    """One finite number per pair, the same on renamed and shuffled logs, no label leak (exercise 8's rules)."""
    verified(sub, own=True)


@check(1)
def check_signal_predicts_the_labels(sub):
    """The signal alone ranks the human-labelled pairs with AUC >= 0.55."""
    auc = harness.single_auc(verified(sub))
    if auc < ALONE_AUC:
        raise AssertionError(f"your signal alone ranks the human-labelled pairs with AUC {auc:.3f}; this part needs "
                             f"{ALONE_AUC} or more (a random signal gets 0.50 ± 0.01). Quality is not relevance: "
                             "does your signal also say whether the page served the query's need?")


@check(1)
def check_signal_adds_to_the_teacher(sub):
    """Added to exercise 8's baseline teacher, the held-out AUC rises by >= +0.003 (mean of 10 seeds)."""
    values = verified(sub)
    yours = remembered(sub, "teacher", lambda: harness.teacher_auc(values))
    base = harness.baseline()
    if yours["test"] - base["test"] < TEACHER_GAIN:
        raise AssertionError(f"the teacher's held-out AUC went {base['test']:.4f} -> {yours['test']:.4f} "
                             f"({yours['test'] - base['test']:+.4f}); this part needs {TEACHER_GAIN:+.3f} or more")
