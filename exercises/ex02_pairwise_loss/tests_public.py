"""Public checks of exercise 2 (pairwise logistic loss): the settings and the docstring's example.

Shipped to students with the starter. The other checks, and their answer key
(relcourse.losses.pairwise), are in tests_grade.py, which stays with the instructor.

The loss is computed and back-propagated in the student's process (how="value_and_grad"): what
comes back is the loss as a number and the gradient on the scores as a tensor, plain data that
the grader compares with its own torch.
"""
from __future__ import annotations

import math

import torch

from exercises._checks import call_text, check, loss_value_and_grad, show

TITLE = "Pairwise logistic loss with gamma"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse.losses", "relcourse")
POINTS = 10


def student_value_and_grad(sub, scores, labels, query_ids, gamma, what):
    """The student's loss as a float and the gradient it puts on (a fresh copy of) scores."""
    return loss_value_and_grad(sub, "pairwise_logistic_loss", scores, labels, query_ids, gamma, what=what)


@check(2)
def check_docstring_example(sub):
    """The example of the docstring: three pairs in query 0, none in query 1; loss 0.5845."""
    scores, labels, query_ids = torch.tensor([2.0, 0.0, 1.0, 5.0]), torch.tensor([3, 1, 0, 2]), torch.tensor([0, 0, 0, 1])
    what = call_text("pairwise_logistic_loss", scores, labels, query_ids, gamma=1.0)
    got, grad = student_value_and_grad(sub, scores, labels, query_ids, 1.0, what)
    pairs = [(0, 1, 2.0), (0, 2, 1.0), (1, 2, -1.0)]         # (better, worse, margin) of query 0
    want = sum(math.log1p(math.exp(-m)) for _, _, m in pairs) / 3
    if not math.isclose(got, want, rel_tol=1e-6):
        raise AssertionError(f"{what} returned {got:.6g}, expected {want:.6g} — query 0 has pairs (0,1), (0,2), "
                             "(1,2) with margins 2, 1, -1; query 1 has one document")
    want_grad = [0.0] * 4             # d/dm ln(1 + e^-m) = -1 / (1 + e^m), each pair weighing 1/3
    for better, worse, m in pairs:
        want_grad[better] -= 1 / (1 + math.exp(m)) / 3
        want_grad[worse] += 1 / (1 + math.exp(m)) / 3
    if not torch.allclose(grad.double(), torch.tensor(want_grad, dtype=torch.float64), rtol=1e-5, atol=1e-6):
        raise AssertionError(f"{what}: the gradient on scores is {show(grad)}, expected "
                             f"{show([round(g, 6) for g in want_grad])}")
