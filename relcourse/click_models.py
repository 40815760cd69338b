"""The position-based click model (PBM), fitted by expectation–maximisation.

PBM says a result is clicked when it is examined AND found attractive, independently:
    P(click | query q, doc d, rank k) = theta_k * gamma_qd
theta_k is the chance that rank k is looked at (position bias), gamma_qd how attractive d is
for q. One cannot tell the two apart from a single ranking; they become identifiable because the
ranker shows the same (q, d) at different ranks across searches. EM alternates:
- E: for a non-click, how likely was it "examined but not attractive" vs "not examined";
- M: theta_k and gamma_qd are the averages of those posteriors.
Reference: Chuklin, Markov, de Rijke, "Click Models for Web Search" (2015), §4.

>>> rng = np.random.default_rng(0)
>>> n = 200_000
>>> pair = rng.integers(0, 50, n); rank = rng.integers(1, 6, n)
>>> theta_true = 1.0 / np.arange(1, 6) ** 0.8; gamma_true = rng.uniform(0.1, 0.9, 50)
>>> click = rng.random(n) < theta_true[rank - 1] * gamma_true[pair]
>>> theta, gamma = fit_pbm(pair, rank, click)
>>> round(position_bias_exponent(theta), 1)
0.8
"""
from __future__ import annotations

import numpy as np


def fit_pbm(pair: np.ndarray, rank: np.ndarray, click: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(theta per rank 1..K, gamma per pair index). `pair` is an integer id per (q, d), `rank` 1-based."""
    pair = np.asarray(pair)
    k = np.asarray(rank) - 1
    c = np.asarray(click, dtype=np.float64)
    n_ranks, n_pairs = k.max() + 1, pair.max() + 1
    shown_at = np.bincount(k, minlength=n_ranks)
    shown = np.bincount(pair, minlength=n_pairs)
    theta, gamma = np.full(n_ranks, 0.5), np.full(n_pairs, 0.5)
    for _ in range(iterations):
        t, g = theta[k], gamma[pair]
        no_click = 1.0 - t * g
        examined = c + (1 - c) * t * (1 - g) / no_click      # P(examined | observation)
        attractive = c + (1 - c) * (1 - t) * g / no_click    # P(attractive | observation)
        theta = np.bincount(k, examined, n_ranks) / shown_at
        gamma = np.bincount(pair, attractive, n_pairs) / np.maximum(shown, 1)
    return theta, gamma


def position_bias_exponent(theta: np.ndarray) -> float:
    """eta of theta_k / theta_1 = (1/k)^eta, by least squares on the log-log curve."""
    ranks = np.arange(1, len(theta) + 1)
    y = np.log(theta / theta[0])
    x = -np.log(ranks)
    return float((x @ y) / (x @ x))
