"""Lay out an nbgrader course directory from the code exercises, for instructors who use nbgrader.

    python -m exercises.nbgrader_export COURSE_DIR                 # every code exercise
    python -m exercises.nbgrader_export COURSE_DIR --exercise ex06  # some (a prefix; repeat, or ex06,ex07)

writes COURSE_DIR/nbgrader_config.py and one assignment per exercise,
COURSE_DIR/source/<exercise>/<exercise>.ipynb, built from the exercise's own files (there is no
second copy to keep in step; run the command again after editing them):

    task       (markdown, read-only)  README.md, with the notebook's way of working
    answer     (code, solution)       starter.py's imports, signatures and docstrings; each body is
                                      solution.py's, between ### BEGIN SOLUTION / ### END SOLUTION,
                                      so `nbgrader generate_assignment` gives the student the stub
    setup      (code, read-only)      `sub` (exercises/_notebook.py) and tests_public.py's helpers
    check_...  (code, autograded)     one cell per check, its points from @check(points):
                                      tests_public.py's in view, tests_grade.py's (and the helpers
                                      they need) between ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS

Then, in COURSE_DIR (exercises/README.md has the whole workflow):

    nbgrader generate_assignment ex06_masking       # release/ex06_masking/: stubs, public checks only
    nbgrader autograde ex06_masking                 # submitted/<student>/ex06_masking/*.ipynb
    nbgrader export                                 # grades.csv, for the gradebook

The notebooks import `exercises` and `relcourse`: run nbgrader with the course's environment.
nbgrader runs submissions in its own kernel, with no sandbox: see exercises/README.md.
"""
from __future__ import annotations

import argparse
import ast
import re
import textwrap
from pathlib import Path

import nbformat

from exercises.grade import HIDDEN_CHECKS, NBGRADER_MARKERS, PUBLIC_CHECKS, Exercise, discover

BEGIN_SOLUTION, END_SOLUTION = NBGRADER_MARKERS[0], "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = NBGRADER_MARKERS[1], "### END HIDDEN TESTS"
CONFIG = '''\
# nbgrader settings for the RelCourse exercises (written by python -m exercises.nbgrader_export).
c = get_config()  # noqa: F821 — nbgrader provides it
c.CourseDirectory.course_id = "relcourse"
c.Execute.timeout = 120                   # seconds per cell; the statistics of ex06 take a few
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
'''
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


# --- reading the exercise's files ---------------------------------------------------------------

def _module(path: Path) -> tuple[list[str], ast.Module]:
    text = path.read_text(encoding="utf-8")
    return text.splitlines(), ast.parse(text)


def _span(node: ast.stmt) -> tuple[int, int]:
    """0-based [first, last) lines of a top-level statement, its decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno


def _text(lines: list[str], node: ast.stmt) -> str:
    first, last = _span(node)
    return "\n".join(lines[first:last])


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _is_future(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


def _is_check(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef) and any(
        isinstance(d, ast.Call) and getattr(d.func, "id", None) == "check" for d in node.decorator_list)


def _tidy(text: str) -> str:
    return re.sub(r"\n{4,}", "\n\n\n", text).strip("\n")


def split_checks(path: Path) -> tuple[str, dict[str, str]]:
    """A checks file as (its helpers: everything but the docstring, the __future__ import and the
    checks, comments kept; {check name: its source})."""
    lines, tree = _module(path)
    drop, checks = set(), {}
    for i, node in enumerate(tree.body):
        if (i == 0 and _is_docstring(node)) or _is_future(node) or _is_check(node):
            drop.update(range(*_span(node)))
        if _is_check(node):
            checks[node.name] = _text(lines, node)
    return _tidy("\n".join(line for n, line in enumerate(lines) if n not in drop)), checks


# --- the answer cell: the starter's signatures, the solution's bodies -----------------------------

def _bound(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def answer_cell(ex: Exercise) -> str:
    """starter.py with each function's body replaced by solution.py's, between the solution markers.

    What solution.py has at the top level and starter.py has not (an import, a helper) goes into
    the solution region of each function that uses it, so the student's version keeps only the
    starter's code and every one of its cells runs."""
    s_lines, s_tree = _module(ex.dir / ex.student_file)
    k_lines, k_tree = _module(ex.dir / ex.solution_file)
    starter_text = {_text(s_lines, n) for n in s_tree.body}
    solved = {n.name: n for n in k_tree.body if isinstance(n, ast.FunctionDef)}
    extras = [n for n in k_tree.body if not (_is_docstring(n) or _is_future(n) or _text(k_lines, n) in starter_text
                                             or (isinstance(n, ast.FunctionDef) and n.name in
                                                 {f.name for f in s_tree.body if isinstance(f, ast.FunctionDef)}))]
    parts = []
    for i, node in enumerate(s_tree.body):
        if (i == 0 and _is_docstring(node)) or _is_future(node):
            continue
        if not isinstance(node, ast.FunctionDef):
            parts.append(_text(s_lines, node))
            continue
        if node.name not in solved:
            raise SystemExit(f"nbgrader_export: {ex.name}/{ex.solution_file} has no function {node.name}")
        parts.append(_function(s_lines, node, k_lines, solved[node.name], extras))
    return _tidy("\n\n\n".join(parts))


def _function(s_lines, starter_fn: ast.FunctionDef, k_lines, solution_fn: ast.FunctionDef, extras: list) -> str:
    """The starter's def line(s) and docstring, then the solution's body in a solution region."""
    body = starter_fn.body
    keep_until = body[0].end_lineno if _is_docstring(body[0]) else body[0].lineno - 1
    head = "\n".join(s_lines[_span(starter_fn)[0]:keep_until])
    indent = " " * body[0].col_offset
    # the solution-only top-level statements this function needs, directly or through a helper
    needed, names = [], _used(solution_fn)
    for node in reversed(extras):
        if _bound(node) & names:
            needed.insert(0, node)
            names |= _used(node)
    own = solution_fn.body[1:] if _is_docstring(solution_fn.body[0]) else solution_fn.body
    code = [textwrap.indent("\n".join(k_lines[_span(n)[0]:_span(n)[1]]), indent) for n in needed]
    first, last = _span(own[0])[0], own[-1].end_lineno
    while first > 0 and k_lines[first - 1].strip().startswith("#"):     # the comments above the first line
        first -= 1
    code.append("\n".join(k_lines[first:last]))
    return "\n".join([head, indent + BEGIN_SOLUTION, *code, indent + END_SOLUTION])


# --- the notebook -------------------------------------------------------------------------------

def _meta(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def task_text(ex: Exercise, consts: dict) -> str:
    """README.md, its opening paragraph ("Edit starter.py ...") replaced by how the notebook works."""
    readme = (ex.dir / "README.md").read_text(encoding="utf-8").strip().split("\n\n")
    public = sum(c.points for c in ex.checks if c.public)
    forbidden = ", ".join(f"`{m}`" for m in consts.get("FORBIDDEN_IMPORTS", ()))
    intro = (f"**{ex.total_points:g} points, autograded.** Write your code in the cell below: keep the names and "
             "signatures, replace each `raise NotImplementedError()`. Then run the check cells: "
             f"{public:g} points are in the public check you see; the other {ex.total_points - public:g} are in "
             "hidden checks that run when your instructor grades.")
    if forbidden:
        intro += f" Do not use {forbidden}: those are the answer keys."
    body = readme[2:] if len(readme) > 1 and readme[1].startswith("**") else readme[1:]
    return "\n\n".join([readme[0], intro, *body])


def notebook(ex: Exercise) -> nbformat.NotebookNode:
    """The nbgrader source notebook of a code exercise."""
    consts = {}
    for node in ast.parse((ex.dir / PUBLIC_CHECKS).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    public_helpers, public = split_checks(ex.dir / PUBLIC_CHECKS)
    hidden_helpers, hidden = split_checks(ex.dir / HIDDEN_CHECKS)
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell(task_text(ex, consts), metadata=_meta("task", locked=True)),
        v4.new_code_cell(answer_cell(ex), metadata=_meta("answer", solution=True)),
        v4.new_code_cell("# The checks call your functions through `sub`, as the course's grader does.\n"
                         "from exercises._notebook import NotebookSubmission\n\nsub = NotebookSubmission(globals())\n\n"
                         + public_helpers, metadata=_meta("setup", locked=True)),
    ]
    first_hidden = True
    for spec in ex.checks:
        call = f"\n\n\n{spec.name}(sub)"
        if spec.public:
            source = f"# public check ({spec.points:g} points)\n{public[spec.name]}{call}"
        else:
            helpers = hidden_helpers + "\n\n\n" if first_hidden else ""
            first_hidden = False
            source = (f"# hidden check ({spec.points:g} points): {spec.title}\n{BEGIN_HIDDEN}\n"
                      f"{helpers}{hidden[spec.name]}{call}\n{END_HIDDEN}")
        cells.append(v4.new_code_cell(source, metadata=_meta(spec.name, grade=True, locked=True, points=spec.points)))
    return v4.new_notebook(cells=cells, metadata=KERNEL)


def export(course_dir: Path, only: list[str] | None = None) -> list[Path]:
    """Write COURSE_DIR/nbgrader_config.py (if missing) and source/<exercise>/<exercise>.ipynb."""
    course_dir = Path(course_dir).resolve()
    exercises = [e for e in discover(only) if not e.manual and e.nbgrader]
    missing = [e.name for e in exercises if not (e.dir / e.solution_file).exists() or not (e.dir / HIDDEN_CHECKS).exists()]
    if missing:
        raise SystemExit(f"nbgrader_export: {', '.join(missing)} lack solution.py or {HIDDEN_CHECKS}: export from "
                         "the instructor's copy of the course, not from a student release")
    course_dir.mkdir(parents=True, exist_ok=True)
    config = course_dir / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG, encoding="utf-8")
    written = []
    for ex in exercises:
        path = course_dir / "source" / ex.name / f"{ex.name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nb = notebook(ex)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.nbgrader_export",
                                     description="Write an nbgrader course directory for the code exercises.")
    parser.add_argument("course_dir", type=Path, help="the nbgrader course directory (created if missing)")
    parser.add_argument("--exercise", action="append", metavar="NAME", help="only this exercise (a prefix; repeat)")
    args = parser.parse_args(argv)
    for path in export(args.course_dir, args.exercise):
        print(f"wrote {path}")
    print(f"next: cd {args.course_dir} && nbgrader generate_assignment <exercise> (see exercises/README.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
