"""Grade one student file against one exercise's checks, in a process of its own.

Started by exercises/grade.py as

    python -m exercises._worker TESTS_GRADE_PY STUDENT_PY DISPLAY_NAME RESULTS_JSONL TIMEOUT_S

It never lets the student's code take the grader down: the file is compiled first (a syntax
error is reported with its line), scanned for imports of the answer key, imported under a time
limit, and each check runs under its own time limit (SIGALRM, on Unix). One JSON object per
line goes to RESULTS_JSONL as soon as it is known, so whatever was decided before a crash or a
kill still counts:

    {"kind": "fatal", "message": ...}                        nothing could run
    {"kind": "check", "name", "points", "earned", "message"}  one per check
    {"kind": "done"}

If the student's code blocks the alarm or loops inside C code, grade.py's hard limit kills the
whole process group; the checks already written keep their points.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from exercises._checks import checks_of


class CheckTimeout(BaseException):
    """Raised by the alarm. A BaseException, so the student's `except Exception:` cannot swallow it."""


def _on_alarm(signum, frame):
    raise CheckTimeout()


HAS_ALARM = hasattr(signal, "setitimer")


def limited(seconds: float, func):
    """func() under a time limit of `seconds` (Unix; elsewhere only grade.py's hard limit applies)."""
    if not HAS_ALARM:
        return func()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return func()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class Reporter:
    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")

    def write(self, **record) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def load_file_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module        # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def forbidden_imports(tree: ast.AST, forbidden: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) of each import of an answer key: the exercise's FORBIDDEN_IMPORTS, and any
    module called `solution`. Strings naming them count too (importlib.import_module("...")).
    """
    def banned(name: str) -> bool:
        return (any(name == f or name.startswith(f + ".") for f in forbidden)
                or name == "solution" or name.endswith(".solution"))

    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            names = [base] + [f"{base}.{a.name}" if base else a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 100 \
                and not any(ch.isspace() for ch in node.value):
            names = [node.value]
        found += [(node.lineno, n.lstrip(".")) for n in names if banned(n.lstrip("."))]
    return sorted(set(found))


def where_in(exc: BaseException, student_path: str, display: str) -> tuple[str, str]:
    """(" (ex01_pnr/starter.py line 12, in pnr)", "pnr") for the deepest frame in the student's
    file, or ("", "") when the exception did not pass through it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == student_path]
    if not frames:
        return "", ""
    last = frames[-1]
    return f" ({display} line {last.lineno}, in {last.name})", last.name


def explain(exc: BaseException, module, student_path: str, display: str, timeout: float) -> str:
    """The message a student sees for an exception raised while a check ran."""
    where, func = where_in(exc, student_path, display)
    if isinstance(exc, CheckTimeout):
        return (f"did not finish within {timeout:g} s{where} — an infinite loop, or a far too slow "
                "approach? Try the check's inputs by hand")
    if isinstance(exc, NotImplementedError):
        return f"not done yet: {func or 'a function'} raises NotImplementedError{where}"
    if isinstance(exc, AttributeError) and module is not None and getattr(exc, "obj", None) is module:
        return f"{display} defines no function {exc.name!r}: keep the names and signatures of the starter"
    if isinstance(exc, AssertionError) and not where:
        return str(exc) or "failed"        # the check's verdict, written for the student
    text = str(exc).strip().splitlines()
    return f"your code raised {type(exc).__name__}: {text[0] if text else ''}{where}"


def run(tests_path: Path, student_path: Path, display: str, reporter: Reporter, timeout: float) -> None:
    tests = load_file_module(tests_path, f"_grading_{tests_path.parent.name}")
    checks = checks_of(tests)

    def fatal(message: str) -> None:
        reporter.write(kind="fatal", message=message)
        for c in checks:
            reporter.write(kind="check", name=c.__name__, points=c.points, earned=0,
                           message="not run: the file could not be loaded (see above)")

    source = student_path.read_bytes()
    try:
        tree = compile(source, display, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        compile(tree, display, "exec", dont_inherit=True)
    except SyntaxError as e:
        fatal(f"{display} line {e.lineno}: {type(e).__name__}: {e.msg} — fix the syntax and run again")
        return
    except ValueError as e:   # e.g. null bytes in the source
        fatal(f"{display}: cannot be compiled ({e}) — save it as plain UTF-8 text and run again")
        return
    banned = forbidden_imports(tree, tuple(getattr(tests, "FORBIDDEN_IMPORTS", ())))
    if banned:
        line, name = banned[0]
        fatal(f"{display} line {line} uses {name}, which the grader uses as its answer key — "
              "write the code yourself (numpy, pandas, torch and the standard library are fine)")
        return

    module_name = f"student_{tests_path.parent.name}"
    try:
        module = limited(timeout, lambda: load_file_module(student_path, module_name))
    except CheckTimeout as e:
        where, _ = where_in(e, str(student_path), display)
        fatal(f"{display}: importing it did not finish within {timeout:g} s{where} — is there an infinite "
              "loop, or slow work, at the top level of the file? Keep top-level code to imports and definitions")
        return
    except BaseException as e:  # noqa: BLE001 — SystemExit, KeyboardInterrupt from student code too
        where, _ = where_in(e, str(student_path), display)
        hint = (" — the grader has the course's environment (numpy, pandas, torch, the standard library); "
                "import only those" if isinstance(e, ImportError) else " — fix it and run again")
        text = str(e).strip().splitlines()
        fatal(f"{display}: importing it failed with {type(e).__name__}: {text[0] if text else ''}{where}{hint}")
        return

    for c in checks:
        try:
            limited(timeout, lambda: c(module))
        except BaseException as e:  # noqa: BLE001 — every failure is a message, never a crash
            message = explain(e, module, str(student_path), display, timeout)
            reporter.write(kind="check", name=c.__name__, points=c.points, earned=0, message=message)
        else:
            reporter.write(kind="check", name=c.__name__, points=c.points, earned=c.points, message="ok")
    reporter.write(kind="done")


def main(argv: list[str]) -> int:
    tests_path, student_path, display, results, timeout = argv
    reporter = Reporter(results)
    if HAS_ALARM:
        signal.signal(signal.SIGALRM, _on_alarm)
    try:
        run(Path(tests_path).resolve(), Path(student_path).resolve(), display, reporter, float(timeout))
    except BaseException:  # a bug of the grader itself: say so, with the traceback, for the instructor
        reporter.write(kind="fatal", message="internal error of the grader (not your fault): "
                       + traceback.format_exc(limit=5).replace("\n", " | "))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
