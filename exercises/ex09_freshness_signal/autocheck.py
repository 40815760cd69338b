"""Run the optional code part of exercise 9 (quality.py) through the grader's confined process.

    .venv/bin/python -m exercises.ex09_freshness_signal.autocheck                 # this copy's quality.py
    .venv/bin/python -m exercises.ex09_freshness_signal.autocheck SUBMISSION      # SUBMISSION/ex09_freshness_signal/quality.py
    .venv/bin/python -m exercises.ex09_freshness_signal.autocheck --solutions     # the instructor's solution.py

The checks are in tests_public.py; the main grader lists exercise 9 as manual and leaves them out,
so add the points printed here (at most 3) to the 7 of the rubric by hand.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from exercises import grade
from exercises.ex09_freshness_signal import tests_public as settings

HERE = Path(__file__).resolve().parent


def code_exercise() -> grade.Exercise:
    """Exercise 9's code part as the grader's Exercise: quality.py, the checks of tests_public.py."""
    ex = grade.read_exercise(HERE)
    return dataclasses.replace(ex, manual=False, student_file=settings.CODE_FILE, solution_file=settings.CODE_SOLUTION,
                               forbidden=settings.CODE_FORBIDDEN_IMPORTS, points=float(sum(c.points for c in ex.checks)),
                               total_points=float(sum(c.points for c in ex.checks)))


def grade_part(root: Path | None = None, solutions: bool = False, timeout: float = grade.DEFAULT_TIMEOUT) -> dict:
    """The grader's result dict for root/ex09_freshness_signal/quality.py (or solution.py)."""
    root = grade.EXERCISES_DIR if root is None else grade.find_submissions(Path(root), [code_exercise()]).popitem()[1]
    return grade.grade_exercise(code_exercise(), root, solutions=solutions, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.ex09_freshness_signal.autocheck",
                                     description="Grade the optional code part of exercise 9 (quality.py).")
    parser.add_argument("submission", nargs="?", type=Path)
    parser.add_argument("--solutions", action="store_true")
    parser.add_argument("--timeout", type=float, default=grade.DEFAULT_TIMEOUT)
    args = parser.parse_args(argv)
    if args.solutions and args.submission:
        parser.error("give either --solutions or a SUBMISSION folder, not both")
    from exercises._sandbox import containment
    print(containment().summary(), file=sys.stderr)
    result = grade_part(args.submission, args.solutions, args.timeout)
    name = "solutions" if args.solutions else (args.submission.name if args.submission else "exercises")
    print(grade.format_submission(grade._submission(name, args.submission or grade.EXERCISES_DIR, [result])))
    print("(exercise 9's code part: add these points to the rubric's 7 by hand)")
    return 1 if args.solutions and result["earned"] < result["possible"] else 0


if __name__ == "__main__":
    sys.exit(main())
