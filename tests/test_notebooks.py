"""The committed notebooks: fresh outputs, a parameters cell, the runner's bookkeeping.

The notebooks in notebooks/ are committed WITH their smoke-profile outputs. Two checks keep
those outputs honest: this file (each notebook's stamped source hash must match its sources,
so a cell edited without `make refresh-notebooks` fails here), and nbval in `make test`
(re-executes every notebook and compares the cells marked `# NBVAL_CHECK_OUTPUT`).
"""

from __future__ import annotations

import re

import nbformat
import pytest

from relcourse import course

NOTEBOOKS = course.list_notebooks()
IDS = [p.name for p in NOTEBOOKS]


def read(path):
    return nbformat.read(path, as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged 'parameters'"
    assert cells[0].cell_type == "code"
    return cells[0]


def test_the_course_has_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"
    assert NOTEBOOKS[0].name == "00_welcome.ipynb"


def test_notebook_numbers_are_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {numbers}"
    stray = [p.name for p in course.NOTEBOOKS_DIR.glob("*.ipynb") if p not in NOTEBOOKS]
    assert not stray, f"notebooks the runner would skip (name them NN_*.ipynb): {stray}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_are_fresh(path):
    nb = read(path)
    stamp = nb.metadata.get("relcourse")
    hint = "run `make refresh-notebooks` and commit the result"
    assert stamp, f"{path.name} was never refreshed: {hint}"
    assert stamp.get("profile") == "smoke", f"{path.name}'s outputs are not from the smoke profile: {hint}"
    assert stamp.get("source_hash") == course.source_hash(nb), (
        f"{path.name}: cells changed since its outputs were made (stale outputs): {hint}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_reads_the_profile_from_the_environment(path, monkeypatch):
    cell = parameters_cell(read(path))
    assert "RELCOURSE_PROFILE" in cell.source
    for env, expected in ((None, "smoke"), ("laptop", "laptop")):
        if env is None:
            monkeypatch.delenv("RELCOURSE_PROFILE", raising=False)
        else:
            monkeypatch.setenv("RELCOURSE_PROFILE", env)
        namespace: dict = {}
        exec(cell.source, namespace)  # noqa: S102 - our own committed notebook cell
        assert namespace["profile"] == expected
        assert isinstance(namespace["seed"], int)
        assert namespace["overrides"] == {}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_clean(path):
    nb = read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "relcourse", (
        f"{path.name}: the kernelspec must be 'relcourse' (papermill and nbval ask for it)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any(c.get("execution_count") for c in code), f"{path.name} has no outputs: run `make refresh-notebooks`"
    for i, c in enumerate(code):
        errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: code cell {i} has an error output"
        assert "injected-parameters" not in c.metadata.get("tags", []), (
            f"{path.name}: a papermill injected-parameters cell was committed")
    assert "papermill" not in nb.metadata, f"{path.name}: papermill run metadata committed"


# --- the runner's own helpers -----------------------------------------------------------------

def test_source_hash_ignores_outputs_and_injected_cells():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
    ])
    h = course.source_hash(nb)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[1].execution_count = 3
    assert course.source_hash(nb) == h
    injected = nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(2, injected)
    assert course.source_hash(nb) == h
    # the raw JSON form (sources as lists of lines) hashes the same
    raw = nbformat.from_dict(nb)
    raw_dict = {"cells": [dict(c, source=c.source.splitlines(keepends=True)) for c in raw.cells]}
    assert course.source_hash(raw_dict) == h
    nb.cells[1].source = "x = 3"
    assert course.source_hash(nb) != h
    nb.cells[1].source = "x = 1"
    nb.cells[0].cell_type = "raw"
    assert course.source_hash(nb) != h


def test_select_notebooks_by_number_or_name(tmp_path):
    paths = [tmp_path / n for n in ("00_welcome.ipynb", "01_data.ipynb", "02_pretrain.ipynb")]
    assert course._select(paths, None) == paths
    assert course._select(paths, ["02", "00_welcome.ipynb"]) == [paths[0], paths[2]]
    assert course._select(paths, ["01_data"]) == [paths[1]]
    with pytest.raises(course.CourseError, match="no notebook matches"):
        course._select(paths, ["09"])


def test_cell_timeout_is_explicit(monkeypatch):
    monkeypatch.delenv("RELCOURSE_CELL_TIMEOUT", raising=False)
    assert course.cell_timeout("smoke") == course.CELL_TIMEOUT_S
    assert course.cell_timeout("gpu-xl") > course.CELL_TIMEOUT_S
    monkeypatch.setenv("RELCOURSE_CELL_TIMEOUT", "60")
    assert course.cell_timeout("smoke") == 60


# --- the runner end to end (a Jupyter kernel, a few seconds each) -----------------------------

def test_run_course_executes_and_injects_parameters(tmp_path):
    done = course.run_course("smoke", seed=3, out_dir=tmp_path, only=["00"], overrides={"pretrain.steps": "50"})
    assert done == [tmp_path / "00_welcome.ipynb"]
    nb = read(done[0])
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "seed = 3" in injected[0].source
    assert course.source_hash(nb) == course.source_hash(read(NOTEBOOKS[0]))
    # the override reached the notebook's profile: 00 prints the pretraining steps it reads
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "pretrain steps 50 ->" in printed


def test_a_bad_override_fails_before_any_kernel_starts(tmp_path):
    with pytest.raises(ValueError, match="pretrain.steps"):
        course.run_course("smoke", out_dir=tmp_path, only=["00"], overrides={"pretrain.steps": "-1"})
    assert not list(tmp_path.iterdir())


def test_a_failing_notebook_is_named_with_its_cell(tmp_path, monkeypatch):
    src = tmp_path / "notebooks"
    src.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nprofile = os.environ.get('RELCOURSE_PROFILE', 'smoke')\nseed = 0",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("a step that breaks"),
        nbformat.v4.new_code_cell("x = 1\nraise ValueError('boom in ' + profile)"),
        nbformat.v4.new_code_cell("never = True"),
    ], metadata={"kernelspec": {"name": "relcourse", "display_name": "relcourse", "language": "python"}})
    nbformat.write(nb, src / "07_broken.ipynb")
    monkeypatch.setattr(course, "NOTEBOOKS_DIR", src)
    with pytest.raises(course.CourseError) as err:
        course.run_course("smoke", out_dir=tmp_path / "out")
    message = str(err.value)
    assert "07_broken.ipynb" in message and "cell 3 of 4" in message
    assert "ValueError: boom in smoke" in message
    assert (tmp_path / "out" / "07_broken.ipynb").exists()


# --- the laptop copies (reports/laptop/notebooks/, `course --profile laptop --publish`) -------

PUBLISHED = course.published_dir("laptop")


def test_every_notebook_has_a_laptop_copy_to_read():
    assert sorted(p.name for p in PUBLISHED.glob("*.ipynb")) == IDS, (
        "run `python -m relcourse course --profile laptop --publish` (with runs/laptop built) and commit")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_a_laptop_copy_says_where_its_outputs_come_from_and_ran_clean(path):
    copy = read(PUBLISHED / path.name)
    stamp = copy.metadata["relcourse"]
    assert stamp["profile"] == "laptop" and stamp["git_commit"] and not stamp.get("uncommitted_changes")
    assert copy.cells[0].source.startswith("> **Executed on the `laptop` profile**")
    assert f"(../../../notebooks/{path.name})" in copy.cells[0].source     # links the notebook to run
    errors = [o for c in copy.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    # the copy ran the cells of a version of this notebook: the same number of code cells
    # (sources may have moved on since; the stamp's hash and commit say which version it ran)
    ran = [c for c in copy.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    assert len(ran) == len([c for c in read(path).cells if c.cell_type == "code"])
