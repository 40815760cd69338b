"""Public checks of exercise 7 (distillation losses): the settings and the docstrings' examples.

Shipped to students with the starter. The other checks, and their answer key (relcourse.losses:
LogitMSELoss, MarginMSELoss), are in tests_grade.py, which stays with the instructor.

Each loss is computed and back-propagated in the student's process (how="value_and_grad"): what
comes back is the loss as a number and the gradient on the student's scores, which the grader
compares with values worked out by hand below.
"""
from __future__ import annotations

import math

import torch

from exercises._checks import call_text, check, loss_value_and_grad, show

TITLE = "Distillation losses: logit MSE and Margin-MSE"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse.losses", "relcourse")
POINTS = 10


def expect_loss(sub, func, args, want, want_grad, hint=""):
    """The student's func(*args) has the loss `want` and the gradient `want_grad` on args[0]."""
    what = call_text(func, *args)
    got, grad = loss_value_and_grad(sub, func, *args, what=what)
    more = f" — {hint}" if hint else ""
    if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
        raise AssertionError(f"{what} returned {got:.6g}, expected {want:.6g}{more}")
    want_grad = torch.as_tensor(want_grad, dtype=torch.float64)
    if not torch.allclose(grad.double(), want_grad, rtol=1e-5, atol=1e-6):
        raise AssertionError(f"{what}: the gradient on the student's scores is {show(grad)}, expected "
                             f"{show(want_grad)}{more}")


@check(2)
def check_docstring_example(sub):
    """The docstrings' examples: logit MSE 2.0, triples 5.625, per-query lists 14/3; values and gradients."""
    # logit MSE: errors (1 - 3, -2 + 2) = (-2, 0); d/ds_i of the mean of squares is 2 e_i / B
    expect_loss(sub, "logit_mse", (torch.tensor([1.0, -2.0]), torch.tensor([3.0, -2.0])), 2.0, [-2.0, 0.0])
    # triples: r = (s_pos - s_neg) - (t_pos - t_neg) = -3 and -1.5; d/ds_pos = 2 r / B, d/ds_neg = -2 r / B
    expect_loss(sub, "margin_mse_triples", (torch.tensor([[2.0, 1.0], [0.0, 0.5]]), torch.tensor([[5.0, 1.0], [1.0, 0.0]])),
                5.625, [[-3.0, 3.0], [-1.5, 1.5]], hint="each triple's error is (s_pos - s_neg) - (t_pos - t_neg)")
    # per query: query 5 has the pairs (0, 1), (0, 2), (1, 2) with errors -2, -3, -1; query 6 has none
    errors = {(0, 1): -2.0, (0, 2): -3.0, (1, 2): -1.0}
    grad = [0.0] * 4
    for (i, j), e in errors.items():
        grad[i] += 2 * e / len(errors)
        grad[j] -= 2 * e / len(errors)
    expect_loss(sub, "margin_mse", (torch.tensor([1.0, 0.0, 2.0, 7.0]), torch.tensor([3.0, 0.0, 1.0, 2.0]),
                                    torch.tensor([5, 5, 5, 6])),
                sum(e * e for e in errors.values()) / len(errors), grad,
                hint="query 5 has three pairs, with errors (1 - 3), (-1 - 2), (-2 + 1); document 3 is alone in query 6")
