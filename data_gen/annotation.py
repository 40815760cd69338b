"""Human annotation: a pool of annotators of uneven skill, labelling designs of different cost,
and the strategies that decide which (query, document) pairs get labelled at all.

An annotator with accuracy a gives the true tier with probability a; otherwise a neighbouring
tier most of the time (a judgement call), sometimes any other tier (a slip). Careless annotators
answer almost at random. Designs, each with its cost per item:
- single:      one label (cost 1);
- double:      two labels; a senior annotator arbitrates when they differ by two tiers or
               across the relevant / not-relevant line (cost 2, + 1.5 per arbitration);
- double+gold: as double, but gold questions with known answers (a `gold_share` of each
               annotator's work) find the unreliable annotators, whose work is given to others.
At a fixed budget, better designs label fewer pairs: that is the trade-off to study.

Anchoring. Teams often speed labelling up by showing the annotator the model's own guess, a
pre-filled tier. Annotators lean on it: with `anchoring` a, each judgement (the senior's too)
that differs from the `suggested` tier moves one tier toward it with probability a, drawn from
its own random stream, so a = 0 gives exactly the labels of no suggestion. A model's errors
then come back as its own training labels (claim T4's annotators, relcourse.feedback_loop).

>>> tiers = np.array([3, 2, 1, 0] * 250)
>>> pool = make_pool(20, careless_share=0.1, seed=0)
>>> single = annotate(tiers, "single", pool, seed=0)
>>> double = annotate(tiers, "double+gold", pool, seed=0)
>>> bool((double.label == tiers).mean() > (single.label == tiers).mean())
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .rng import rng_for

DESIGNS = ("single", "double", "double+gold")
STRATEGIES = ("head_only", "extremes", "stratified", "shown_first")   # new ones go last: the index seeds the draw
LABEL_COST, ARBITRATION_COST = 1.0, 1.5
SENIOR_ACCURACY = 0.95
GOLD_PASS = 0.55  # annotators below this accuracy on gold questions are taken off the job


@dataclass(frozen=True)
class AnnotatorPool:
    accuracy: np.ndarray   # (n,) probability of giving the true tier
    careless: np.ndarray   # (n,) bool


def make_pool(n: int, careless_share: float, seed: int) -> AnnotatorPool:
    rng = rng_for(seed, "annotators")
    careless = rng.random(n) < careless_share
    accuracy = np.where(careless, rng.uniform(0.25, 0.4, n), rng.uniform(0.6, 0.9, n))
    return AnnotatorPool(accuracy, careless)


def _judge(true_tier: np.ndarray, accuracy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per item from annotators of the given accuracies."""
    n = len(true_tier)
    wrong = rng.random(n) >= accuracy
    step = np.where(rng.random(n) < 0.5, -1, 1)
    neighbour = np.where((true_tier + step < 0) | (true_tier + step > 3), true_tier - step, true_tier + step)
    anything_else = (true_tier + rng.integers(1, 4, n)) % 4
    mistake = np.where(rng.random(n) < 0.8, neighbour, anything_else)
    return np.where(wrong, mistake, true_tier).astype(np.int8)


def _needs_arbitration(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.abs(a.astype(int) - b) >= 2) | ((a >= 2) != (b >= 2))


def _anchored(labels: np.ndarray, suggested: np.ndarray, anchoring: float, rng: np.random.Generator) -> np.ndarray:
    """Each label one tier toward its item's suggested tier with probability `anchoring`."""
    moved = rng.random(len(labels)) < anchoring
    return (labels + np.where(moved, np.sign(suggested - labels), 0)).astype(np.int8)


def annotate(true_tier: np.ndarray, design: str, pool: AnnotatorPool, seed: int,
             budget: float | None = None, gold_share: float = 0.1,
             suggested: np.ndarray | None = None, anchoring: float = 0.0) -> pd.DataFrame:
    """Labels for items in priority order; with a `budget`, only the prefix it pays for.
    Columns: label, label_a, label_b (-1 if single), annotator_a, annotator_b, arbitrated, cost.
    With `anchoring` > 0, every judgement leans toward the `suggested` tier (the module's "Anchoring").

    >>> tiers, model_says = np.full(2_000, 1), np.full(2_000, 3)
    >>> pool = make_pool(20, careless_share=0.0, seed=0)
    >>> plain = annotate(tiers, "single", pool, seed=0)
    >>> pulled = annotate(tiers, "single", pool, seed=0, suggested=model_says, anchoring=0.3)
    >>> round(float(pulled.label.mean() - plain.label.mean()), 1)       # ~ 0.3 tiers up
    0.3
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown labelling design {design!r}; choose one of {DESIGNS}")
    true_tier = np.asarray(true_tier)
    if true_tier.size and (true_tier.min() < 0 or true_tier.max() > 3):
        raise ValueError("true tiers must lie in 0..3")
    if not 0.0 <= anchoring <= 1.0:
        raise ValueError(f"anchoring={anchoring!r} must lie in [0, 1]: the share of judgements pulled toward "
                         "the suggested tier")
    n = len(true_tier)
    if anchoring:
        suggested = None if suggested is None else np.asarray(suggested)
        if suggested is None or suggested.shape != (n,) or not np.isin(suggested, (0, 1, 2, 3)).all():
            raise ValueError(f"anchoring needs `suggested`: one tier in 0..3 per item ({n} items), the guess "
                             "the annotators are shown")
    rng = rng_for(seed, "annotate", DESIGNS.index(design))
    # Anchoring draws from its own stream: with anchoring 0 every other draw is what it always was.
    anchor_rng = rng_for(seed, "anchoring", DESIGNS.index(design))

    def judge(accuracy: np.ndarray) -> np.ndarray:
        labels = _judge(true_tier, accuracy, rng)
        return _anchored(labels, suggested, anchoring, anchor_rng) if anchoring else labels

    trusted = np.arange(len(pool.accuracy))
    overhead = 1.0
    if design == "double+gold":
        # Each annotator answers gold questions first; their score decides who keeps working.
        n_gold = max(10, int(gold_share * 2 * n / len(pool.accuracy)))
        gold_score = rng.binomial(n_gold, pool.accuracy) / n_gold
        trusted = np.flatnonzero(gold_score >= GOLD_PASS)
        if trusted.size < 2:
            trusted = np.argsort(-gold_score)[:2]
        overhead = 1.0 / (1.0 - gold_share)   # gold questions are paid work too
    who_a = rng.choice(trusted, n)
    label_a = judge(pool.accuracy[who_a])
    if design == "single":
        label, label_b, who_b = label_a, np.full(n, -1, np.int8), np.full(n, -1)
        arbitrated = np.zeros(n, bool)
        cost = np.full(n, LABEL_COST)
    else:
        # The second annotator is never the first one.
        who_b = np.where(who_a == trusted[0], trusted[-1], trusted[0]) if trusted.size == 2 else who_a
        while trusted.size > 2 and (clash := who_b == who_a).any():
            who_b = np.where(clash, rng.choice(trusted, n), who_b)
        label_b = judge(pool.accuracy[who_b])
        arbitrated = _needs_arbitration(label_a, label_b)
        senior = judge(np.full(n, SENIOR_ACCURACY))
        # Without arbitration, two labels one tier apart: take the one nearer the middle line,
        # a cautious, common house rule; equal labels need no rule.
        agreed = np.where(label_a == label_b, label_a, np.where(np.abs(label_a - 1.5) < np.abs(label_b - 1.5),
                                                              label_a, label_b))
        label = np.where(arbitrated, senior, agreed).astype(np.int8)
        cost = (2 * LABEL_COST + ARBITRATION_COST * arbitrated) * overhead
    out = pd.DataFrame({"label": label, "label_a": label_a, "label_b": label_b, "annotator_a": who_a,
                        "annotator_b": who_b, "arbitrated": arbitrated, "cost": cost})
    if budget is not None:
        out = out[np.cumsum(cost) <= budget]
    return out


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement beyond chance between two label vectors (unweighted Cohen's kappa)."""
    a, b = np.asarray(a), np.asarray(b)
    observed = (a == b).mean()
    expected = sum((a == k).mean() * (b == k).mean() for k in range(4))
    return float((observed - expected) / (1 - expected))


def sample_pairs(pairs: pd.DataFrame, n: int, strategy: str, seed: int, middle_share: float = 0.4) -> pd.DataFrame:
    """Up to n rows of `pairs` (columns query_id, doc_id, bucket, ranker_score) to label, in
    priority order, chosen by one of STRATEGIES:
    - head_only: head queries, the documents the ranker ranks highest (what users see most);
    - extremes:  the highest and lowest logged ranker scores (easy calls);
    - stratified: equal shares of head / torso / tail queries and of five score bands, with
      `middle_share` of the budget in the middle band, where the hard calls are;
    - shown_first: every query's top-ranked document, then every query's second, and so on (what
      users see first): the labels a team gets when it labels what its ranker shows, so the
      ranker decides what is ever labelled (claim T4's 'shown_top' labels)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sampling strategy {strategy!r}; choose one of {STRATEGIES}")
    missing = {"query_id", "doc_id", "bucket", "ranker_score"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lack the columns {sorted(missing)}")
    rng = rng_for(seed, "sample", STRATEGIES.index(strategy))
    shuffled = pairs.iloc[rng.permutation(len(pairs))]
    if strategy == "shown_first":
        rank = shuffled.groupby("query_id").ranker_score.rank(method="first", ascending=False)
        return shuffled.iloc[np.argsort(rank.to_numpy(), kind="stable")].head(n)
    if strategy == "head_only":
        head = shuffled[shuffled.bucket == "head"]
        return head.sort_values("ranker_score", ascending=False, kind="stable").head(n)
    if strategy == "extremes":
        order = shuffled.ranker_score.rank(method="first")
        extreme = shuffled[(order <= 0.2 * len(shuffled)) | (order > 0.8 * len(shuffled))]
        return extreme.head(n)
    band = pd.qcut(shuffled.ranker_score.rank(method="first"), 5, labels=False)
    band_weight = np.where(band == 2, middle_share, (1 - middle_share) / 4)
    bucket_count = shuffled.groupby("bucket").bucket.transform("size")
    band_count = band.map(band.value_counts())
    # Inverse-frequency weights give each (bucket, band) cell its intended share of the draw.
    w = band_weight / band_count.values / bucket_count.values
    take = min(n, len(shuffled))
    idx = rng.choice(len(shuffled), size=take, replace=False, p=w / w.sum())
    return shuffled.iloc[idx]
