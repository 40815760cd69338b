"""exercises/: the solutions get full marks, the starters 0, and broken submissions (syntax error,
infinite loop, wrong answer, answer-key import) are graded with a clear message, never a crash;
hostile submissions (tests/test_exercises.py's HOSTILE) earn nothing they did not compute, and
leave the class, the instructor's files and the process table as they found them.

Each graded file runs in a sandboxed process (numpy/pandas/torch imports): the slow tests share
work, and the loops use short time limits, so the whole file stays well under a minute.
"""
import csv
import hashlib
import importlib
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from exercises import grade
from exercises._checks import checks_of
from exercises._sandbox import UID_BASE, containment
from relcourse import metrics

EXERCISES = grade.discover()
BY_NAME = {e.name: e for e in EXERCISES}
PNR = BY_NAME["ex01_pnr"]
CODE_EXERCISES = [e for e in EXERCISES if not e.manual]
AUTO_POINTS = sum(e.points for e in CODE_EXERCISES)
MANUAL_POINTS = sum(e.total_points for e in EXERCISES if e.manual)
OURS = ["ex01_pnr", "ex02_pairwise_loss", "ex03_ctr_features", "ex04_ndcg", "ex05_feedback_loop", "ex06_masking",
        "ex07_distill_loss"]


def load_checks(ex, which="tests_grade"):
    return importlib.import_module(f"exercises.{ex.name}.{which}")


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
    assert [e.name for e in EXERCISES][:len(OURS)] == OURS        # ex08 on: the design exercises, their own tests
    for e in EXERCISES:
        assert (e.dir / "README.md").is_file() and (e.dir / e.student_file).is_file()
        assert (e.dir / e.solution_file).is_file()
    for name in OURS:
        assert BY_NAME[name].points == BY_NAME[name].total_points == 10
    assert BY_NAME["ex05_feedback_loop"].manual and not BY_NAME["ex05_feedback_loop"].checks


@pytest.mark.parametrize("ex", CODE_EXERCISES, ids=lambda e: e.name)
def test_ast_plan_matches_the_checks_the_grader_runs(ex):
    public, hidden = load_checks(ex, "tests_public"), load_checks(ex, "tests_grade")
    imported = [(f.__name__, f.points) for m in (public, hidden) for f in checks_of(m) if f.__module__ == m.__name__]
    assert [(c.name, c.points) for c in ex.checks] == imported
    assert [c.name for c in ex.checks if c.public] == [f.__name__ for f in checks_of(public)]
    assert 0 < sum(c.points for c in ex.checks if c.public) < ex.points      # a worked example, no more
    assert public.FORBIDDEN_IMPORTS and ex.forbidden == public.FORBIDDEN_IMPORTS


def test_answer_keys_agree_with_the_course():
    ex01, ex03, ex04 = (load_checks(BY_NAME[n]) for n in ("ex01_pnr", "ex03_ctr_features", "ex04_ndcg"))
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


def test_sentence_pair_answer_keys_agree_with_the_course_and_the_course_passes_the_checks():
    """ex13's keys against relcourse.corpora; and the course's own functions, called directly in
    place of a student's module, earn every check: the checks ask for what the course does."""
    from types import SimpleNamespace

    from relcourse import corpora
    ex13 = load_checks(BY_NAME["ex13_sentence_pairs"])
    rng = np.random.default_rng(0)
    pieces = ["lamp", "new.", "it", "is", "bright!", "cheap?", "1.5", "volt.", "Vix", "A1", "A10", "Vix A1s", "Moex"]
    texts = [" ".join(rng.choice(pieces, size=int(rng.integers(0, 16)))) for _ in range(300)]
    for text, draw in [*ex13.SPLIT_CASES, *zip(texts, rng.random(len(texts)))]:
        assert ex13.key_split_in_two(text, draw) == corpora.split_in_two(text, draw), (text, draw)
    names = ["Vix A1", "Vix A10", "Moex", "A1"]
    assert ex13.key_product_groups(texts, names) == corpora.product_groups(texts, names).tolist()
    course = SimpleNamespace(split_in_two=corpora.split_in_two, product_groups=corpora.product_groups,
                             sentence_pairs=lambda paragraphs, task, seed, groups=None: corpora.sentence_pairs(
                                 paragraphs, task, seed, None if groups is None else np.asarray(groups)))
    for check in checks_of(ex13) + checks_of(load_checks(BY_NAME["ex13_sentence_pairs"], "tests_public")):
        check(course)


def test_masking_answer_key_agrees_with_bert_and_the_course():
    """transformers' collator (ex06's key) gives BERT's rates, and relcourse.masking agrees with it."""
    import torch
    from relcourse.masking import mask_tokens
    ex06 = load_checks(BY_NAME["ex06_masking"])
    ids, special = ex06.make_batch(5)
    key = ex06.counts(ids, special, *ex06.oracle_masks(ids, special, 0.15, seed=5))
    course = ex06.counts(ids, special, *mask_tokens(ids, special, ex06.MASK_ID, ex06.VOCAB, 0.15,
                                                    generator=torch.Generator().manual_seed(5)))
    for counts in (key, course):
        n = counts["selected"]
        assert ex06.agree(n, counts["regular"], round(0.15 * counts["regular"]), counts["regular"])[0]
        for fate, share in (("mask", 0.8), ("random", 0.1), ("unchanged", 0.1)):
            assert ex06.agree(counts[fate], n, round(share * n), n)[0], (fate, counts)
    assert all(ex06.agree(course[f], course["selected"], key[f], key["selected"])[0] for f in ("mask", "random"))


def brute_force_margin_mse(scores, teacher, query_ids):
    """A loop over every pair i < j of the same query."""
    errors = [((scores[i] - scores[j]) - (teacher[i] - teacher[j])) ** 2 for i in range(len(scores))
              for j in range(i + 1, len(scores)) if query_ids[i] == query_ids[j]]
    return sum(errors) / len(errors) if errors else 0.0


def test_compute_answer_keys_agree_with_bert_the_course_and_torch():
    """ex12's tables, recomputed from their sources: BertLayer's parameters, relcourse.compute, torch's counter."""
    ex12 = load_checks(BY_NAME["ex12_compute"])
    assert {(h, i): ex12.bert_layer_weights(h, i) for _, h, i in ex12.SHAPES} == ex12.WEIGHTS
    assert {key: ex12.course_flops(*key) for key in ex12.COURSE_FLOPS} == ex12.COURSE_FLOPS
    assert {key: ex12.counted_flops(*key) for key in ex12.COUNTED} == ex12.COUNTED
    for (layers, hidden, intermediate, length), counted in ex12.COUNTED.items():   # the course's count is close to torch's
        course = [ex12.COURSE_FLOPS.get((layers, hidden, intermediate, length, t)) or ex12.course_flops(
            layers, hidden, intermediate, length, t) for t in (False, True)]
        assert course == pytest.approx(counted, rel=0.03)


def test_distillation_answer_key_agrees_with_a_brute_force_loop():
    import torch
    ex07 = load_checks(BY_NAME["ex07_distill_loss"])
    g = torch.Generator().manual_seed(0)
    for n in range(1, 25):
        scores, teacher = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
        query_ids = torch.randint(0, 1 + n // 3, (n,), generator=g)
        want = brute_force_margin_mse(scores.tolist(), teacher.tolist(), query_ids.tolist())
        assert float(ex07.course_margin_mse(scores, teacher, query_ids)) == pytest.approx(want)
        pairs = torch.stack([scores, teacher], 1)             # (n, 2): as triples, positive = column 0
        s2, t2 = pairs, pairs.flip(1) * 2
        want = sum(((a - b) - (c - d)) ** 2 for (a, b), (c, d) in zip(s2.tolist(), t2.tolist())) / n
        assert float(ex07.course_margin_mse_triples(s2, t2)) == pytest.approx(want)
        assert float(ex07.course_logit_mse(scores, teacher)) == pytest.approx(float(((scores - teacher) ** 2).mean()))


# --- solutions and starters --------------------------------------------------------------------

def test_solutions_get_full_marks_through_the_command_line(tmp_path):
    out = tmp_path / "scores.json"
    run = subprocess.run([sys.executable, "-m", "exercises.grade", "--solutions", "--json", str(out)],
                         cwd=grade.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"TOTAL solutions: {AUTO_POINTS:g}/{AUTO_POINTS:g}" in run.stdout
    assert "containment: memory limit: yes" in run.stderr
    sub = json.loads(out.read_text())["submissions"][0]
    assert (sub["total"], sub["possible"], sub["manual_possible"]) == (AUTO_POINTS, AUTO_POINTS, MANUAL_POINTS)
    for r in sub["exercises"]:
        assert r["status"] == ("manual" if r["manual"] else "full marks"), r
        assert all(c["message"] == "ok" for c in r["checks"])
    assert not list(tmp_path.glob(".*.tmp"))          # the atomic write left no temporary file


def test_a_failure_of_the_grader_itself_is_not_blamed_on_the_student(monkeypatch):
    """The grader's own code failing while it starts a student's process (here: finding the
    answer keys to hide) is an internal error of the grader, not "importing your file failed"."""
    import exercises._session as session

    def broken(forbidden):
        raise TypeError("'<' not supported between instances of 'str' and 'PosixPath'")

    monkeypatch.setattr(session, "answer_key_paths", broken)
    ex01 = [e for e in EXERCISES if e.name.startswith("ex01")]
    r, = grade.grade_submissions({"exercises": grade.EXERCISES_DIR}, ex01, solutions=True)[0]["exercises"]
    assert r["internal"] and r["message"].startswith("internal error of the grader (not your fault)"), r["message"]
    assert "importing it failed" not in r["message"]


def test_starters_score_zero_with_not_implemented_messages():
    sub, = grade.grade_submissions({"exercises": grade.EXERCISES_DIR}, EXERCISES)
    assert sub["total"] == 0 and sub["possible"] == AUTO_POINTS
    for r in sub["exercises"]:
        if r["manual"]:
            assert "empty template" in r["message"]
            continue
        assert r["status"] == "not started" and r["earned"] == 0
        for c in r["checks"]:
            assert c["message"].startswith("not done yet:") and "NotImplementedError" in c["message"]
            assert f"{r['exercise']}/starter.py line" in c["message"]
    table = grade.format_submission(sub)
    assert "0/10" in table and f"TOTAL exercises: 0/{AUTO_POINTS:g}" in table


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


def test_a_loop_that_ignores_the_alarm_is_killed(tmp_path):
    source = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    r = grade_pnr(tmp_path / "at_import", source, timeout=0.3)
    assert r["status"] == "error" and r["earned"] == 0
    assert "importing it did not finish within 0.3 s" in r["message"]
    in_a_check = SOLUTION_PNR.replace("    correct, inverted, _ = pair_counts",
                                      "    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                                      "    while True:\n        pass\n    correct, inverted, _ = pair_counts")
    r = grade_pnr(tmp_path / "in_a_check", in_a_check, timeout=0.3)
    assert r["earned"] == 0
    first = r["checks"][0]["message"]
    assert "did not finish within 0.3 s" in first and "killed" in first
    assert "restarted 2 times" in r["checks"][-1]["message"]        # it stops trying, and says why


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

def test_release_holds_no_solution_and_no_hidden_check(tmp_path):
    target = grade.release(tmp_path)
    assert grade.release_leaks(target) == []
    files = [p for p in target.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name in ("solution.py", "solution.md", "tests_grade.py")]
    assert not list(target.rglob("__pycache__"))
    # an independent scan: no hidden check's name as a definition, no answer key's code, no solution's line
    text = {p: p.read_text(errors="replace") for p in files}
    for e in CODE_EXERCISES:
        solution_code = {line.strip() for line in (e.dir / "solution.py").read_text().splitlines()
                         if line.startswith("    ") and len(line.strip()) > 20 and not line.strip().startswith(("#", '"'))}
        solution_code -= {line.strip() for line in (e.dir / "starter.py").read_text().splitlines()}
        hidden = [c.name for c in e.checks if not c.public]
        for p, t in text.items():
            assert not [n for n in hidden if f"def {n}" in t], p
            assert not [line for line in solution_code if line in t], p
            assert "brute_force_pair_counts" not in t and "pairwise_logistic_loss(scores, labels, query_ids, gamma)[0]" not in t
    for e in EXERCISES:
        assert (target / e.name / e.student_file).is_file() and (target / e.name / "tests_public.py").is_file()
    assert (target / "grade.py").is_file() and (target / "_worker.py").is_file()
    with pytest.raises(SystemExit, match="not empty"):
        grade.release(tmp_path)


def test_a_release_grades_the_public_checks_and_says_the_rest_is_hidden(tmp_path):
    grade.release(tmp_path / "course")
    (tmp_path / "course" / "exercises" / "ex01_pnr" / "starter.py").write_text(SOLUTION_PNR)
    run = subprocess.run([sys.executable, "-m", "exercises.grade", "--exercise", "ex01"], cwd=tmp_path / "course",
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "course")})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "docstring_example" in run.stdout and "ties_dropped" not in run.stdout
    assert "2/2" in run.stdout and "8 more points are in hidden checks" in run.stdout


def test_relative_and_absolute_class_paths(tmp_path):
    submission(tmp_path / "class" / "alice", {"ex01_pnr/starter.py": SOLUTION_PNR})
    submission(tmp_path / "class" / "bob", {"ex01_pnr/starter.py": SOLUTION_PNR.replace("if s1 > s2:", "if s1 >= s2:")})
    for how, where in (("relative", "class"), ("absolute", str(tmp_path / "class"))):
        out = tmp_path / f"{how}.csv"
        run = subprocess.run([sys.executable, "-m", "exercises.grade", where, "--exercise", "ex01", "--csv", out.name],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(grade.REPO_ROOT)})
        assert run.returncode == 0, run.stdout + run.stderr
        rows = {r["student"]: r for r in csv.DictReader(out.open())}
        assert rows["alice"]["ex01_pnr"] == "10" and 0 < float(rows["bob"]["ex01_pnr"]) < 10, how
        assert "internal error" not in out.read_text()


def test_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        grade.main(["--solutions", str(tmp_path)])
    assert e.value.code == 2
    with pytest.raises(SystemExit, match="no exercise called ex99"):
        grade.main(["--exercise", "ex99"])
    with pytest.raises(SystemExit, match="found no exercise folders"):
        grade.main([str(tmp_path)])


# --- wrong answers: partial points, and the check that failed says why ----------------------------

def test_plausible_wrong_answers_lose_only_their_trap(tmp_path):
    ex03, ex04 = BY_NAME["ex03_ctr_features"], BY_NAME["ex04_ndcg"]
    no_coec_prior = (ex03.dir / "solution.py").read_text().replace(
        'return (per_doc["clicks"] + prior) / (per_doc["expected"] + prior)', 'return per_doc["clicks"] / per_doc["expected"]')
    no_tie_average = (ex04.dir / "solution.py").read_text().replace(
        "while end < len(order) and scores[order[end]] == scores[order[start]]:", "while end < start + 1:")
    root = submission(tmp_path, {"ex03_ctr_features/starter.py": no_coec_prior, "ex04_ndcg/starter.py": no_tie_average})
    for ex, failing in ((ex03, {"check_coec_by_hand", "check_random_logs_against_course"}),
                        (ex04, {"check_ties_averaged"})):
        r = grade.grade_exercise(ex, root)
        failed = {c["check"]: c["message"] for c in r["checks"] if c["earned"] == 0}
        assert r["status"] == "partial" and set(failed) == failing, failed
        assert all("expected" in m for m in failed.values())


def graded_with(tmp_path, name: str, old: str, new: str) -> dict:
    """Grade the solution of exercise `name` with `old` replaced by `new` (a plausible mistake)."""
    ex = BY_NAME[name]
    source = (ex.dir / "solution.py").read_text()
    assert old in source
    return grade.grade_exercise(ex, submission(tmp_path, {f"{name}/starter.py": source.replace(old, new)}))


@pytest.mark.parametrize("name, old, new, failing, says", [
    ("ex06_masking", "to_mask = selected & (fate < 0.8)", "to_mask = ~special_mask & (fate < 0.8)",
     {"check_unselected_unchanged"}, "applies to the selected tokens only"),
    ("ex06_masking", " & ~special_mask.bool()", "", {"check_specials_and_padding_never_selected"}, "never select them"),
    ("ex06_masking", "labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))",
     "labels = input_ids.clone()", {"check_specials_and_padding_never_selected", "check_selection_rate",
                                    "check_80_10_10_of_the_selected"}, "with labels everywhere"),
    ("ex07_distill_loss", "(teacher[:, 0] - teacher[:, 1])", "(teacher[:, 1] - teacher[:, 0])",
     {"check_docstring_example", "check_triples_direction", "check_random_against_course"}, "same direction"),
    ("ex07_distill_loss", "pairs = (query_ids[:, None] == query_ids[None, :]) & upper", "pairs = upper",
     {"check_docstring_example", "check_pairs_within_a_query", "check_mean_over_pairs", "check_no_pair",
      "check_random_against_course"}, "only documents of the same query make a pair"),
    ("ex12_compute", "return 3 * forward if training else forward", "return forward",
     {"check_docstring_examples", "check_flops_against_the_course", "check_flops_against_torchs_counter",
      "check_run_with_a_model_alongside"}, "3 times the forward pass"),
    ("ex12_compute", "length, False)\n", "length, True)\n", {"check_run_with_a_model_alongside"}, "forward only"),
    ("ex13_sentence_pairs", "if group_of[pos] >= 0 and len(members[group_of[pos]]) > 1 else range(len(kept))",
     "if False else range(len(kept))", {"check_same_group_negatives"}, "about the same product"),
    ("ex13_sentence_pairs", "others = [j for j in same if j != pos]", "others = list(same)",
     {"check_nsp_negatives_from_another_paragraph", "check_same_group_negatives"}, "keeps its own second segment"),
], ids=["ex06-all-tokens", "ex06-specials", "ex06-labels-everywhere", "ex07-direction", "ex07-across-queries",
        "ex12-no-backward", "ex12-teacher-trained", "ex13-groups-ignored", "ex13-own-segment"])
def test_masking_and_distillation_traps_cost_their_checks(tmp_path, name, old, new, failing, says):
    r = graded_with(tmp_path, name, old, new)
    failed = {c["check"]: c["message"] for c in r["checks"] if c["earned"] == 0}
    assert r["status"] == "partial" and 0 < r["earned"] < 10 and set(failed) == failing, failed
    assert any(says in m for m in failed.values()), failed


# --- hostile submissions ------------------------------------------------------------------------------

def src(text: str, honest: bool = False) -> str:
    """A hostile file's source; honest=True appends the real solution, the part that earns its points."""
    honest_part = SOLUTION_PNR.replace("from __future__ import annotations\n", "")
    return textwrap.dedent(text).lstrip() + ("\n" + honest_part if honest else "")


def fill(text: str, **paths) -> str:
    for key, value in paths.items():
        text = text.replace("{" + key + "}", value)
    return text


HOSTILE = {
    # reads the answer keys from disk with names built at run time: the literal screen cannot see them
    "h_disk_read": {"ex01_pnr/starter.py": src("""
        import importlib, os, types
        def _key():
            for name in ("relc" + "ourse.met" + "rics", "sklearn" + ".metrics"):
                try:
                    return importlib.import_module(name)
                except Exception:
                    pass
            for path in ("{REPO}/exer" + "cises/ex01_pnr/sol" + "ution.py", "{CLASS}/alice/ex01_pnr/starter.py"):
                try:
                    ns = {}
                    exec(open(path).read(), ns)
                    return types.SimpleNamespace(**ns)
                except Exception:
                    pass
        def pair_counts(labels, scores, query_ids):
            key = _key()
            return key.pair_counts(labels, scores, query_ids) if hasattr(key, "pair_counts") else (0, 0, 0)
        def pnr(labels, scores, query_ids):
            key = _key()
            return key.pnr(labels, scores, query_ids) if hasattr(key, "pnr") else 0.0
        """)},
    # replaces the checks' helpers, math.isclose, AssertionError, and the worker's own reply code
    "h_patch_checks": {"ex01_pnr/starter.py": src("""
        import builtins, math, sys
        for mod in list(sys.modules.values()):
            for attr in ("expect_close", "close", "expect_raises", "brute_force_pair_counts", "check"):
                try:
                    setattr(mod, attr, lambda *a, **k: True)
                except Exception:
                    pass
        math.isclose = lambda *a, **k: True
        builtins.AssertionError = type("Never", (Exception,), {})
        worker = sys.modules["__main__"]
        worker.Worker.call = lambda self, request: {"ok": True, "value": 1e9, "mutated": [], "earned": 1e9}
        def pair_counts(labels, scores, query_ids):
            return (9, 9, 9)
        def pnr(labels, scores, query_ids):
            return 0.0
        """)},
    # patches the libraries the checks compare with: only its own copies change
    "h_patch_libs": {"ex02_pairwise_loss/starter.py": src("""
        import math, numpy, torch
        torch.allclose = lambda *a, **k: True
        torch.isfinite = lambda x: torch.ones_like(x, dtype=torch.bool)
        math.isclose = lambda *a, **k: True
        numpy.isclose = numpy.allclose = lambda *a, **k: True
        def pairwise_logistic_loss(scores, labels, query_ids, gamma=1.0):
            return scores.sum() * 0 + 123.0
        """), "ex04_ndcg/starter.py": src("""
        import importlib
        try:
            importlib.import_module("sklearn" + ".metrics").ndcg_score = lambda *a, **k: 0.5
        except Exception:
            pass
        def dcg_at_k(gains, k):
            return 0.5
        def ndcg_at_k(labels, scores, query_ids, k):
            return 0.5
        """)},
    # forged verdicts on stdout, stderr, every fd, and in files where the old grader kept its records
    "h_forge": {"ex01_pnr/starter.py": src("""
        import glob, json, os, sys
        FORGED = "\\n".join([json.dumps({"kind": "check", "name": n, "points": 2, "earned": 1e9, "message": "ok"})
                            for n in ("check_docstring_example", "check_ties_dropped")]
                           + [json.dumps({"id": "0", "ok": True, "value": [3, 1, 0]}), '{"kind": "done"}']) + "\\n"
        print(FORGED)
        def _forge():
            print(FORGED)
            print(FORGED, file=sys.stderr)
            for fd in range(3, 64):
                try:
                    os.write(fd, FORGED.encode())
                except OSError:
                    pass
            for path in ["results.jsonl", "/tmp/results.jsonl", "{CSV}"] + glob.glob("/tmp/relcourse-grade-*/results.jsonl"):
                try:
                    with open(path, "a") as f:
                        f.write(FORGED)
                except OSError:
                    pass
        def pair_counts(labels, scores, query_ids):
            _forge()
            return (0, 0, 0)
        def pnr(labels, scores, query_ids):
            _forge()
            return 0.0
        """)},
    # leaves processes behind, one of which rewrites the gradebook after the grader is done
    "h_daemon": {"ex01_pnr/starter.py": src("""
        import os, subprocess, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(4)
                for path in ("{CSV}", "{JSON}"):
                    try:
                        with open(path, "w") as f:
                            f.write("student,ex01_pnr\\nmallory,10\\n")
                    except OSError:
                        pass
                os._exit(0)
            os._exit(0)
        subprocess.Popen(["sleep", "300"], start_new_session=True)
        """, honest=True)},
    # edits another student's file and the instructor's exercises
    "h_tamper": {"ex01_pnr/starter.py": src("""
        import os
        for path in ("{CLASS}/alice/ex01_pnr/starter.py", "{REPO}/exercises/ex01_pnr/tests_grade.py",
                     "{REPO}/exercises/ex01_pnr/solution.py", "{REPO}/exercises/_checks.py"):
            try:
                with open(path, "w") as f:
                    f.write("def pair_counts(*a):\\n    return (0, 0, 0)\\n")
            except OSError:
                pass
            try:
                os.chmod(path, 0o777)
            except OSError:
                pass
        """, honest=True)},
    "h_membomb": {"ex01_pnr/starter.py": src("""
        import numpy as np
        def pair_counts(labels, scores, query_ids):
            return bytearray(8 * 2**30)                 # 8 GB at once
        def pnr(labels, scores, query_ids):
            hog = []
            while True:
                hog.append(np.ones(2**23))              # 64 MB at a time, until the limit or the time is up
        """)},
    # 300 processes (bounded, for the test); the sandbox allows far fewer
    "h_forkbomb": {"ex01_pnr/starter.py": src("""
        import os, time
        forked = 0
        for _ in range(300):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            forked += 1
        print(f"forked {forked} processes", flush=True)
        """, honest=True)},
    "h_kill_parent": {"ex01_pnr/starter.py": src("""
        import os, signal
        for pid in (os.getppid(), 1, -1):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        def _kill():
            os.killpg(os.getpgid(0), signal.SIGKILL)
        def pair_counts(labels, scores, query_ids):
            _kill()
        def pnr(labels, scores, query_ids):
            _kill()
        """)},
    "h_escape": {"ex01_pnr/starter.py": src("""
        import sys
        ESC = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mRED\\x1b[0m\\x9b31m\\u202e"
        print(ESC)
        print(ESC, file=sys.stderr)
        def pair_counts(labels, scores, query_ids):
            raise ValueError(ESC)
        def pnr(labels, scores, query_ids):
            return ESC
        """)},
    "h_malformed": {"ex01_pnr/starter.py": src("""
        import os, sys
        def _garbage():
            os.write(int(sys.argv[-1]), b'{"id": "nope", "ok": tru\\n\\xff\\xfe' + b"[" * 100000 + b"\\n")
        def pair_counts(labels, scores, query_ids):
            _garbage()
            return (3, 1, 0)
        def pnr(labels, scores, query_ids):
            _garbage()
            return 3.0
        """)},
}
# what each may earn: its honest part only
HOSTILE_EX01 = {"h_disk_read": 0, "h_patch_checks": 0, "h_forge": 0, "h_daemon": 10, "h_tamper": 10, "h_membomb": 0,
                "h_forkbomb": 10, "h_kill_parent": 0, "h_escape": 0, "h_malformed": 0}
SANDBOX = pytest.mark.skipif(not containment().namespaces,
                             reason=f"needs the namespace sandbox ({containment().reason})")


def tree_digest(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def sandbox_processes() -> list:
    return [p.info for p in psutil.process_iter(["pid", "uids", "cmdline"])
            if p.info["uids"] and p.info["uids"].real >= UID_BASE]


@SANDBOX
def test_a_hostile_class_is_graded_and_contained(tmp_path):
    klass, out_csv, out_json = tmp_path / "class", tmp_path / "out" / "grades.csv", tmp_path / "out" / "class.json"
    honest = {f"{e.name}/starter.py": (e.dir / "solution.py").read_text() for e in CODE_EXERCISES}
    submission(klass / "alice", honest)
    submission(klass / "bob", {"ex01_pnr/starter.py": SOLUTION_PNR.replace("if s1 > s2:", "if s1 >= s2:")})
    paths = {"REPO": str(grade.REPO_ROOT), "CLASS": str(klass), "CSV": str(out_csv), "JSON": str(out_json)}
    for name, files in HOSTILE.items():
        submission(klass / name, {rel: fill(text, **paths) for rel, text in files.items()})
    before = tree_digest(klass), tree_digest(grade.EXERCISES_DIR)
    temp_before = {p.name for p in Path(tempfile.gettempdir()).glob("relcourse-grade-*")}
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "exercises.grade", str(klass), "--exercise", "ex01,ex02,ex04",
                          "--timeout", "3", "--csv", str(out_csv), "--json", str(out_json)],
                         cwd=tmp_path, capture_output=True, timeout=300)
    stdout, stderr = run.stdout.decode(errors="replace"), run.stderr.decode(errors="replace")
    assert run.returncode == 0, stdout + stderr
    # the gradebook: every student, honest ones graded normally, hostile ones only for their honest part
    rows = {r["student"]: r for r in csv.DictReader(out_csv.open())}
    assert set(rows) == {"alice", "bob", *HOSTILE}
    assert rows["alice"]["auto_total"] == "30" and 0 < float(rows["bob"]["ex01_pnr"]) < 10
    for name, points in HOSTILE_EX01.items():
        assert float(rows[name]["ex01_pnr"]) == points, (name, rows[name])
    assert rows["h_patch_libs"]["auto_total"] == "0"
    checks = {s["submission"]: {c["check"]: c["message"] for r in s["exercises"] if r["exercise"] == "ex01_pnr"
                                for c in r["checks"]} for s in json.loads(out_json.read_text())["submissions"]}
    assert "MemoryError" in checks["h_membomb"]["check_docstring_example"]
    assert "malformed reply" in checks["h_malformed"]["check_docstring_example"]
    assert "stopped unexpectedly" in checks["h_kill_parent"]["check_docstring_example"]
    outputs = {s["submission"]: s["exercises"][0].get("output", "") for s in json.loads(out_json.read_text())["submissions"]}
    forked = int(outputs["h_forkbomb"].split("forked ")[1].split()[0])
    assert forked < 100                                  # the process limit stopped it well before 300
    # nothing outside the submissions changed; no escape sequence reached the instructor
    assert (tree_digest(klass), tree_digest(grade.EXERCISES_DIR)) == before
    assert "INTEGRITY" not in stderr
    for text in (stdout, stderr, out_csv.read_text(), out_json.read_text()):
        assert not any(ch in text for ch in "\x1b\x07\x9b\u202e")
    assert "pwned" not in stdout + stderr or "?]0;pwned" in stdout + stderr
    # no process of any sandbox is left, no temp folder either, and the CSV stays as written
    assert sandbox_processes() == []
    assert {p.name for p in Path(tempfile.gettempdir()).glob("relcourse-grade-*")} <= temp_before
    written = out_csv.read_bytes()
    time.sleep(max(0.0, 5.5 - (time.monotonic() - start)))
    assert out_csv.read_bytes() == written and sandbox_processes() == []


def test_changed_instructor_files_are_reported_loudly(capsys):
    sub = grade._submission("x", grade.EXERCISES_DIR, [])
    assert grade._verdict([sub], grade.tree_hashes(grade.EXERCISES_DIR), {}, False) == 0
    tampered = dict(grade.tree_hashes(grade.EXERCISES_DIR), **{"ex01_pnr/tests_grade.py": "0" * 64})
    assert grade._verdict([sub], tampered, {}, False) == 3
    err = capsys.readouterr().err
    assert "INTEGRITY FAILURE" in err and "exercises/ex01_pnr/tests_grade.py" in err


def test_the_wire_refuses_what_is_not_plain_data():
    from exercises import _wire
    ok = {"$": "tuple", "items": [1, 2.5, "q", {"$": "ndarray", "dtype": "int64", "shape": [2], "data": [1, 2]}]}
    value = _wire.decode(ok)
    assert value[:3] == (1, 2.5, "q") and value[3].tolist() == [1, 2]
    for bad in ({"$": "ndarray", "dtype": "object", "shape": [1], "data": [{"$": "pickle"}]},
                {"$": "ndarray", "dtype": "int64", "shape": [3], "data": [1, 2]},
                {"$": "ndarray", "dtype": "int64", "shape": [1], "data": ["1"]},
                {"$": "ndarray", "dtype": "V8", "shape": [1], "data": [0]},
                {"kind": "check", "earned": 1e9}, [[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]):
        with pytest.raises(_wire.WireError):
            _wire.decode(bad)
    for line in (b"not json", b"[1]", b"[" * 100000, b"\xff\xfe"):
        with pytest.raises(_wire.WireError):
            _wire.loads(line)
    assert _wire.clean("a\x1b[2Jb\x07c\u202e") == "a?[2Jb?c?"


def test_without_the_sandbox_it_still_grades_and_warns(tmp_path):
    run = subprocess.run([sys.executable, "-m", "exercises.grade", "--solutions", "--exercise", "ex01"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(grade.REPO_ROOT),
                              "RELCOURSE_GRADE_NO_SANDBOX": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "TOTAL solutions: 10/10" in run.stdout
    assert "PID namespace: no" in run.stderr and "WARNING" in run.stderr
