"""The small toolkit that the exercises' checks (tests_public.py, tests_grade.py) are written with.

A check is a function of `sub`, the student's module as the grader sees it, marked with `@check(points)`:

    @check(2)
    def check_docstring_example(sub):
        \"\"\"The example of the docstring.\"\"\"
        expect_close(sub.pnr([3, 1], [0.9, 0.1], [0, 0]), float("inf"), "pnr([3, 1], [0.9, 0.1], [0, 0])")

It passes (all its points) when it returns, and fails (no points) when it raises. An
AssertionError's text is the message the student sees, so write it as advice: what was called,
what came back, what was expected, and, where you can guess it, why. Everything else a check
raises (the student's NotImplementedError, a TypeError in their code, a time-out) is turned into
a message by the grader.

The grader reads the points with `ast` (without importing the file), so give them as a literal.

Checks run in the grader, never in the student's process: `sub.f(*args)` sends f's name and its
arguments (plain data: numbers, strings, lists, tuples, dicts, numpy arrays, torch tensors,
pandas objects) to the student's sandboxed process and returns what f returned, as plain data
again (a tuple stays a tuple, a Series a Series; anything else comes back as an `Opaque` stand-in
that only prints). An exception the student's f raised is raised here as the same built-in type
(ValueError stays ValueError). So compute expected values here, with your answer key, and never
hand the answer key to `sub`.
"""
from __future__ import annotations

import math


def check(points: float):
    """Mark a function `check_...(sub)` as a check worth `points` (a literal number)."""
    def mark(func):
        func.points = points
        func.is_check = True
        return func
    return mark


def checks_of(module) -> list:
    """The checks of a tests_grade module, in the order they are defined."""
    return [f for f in vars(module).values() if callable(f) and getattr(f, "is_check", False)]


def show(value, limit: int = 240) -> str:
    """A short readable repr for a message: arrays and tensors as lists, long ones cut."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        try:
            value = value.tolist()
        except Exception:  # a tolist that wants arguments, or fails: use the plain repr
            pass
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def call_text(name: str, *args, **kwargs) -> str:
    """How a call looks in a message, e.g. "pnr([3, 1], [0.9, 0.1], [0, 0])"."""
    parts = [show(a, 80) for a in args] + [f"{k}={show(v, 80)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def as_number(value, what: str) -> float:
    """value as a float (a Python, numpy or 0-d torch number), or a failure saying what came back."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"{what} returned {show(value)} ({type(value).__name__}); expected a single number") from None


def close(a: float, b: float, rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    """a == b up to rounding; inf only equals inf of the same sign, nan only nan."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def expect_close(got, expected: float, what: str, rel: float = 1e-9, abs_: float = 1e-12, hint: str = "") -> float:
    """Fail unless `got` (what `what` returned) is the number `expected`."""
    x = as_number(got, what)
    if not close(x, expected, rel, abs_):
        raise AssertionError(f"{what} returned {x:.10g}, expected {expected:.10g}" + (f" — {hint}" if hint else ""))
    return x


def expect_raises(exc_type: type[BaseException], func, what: str, hint: str = "") -> None:
    """Fail unless func() raises exc_type. The student's NotImplementedError passes through."""
    try:
        got = func()
    except exc_type:
        return
    except NotImplementedError:
        raise
    except Exception as e:
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}; expected {exc_type.__name__}"
                             + (f" — {hint}" if hint else "")) from None
    raise AssertionError(f"{what} returned {show(got)}; expected it to raise {exc_type.__name__}"
                         + (f" — {hint}" if hint else ""))


def loss_value_and_grad(sub, func: str, scores, *args, what: str):
    """A torch loss the student wrote, `func(scores, *args)`, computed and back-propagated in the
    student's process on a fresh copy of `scores` (how="value_and_grad"): (loss as a float, the
    gradient on scores as a tensor), or a failure that says what was wrong with the loss."""
    import torch
    from exercises._wire import clean
    got = sub._remote(func, scores, *args, how="value_and_grad").value
    status = got.get("status") if isinstance(got, dict) else None
    if status == "not a tensor":
        raise AssertionError(f"{what} returned {clean(got.get('repr'), 200)} ({clean(got.get('type'), 40)}); expected "
                             "a torch tensor (keep it a tensor: a float cannot be back-propagated)")
    if status == "not 0-d":
        raise AssertionError(f"{what} returned a tensor of shape {tuple(got.get('shape', []))}; expected a 0-d "
                             "tensor, one number (take the mean)")
    if status == "detached":
        raise AssertionError(f"{what} returned a loss that is not connected to the scores: backward() cannot train "
                             "the model (did you call .item(), .detach(), or build a new tensor with torch.tensor(...)?)")
    value, grad = (got.get("value"), got.get("grad")) if status == "ok" else (None, None)
    if not isinstance(value, float) or not isinstance(grad, torch.Tensor) or grad.shape != scores.shape:
        raise AssertionError(f"{what}: no loss and gradient of the right kind came back ({show(got)})")
    return value, grad


def reference_value_and_grad(loss_fn, scores, *args):
    """The answer key's loss_fn(scores, *args) as a float, and its gradient on a fresh copy of scores."""
    import torch
    x = scores.detach().clone().requires_grad_(True)
    loss = loss_fn(x, *args)
    loss.backward()
    return float(loss.detach()), (x.grad if x.grad is not None else torch.zeros_like(x))
