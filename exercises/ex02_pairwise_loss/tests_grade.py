"""Hidden checks of exercise 2 (pairwise logistic loss): the instructor's copy only.

The answer key is relcourse.losses.pairwise.pairwise_logistic_loss (value and gradient), run here
in the grader; the student's loss and gradient come back from the student's process as plain
data (tests_public.student_value_and_grad). The settings and the public example are in
tests_public.py.
"""
from __future__ import annotations

import math

import torch

from exercises._checks import call_text, check, show
from exercises.ex02_pairwise_loss.tests_public import student_value_and_grad


def oracle(scores, labels, query_ids, gamma=1.0):
    from relcourse.losses.pairwise import pairwise_logistic_loss
    return pairwise_logistic_loss(scores, labels, query_ids, gamma)[0]


def oracle_value_and_grad(scores, labels, query_ids, gamma):
    """The answer key's loss as a float and its gradient on (a fresh copy of) scores."""
    x = scores.detach().clone().requires_grad_(True)
    loss = oracle(x, labels, query_ids, gamma)
    loss.backward()
    return float(loss.detach()), (x.grad if x.grad is not None else torch.zeros_like(x))


def expect_same(sub, scores, labels, query_ids, gamma=1.0, rel=1e-6, hint=""):
    """The student's loss and gradient equal the oracle's."""
    what = call_text("pairwise_logistic_loss", scores, labels, query_ids, gamma=gamma)
    got, got_grad = student_value_and_grad(sub, scores, labels, query_ids, gamma, what)
    want, want_grad = oracle_value_and_grad(scores, labels, query_ids, gamma)
    more = f" — {hint}" if hint else ""
    if not math.isfinite(got) and math.isfinite(want):
        raise AssertionError(f"{what} returned {got!r}, expected {want:.6g}{more}")
    if not math.isclose(got, want, rel_tol=rel, abs_tol=1e-9):
        raise AssertionError(f"{what} returned {got:.6g}, expected {want:.6g}{more}")
    if not torch.isfinite(got_grad).all():
        raise AssertionError(f"{what}: the gradient on scores has inf or nan: {show(got_grad)}{more}")
    if not torch.allclose(got_grad.double(), want_grad.double(), rtol=rel, atol=1e-7):
        raise AssertionError(f"{what}: the gradient on scores is {show(got_grad)}, expected {show(want_grad)}{more}")


@check(2)
def check_gamma_scales_margins(sub):
    """gamma multiplies every margin before the logistic: values for gamma 0.5, 2 and 5."""
    scores = torch.tensor([0.3, -0.2, 1.1, 0.0, 0.4, -1.0], dtype=torch.float64)
    labels = torch.tensor([2, 3, 0, 1, 1, 0])
    query_ids = torch.tensor([5, 5, 5, 5, 9, 9])
    for gamma in (0.5, 2.0, 5.0):
        expect_same(sub, scores, labels, query_ids, gamma, hint="the loss of a pair is ln(1 + exp(-gamma * margin))")


@check(2)
def check_gradient(sub):
    """The gradient on the scores equals the answer key's (float64, three queries)."""
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(15, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (15,), generator=g)
    query_ids = torch.randint(0, 3, (15,), generator=g)
    expect_same(sub, scores, labels, query_ids, 1.5, rel=1e-8)


@check(2)
def check_numerically_stable(sub):
    """Margins of +-1000 give a finite loss and gradient (ln(1 + exp(x)) overflows when written as is)."""
    labels = torch.tensor([0, 3, 1])
    query_ids = torch.tensor([0, 0, 0])
    for scores in (torch.tensor([1000.0, -1000.0, 0.0]), torch.tensor([-1000.0, 1000.0, 0.0])):
        expect_same(sub, scores, labels, query_ids, 1.0,
                    hint="exp(1000) is inf in floating point; torch.nn.functional.softplus computes ln(1 + e^x) safely")


@check(1)
def check_no_pair(sub):
    """A batch without a pair gives a zero loss that backward() accepts."""
    for labels, query_ids, why in [
        (torch.tensor([2, 2, 2]), torch.tensor([0, 0, 1]), "every label is the same"),
        (torch.tensor([3, 0, 1]), torch.tensor([0, 1, 2]), "each query has one document"),
    ]:
        scores = torch.tensor([0.5, -0.5, 2.0])
        what = call_text("pairwise_logistic_loss", scores, labels, query_ids)
        try:
            got, grad = student_value_and_grad(sub, scores, labels, query_ids, 1.0, what)
        except NotImplementedError:
            raise
        except RuntimeError as e:   # "element 0 of tensors does not require grad ..."
            raise AssertionError(f"{what}: backward() failed ({e}) — {why}, so there is no pair; return "
                                 "scores.sum() * 0, a zero that is still on the graph") from None
        if got != 0.0:
            raise AssertionError(f"{what} returned {got!r}, expected 0 — {why}, so there is no pair "
                                 "(a mean over no pair is nan: check for that case first)")
        if (grad != 0).any():
            raise AssertionError(f"{what}: the gradient is {show(grad)}, expected zeros")


@check(1)
def check_random_batches(sub):
    """40 random batches: many queries, soft labels with repeats, float32 and float64, random gamma."""
    g = torch.Generator().manual_seed(11)
    for case in range(40):
        n = 2 + case
        dtype = torch.float32 if case % 2 else torch.float64
        scores = (torch.randn(n, generator=g) * 3).to(dtype)
        labels = torch.randint(0, 5, (n,), generator=g) / 4 if case % 3 else torch.randint(0, 4, (n,), generator=g)
        query_ids = torch.randint(0, 1 + n // 4, (n,), generator=g)
        gamma = 0.5 + 2.5 * float(torch.rand(1, generator=g))
        expect_same(sub, scores, labels, query_ids, gamma, rel=1e-5)
