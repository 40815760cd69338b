"""Hidden checks of exercise 7 (distillation losses): the instructor's copy only.

The answer key is the course's own stage-4 losses, relcourse.losses.LogitMSELoss and MarginMSELoss
(value and gradient), run here in the grader; the triples are MarginMSELoss on two-document
queries, which is Hofstätter et al.'s loss. tests/test_exercises.py checks that this key agrees
with a brute-force loop over pairs. The student's loss and gradient come back from the student's
process as plain data (exercises._checks.loss_value_and_grad).
"""
from __future__ import annotations

import math

import torch

from exercises._checks import call_text, check, loss_value_and_grad, reference_value_and_grad, show


def course_logit_mse(scores, teacher):
    from relcourse.losses import LogitMSELoss
    return LogitMSELoss()(scores, teacher)


def course_margin_mse(scores, teacher, query_ids):
    from relcourse.losses import MarginMSELoss
    return MarginMSELoss()(scores, teacher, query_ids)


def course_margin_mse_triples(student, teacher):
    """Triples as queries of two documents, (positive, negative): one pair each, positive first."""
    triple = torch.arange(student.shape[0]).repeat_interleave(2)
    return course_margin_mse(student.reshape(-1), teacher.reshape(-1), triple)


KEYS = {"logit_mse": course_logit_mse, "margin_mse_triples": course_margin_mse_triples, "margin_mse": course_margin_mse}


def expect_same(sub, func, *args, rel=1e-6, hint=""):
    """The student's loss and its gradient equal the course's, on the same inputs."""
    what = call_text(func, *args)
    got, got_grad = loss_value_and_grad(sub, func, *args, what=what)
    want, want_grad = reference_value_and_grad(KEYS[func], *args)
    more = f" — {hint}" if hint else ""
    if not math.isclose(got, want, rel_tol=rel, abs_tol=1e-9):
        raise AssertionError(f"{what} returned {got:.6g}, expected {want:.6g}{more}")
    if not torch.allclose(got_grad.double(), want_grad.double(), rtol=rel, atol=1e-7):
        raise AssertionError(f"{what}: the gradient on the student's scores is {show(got_grad)}, expected "
                             f"{show(want_grad)}{more}")


@check(1)
def check_logit_mse(sub):
    """logit MSE on random logits (float64): the mean, not the sum, of the squared differences."""
    g = torch.Generator().manual_seed(3)
    scores, teacher = torch.randn(9, generator=g, dtype=torch.float64), 4 * torch.randn(9, generator=g, dtype=torch.float64)
    expect_same(sub, "logit_mse", scores, teacher, hint="the mean over the batch of (s_i - t_i)^2")


@check(2)
def check_triples_direction(sub):
    """Triples where the teacher is sure the positive is better: both margins are positive minus negative."""
    g = torch.Generator().manual_seed(5)
    student = torch.randn(6, 2, generator=g, dtype=torch.float64)
    negatives = torch.randn(6, generator=g, dtype=torch.float64)
    teacher = torch.stack([negatives + 3 + torch.rand(6, generator=g, dtype=torch.float64), negatives], dim=1)
    expect_same(sub, "margin_mse_triples", student, teacher,
                hint="the student's margin s_pos - s_neg must match the teacher's t_pos - t_neg, in the same "
                     "direction: a margin taken the other way round rewards the student for ranking the negative first")


@check(2)
def check_pairs_within_a_query(sub):
    """Per-query lists with the rows of three queries interleaved: pairs only within a query."""
    g = torch.Generator().manual_seed(7)
    query_ids = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    scores, teacher = torch.randn(10, generator=g, dtype=torch.float64), 3 * torch.randn(10, generator=g)
    expect_same(sub, "margin_mse", scores, teacher, query_ids,
                hint="only documents of the same query make a pair (3 queries: 6 + 3 + 3 = 12 pairs); the scores "
                     "of two queries are not comparable, the teacher's margin between them means nothing")


@check(1)
def check_mean_over_pairs(sub):
    """Queries of 2, 3 and 5 documents: the mean over all 14 pairs (not the sum, not a mean of per-query means)."""
    g = torch.Generator().manual_seed(9)
    query_ids = torch.tensor([4, 4, 8, 8, 8, 1, 1, 1, 1, 1])
    scores, teacher = torch.randn(10, generator=g, dtype=torch.float64), 2 * torch.randn(10, generator=g)
    expect_same(sub, "margin_mse", scores, teacher, query_ids,
                hint="the loss is the mean over the 1 + 3 + 10 = 14 pairs of the batch: not their sum, not the "
                     "mean of per-query means, not divided by the batch size 10")


@check(1)
def check_no_pair(sub):
    """A batch where each query has one document gives a zero loss that backward() accepts."""
    scores, teacher, query_ids = torch.tensor([0.5, -0.5, 2.0]), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 2])
    what = call_text("margin_mse", scores, teacher, query_ids)
    try:
        got, grad = loss_value_and_grad(sub, "margin_mse", scores, teacher, query_ids, what=what)
    except NotImplementedError:
        raise
    except RuntimeError as e:   # "element 0 of tensors does not require grad ..."
        raise AssertionError(f"{what}: backward() failed ({e}) — each query has one document, so there is no pair; "
                             "return scores.sum() * 0, a zero that is still on the graph") from None
    if got != 0.0:
        raise AssertionError(f"{what} returned {got!r}, expected 0 — each query has one document, so there is no pair "
                             "(a mean over no pair is nan: check for that case first)")
    if (grad != 0).any():
        raise AssertionError(f"{what}: the gradient is {show(grad)}, expected zeros")


@check(1)
def check_random_against_course(sub):
    """20 random batches of per-query lists and 10 of triples: float32 and float64, against the course."""
    g = torch.Generator().manual_seed(11)
    for case in range(20):
        n = 3 + case
        dtype = torch.float32 if case % 2 else torch.float64
        scores, teacher = torch.randn(n, generator=g).to(dtype), (4 * torch.randn(n, generator=g)).to(dtype)
        query_ids = torch.randint(0, 1 + n // 3, (n,), generator=g)
        expect_same(sub, "margin_mse", scores, teacher, query_ids, rel=1e-5)
        if case < 10:
            expect_same(sub, "margin_mse_triples", torch.randn(n, 2, generator=g).to(dtype),
                        (3 * torch.randn(n, 2, generator=g)).to(dtype), rel=1e-5)
