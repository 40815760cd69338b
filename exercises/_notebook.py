"""The exercises' checks inside a Jupyter notebook: what nbgrader's test cells call.

exercises/nbgrader_export.py writes notebooks whose test cells hold the checks of tests_public.py
and tests_grade.py, unchanged. A check calls the student's functions through `sub`; here `sub`
finds them in the notebook's own namespace instead of a confined process:

    sub = NotebookSubmission(globals())
    check_docstring_example(sub)        # passes, or raises AssertionError with the grader's message

Arguments and results still go through the wire's plain data (exercises/_wire.py), encoded and
decoded, so a check sees exactly what it sees in the course's grader (a copy of each argument, a
tuple as a tuple, an unknown type as an Opaque stand-in), and `sub._remote(..., how=...,
watch=...)` behaves the same (exercises/_worker.invoke). What is NOT the same: no sandbox, no
time limit but nbgrader's per cell, no screen of forbidden imports. The student's code runs in
the kernel that runs the checks, with the rights of whoever runs nbgrader (exercises/README.md).
"""
from __future__ import annotations

from exercises import _wire
from exercises._session import Reply
from exercises._worker import invoke


def plain(x):
    """x as the grader would receive it: encoded as plain data, through JSON, and decoded (a copy)."""
    return _wire.decode(_wire.loads(_wire.dumps({"value": _wire.encode(x)}))["value"])


class NotebookSubmission:
    """`sub.f(*args)` calls the notebook's f on plain-data copies of args, and returns plain data."""

    def __init__(self, namespace: dict):
        self._namespace = namespace

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._remote(name, *args, **kwargs).value

    def _remote(self, name: str, *args, how: str = "plain", watch: bool = False, **kwargs) -> Reply:
        func = self._namespace.get(name)
        if not callable(func):
            raise AssertionError(f"the notebook defines no function {name!r}: run the cell with your code first, "
                                 "and keep the names and signatures of the exercise")
        value, mutated = invoke(func, [plain(a) for a in args], {k: plain(v) for k, v in kwargs.items()}, how, watch)
        return Reply(plain(value), mutated)
