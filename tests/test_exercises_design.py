"""Exercises 8–11: ex08 (a behaviour feature for the teacher, graded by the AUC it adds) rewards a real
feature, gives 0 to the starter and to a label leak, and only the validity points to a useless
feature; ex09–ex11 are written answers listed as manual, with their templates; ex09's optional code
part grades its solution; the release leaves out every solution of these folders.

Each ex08 grading sends the smoke world's logs (600k impressions) to a confined process twice;
the files are graded two at a time, so the module takes about a minute.
"""
import pandas as pd
import pytest

from exercises import grade
from exercises.ex08_teacher_feature import harness

OURS = ("ex08_teacher_feature", "ex09_freshness_signal", "ex10_rubric", "ex11_distill_plan")
DESIGN = OURS[1:]
BY_NAME = {e.name: e for e in grade.discover()}
EX08 = BY_NAME["ex08_teacher_feature"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """ex08 graded for five submissions: the solution, the starter, a leak, a constant and a noise feature."""
    root = tmp_path_factory.mktemp("class")
    w = harness.world()
    labels = pd.concat([w.train, w.valid])
    table = dict(zip(labels["doc_id"].tolist(), labels["label"].tolist()))
    sources = {
        "solution": (EX08.dir / "solution.py").read_text(),
        "starter": (EX08.dir / "starter.py").read_text(),
        # the human labels, pasted into the file as a table keyed by doc_id: what a leak looks like
        "leaky": f"LABELS = {table!r}\n\ndef feature(logs, pairs):\n"
                 "    return [float(LABELS.get(d, 1)) for d in pairs['doc_id']]\n",
        "constant": "def feature(logs, pairs):\n    return [1.0] * len(pairs)\n",
        # a deterministic function of behaviour that carries no relevance: noise
        "noise": "import numpy as np\n\ndef feature(logs, pairs):\n"
                 "    n = logs['impressions'].groupby('doc_id').size()\n"
                 "    return np.sin(1e3 * pairs['doc_id'].map(n).to_numpy(float)).tolist()\n",
    }
    subs = {}
    for name, source in sources.items():
        (root / name / EX08.name).mkdir(parents=True)
        (root / name / EX08.name / "starter.py").write_text(source)
        subs[name] = root / name
    results = grade.grade_submissions(subs, [EX08], jobs=2)
    return {s["submission"]: s["exercises"][0] for s in results}


def points(result) -> dict:
    return {c["check"]: c["earned"] for c in result["checks"]}


def test_ex08_solution_gets_full_marks(graded):
    r = graded["solution"]
    assert r["status"] == "full marks" and r["earned"] == r["possible"] == 10, r
    assert EX08.points == EX08.total_points == 10
    assert [c.points for c in EX08.checks if c.public] == [2]


def test_ex08_starter_scores_zero(graded):
    r = graded["starter"]
    assert r["status"] == "not started" and r["earned"] == 0
    assert all(c["message"].startswith("not done yet:") and "NotImplementedError" in c["message"] for c in r["checks"])


def test_ex08_label_leak_is_caught(graded):
    r = graded["leaky"]
    assert r["earned"] == 0
    first = r["checks"][0]["message"]
    assert first.startswith("LABEL LEAK") and "AUC 1.000" in first
    assert all("LABEL LEAK" in c["message"] for c in r["checks"])
    assert all(c["message"].startswith("not graded") for c in r["checks"][1:])


@pytest.mark.parametrize("name", ["constant", "noise"])
def test_ex08_useless_feature_earns_only_the_validity_points(graded, name):
    r = graded[name]
    earned = points(r)
    assert earned == {"check_valid_and_no_leak_on_renamed_logs": 2, "check_same_values_on_the_real_logs": 1,
                      "check_teacher_gains_0_003": 0, "check_teacher_gains_0_005": 0, "check_teacher_gains_0_007": 0}
    message = r["checks"][2]["message"]
    assert "held-out" not in message and "this check needs +0.003" in message and "mean of 10 seeds" in message


def test_ex08_renamed_logs_are_the_same_logs_renamed():
    w, r = harness.world(), harness.renamed()
    assert {k: len(t) for k, t in w.logs.items()} == {k: len(t) for k, t in r.logs.items()}
    assert sorted(r.doc_map.to_numpy()) == sorted(w.pairs["doc_id"]) and (r.doc_map.index != r.doc_map.to_numpy()).mean() > 0.99
    # the search order (time) is kept: sorted by search id, the renamed searches' documents are the originals'
    original = w.logs["impressions"].sort_values(["search_id", "position"])["doc_id"]
    again = r.logs["impressions"].sort_values(["search_id", "position"])["doc_id"]
    assert (again.to_numpy() == r.doc_map.reindex(original.to_numpy()).to_numpy()).all()
    assert not set(w.logs["impressions"].columns) & {"ranker_score", "label"}


def test_design_exercises_are_manual_with_points_and_templates():
    for name in DESIGN:
        ex = BY_NAME[name]
        assert ex.manual and ex.points == ex.total_points == 10
        assert (ex.student_file, ex.solution_file) == ("answer.md", "solution.md")
        template = (ex.dir / "answer.md").read_text()
        assert template.count("\n## ") >= 3 and "points)" in template
        assert "## Rubric" in (ex.dir / "solution.md").read_text()
        assert (ex.dir / "README.md").is_file()
    r = grade.grade_exercise(BY_NAME["ex10_rubric"], grade.EXERCISES_DIR)
    assert r["manual"] and "empty template" in r["message"]


def test_ex09_code_part_grades_its_solution():
    from exercises.ex09_freshness_signal import autocheck
    r = autocheck.grade_part(solutions=True)
    assert r["earned"] == r["possible"] == 3, r
    r = autocheck.grade_part()
    assert r["earned"] == 0 and r["status"] == "not started"


def test_release_leaves_out_our_solutions(tmp_path):
    target = grade.release(tmp_path)
    for name in OURS:
        shipped = {p.name for p in (target / name).iterdir()}
        assert not shipped & {"solution.py", "solution.md", "tests_grade.py"}, (name, shipped)
        assert {"README.md", "tests_public.py"} <= shipped
    assert {"starter.py", "harness.py"} <= {p.name for p in (target / OURS[0]).iterdir()}
    assert {"answer.md", "quality.py", "autocheck.py"} <= {p.name for p in (target / OURS[1]).iterdir()}
    for name in DESIGN[1:]:
        assert (target / name / "answer.md").is_file()
    # no line of a model answer or of a code solution of ours in the release
    secret = set()
    for name in OURS:
        for f in ("solution.md", "solution.py"):
            if (grade.EXERCISES_DIR / name / f).is_file():
                secret |= {line.strip() for line in (grade.EXERCISES_DIR / name / f).read_text().splitlines()
                           if len(line.strip()) > 40}
        for f in ("starter.py", "quality.py", "answer.md"):
            if (grade.EXERCISES_DIR / name / f).is_file():
                secret -= {line.strip() for line in (grade.EXERCISES_DIR / name / f).read_text().splitlines()}
    text = "\n".join(p.read_text(errors="replace") for p in target.rglob("*") if p.is_file())
    assert not [line for line in secret if line in text]
