"""exercises/nbgrader_export.py: the nbgrader course it writes works with nbgrader itself, unchanged.

`nbgrader generate_assignment` makes the student notebooks, `nbgrader autograde` grades two
submissions per exercise, the solutions (the source notebooks: full marks) and the stubs (the
released notebooks as handed out: 0), and the scores are read back from nbgrader's gradebook
(its API) and from `nbgrader export`'s CSV. The release must hold no solution and no hidden test.

Every notebook runs in a fresh kernel (torch, transformers): the whole file takes about 2 minutes
on 2 cores, most of it in the module-scoped fixture.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbgrader_api = pytest.importorskip("nbgrader.api", reason="nbgrader is not installed (pip install nbgrader)")

from exercises import grade  # noqa: E402
from exercises.nbgrader_export import export, notebook  # noqa: E402

CODE_EXERCISES = [e for e in grade.discover() if not e.manual and e.nbgrader]
BIN = Path(sys.executable).parent          # nbgrader, and the alembic it calls, live beside this python


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([str(BIN / "nbgrader"), *args, "--log-level=ERROR"], cwd=course, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nbgrader_course")
    written = export(root)
    assert [p.relative_to(root).as_posix() for p in written] == [
        f"source/{e.name}/{e.name}.ipynb" for e in CODE_EXERCISES]
    for e in CODE_EXERCISES:
        nbgrader(root, "generate_assignment", e.name)
        for student, folder in (("solutions", "source"), ("stubs", "release")):
            (root / "submitted" / student / e.name).mkdir(parents=True)
            shutil.copy(root / folder / e.name / f"{e.name}.ipynb", root / "submitted" / student / e.name)
    for e in CODE_EXERCISES:
        nbgrader(root, "autograde", e.name)
    nbgrader(root, "export")
    return root


def test_source_notebooks_carry_the_nbgrader_metadata():
    for e in CODE_EXERCISES:
        cells = notebook(e).cells
        meta = [c.metadata["nbgrader"] for c in cells]
        assert all(m["schema_version"] == 3 and {"grade", "grade_id", "locked", "solution"} <= set(m) for m in meta)
        assert [m["grade_id"] for m in meta] == ["task", "answer", "setup"] + [c.name for c in e.checks]
        answer = cells[1]
        assert meta[1]["solution"] and not meta[1]["locked"] and "### BEGIN SOLUTION" in answer.source
        graded = [(c, m) for c, m in zip(cells, meta) if m["grade"]]
        assert sum(m["points"] for _, m in graded) == e.total_points == 10
        for (cell, m), spec in zip(graded, e.checks):
            assert m["locked"] and m["points"] == spec.points and cell.source.rstrip().endswith(
                f"{spec.name}(sub)" + ("" if spec.public else "\n### END HIDDEN TESTS"))
            assert ("### BEGIN HIDDEN TESTS" in cell.source) == (not spec.public)


def test_solutions_get_full_marks_and_stubs_zero(course):
    with nbgrader_api.Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for e in CODE_EXERCISES:
            solved, stub = gb.find_submission(e.name, "solutions"), gb.find_submission(e.name, "stubs")
            assert (solved.score, solved.max_score) == (10, 10), e.name
            assert (stub.score, stub.max_score) == (0, 10), e.name
            # every check is its own grade cell, scored with the points of the course's grader
            cells = {g.name: (g.score, g.max_score) for g in gb.find_submission_notebook(e.name, e.name, "solutions").grades}
            assert cells == {c.name: (c.points, c.points) for c in e.checks}, e.name
    rows = {(r["assignment"], r["student_id"]): float(r["score"]) for r in csv.DictReader((course / "grades.csv").open())}
    assert rows == {**{(e.name, "solutions"): 10.0 for e in CODE_EXERCISES},
                    **{(e.name, "stubs"): 0.0 for e in CODE_EXERCISES}}


def test_the_stubs_fail_with_not_implemented_and_the_solutions_run_every_check(course):
    for e in CODE_EXERCISES:
        stub = json.loads((course / "autograded" / "stubs" / e.name / f"{e.name}.ipynb").read_text())
        errors = [o for c in stub["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o["output_type"] == "error"]
        assert errors and all(o["ename"] == "NotImplementedError" for o in errors), e.name
        solved = json.loads((course / "autograded" / "solutions" / e.name / f"{e.name}.ipynb").read_text())
        assert not [o for c in solved["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                    if o["output_type"] == "error"], e.name


def test_the_nbgrader_release_holds_no_solution_and_no_hidden_check(course):
    release = course / "release"
    assert grade.release_leaks(release) == []
    for e in CODE_EXERCISES:
        cells = json.loads((release / e.name / f"{e.name}.ipynb").read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells)
        assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
        assert "raise NotImplementedError()" in text
        assert not [c.name for c in e.checks if not c.public and f"def {c.name}(" in text]
        solution = {line.strip() for line in (e.dir / "solution.py").read_text().splitlines()
                    if line.startswith("    ") and len(line.strip()) > 20 and not line.strip().startswith(("#", '"'))}
        solution -= {line.strip() for line in (e.dir / "starter.py").read_text().splitlines()}
        assert not [line for line in solution if line in text], e.name
        assert [c["metadata"]["nbgrader"]["grade_id"] for c in cells] == ["task", "answer", "setup"] + [
            c.name for c in e.checks]                       # the hidden cells stay, empty, for autograde to refill
    # the scan catches what it should
    leaky = course / "leaky"
    shutil.copytree(course / "source" / CODE_EXERCISES[0].name, leaky)
    assert any("nbgrader region" in leak for leak in grade.release_leaks(leaky))
