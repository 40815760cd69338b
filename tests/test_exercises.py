"""exercises/: the solutions get full marks, the starters 0, and broken submissions (syntax error,
infinite loop, wrong answer, answer-key import) are graded with a clear message, never a crash.

Each graded file runs in a worker process (numpy/pandas/torch imports): the slow tests share
work, and the loops use short time limits, so the whole file stays around 20 s.
"""
import csv
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from exercises import grade
from exercises._checks import checks_of
from relcourse import metrics

EXERCISES = grade.discover()
BY_NAME = {e.name: e for e in EXERCISES}
PNR = BY_NAME["ex01_pnr"]
CODE_EXERCISES = [e for e in EXERCISES if not e.manual]


def load_tests_grade(ex):
    spec = importlib.util.spec_from_file_location(f"_test_{ex.name}", ex.tests_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def submission(tmp_path, files: dict[str, str]):
    """A submission folder: {"ex01_pnr/starter.py": source, ...}."""
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    return tmp_path


def grade_pnr(tmp_path, source: str, **kwargs) -> dict:
    root = submission(tmp_path, {"ex01_pnr/starter.py": source})
    return grade.grade_exercise(PNR, root, **kwargs)


SOLUTION_PNR = (PNR.dir / "solution.py").read_text()


# --- the layout and the answer keys ------------------------------------------------------------

def test_layout_and_points():
    assert [e.name for e in EXERCISES] == ["ex01_pnr", "ex02_pairwise_loss", "ex03_ctr_features",
                                           "ex04_ndcg", "ex05_feedback_loop"]
    for e in EXERCISES:
        assert (e.dir / "README.md").is_file() and e.points == 10
        assert (e.dir / e.student_file).is_file() and (e.dir / e.solution_file).is_file()
    assert BY_NAME["ex05_feedback_loop"].manual and not BY_NAME["ex05_feedback_loop"].checks


@pytest.mark.parametrize("ex", CODE_EXERCISES, ids=lambda e: e.name)
def test_ast_plan_matches_the_checks_the_worker_runs(ex):
    module = load_tests_grade(ex)
    assert [(c.name, c.points) for c in ex.checks] == [(f.__name__, f.points) for f in checks_of(module)]
    assert module.FORBIDDEN_IMPORTS


def test_answer_keys_agree_with_the_course():
    ex01, ex03, ex04 = (load_tests_grade(BY_NAME[n]) for n in ("ex01_pnr", "ex03_ctr_features", "ex04_ndcg"))
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        labels, query_ids = rng.integers(0, 4, n), rng.integers(0, 5, n)
        scores = np.round(rng.normal(size=n), 1)
        assert ex01.brute_force_pair_counts(labels, scores, query_ids) == metrics.pair_counts(labels, scores, query_ids)
        sizes = rng.integers(2, 10, 4)
        q = np.repeat(np.arange(4), sizes)
        y, s = rng.integers(0, 4, len(q)), np.round(rng.normal(size=len(q)), 0)
        if y.max() > 0:
            assert ex04.sklearn_ndcg(y, s, q, 5) == pytest.approx(metrics.ndcg(y, s, q, k=5))
    # the values worked out by hand in ex03 are the course's features of that log
    x = ex03.course_features(ex03.hand_log())
    assert x["ctr"].to_dict() == pytest.approx({k: float(v) for k, v in ex03.HAND_CTR.items()})
    assert x["coec"].to_dict() == pytest.approx({k: float(v) for k, v in ex03.HAND_COEC.items()})


# --- solutions and starters --------------------------------------------------------------------

def test_solutions_get_full_marks_through_the_command_line(tmp_path):
    out = tmp_path / "scores.json"
    run = subprocess.run([sys.executable, "-m", "exercises.grade", "--solutions", "--json", str(out)],
                         cwd=grade.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "TOTAL solutions: 40/40" in run.stdout
    sub = json.loads(out.read_text())["submissions"][0]
    assert (sub["total"], sub["possible"], sub["manual_possible"]) == (40, 40, 10)
    for r in sub["exercises"]:
        assert r["status"] == ("manual" if r["manual"] else "full marks"), r
        assert all(c["message"] == "ok" for c in r["checks"])
    assert not list(tmp_path.glob(".*.tmp"))          # the atomic write left no temporary file


def test_starters_score_zero_with_not_implemented_messages():
    sub, = grade.grade_submissions({"exercises": grade.EXERCISES_DIR}, EXERCISES)
    assert sub["total"] == 0 and sub["possible"] == 40
    for r in sub["exercises"]:
        if r["manual"]:
            assert "empty template" in r["message"]
            continue
        assert r["status"] == "not started" and r["earned"] == 0
        for c in r["checks"]:
            assert c["message"].startswith("not done yet:") and "NotImplementedError" in c["message"]
            assert f"{r['exercise']}/starter.py line" in c["message"]
    table = grade.format_submission(sub)
    assert "0/10" in table and "TOTAL exercises: 0/40" in table


# --- broken submissions ------------------------------------------------------------------------

def test_syntax_error_is_reported_with_its_line(tmp_path):
    source = SOLUTION_PNR.replace("    return correct, inverted, tied", "    return correct, inverted, tied)")
    line = source.splitlines().index("    return correct, inverted, tied)") + 1
    r = grade_pnr(tmp_path, source)
    assert r["status"] == "error" and r["earned"] == 0
    assert r["message"].startswith(f"ex01_pnr/starter.py line {line}: SyntaxError:")
    assert r["message"].endswith("fix the syntax and run again")
    assert "0/10" in grade.format_submission(grade._submission("x", tmp_path, [r]))


def test_infinite_loops_are_stopped(tmp_path):
    looping = SOLUTION_PNR.replace('    correct, inverted, _ = pair_counts', '    while True:\n        pass\n    correct, inverted, _ = pair_counts')
    r = grade_pnr(tmp_path / "in_a_function", looping, timeout=0.3)
    assert r["earned"] == 0
    assert all("did not finish within 0.3 s" in c["message"] and "line" in c["message"] for c in r["checks"])
    r = grade_pnr(tmp_path / "at_import", "while True:\n    pass\n", timeout=0.3)
    assert r["status"] == "error" and "importing it did not finish within 0.3 s" in r["message"]


def test_a_loop_that_ignores_the_alarm_hits_the_hard_limit(tmp_path):
    source = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    r = grade_pnr(tmp_path, source, timeout=0.3, hard_limit=3)
    assert r["status"] == "error" and r["earned"] == 0
    assert "stopped after 3 s" in r["message"]


def test_wrong_answer_gets_partial_points_and_says_why(tmp_path):
    ties_as_correct = SOLUTION_PNR.replace("if s1 > s2:", "if s1 >= s2:")
    r = grade_pnr(tmp_path, ties_as_correct)
    earned = {c["check"]: c["earned"] for c in r["checks"]}
    assert r["status"] == "partial" and 0 < r["earned"] < 10
    assert earned["check_docstring_example"] == 2 and earned["check_ties_dropped"] == 0
    message = next(c["message"] for c in r["checks"] if c["check"] == "check_ties_dropped")
    assert "returned (5, 1, 0), expected (4, 1, 1)" in message and "tied" in message


def test_unstable_pairwise_loss_loses_only_the_stability_points(tmp_path):
    ex = BY_NAME["ex02_pairwise_loss"]
    naive = (ex.dir / "solution.py").read_text().replace(
        "F.softplus(-gamma * margins)", "torch.log(1 + torch.exp(-gamma * margins))")
    root = submission(tmp_path, {"ex02_pairwise_loss/starter.py": naive})
    r = grade.grade_exercise(ex, root)
    failed = {c["check"]: c["message"] for c in r["checks"] if c["earned"] == 0}
    assert r["earned"] == 8 and list(failed) == ["check_numerically_stable"]
    assert "returned inf" in failed["check_numerically_stable"] and "softplus" in failed["check_numerically_stable"]


def test_other_broken_files(tmp_path):
    r = grade_pnr(tmp_path / "a", "from relcourse.metrics import pair_counts, pnr\n")
    assert r["status"] == "error" and "line 1 uses relcourse.metrics" in r["message"] and "answer key" in r["message"]
    r = grade_pnr(tmp_path / "b", "import numpy_that_does_not_exist\n")
    assert r["status"] == "error" and "ModuleNotFoundError" in r["message"]
    only_counts = SOLUTION_PNR.split("def pnr(")[0]
    r = grade_pnr(tmp_path / "c", only_counts)
    assert any("defines no function 'pnr'" in c["message"] for c in r["checks"])
    r = grade_pnr(tmp_path / "d", SOLUTION_PNR.replace("tied += 1", "tied += 1 / 0"))
    assert any("your code raised ZeroDivisionError" in c["message"] and "starter.py line" in c["message"]
               for c in r["checks"])
    r = grade.grade_exercise(PNR, tmp_path / "nobody")
    assert r["status"] == "missing" and r["earned"] == 0 and "is missing" in r["message"]


# --- a class -------------------------------------------------------------------------------------

def test_class_folder_gives_a_csv(tmp_path):
    answer = "# my answer\n\n" + "The teacher learns to copy the model score, so the loop confirms its errors. " * 8
    submission(tmp_path / "class" / "alice", {"ex01_pnr/starter.py": SOLUTION_PNR,
                                              "ex05_feedback_loop/answer.md": answer})
    submission(tmp_path / "class" / "bob", {"exercises/ex01_pnr/starter.py": "def pnr(:\n"})
    out_csv, out_json = tmp_path / "grades.csv", tmp_path / "class.json"
    run = subprocess.run([sys.executable, "-m", "exercises.grade", str(tmp_path / "class"), "--exercise", "ex01,ex05",
                          "--csv", str(out_csv), "--json", str(out_json)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"]["ex01_pnr"] == "10" and rows["alice"]["ex05_feedback_loop"] == ""
    assert (rows["alice"]["auto_total"], rows["alice"]["auto_possible"], rows["alice"]["notes"]) == ("10", "10", "")
    assert rows["bob"]["ex01_pnr"] == "0" and "bob/ex01_pnr/starter.py line 1: SyntaxError" in rows["bob"]["notes"]
    assert "ex05_feedback_loop: missing" in rows["bob"]["notes"]
    students = {s["submission"]: s for s in json.loads(out_json.read_text())["submissions"]}
    assert students["alice"]["exercises"][1]["message"].startswith("alice/ex05_feedback_loop/answer.md: ")
    assert "alice" in run.stdout and "gradebook:" in run.stdout


# --- the rest of the command line ---------------------------------------------------------------

def test_release_leaves_the_solutions_out(tmp_path):
    target = grade.release(tmp_path)
    assert not list(target.rglob("solution.*")) and not list(target.rglob("__pycache__"))
    for e in EXERCISES:
        assert (target / e.name / e.student_file).is_file() and (target / e.name / "tests_grade.py").is_file()
    assert (target / "grade.py").is_file() and (target / "_worker.py").is_file()
    with pytest.raises(SystemExit, match="not empty"):
        grade.release(tmp_path)


def test_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        grade.main(["--solutions", str(tmp_path)])
    assert e.value.code == 2
    with pytest.raises(SystemExit, match="no exercise called ex09"):
        grade.main(["--exercise", "ex09"])
    with pytest.raises(SystemExit, match="found no exercise folders"):
        grade.main([str(tmp_path)])
