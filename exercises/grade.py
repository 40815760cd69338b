"""Grade the exercises: one learner's work, the instructor solutions, or a whole class.

    python -m exercises.grade                         # your own starters, in exercises/exNN_*/starter.py
    python -m exercises.grade --solutions             # the instructor solutions (must score full marks; CI)
    python -m exercises.grade SUBMISSION_DIR          # one submission: SUBMISSION_DIR/exNN_*/starter.py
    python -m exercises.grade CLASS_DIR --csv grades.csv   # one folder per student: CLASS_DIR/<student>/exNN_*/...
    python -m exercises.grade --exercise ex01_pnr ... # only some exercises (repeat, or ex01,ex04)
    python -m exercises.grade ... --json scores.json  # every check's points and message, for a gradebook
    python -m exercises.grade --release OUT_DIR       # the student version: exercises/ without solutions

Each student file is graded in a separate Python process (exercises/_worker.py) with a time limit
per check (--timeout, default 10 s) and a hard limit for the whole process, so a syntax error, a
crash, or an infinite loop costs that exercise its points and never stops the grading. The checks
always come from this folder (the instructor's copy); from a submission only the student's file
(starter.py, or answer.md for a written exercise) is read.

Exit status: 0 once grading is done, whatever the scores; with --solutions, 1 unless every
autograded check passes; 2 on a usage error.
"""
from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

EXERCISES_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXERCISES_DIR.parent
EXERCISE_NAME = re.compile(r"^ex\d\d_\w+$")
DEFAULT_TIMEOUT = 10.0       # seconds per check (and for importing the student's file)
STARTUP_ALLOWANCE = 60.0     # seconds for the worker to start and import numpy / pandas / torch
RELEASE_EXCLUDE = ("solution.py", "solution.md", "__pycache__", "*.pyc")


# --- the exercises, read without importing anything of theirs --------------------------------

@dataclass(frozen=True)
class CheckSpec:
    name: str
    title: str
    points: float


@dataclass(frozen=True)
class Exercise:
    name: str
    dir: Path
    title: str
    student_file: str          # what a learner hands in: starter.py, or answer.md
    solution_file: str         # the instructor's version: solution.py, or solution.md
    manual: bool               # graded by hand (a written answer); not in the automatic total
    points: float
    checks: tuple[CheckSpec, ...] = field(default=())

    @property
    def tests_path(self) -> Path:
        return self.dir / "tests_grade.py"


def read_exercise(folder: Path) -> Exercise:
    """An exercise's settings and checks, from its tests_grade.py, read with `ast`.

    Module-level literals TITLE, STUDENT_FILE, SOLUTION_FILE, MANUAL, POINTS; each function
    decorated with @check(points) is a check, titled by the first line of its docstring.
    """
    tree = ast.parse((folder / "tests_grade.py").read_text(encoding="utf-8"))
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
                    checks.append(CheckSpec(node.name, doc, ast.literal_eval(points)))
    manual = bool(consts.get("MANUAL", False))
    return Exercise(
        name=folder.name, dir=folder, title=consts.get("TITLE", folder.name),
        student_file=consts.get("STUDENT_FILE", "answer.md" if manual else "starter.py"),
        solution_file=consts.get("SOLUTION_FILE", "solution.md" if manual else "solution.py"),
        manual=manual, points=float(consts["POINTS"]) if manual else float(sum(c.points for c in checks)),
        checks=tuple(checks))


def discover(only: list[str] | None = None) -> list[Exercise]:
    """The exercises in this folder, in order; `only` keeps those whose name starts with one of its entries."""
    found = [read_exercise(d) for d in sorted(EXERCISES_DIR.iterdir())
             if d.is_dir() and EXERCISE_NAME.match(d.name) and (d / "tests_grade.py").exists()]
    if only:
        wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
        unknown = [w for w in wanted if not any(e.name.startswith(w) for e in found)]
        if unknown:
            raise SystemExit(f"grade: no exercise called {', '.join(unknown)}; "
                             f"the exercises are {', '.join(e.name for e in found)}")
        found = [e for e in found if any(e.name.startswith(w) for w in wanted)]
    return found


# --- grading one file -------------------------------------------------------------------------

def _check_rows(ex: Exercise, message: str) -> list[dict]:
    return [{"check": c.name, "title": c.title, "points": c.points, "earned": 0, "message": message} for c in ex.checks]


def _result(ex: Exercise, status: str, message: str, checks: list[dict], earned: float | None) -> dict:
    return {"exercise": ex.name, "title": ex.title, "manual": ex.manual, "possible": ex.points,
            "earned": earned, "status": status, "message": message, "checks": checks}


def _kill(proc: subprocess.Popen) -> None:
    """Stop the worker and anything it started (it runs in a session of its own)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def grade_code(ex: Exercise, student: Path, display: str, timeout: float = DEFAULT_TIMEOUT,
               hard_limit: float | None = None) -> dict:
    """Run ex's checks on the student's .py file in a worker process; never raises for a bad file."""
    if hard_limit is None:
        hard_limit = STARTUP_ALLOWANCE + timeout * (len(ex.checks) + 1)
    with tempfile.TemporaryDirectory(prefix="relcourse-grade-") as tmp:
        # The results sit beside, not inside, the folder the student's code runs in.
        results, stderr_path, workdir = Path(tmp) / "results.jsonl", Path(tmp) / "stderr.txt", Path(tmp) / "cwd"
        workdir.mkdir()
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0",
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        cmd = [sys.executable, "-m", "exercises._worker", str(ex.tests_path), str(student), display,
               str(results), repr(timeout)]
        killed = False
        with open(stderr_path, "wb") as err:
            # cwd: an empty folder, so files the student's code writes land nowhere that matters.
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=hasattr(os, "killpg"))
            try:
                proc.wait(timeout=hard_limit)
            except subprocess.TimeoutExpired:
                killed = True
                _kill(proc)
            except BaseException:          # Ctrl-C: leave no worker behind
                _kill(proc)
                raise
        records = []
        if results.exists():
            for line in results.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass                   # a half-written last line of a killed worker
        stderr_tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-600:].strip()

    fatal = next((r["message"] for r in records if r["kind"] == "fatal"), "")
    done = {r["name"]: r for r in records if r["kind"] == "check"}
    if killed:
        stop = (f"not run: grading was stopped after {hard_limit:g} s — an infinite loop that ignores the "
                "time limit (a bare `except:`, or a loop inside numpy/torch)?")
    elif not any(r["kind"] == "done" for r in records) and not fatal:
        last = stderr_tail.splitlines()[-1] if stderr_tail else "no error message"
        stop = f"not run: the grading process stopped unexpectedly (exit code {proc.returncode}: {last})"
    else:
        stop = "not run"
    checks = []
    for c in ex.checks:
        r = done.get(c.name)
        checks.append({"check": c.name, "title": c.title, "points": c.points,
                       "earned": r["earned"] if r else 0, "message": r["message"] if r else stop})
    earned = float(sum(c["earned"] for c in checks))
    if fatal:
        status, message = "error", fatal
    elif killed or stop != "not run":
        status, message = "error", stop.removeprefix("not run: ")
    elif all(c["message"].startswith("not done yet") for c in checks):
        status, message = "not started", "every function still raises NotImplementedError"
    else:
        status = "full marks" if earned == ex.points else "partial"
        message = ""
    return _result(ex, status, message, checks, earned)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def grade_written(ex: Exercise, answer: Path, display: str) -> dict:
    """A written answer is graded by hand; say whether there is one to grade, and how long it is."""
    template = ex.dir / ex.student_file
    text = answer.read_text(encoding="utf-8", errors="replace")
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
                   hard_limit: float | None = None, display_root: str | None = None) -> dict:
    """Grade exercise `ex` of the submission in `root` (root/ex.name/starter.py, or answer.md)."""
    filename = ex.solution_file if solutions else ex.student_file
    path = root / ex.name / filename
    display = f"{display_root + '/' if display_root else ''}{ex.name}/{filename}"
    if not path.is_file():
        message = f"{display} is missing — hand in the folder {ex.name}/ with your {filename} in it"
        return _result(ex, "missing", message, _check_rows(ex, "not run: no file"), None if ex.manual else 0.0)
    if ex.manual:
        return grade_written(ex, path, display)
    return grade_code(ex, path, display, timeout, hard_limit)


def _submission(name: str, path: Path, results: list[dict]) -> dict:
    auto = [r for r in results if not r["manual"]]
    return {"submission": name, "path": str(path),
            "total": float(sum(r["earned"] for r in auto)), "possible": float(sum(r["possible"] for r in auto)),
            "manual_possible": float(sum(r["possible"] for r in results if r["manual"])),
            "exercises": results}


def grade_submissions(submissions: dict[str, Path], exercises: list[Exercise], solutions: bool = False,
                      timeout: float = DEFAULT_TIMEOUT, jobs: int = 2) -> list[dict]:
    """Grade every (submission, exercise), `jobs` worker processes at a time."""
    tasks = [(name, ex) for name in submissions for ex in exercises]
    several = len(submissions) > 1

    def one(task):
        name, ex = task
        return grade_exercise(ex, submissions[name], solutions, timeout, display_root=name if several else None)

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
    """{name: root} for one submission (path holds exNN_ folders) or a class (one folder per student)."""
    if not path.is_dir():
        raise SystemExit(f"grade: {path} is not a folder")
    single = _exercise_root(path, exercises)
    if single is not None and not as_class:
        return {path.resolve().name: single}
    students = {d.name: _exercise_root(d, exercises) or d for d in sorted(path.iterdir())
                if d.is_dir() and not d.name.startswith((".", "_"))}
    if not students or (as_class is None and not any(_exercise_root(d, exercises) for d in students.values())):
        raise SystemExit(f"grade: found no exercise folders ({', '.join(e.name for e in exercises)}) in {path}, "
                         "nor student folders holding them")
    return students


# --- output -----------------------------------------------------------------------------------

def _pts(x: float | None) -> str:
    return "—" if x is None else f"{x:g}"


def format_submission(sub: dict) -> str:
    """The table of one submission: exercise, check, points earned/possible, message; and the total."""
    rows = [("exercise", "check", "points", "message")]
    for r in sub["exercises"]:
        if r["manual"]:
            rows.append((r["exercise"], "written answer", f"manual/{_pts(r['possible'])}", r["message"]))
            continue
        if all(c["message"].startswith("not run") for c in r["checks"]):    # nothing ran: say why, once
            rows.append((r["exercise"], "(the file)", f"0/{_pts(r['possible'])}", r["message"]))
            continue
        for c in r["checks"]:
            rows.append((r["exercise"], c["check"].removeprefix("check_"), f"{_pts(c['earned'])}/{_pts(c['points'])}",
                         c["message"]))
        status = f"{r['status']}: {r['message']}" if r["status"] == "error" else r["status"]
        rows.append((r["exercise"], "= subtotal", f"{_pts(r['earned'])}/{_pts(r['possible'])}", status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * min(120, sum(widths) + 12))
    manual = f"  (+ {_pts(sub['manual_possible'])} points of written answers, graded by hand)" if sub["manual_possible"] else ""
    lines.append(f"TOTAL {sub['submission']}: {_pts(sub['total'])}/{_pts(sub['possible'])} autograded points{manual}")
    return "\n".join(line.rstrip() for line in lines)


def _notes(sub: dict) -> str:
    """What an instructor should know about a submission, briefly: missing, unstarted or broken files."""
    notes = []
    for r in sub["exercises"]:
        if r["status"] in ("missing", "not started"):
            notes.append(f"{r['exercise']}: {r['status']}")
        elif r["status"] == "error":
            notes.append(f"{r['exercise']}: {r['message']}")
        elif r["manual"] and "words written" not in r["message"]:
            notes.append(f"{r['exercise']}: no answer written yet")
    return "; ".join(notes)


def format_class(subs: list[dict], exercises: list[Exercise]) -> str:
    header = ["student", *(e.name for e in exercises), "total"]
    rows = [header]
    for s in subs:
        cells = [s["submission"]]
        for r in s["exercises"]:
            cells.append("manual" if r["manual"] else f"{_pts(r['earned'])}/{_pts(r['possible'])}")
        cells.append(f"{_pts(s['total'])}/{_pts(s['possible'])}")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    notes = [f"  {s['submission']}: {_notes(s)}" for s in subs if _notes(s)]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def _atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, subs: list[dict], exercises: list[Exercise], timeout: float) -> None:
    payload = {"graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timeout_s": timeout,
               "exercises": [{"exercise": e.name, "title": e.title, "points": e.points, "manual": e.manual}
                             for e in exercises],
               "submissions": subs}
    _atomic_write(path, json.dumps(payload, indent=2) + "\n")


def class_csv(subs: list[dict], exercises: list[Exercise]) -> str:
    """One row per student: autograded points per exercise, an empty column per written exercise
    (for the instructor's mark), the autograded total and maximum, and notes on broken files."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", *(e.name for e in exercises), "auto_total", "auto_possible", "notes"])
    for s in subs:
        writer.writerow([s["submission"], *("" if r["manual"] else _pts(r["earned"]) for r in s["exercises"]),
                         _pts(s["total"]), _pts(s["possible"]), _notes(s)])
    return out.getvalue()


# --- release ----------------------------------------------------------------------------------

def release(out_dir: Path) -> Path:
    """Copy exercises/ to out_dir/exercises without the instructor's solution files."""
    target = out_dir / "exercises"
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"grade: {target} already exists and is not empty; choose another folder")
    shutil.copytree(EXERCISES_DIR, target, ignore=shutil.ignore_patterns(*RELEASE_EXCLUDE), dirs_exist_ok=True)
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
                        help="write the student version (no solution files) to OUT_DIR/exercises and stop")
    args = parser.parse_args(argv)

    if args.release:
        print(f"student version written to {release(args.release)} (solution.py / solution.md left out)")
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
        submissions = find_submissions(args.submission, layout, True if args.as_class else None)
    is_class = args.as_class or (args.submission is not None and _exercise_root(args.submission, layout) is None)

    subs = grade_submissions(submissions, exercises, args.solutions, args.timeout, args.jobs)
    print(format_class(subs, exercises) if is_class else format_submission(subs[0]))
    if is_class or args.csv:
        csv_path = args.csv or Path("grades.csv")
        _atomic_write(csv_path, class_csv(subs, exercises))
        print(f"\ngradebook: {csv_path}")
    if args.json:
        write_json(args.json, subs, exercises, args.timeout)
        print(f"scores: {args.json}")
    if args.solutions:
        s = subs[0]
        if s["total"] < s["possible"]:
            print(f"FAIL: the solutions score {_pts(s['total'])}/{_pts(s['possible'])}, not full marks", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
