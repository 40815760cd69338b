"""Public checks of exercise 8 (a behaviour feature for the teacher): the settings and the validity check.

Shipped to students with the starter. The check runs the student's `feature` on the course's
smoke logs with every id renamed and the rows shuffled, and asks for one finite number per pair
that does not predict the labels of the renamed ids (a label leak). The other checks (the same
numbers on the real logs, and the teacher's AUC with the feature) are in tests_grade.py.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
import pandas as pd

from exercises._checks import check
from exercises.ex08_teacher_feature import harness

TITLE = "A behaviour feature for the GBDT teacher"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse", "data_gen", "exercises")
POINTS = 10
# Not exported to nbgrader: its checks train the teacher on the whole smoke log (~600k impressions)
# with the student's feature, which nbgrader would do inside the student's own kernel; grade it with
# `python -m exercises.grade`, where the student's code runs apart from the checks.
NBGRADER = False
LEAK_MARGIN = 0.1        # |AUC - 0.5| on the renamed logs above this is a leak (a feature of behaviour: ~0.01)

WHAT_RENAMED = "feature(logs, pairs) on the smoke logs with the ids renamed and the rows shuffled"
WHAT_REAL = "feature(logs, pairs) on the smoke logs"

# What each student's process returned, kept for the next checks of the same file: the logs are large
# and a slow or broken function should cost its time once, not once per check.
_RESULTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_RESULTS_LOCK = threading.Lock()


def remembered(sub, key: str, compute):
    """compute() once per student process and key; a failure (the student's exception, a time-out,
    a crash, a failed validation) is remembered too and raised again to every later check."""
    process = sub._process
    with _RESULTS_LOCK:
        memo = _RESULTS.setdefault(process, {})
    if key not in memo:
        try:
            memo[key] = (True, compute())
        except BaseException as e:  # noqa: BLE001 — remembered, then raised as it came
            memo[key] = (False, e)
    ok, value = memo[key]
    if not ok:
        raise value
    return value


def renamed_values(sub):
    """The student's values for the renamed logs, aligned with harness.renamed().pairs."""
    r = harness.renamed()
    return remembered(sub, "renamed", lambda: harness.values_of(sub.feature(r.logs, r.pairs), r.pairs, WHAT_RENAMED))


def leak_verdict(values) -> None:
    auc = harness.null_world_auc(values)
    if abs(auc - 0.5) > LEAK_MARGIN:
        raise AssertionError(
            f"LABEL LEAK: with every pair's id renamed (each id now carries another pair's behaviour), your feature "
            f"still predicts the human labels of the ids: AUC {auc:.3f}, where a feature computed from behaviour gets "
            f"0.5 ± {LEAK_MARGIN:g}. It reads who the pair is (a table or a rule keyed by doc_id or query_id, the "
            "labels themselves), not what users did. A teacher feature may use the logged behaviour only")


def real_values(sub):
    w = harness.world()
    return remembered(sub, "real", lambda: harness.values_of(sub.feature(w.logs, w.pairs), w.pairs, WHAT_REAL))


def _not_graded(e: AssertionError, check_name: str) -> AssertionError:
    text = str(e)
    if text.startswith("not graded"):
        return e
    return AssertionError(f"not graded: the feature failed {check_name} — {text}")


def invariance(values, values_renamed) -> None:
    """The values for the real logs equal those for the renamed logs, id for id."""
    w, r = harness.world(), harness.renamed()
    back = pd.Series(values_renamed, index=r.pairs["doc_id"].to_numpy()).reindex(
        r.doc_map.reindex(w.pairs["doc_id"].to_numpy()).to_numpy()).to_numpy()
    differ = ~np.isclose(values, back, rtol=1e-6, atol=1e-9)
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise AssertionError(
            f"{WHAT_REAL} and on the same logs with the ids renamed and the rows shuffled give different values for "
            f"{int(differ.sum())} of {len(values)} pairs (doc_id {int(w.pairs['doc_id'].iloc[i])}: {values[i]:.6g} "
            f"vs {back[i]:.6g}). A behaviour feature cannot depend on either: if you need the order of the results "
            "of a search, sort by search_id and position; use ids only as keys to group and join on; no randomness")


def verified(sub, own: bool = False):
    """The student's values on the real logs, once they passed every validity check; else the reason
    ("not graded: ..."; own=True: the real-logs check's own failure comes as it is)."""
    try:
        values_renamed = renamed_values(sub)
        leak_verdict(values_renamed)
    except AssertionError as e:
        raise _not_graded(e, "check valid_and_no_leak_on_renamed_logs") from None
    try:
        values = real_values(sub)
        remembered(sub, "invariance", lambda: invariance(values, values_renamed))
    except AssertionError as e:
        raise (e if own else _not_graded(e, "check same_values_on_the_real_logs")) from None
    return values


@check(2)
def check_valid_and_no_leak_on_renamed_logs(sub):
    """One finite number per pair, from behaviour only: no label leak on logs with renamed ids."""
    leak_verdict(renamed_values(sub))
