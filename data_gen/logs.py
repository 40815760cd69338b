"""The search logs: who searched what, what the production ranker showed, and what users did.

Every step is vectorised over a shard of searches (numpy), with its own random stream, so a
shard costs the same at any scale and memory is bounded by the shard size.

The behaviour model, in the order it happens:
1. A query is drawn by popularity, Zipf-like: P(query of popularity rank r) ∝ 1 / r^s.
2. An older, weaker production ranker scores the query's candidates: a relevance guess that
   leans on word overlap (it is fooled by stuffing and blind to aliases), plus page quality and
   freshness, plus noise per search; the top results are shown. Its relevance guess is logged.
3. The user examines rank r with probability (1/r)^eta (position bias).
4. An examined result is clicked with a probability that rises with relevance, with how
   attractive its title is (click-bait) and with page quality, shifted by how click-happy this
   search is (many searches end with no click at all).
5. After a click: dwell time ~ Weibull(shape 0.7) with a scale rising with relevance and
   quality (>= 30 s is a long click), and likes / collects / comments / shares.
6. Freshness queries shown stale pages get re-sorted by newest; searches without a long click
   tend to be reformulated.
Relevance here is the rubric v2 tier: what users need, which the current rubric describes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rng import rng_for

LONG_CLICK_S = 30.0
STALE_DAYS = 365


@dataclass(frozen=True)
class Pools:
    """Per-query candidate pools as (n_queries, docs_per_query) arrays, plus query-level facts."""
    tier: np.ndarray            # int8, hidden truth (rubric v2)
    overlap: np.ndarray         # share of query words in the document
    quality: np.ndarray
    attractiveness: np.ndarray
    age_days: np.ndarray
    freshness_intent: np.ndarray  # (n_queries,) bool
    popularity: np.ndarray        # (n_queries,) probability of being searched


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def zipf_popularity(n_queries: int, exponent: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(probability per query, popularity rank per query, 0 = most searched). Ranks are a random
    permutation, so every kind of query is spread over head, torso and tail."""
    rank = rng_for(seed, "popularity").permutation(n_queries)
    p = 1.0 / (rank + 1.0) ** exponent
    return p / p.sum(), rank


def frequency_bucket(rank: np.ndarray, n_queries: int) -> np.ndarray:
    """10 buckets of equal numbers of distinct queries by popularity: 0–2 head, 3–6 torso, 7–9 tail."""
    return (10 * rank // n_queries).astype(np.int8)


def bucket_name(bucket: np.ndarray) -> np.ndarray:
    return np.where(bucket <= 2, "head", np.where(bucket <= 6, "torso", "tail"))


def ranker_relevance(pools: Pools, seed: int) -> np.ndarray:
    """The old production model's relevance guess per (query, doc): half the truth, half word
    overlap, plus a fixed error. Logged with every impression."""
    noise = rng_for(seed, "ranker").normal(0.0, 0.12, pools.tier.shape)
    return (0.1 + 0.45 * pools.tier / 3 + 0.45 * pools.overlap + noise).astype(np.float32)


def simulate_shard(pools: Pools, ranker: np.ndarray, n_searches: int, first_search_id: int, results: int,
                   eta: float, seed: int, shard: int) -> dict[str, np.ndarray]:
    """Columns of the impressions of `n_searches` searches (one row per shown result)."""
    rng = rng_for(seed, "logs", shard)
    n_q, n_docs = pools.tier.shape
    qid = np.searchsorted(np.cumsum(pools.popularity), rng.random(n_searches) * pools.popularity.sum())
    qid = np.minimum(qid, n_q - 1)

    score = (ranker[qid] + 0.25 * pools.quality[qid] + 0.15 * (1 - pools.age_days[qid] / 1500.0)
             + rng.normal(0.0, 0.08, (n_searches, n_docs)))
    shown = np.argsort(-score, axis=1)[:, :results]                  # (S, K) local doc index
    tier = pools.tier[qid[:, None], shown].astype(np.float64)
    quality = pools.quality[qid[:, None], shown]
    attract = pools.attractiveness[qid[:, None], shown]
    position = np.broadcast_to(np.arange(1, results + 1), (n_searches, results))

    examined = rng.random((n_searches, results)) < (1.0 / position) ** eta
    click_happiness = rng.normal(0.0, 1.7, (n_searches, 1))
    p_click = _sigmoid(-4.1 + 0.9 * tier + 2.5 * (attract - 0.3) + 1.0 * (quality - 0.5) + click_happiness)
    click = examined & (rng.random((n_searches, results)) < p_click)

    dwell_scale = 12.0 * np.exp(0.6 * tier + 1.0 * (quality - 0.5))
    dwell = np.where(click, dwell_scale * rng.weibull(0.7, (n_searches, results)), 0.0)
    acts = {}
    for name, base in (("like", -5.0), ("collect", -5.6), ("comment", -6.2), ("share", -6.6)):
        p = _sigmoid(base + 0.7 * tier + 1.5 * quality)
        acts[name] = click & (rng.random((n_searches, results)) < p)

    stale_top = pools.age_days[qid[:, None], shown[:, :3]].mean(axis=1) > STALE_DAYS
    p_resort = np.where(pools.freshness_intent[qid], np.where(stale_top, 0.35, 0.05), 0.01)
    resorted = rng.random(n_searches) < p_resort
    satisfied = (dwell >= LONG_CLICK_S).any(axis=1)
    reformulated = rng.random(n_searches) < np.where(satisfied, 0.05, 0.4)

    per_search = lambda a: np.repeat(a, results)  # noqa: E731 - search-level flags on every row
    return {
        "search_id": per_search(first_search_id + np.arange(n_searches, dtype=np.int64)),
        "query_id": per_search(qid.astype(np.int32)),
        "doc_id": (qid[:, None].astype(np.int64) * n_docs + shown).ravel(),
        "position": position.astype(np.int8).ravel(),
        "ranker_score": ranker[qid[:, None], shown].ravel(),
        "click": click.ravel(),
        "dwell_s": dwell.astype(np.float32).ravel(),
        **{k: v.ravel() for k, v in acts.items()},
        "resorted_by_newest": per_search(resorted),
        "reformulated": per_search(reformulated),
    }
