"""Hidden checks of exercise 8 (a behaviour feature for the teacher): the instructor's copy only.

The answer key is the teacher itself: relcourse.teacher.Teacher on the baseline features of
harness.BASELINE_FEATURES, with and without the student's column, fitted on the human labels of
the train split (early-stopped on valid), AUC against the careful judgement (rubric v2) of every
pair of the test and unlabelled queries, the mean of 10 seeds. Thresholds: measured noise. Over
30 random columns the gain had a standard deviation of 0.0010 and a maximum of +0.0018; the
satisfaction features of relcourse.features add +0.008 to +0.009 each; the solution +0.0092.
"""
from __future__ import annotations

from exercises._checks import check
from exercises.ex08_teacher_feature import harness
from exercises.ex08_teacher_feature.tests_public import remembered, verified

GAINS = (0.003, 0.005, 0.007)      # test AUC over the baseline for the three gain checks


@check(1)
def check_same_values_on_the_real_logs(sub):
    """The real logs give the same numbers as the renamed, shuffled ones: ids and row order do not matter."""
    verified(sub, own=True)


def gain(sub) -> tuple:
    values = verified(sub)
    yours = remembered(sub, "teacher", lambda: harness.teacher_auc(values))
    base = harness.baseline()
    return yours["test"] - base["test"], base, yours, values


def expect_gain(sub, needed: float) -> None:
    delta, base, yours, values = gain(sub)
    if delta < needed:
        alone = harness.single_auc(values)
        raise AssertionError(
            f"the teacher's test AUC went {base['test']:.4f} -> {yours['test']:.4f} ({delta:+.4f}; valid "
            f"{base['valid']:.4f} -> {yours['valid']:.4f}; mean of {len(harness.SEEDS)} seeds); this check needs "
            f"{needed:+.3f} or more. Your feature alone ranks the labelled pairs with AUC {alone:.3f}. A feature the "
            "baseline's click counts, CTR and COEC already imply adds nothing: what do the logs say about the pair "
            "that clicks do not? (see the README's hints)")


@check(2)
def check_teacher_gains_0_003(sub):
    """The teacher's held-out AUC rises by at least +0.003 with the feature (mean of 10 seeds)."""
    expect_gain(sub, GAINS[0])


@check(2)
def check_teacher_gains_0_005(sub):
    """The teacher's held-out AUC rises by at least +0.005 with the feature."""
    expect_gain(sub, GAINS[1])


@check(3)
def check_teacher_gains_0_007(sub):
    """The teacher's held-out AUC rises by at least +0.007 with the feature."""
    expect_gain(sub, GAINS[2])
