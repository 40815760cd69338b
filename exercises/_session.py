"""Grade one student file: the checks run here, in the grader; only the student's calls run in the sandbox.

A check is a function of `sub`, a `Submission`: `sub.pnr(labels, scores, query_ids)` sends the
function's name and its (plain-data) inputs to the student's confined process and returns what
came back, decoded as plain data (exercises/_wire.py). The check, its answer key and the points
never leave this process, so student code can neither read them nor patch them, nor the
libraries they compare with; what it can forge is only its own outputs, which the check judges.

Every reply is validated: it must answer the request just sent (its random id), be well-formed,
and come before the check's deadline; the first reply is the one that counts. Anything else
fails that call (so that check), and the process is killed and started afresh for the next
check, at most MAX_STARTS times per file.
"""
from __future__ import annotations

import ast
import builtins
import secrets
import time
from dataclasses import dataclass

from exercises import _wire
from exercises._sandbox import Confined, answer_key_paths, containment

STARTUP_ALLOWANCE = 60.0     # seconds for a fresh process to start and import numpy / pandas / torch
GRACE = 1.0                  # seconds past a call's budget before the process is killed
MAX_STARTS = 3               # processes per file: the first, and two restarts after a crash
MAX_SOURCE_BYTES = 1_000_000
LIBRARIES = ("numpy", "pandas", "torch", "scipy", "sklearn")   # imported before the student's file is timed


class CheckTimeout(BaseException):
    """The student's code ran out of the check's time. A BaseException: checks do not catch it."""

    def __init__(self, where: str = "", killed: bool = False):
        super().__init__(where)
        self.where, self.killed = where, killed


class Broken(Exception):
    """The student's process cannot answer: it crashed, was killed, or sent a malformed reply."""


class MissingFunction(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass
class Reply:
    value: object
    mutated: list


def _where(err: dict, display: str) -> tuple[str, str]:
    where = err.get("where")
    if isinstance(where, list) and len(where) == 2 and isinstance(where[0], int) and isinstance(where[1], str):
        return f" ({display} line {where[0]}, in {_wire.clean(where[1], 80)})", _wire.clean(where[1], 80)
    return "", ""


def student_exception(err: dict, display: str) -> BaseException:
    """The exception a student's function raised, rebuilt as a built-in type a check can catch
    (ValueError stays ValueError), with `.student = (type name, where, function)` attached."""
    message = _wire.clean(err.get("message", ""), 300)
    exc = Exception(message)
    for name in [err.get("type"), *err.get("bases", [])]:
        cls = getattr(builtins, name, None) if isinstance(name, str) else None
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                exc = cls(message)          # UnicodeDecodeError and a few others want more arguments
                break
            except TypeError:
                continue
    where, func = _where(err, display)
    exc.student = (_wire.clean(err.get("type", "?"), 80), where, func)
    return exc


def _valid_error(err) -> bool:
    return (isinstance(err, dict) and err.get("kind") in ("exception", "timeout", "missing")
            and isinstance(err.get("type"), str) and isinstance(err.get("message"), str)
            and isinstance(err.get("bases"), list) and all(isinstance(b, str) for b in err["bases"]))


class StudentProcess:
    """The student's module, loaded in a confined process; restarted after a crash."""

    def __init__(self, source: bytes, display: str, module_name: str, timeout: float, deadline: float,
                 forbidden: tuple[str, ...] = ()):
        self.source, self.display, self.module_name = source, display, module_name
        self.forbidden = forbidden
        self.timeout, self.deadline = timeout, deadline
        self.box: Confined | None = None
        self.starts, self.outputs = 0, []
        self.check_deadline = 0.0
        self.last_failure = ""
        self.exit_code: int | None = None

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """A fresh process with the module loaded; raises CheckTimeout, Broken or the import's error."""
        self.close()
        if self.starts >= MAX_STARTS:
            raise Broken(f"not run: the process was restarted {MAX_STARTS - 1} times already "
                         f"({self.last_failure or 'it kept failing'})")
        if time.monotonic() > self.deadline:
            raise Broken("not run: the time for this file is up")
        self.starts += 1
        cpu = int(max(10, self.deadline - time.monotonic())) + 5
        self.box = Confined(self.source, cpu, containment(), answer_key_paths(self.forbidden))
        libraries = library_imports(self.source)
        if libraries:      # slow imports of known libraries do not count against the file's import time
            self._exchange({"op": "preload", "modules": libraries}, STARTUP_ALLOWANCE)
        reply = self._exchange({"op": "load", "path": self.box.student_path, "module": self.module_name,
                                "timeout": self.timeout}, self.timeout + GRACE)
        if not reply["ok"]:
            err = reply["error"]
            self.close()
            if err["kind"] == "timeout":
                raise CheckTimeout(_where(err, self.display)[0])
            raise student_exception(err, self.display)

    def close(self) -> None:
        if self.box is not None:
            box, self.box = self.box, None
            box.kill()
            text = box.output.text()
            if text:
                self.outputs.append(text)

    def output(self) -> str:
        return _wire.clean(" | ".join(self.outputs), 2000)

    # --- one request -------------------------------------------------------------------------
    def _exchange(self, request: dict, wait: float) -> dict:
        """Send a request and return its validated reply; on any failure kill the process."""
        request["id"] = secrets.token_hex(8)
        line = (self.box.receive(min(time.monotonic() + wait, self.deadline)) if self.box.send(request)
                else "closed")
        if line == "closed" or (line == "deadline" and not self.box.alive()):
            self.exit_code = self.box.wait(2.0)
            self._fail("the student's process stopped unexpectedly", died=True)
        if line == "too long":
            self._fail(f"the student's process sent a reply longer than {_wire.MAX_LINE_BYTES} bytes")
        if line == "deadline":
            if time.monotonic() >= self.deadline:
                self._fail("grading was stopped: the time for this file is up")
            self.last_failure = "it did not answer in time"
            self.close()
            raise CheckTimeout(killed=True)
        try:
            reply = _wire.loads(line)
            if reply.get("id") != request["id"] or not isinstance(reply.get("ok"), bool):
                raise _wire.WireError("a reply that does not answer the request")
            if reply["ok"]:
                reply["value"] = _wire.decode(reply.get("value"))
                mutated = reply.get("mutated", [])
                if not isinstance(mutated, list) or not all(isinstance(i, int) for i in mutated):
                    raise _wire.WireError("a bad 'mutated' list")
            elif not _valid_error(reply.get("error")):
                raise _wire.WireError("a malformed error report")
        except _wire.WireError as e:
            self._fail(f"the student's process sent a malformed reply ({_wire.clean(e, 160)})")
        return reply

    def _fail(self, why: str, died: bool = False):
        """Kill the process and fail the call; say how it ended if it ended by itself."""
        self.last_failure = why
        code = self.exit_code if died else None
        self.close()
        if died:
            last = self.outputs[-1].rsplit(" | ", 1)[-1] if self.outputs else ""
            why += f" (exit status {code}{', ' + _signal_name(code) if _signal_name(code) else ''}{': ' + last if last else ''})"
        raise Broken(_wire.clean(why, 600))

    def call(self, func: str, args, kwargs, how: str = "plain", watch: bool = False) -> Reply:
        """The student's func(*args, **kwargs) in the process, within what is left of the check's time."""
        if self.box is None:
            self.start()
        budget = self.check_deadline - time.monotonic()
        if budget <= 0:
            raise CheckTimeout()
        request = {"op": "call", "func": func, "args": [_wire.encode(a) for a in args],
                   "kwargs": {k: _wire.encode(v) for k, v in kwargs.items()}, "how": how,
                   "budget": budget, "watch": watch}
        reply = self._exchange(request, budget + GRACE)
        if reply["ok"]:
            return Reply(reply["value"], reply.get("mutated", []))
        err = reply["error"]
        if err["kind"] == "timeout":
            raise CheckTimeout(_where(err, self.display)[0])
        if err["kind"] == "missing":
            raise MissingFunction(func)
        raise student_exception(err, self.display)


def _signal_name(code) -> str:
    """'killed by SIGKILL' for the exit status 137 of a process a signal ended."""
    import signal
    try:
        return f"killed by {signal.Signals(code - 128).name}" if isinstance(code, int) and code > 128 else ""
    except ValueError:
        return ""


class Submission:
    """What a check sees of the student's module: `sub.f(*args)` calls the student's f remotely.

    `sub._remote(name, *args, how=..., watch=True)` gives the full `Reply` (with `mutated`, the
    positions of arguments the function changed); how="value_and_grad" back-propagates a torch
    loss in the student's process and returns {"status", "value", "grad"}.
    """

    def __init__(self, process: StudentProcess):
        self._process = process

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._process.call(name, args, kwargs).value

    def _remote(self, name: str, *args, how: str = "plain", watch: bool = False, **kwargs) -> Reply:
        return self._process.call(name, args, kwargs, how=how, watch=watch)


# --- screening the source, here, without running it ---------------------------------------------

def forbidden_imports(tree: ast.AST, forbidden: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) of each import of an answer key written out in the source: the exercise's
    FORBIDDEN_IMPORTS, and any module called `solution` (strings naming them count too). This is
    a courtesy that explains the rule early; the sandbox is what keeps the answer keys away."""
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


def library_imports(source: bytes) -> list[str]:
    """The known libraries (LIBRARIES) the file imports, in the order it imports them."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level]
    return list(dict.fromkeys(n for n in names if n.split(".")[0] in LIBRARIES))


def screen(source: bytes, display: str, forbidden: tuple[str, ...]) -> str:
    """Why the file cannot be graded at all ("" if it can): too big, a syntax error, an answer-key import."""
    if len(source) > MAX_SOURCE_BYTES:
        return f"{display}: {len(source)} bytes, more than the {MAX_SOURCE_BYTES} a starter file may have"
    try:
        tree = compile(source, display, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        compile(tree, display, "exec", dont_inherit=True)
    except SyntaxError as e:
        return f"{display} line {e.lineno}: {type(e).__name__}: {_wire.clean(e.msg, 200)} — fix the syntax and run again"
    except (ValueError, RecursionError, MemoryError) as e:   # null bytes, absurd nesting
        return f"{display}: cannot be compiled ({_wire.clean(e, 120)}) — save it as plain UTF-8 text and run again"
    banned = forbidden_imports(tree, forbidden)
    if banned:
        line, name = banned[0]
        return (f"{display} line {line} uses {name}, which the grader uses as its answer key — "
                "write the code yourself (numpy, pandas, torch and the standard library are fine)")
    return ""


# --- messages ----------------------------------------------------------------------------------

def explain(exc: BaseException, display: str, timeout: float) -> str:
    """The message a student sees for what a check raised."""
    if isinstance(exc, CheckTimeout):
        stopped = " (the process did not stop and was killed)" if exc.killed else ""
        return (f"did not finish within {timeout:g} s{exc.where}{stopped} — an infinite loop, or a far too slow "
                "approach? Try the check's inputs by hand")
    if isinstance(exc, Broken):
        return _wire.clean(exc, 600)
    if isinstance(exc, MissingFunction):
        return f"{display} defines no function {exc.name!r}: keep the names and signatures of the starter"
    student = getattr(exc, "student", None)
    if student is not None:
        type_name, where, func = student
        if isinstance(exc, NotImplementedError):
            return f"not done yet: {func or 'a function'} raises NotImplementedError{where}"
        return f"your code raised {type_name}: {exc}{where}"
    if isinstance(exc, AssertionError):
        return _wire.clean(exc, 1500) or "failed"      # the check's verdict, written for the student
    return (f"the check could not use what your code returned ({type(exc).__name__}: {_wire.clean(exc, 300)}) — "
            "if your code looks right, show this message to your instructor")
