"""The student side: load one student file and run the calls the grader asks for.

Started inside the sandbox (exercises/_sandbox.py) as

    python -E -s -B _worker.py REQUEST_FD REPLY_FD

with _wire.py beside it. It holds no check, no answer key and no score: it reads one request per
line (plain data, exercises/_wire.py), calls the student's function, and writes back what came
out, also as plain data. Everything it writes is treated by the grader as the student's own
output, which the student could forge anyway; the grader compares it with its oracle and scores
it in a process this file never reaches.

Requests and replies (each carries the grader's "id"):

    {"op": "preload", "modules": [...]}           -> {"ok": true}   (numpy, torch...: not timed)
    {"op": "load", "path", "module", "timeout"}   -> {"ok": true, "functions": [...]}
    {"op": "call", "func", "args", "kwargs", "how", "budget", "watch"}
                                                  -> {"ok": true, "value", "mutated": [...]}
    any failure                                   -> {"ok": false, "error": {"kind", "type",
                                                       "bases", "message", "where"}}

`how` is "plain" (return what the function returns) or "value_and_grad" (torch: call it on a
copy of the first argument that requires grad, back-propagate, return the loss and gradient).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import signal
import sys
import traceback

try:
    import _wire                  # in the sandbox: _wire.py lies beside this file
except ImportError:               # imported as exercises._worker (exercises/_notebook.py)
    from exercises import _wire


class CallTimeout(BaseException):
    """Raised by the alarm; a BaseException, so `except Exception:` in student code cannot eat it."""


def _on_alarm(signum, frame):
    raise CallTimeout()


class Worker:
    def __init__(self, request_fd: int, reply_fd: int):
        self.requests = os.fdopen(request_fd, "rb")   # buffered: a request line can be megabytes (ex08's logs)
        self.reply_fd = reply_fd
        self.module = None
        self.path = ""

    def reply(self, message: dict) -> None:
        data = memoryview(_wire.dumps(message))   # a view: each partial write skips ahead, no copy
        while data:
            data = data[os.write(self.reply_fd, data):]

    def error(self, exc: BaseException, kind: str = "exception") -> dict:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.path]
        text = str(exc).strip().splitlines() if not isinstance(exc, CallTimeout) else []
        if isinstance(exc, CallTimeout):
            kind = "timeout"
        return {"kind": kind, "type": type(exc).__name__[:80],
                "bases": [c.__name__ for c in type(exc).__mro__][:12],
                "message": (text[0] if text else "")[:_wire.MAX_TEXT],
                "where": [frames[-1].lineno, frames[-1].name[:80]] if frames else None}

    def limited(self, seconds: float, func):
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
        try:
            return func()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def load(self, request: dict) -> dict:
        self.path = request["path"]
        name = request["module"]
        spec = importlib.util.spec_from_file_location(name, self.path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module            # dataclasses and pickling look the module up by name
        self.limited(float(request["timeout"]), lambda: spec.loader.exec_module(module))
        self.module = module
        return {"functions": sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("__"))[:200]}

    def call(self, request: dict) -> dict:
        func = getattr(self.module, request["func"], None)
        if not callable(func):
            return {"ok": False, "error": {"kind": "missing", "type": "AttributeError", "bases": [],
                                           "message": request["func"], "where": None}}
        args = [_wire.decode(a) for a in request["args"]]
        kwargs = {k: _wire.decode(v) for k, v in request["kwargs"].items()}
        value, mutated = invoke(func, args, kwargs, request["how"], bool(request.get("watch")),
                                run=lambda f: self.limited(float(request["budget"]), f))
        return {"ok": True, "value": _wire.encode(value), "mutated": mutated}

    def serve(self) -> None:
        for line in self.requests:
            request = _wire.loads(line)
            try:
                if request["op"] == "preload":
                    result = preload(request["modules"])
                else:
                    result = self.load(request) if request["op"] == "load" else self.call(request)
                result.setdefault("ok", True)
            except BaseException as e:  # noqa: BLE001 — SystemExit and the alarm too: all are the student's
                result = {"ok": False, "error": self.error(e)}
            result["id"] = request["id"]
            self.reply(result)


def preload(modules: list) -> dict:
    """Import the libraries the student's file will import, so its own import time is its code's."""
    for name in modules:
        try:
            importlib.import_module(str(name))
        except Exception:  # noqa: BLE001 — the student's own import will report it
            pass
    return {}


def invoke(func, args: list, kwargs: dict, how: str = "plain", watch: bool = False, run=lambda f: f()):
    """(what func(*args, **kwargs) returned, or its loss and gradient with how="value_and_grad";
    the positions of the arguments it changed in place, with watch=True). `run` calls its
    argument, e.g. under a time limit."""
    before = [_wire.encode(copy.deepcopy(a)) for a in args] if watch else None
    if how == "value_and_grad":
        value = run(lambda: value_and_grad(func, *args, **kwargs))
    else:
        value = run(lambda: func(*args, **kwargs))
    mutated = [i for i, (a, b) in enumerate(zip(args, before)) if _wire.encode(a) != b] if before else []
    return value, mutated


def value_and_grad(func, scores, *args, **kwargs) -> dict:
    """The loss func returns on a fresh copy of `scores` that requires grad, and its gradient."""
    import torch
    x = scores.detach().clone().requires_grad_(True)
    loss = func(x, *args, **kwargs)
    if not isinstance(loss, torch.Tensor):
        return {"status": "not a tensor", "repr": repr(loss)[:300], "type": type(loss).__name__}
    if loss.dim() != 0:
        return {"status": "not 0-d", "shape": list(loss.shape)}
    if not loss.requires_grad:
        return {"status": "detached"}
    loss.backward()
    grad = x.grad if x.grad is not None else torch.zeros_like(x)
    return {"status": "ok", "value": float(loss.detach()), "grad": grad}


def main(argv: list[str]) -> int:
    request_fd, reply_fd = int(argv[0]), int(argv[1])
    signal.signal(signal.SIGALRM, _on_alarm)
    Worker(request_fd, reply_fd).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
