"""Grade the exercises: one learner's work, the instructor solutions, or a whole class.

    python -m exercises.grade                         # your own starters, in exercises/exNN_*/starter.py
    python -m exercises.grade --solutions             # the instructor solutions (must score full marks; CI)
    python -m exercises.grade SUBMISSION_DIR          # one submission: SUBMISSION_DIR/exNN_*/starter.py
    python -m exercises.grade CLASS_DIR --csv grades.csv   # one folder per student: CLASS_DIR/<student>/exNN_*/...
    python -m exercises.grade --exercise ex01_pnr ... # only some exercises (repeat, or ex01,ex04)
    python -m exercises.grade ... --json scores.json  # every check's points and message, for a gradebook
    python -m exercises.grade --release OUT_DIR       # the student version: no solutions, no hidden checks

The trust boundary: the checks, their answer keys and the scores live in this process, which never
imports student code. Each student file is loaded in a confined process of its own
(exercises/_sandbox.py) that only runs the calls a check asks for and sends back plain data
(exercises/_session.py, exercises/_wire.py). A crash, a kill, an infinite loop or a malformed
reply costs that file's checks, never the class: the CSV is always written.

Exit status: 0 once grading is done, whatever the scores; 1 with --solutions unless every
autograded check passes; 2 on a usage error; 3 if the instructor's exercises/ files or a graded
student file changed during the run, or the grader itself failed on a file (see the notes).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import re
import shutil
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from exercises._report import _atomic_write, _pts, class_csv, format_class, format_submission, write_json  # noqa: F401
from exercises._sandbox import containment
from exercises._session import (MAX_SOURCE_BYTES, STARTUP_ALLOWANCE, Broken, CheckTimeout, StudentProcess,
                                Submission, explain, screen)
from exercises._wire import clean

EXERCISES_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXERCISES_DIR.parent
EXERCISE_NAME = re.compile(r"^ex\d\d_\w+$")
DEFAULT_TIMEOUT = 10.0       # seconds per check (and for importing the student's file)
PUBLIC_CHECKS = "tests_public.py"     # settings and the worked example: shipped to students
HIDDEN_CHECKS = "tests_grade.py"      # every other check: the instructor's copy only
NBGRADER_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")   # what nbgrader strips from a release
RELEASE_EXCLUDE = ("solution.py", "solution.md", HIDDEN_CHECKS, "__pycache__", "*.pyc")


# --- the exercises, read without importing anything of theirs --------------------------------

@dataclass(frozen=True)
class CheckSpec:
    name: str
    title: str
    points: float
    public: bool


@dataclass(frozen=True)
class Exercise:
    name: str
    dir: Path
    title: str
    student_file: str          # what a learner hands in: starter.py, or answer.md
    solution_file: str         # the instructor's version: solution.py, or solution.md
    manual: bool               # graded by hand (a written answer); not in the automatic total
    points: float              # the points of the checks present here (all of them in the instructor's copy)
    total_points: float        # the exercise's worth, hidden checks included (POINTS)
    forbidden: tuple[str, ...] = ()
    checks: tuple[CheckSpec, ...] = field(default=())
    nbgrader: bool = True      # exported by exercises.nbgrader_export (NBGRADER = False in its checks: not)

    @property
    def tests_path(self) -> Path:
        return self.dir / PUBLIC_CHECKS

    @property
    def hidden_points(self) -> float:
        """Points of hidden checks missing from this copy (a student release)."""
        return 0.0 if self.manual else self.total_points - self.points


def _plan(path: Path, public: bool) -> tuple[dict, list[CheckSpec]]:
    """Module-level literals and @check(points) functions of a checks file, read with `ast`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    consts, checks = {}, []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                consts[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
        elif isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "check":
                    points = d.args[0] if d.args else next(k.value for k in d.keywords if k.arg == "points")
                    doc = (ast.get_docstring(node) or node.name).strip().splitlines()[0]
                    checks.append(CheckSpec(node.name, doc, ast.literal_eval(points), public))
    return consts, checks


def read_exercise(folder: Path) -> Exercise:
    """An exercise's settings (TITLE, STUDENT_FILE, SOLUTION_FILE, MANUAL, POINTS, FORBIDDEN_IMPORTS in
    tests_public.py) and its checks: the public ones, then the hidden ones of tests_grade.py if present."""
    consts, checks = _plan(folder / PUBLIC_CHECKS, public=True)
    if (folder / HIDDEN_CHECKS).exists():
        checks += _plan(folder / HIDDEN_CHECKS, public=False)[1]
    manual = bool(consts.get("MANUAL", False))
    present = float(consts["POINTS"]) if manual else float(sum(c.points for c in checks))
    return Exercise(
        name=folder.name, dir=folder, title=consts.get("TITLE", folder.name),
        student_file=consts.get("STUDENT_FILE", "answer.md" if manual else "starter.py"),
        solution_file=consts.get("SOLUTION_FILE", "solution.md" if manual else "solution.py"),
        manual=manual, points=present, total_points=float(consts.get("POINTS", present)),
        forbidden=tuple(consts.get("FORBIDDEN_IMPORTS", ())), checks=tuple(checks),
        nbgrader=bool(consts.get("NBGRADER", True)))


def discover(only: list[str] | None = None) -> list[Exercise]:
    """The exercises in this folder, in order; `only` keeps those whose name starts with one of its entries."""
    found = [read_exercise(d) for d in sorted(EXERCISES_DIR.iterdir())
             if d.is_dir() and EXERCISE_NAME.match(d.name) and (d / PUBLIC_CHECKS).exists()]
    if only:
        wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
        unknown = [w for w in wanted if not any(e.name.startswith(w) for e in found)]
        if unknown:
            raise SystemExit(f"grade: no exercise called {', '.join(unknown)}; "
                             f"the exercises are {', '.join(e.name for e in found)}")
        found = [e for e in found if any(e.name.startswith(w) for w in wanted)]
    return found


_IMPORT_LOCK = threading.Lock()


def check_functions(ex: Exercise) -> list:
    """The check functions, in the order of ex.checks (imported here, in the trusted process only)."""
    with _IMPORT_LOCK:
        modules = [importlib.import_module(f"exercises.{ex.name}.{f.removesuffix('.py')}")
                   for f in (PUBLIC_CHECKS, HIDDEN_CHECKS) if (ex.dir / f).exists()]
    funcs = {name: f for m in modules for name, f in vars(m).items() if callable(f) and getattr(f, "is_check", False)
             and f.__module__ == m.__name__}
    missing = [c.name for c in ex.checks if c.name not in funcs]
    if missing:
        raise RuntimeError(f"{ex.name}: the checks {missing} were read from the files but not found on import")
    return [funcs[c.name] for c in ex.checks]


# --- grading one file -------------------------------------------------------------------------

def _check_rows(ex: Exercise, message: str) -> list[dict]:
    return [{"check": c.name, "title": c.title, "points": c.points, "earned": 0, "message": message} for c in ex.checks]


def _result(ex: Exercise, status: str, message: str, checks: list[dict], earned: float | None, **extra) -> dict:
    if ex.hidden_points and not ex.manual:
        message = (message + "; " if message else "") + (
            f"public checks only: {_pts(ex.hidden_points)} more points are in hidden checks your instructor runs")
    return {"exercise": ex.name, "title": ex.title, "manual": ex.manual, "possible": ex.points,
            "earned": earned, "status": status, "message": clean(message, 3000), "checks": checks, **extra}


def _students(exc: BaseException) -> bool:
    """Whether starting the student's process failed because of the student's file (its import
    raised, hung or killed the process), not because of the grader's own code: that is an
    internal error of the grader (grade_exercise reports it as one), never the student's."""
    return isinstance(exc, (CheckTimeout, Broken)) or hasattr(exc, "student")


def _import_failure(exc: BaseException, display: str, timeout: float) -> str:
    if isinstance(exc, CheckTimeout):
        return (f"{display}: importing it did not finish within {timeout:g} s{exc.where} — is there an infinite "
                "loop, or slow work, at the top level of the file? Keep top-level code to imports and definitions")
    if isinstance(exc, Broken):
        return f"{display}: {exc}"
    type_name, where, _ = getattr(exc, "student", (type(exc).__name__, "", ""))
    hint = (" — the grader has the course's environment (numpy, pandas, torch, the standard library); import only "
            "those" if isinstance(exc, ImportError) else " — fix it and run again")
    return f"{display}: importing it failed with {type_name}: {exc}{where}{hint}"


def grade_code(ex: Exercise, source: bytes, display: str, timeout: float = DEFAULT_TIMEOUT,
               hard_limit: float | None = None) -> dict:
    """Run ex's checks here against the student's functions in a confined process; never raises for a bad file."""
    if hard_limit is None:
        hard_limit = STARTUP_ALLOWANCE + timeout * (len(ex.checks) + 1)
    problem = screen(source, display, ex.forbidden)
    if problem:
        return _result(ex, "error", problem, _check_rows(ex, "not run: the file could not be loaded (see above)"), 0.0)
    funcs = check_functions(ex)
    process = StudentProcess(source, display, f"student_{ex.name}", timeout, time.monotonic() + hard_limit,
                             ex.forbidden)
    rows, broken = [], ""
    try:
        try:
            process.start()
            fatal = ""
        except (Exception, CheckTimeout) as e:  # noqa: BLE001 — whatever the import did
            if not _students(e):
                raise
            fatal = _import_failure(e, display, timeout)
        if fatal:
            process.close()
            return _result(ex, "error", fatal, _check_rows(ex, "not run: the file could not be loaded (see above)"),
                           0.0, output=process.output())
        for spec, func in zip(ex.checks, funcs):
            try:
                if process.box is None:         # a fresh process after a crash or a kill
                    try:
                        process.start()
                    except (Exception, CheckTimeout) as e:  # noqa: BLE001
                        if not _students(e):
                            raise
                        raise Broken(_import_failure(e, display, timeout)) from None
                process.check_deadline = time.monotonic() + timeout
                func(Submission(process))
                earned, message = spec.points, "ok"
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 — every failure is a message, never a crash
                earned = 0
                message = explain(e, display, timeout)
                if isinstance(e, Broken) and not broken:
                    broken = message
            rows.append({"check": spec.name, "title": spec.title, "points": spec.points, "earned": earned,
                         "message": clean(message, 1500)})
    finally:
        process.close()
    earned = float(sum(r["earned"] for r in rows))
    if all(r["message"].startswith("not done yet") for r in rows):
        status, message = "not started", "every function still raises NotImplementedError"
    elif broken:
        status, message = "error", broken
    else:
        status, message = ("full marks" if earned == ex.points else "partial"), ""
    return _result(ex, status, message, rows, earned, output=process.output())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def grade_written(ex: Exercise, answer: Path, display: str) -> dict:
    """A written answer is graded by hand; say whether there is one to grade, and how long it is."""
    template = ex.dir / ex.student_file
    text = answer.read_bytes()[:MAX_SOURCE_BYTES].decode("utf-8", errors="replace")
    template_lines = set(template.read_text(encoding="utf-8").splitlines()) if template.exists() else set()
    own = "\n".join(line for line in text.splitlines() if line not in template_lines)
    n = len(_words(own))
    if answer.resolve() == (ex.dir / ex.solution_file).resolve():
        message = f"{display}: the model answer and rubric ({n} words)"
    elif n < 30:
        message = f"{display}: still (nearly) the empty template ({n} words of your own) — write your answer there"
    else:
        message = f"{display}: {n} words written — graded by hand with the rubric in {ex.solution_file}"
    return _result(ex, "manual", message, [], None)


def grade_exercise(ex: Exercise, root: Path, solutions: bool = False, timeout: float = DEFAULT_TIMEOUT,
                   hard_limit: float | None = None, display_root: str | None = None,
                   seen: dict | None = None) -> dict:
    """Grade exercise `ex` of the submission in `root` (root/ex.name/starter.py, or answer.md).

    Never raises: a failure of the grader itself becomes an "error" result with internal=True.
    `seen`, if given, collects {path: sha256} of the files read, for the after-run integrity check."""
    filename = ex.solution_file if solutions else ex.student_file
    path = Path(root).resolve() / ex.name / filename
    display = clean(f"{display_root + '/' if display_root else ''}{ex.name}/{filename}", 300)
    try:
        if not path.is_file():
            message = f"{display} is missing — hand in the folder {ex.name}/ with your {filename} in it"
            return _result(ex, "missing", message, _check_rows(ex, "not run: no file"), None if ex.manual else 0.0)
        if seen is not None:
            seen[str(path)] = _sha256(path)
        if ex.manual:
            return grade_written(ex, path, display)
        with open(path, "rb") as f:
            source = f.read(MAX_SOURCE_BYTES + 1)
        return grade_code(ex, source, display, timeout, hard_limit)
    except Exception:  # noqa: BLE001 — one file's problem never stops the class
        message = ("internal error of the grader (not your fault): "
                   + traceback.format_exc(limit=4).replace("\n", " | "))
        return _result(ex, "error", message, _check_rows(ex, "not run: internal error of the grader"),
                       None if ex.manual else 0.0, internal=True)


def _submission(name: str, path: Path, results: list[dict]) -> dict:
    auto = [r for r in results if not r["manual"]]
    return {"submission": clean(name, 200), "path": clean(path, 500),
            "total": float(sum(r["earned"] for r in auto)), "possible": float(sum(r["possible"] for r in auto)),
            "manual_possible": float(sum(r["possible"] for r in results if r["manual"])),
            "exercises": results}


def grade_submissions(submissions: dict[str, Path], exercises: list[Exercise], solutions: bool = False,
                      timeout: float = DEFAULT_TIMEOUT, jobs: int = 2, seen: dict | None = None) -> list[dict]:
    """Grade every (submission, exercise), `jobs` confined processes at a time."""
    tasks = [(name, ex) for name in submissions for ex in exercises]
    several = len(submissions) > 1

    def one(task):
        name, ex = task
        return grade_exercise(ex, submissions[name], solutions, timeout, display_root=name if several else None,
                              seen=seen)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(one, tasks))
    return [_submission(name, path, [r for (n, _), r in zip(tasks, done) if n == name])
            for name, path in submissions.items()]


# --- finding submissions ----------------------------------------------------------------------

def _exercise_root(folder: Path, exercises: list[Exercise]) -> Path | None:
    """folder itself if it holds exercise folders, or its exercises/ subfolder if that does."""
    names = {e.name for e in exercises}
    for candidate in (folder, folder / "exercises"):
        if candidate.is_dir() and any((candidate / n).is_dir() for n in names):
            return candidate
    return None


def find_submissions(path: Path, exercises: list[Exercise], as_class: bool | None = None) -> dict[str, Path]:
    """{name: absolute root} for one submission (path holds exNN_ folders) or a class (one folder per student)."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise SystemExit(f"grade: {path} is not a folder")
    single = _exercise_root(path, exercises)
    if single is not None and not as_class:
        return {path.name: single}
    students = {d.name: _exercise_root(d, exercises) or d for d in sorted(path.iterdir())
                if d.is_dir() and not d.name.startswith((".", "_"))}
    if not students or (as_class is None and not any(_exercise_root(d, exercises) for d in students.values())):
        raise SystemExit(f"grade: found no exercise folders ({', '.join(e.name for e in exercises)}) in {path}, "
                         "nor student folders holding them")
    return students


# --- integrity of the instructor's files --------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under folder (bytecode caches left out: Python rewrites them)."""
    return {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


# --- release ----------------------------------------------------------------------------------

def _readable(path: Path) -> str:
    """A file's text; a notebook's as the source of its cells (JSON escapes would hide a line)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        try:
            return "\n".join("".join(c.get("source", "")) for c in json.loads(text).get("cells", []))
        except (ValueError, AttributeError):
            pass
    return text


def release_leaks(target: Path) -> list[str]:
    """What in a release folder would give away a solution or a hidden check (empty: none): this
    course's release (--release), or nbgrader's (its release/ folder of student notebooks)."""
    leaks = []
    hidden_names = {c.name for e in discover() for c in e.checks if not c.public}
    solution_lines = set()
    for e in discover():
        solution = e.dir / e.solution_file
        starter = e.dir / e.student_file
        if solution.exists() and solution.suffix == ".py":
            known = set(starter.read_text(encoding="utf-8").splitlines()) if starter.exists() else set()
            solution_lines |= {line.strip() for line in solution.read_text(encoding="utf-8").splitlines()
                               if len(line.strip()) > 25 and line not in known and not line.strip().startswith(("#", '"'))}
    for p in sorted(target.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(target))
        if p.name in ("solution.py", "solution.md", HIDDEN_CHECKS):
            leaks.append(f"{rel}: an instructor-only file")
            continue
        text = _readable(p)
        if p.suffix == ".ipynb":
            leaks += [f"{rel}: holds an nbgrader region {m!r}" for m in NBGRADER_MARKERS if m in text]
        leaks += [f"{rel}: defines the hidden check {n}" for n in sorted(hidden_names) if f"def {n}(" in text]
        leaks += [f"{rel}: holds a line of a solution: {line[:60]!r}" for line in sorted(solution_lines)
                  if line in text]
    return leaks


def release(out_dir: Path) -> Path:
    """Copy exercises/ to out_dir/exercises without solutions and hidden checks, and verify that."""
    target = Path(out_dir).resolve() / "exercises"
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"grade: {target} already exists and is not empty; choose another folder")
    shutil.copytree(EXERCISES_DIR, target, ignore=shutil.ignore_patterns(*RELEASE_EXCLUDE), dirs_exist_ok=True)
    leaks = release_leaks(target)
    if leaks:
        shutil.rmtree(target)
        raise SystemExit("grade: the release would give away answers, so it was not written:\n  " + "\n  ".join(leaks))
    return target


# --- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.grade",
                                     description="Autograde the RelCourse exercises (see exercises/README.md).")
    parser.add_argument("submission", nargs="?", type=Path,
                        help="a submission (folder with exNN_*/ folders) or a class (one such folder per "
                             "student); default: this exercises/ folder, i.e. your own starter.py files")
    parser.add_argument("--solutions", action="store_true", help="grade the instructor solutions (CI: must score full marks)")
    parser.add_argument("--exercise", action="append", metavar="NAME",
                        help="grade only this exercise (a name or prefix, e.g. ex01; repeat or comma-separate)")
    parser.add_argument("--class", dest="as_class", action="store_true",
                        help="treat SUBMISSION as a class folder even if it looks like one submission")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every check's points and message to OUT")
    parser.add_argument("--csv", type=Path, metavar="OUT",
                        help="for a class: the gradebook CSV (default grades.csv in the current folder)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per check and for importing a file (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--jobs", type=int, default=2, help="files graded at the same time (default 2)")
    parser.add_argument("--release", type=Path, metavar="OUT_DIR",
                        help="write the student version (no solutions, no hidden checks) to OUT_DIR/exercises and stop")
    args = parser.parse_args(argv)

    if args.release:
        print(f"student version written to {release(args.release)} (solutions and hidden checks left out)")
        return 0
    if args.solutions and args.submission:
        parser.error("give either --solutions or a SUBMISSION folder, not both")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    exercises = discover(args.exercise)
    layout = discover()      # any exercise folder tells a submission from a class, not only the selected ones
    if args.solutions:
        submissions = {"solutions": EXERCISES_DIR}
    elif args.submission is None:
        submissions = {"exercises": EXERCISES_DIR}
    else:
        args.submission = args.submission.resolve()
        submissions = find_submissions(args.submission, layout, True if args.as_class else None)
    is_class = args.as_class or (args.submission is not None and _exercise_root(args.submission, layout) is None)

    for ex in exercises:                     # import every check now: a broken checks file stops here, loudly
        if not ex.manual:
            check_functions(ex)
    print(containment().summary(), file=sys.stderr)
    before, seen = tree_hashes(EXERCISES_DIR), {}
    subs = grade_submissions(submissions, exercises, args.solutions, args.timeout, args.jobs, seen=seen)
    print(format_class(subs, exercises) if is_class else format_submission(subs[0]))
    if is_class or args.csv:
        csv_path = args.csv or Path("grades.csv")
        _atomic_write(csv_path, class_csv(subs, exercises))
        print(f"\ngradebook: {csv_path}")
    if args.json:
        write_json(args.json, subs, exercises, args.timeout)
        print(f"scores: {args.json}")
    return _verdict(subs, before, seen, args.solutions)


def _verdict(subs: list[dict], before: dict[str, str], seen: dict[str, str], solutions: bool) -> int:
    """The exit status, with a loud message for anything an instructor must look at."""
    status = 0
    changed = changed_files(before, tree_hashes(EXERCISES_DIR))
    moved = [p for p, h in seen.items() if not Path(p).is_file() or _sha256(Path(p)) != h]
    if changed or moved:
        print("\nINTEGRITY FAILURE: files changed while grading — the grades above cannot be trusted; restore "
              "the files from version control, look for the submission that did it, and grade again:", file=sys.stderr)
        for p in changed:
            print(f"  exercises/{p}", file=sys.stderr)
        for p in moved:
            print(f"  {p}", file=sys.stderr)
        status = 3
    internal = [f"{s['submission']}/{r['exercise']}" for s in subs for r in s["exercises"] if r.get("internal")]
    if internal:
        print(f"\nGRADER ERROR on {len(internal)} file(s): {', '.join(internal)} — those were not graded; "
              "see their notes, and report the error", file=sys.stderr)
        status = 3
    if solutions and status == 0:
        s = subs[0]
        if s["total"] < s["possible"]:
            print(f"FAIL: the solutions score {_pts(s['total'])}/{_pts(s['possible'])}, not full marks", file=sys.stderr)
            return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
