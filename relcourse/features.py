"""Behaviour features x(q, d): what the logs say about each shown (query, document) pair.

The GBDT teacher (relcourse.teacher) turns these into pseudo-labels. Behaviour is confounded
(data_gen/README.md §6): a document shown at rank 1 gets clicks because it is at rank 1, a click-bait
title gets clicks without satisfying, and a tail pair seen twice has a CTR of 0 or 0.5 by luck.
So besides raw rates the teacher gets position-aware rates, post-click satisfaction (long
clicks, dwell, likes ...), and the counts that say how far to trust each rate.

Aggregation streams: `count_shard` reduces one shard of impressions to sums per pair (a
groupby done with numpy bincounts), `Counts` add up across shards, and only
`features_from_counts` turns the totals into rates (a rate of sums, not a mean of rates). Memory is bounded by one shard plus one row per pair, at any log size.
A pair that was never shown has no row: the logs know nothing about it, and a row of priors
would look like evidence.

Smoothing. A rate k / n over few observations is noise, so every rate is the posterior mean
under a Beta prior centred on the log-wide rate p0 with the weight of m pseudo-observations,

    (k + m * p0) / (n + m)

m = IMPRESSION_PRIOR pseudo-impressions for rates per impression (CTR, re-sort, reformulation),
m = CLICK_PRIOR pseudo-clicks for rates per click (long clicks, likes ...; the mean log dwell is
smoothed the same way towards the log-wide mean). An unseen pair would get p0, a pair with
n >> m its raw rate.

Position-aware CTR, COEC (clicks over expected clicks; Zhang & Jones 2007, Chapelle et al.
2009): the click prior of rank k, c_k = clicks at k / impressions at k, is estimated from the
logs themselves; a pair's expected clicks are the sum of c_k over its impressions, and

    coec = (clicks + COEC_PRIOR) / (expected_clicks + COEC_PRIOR)

is > 1 for a pair clicked more than an average result at the same ranks (shrunk towards 1).

>>> rows = {"search_id": [0, 0, 1, 1], "query_id": [7, 7, 7, 7], "doc_id": [70, 71, 71, 70],
...         "position": [1, 2, 1, 2], "ranker_score": [0.9, 0.5, 0.5, 0.9],
...         "click": [True, False, False, True], "dwell_s": [40.0, 0.0, 0.0, 60.0]}
>>> imp = pd.DataFrame(rows | {c: False for c in ("like", "collect", "comment", "share",
...                                                "resorted_by_newest", "reformulated")})
>>> x = features_from_counts(count_shard(imp), pd.DataFrame({"query_id": [7], "bucket": [0]}))
>>> x.loc[70, ["impressions", "clicks", "mean_position", "query_searches"]].tolist()
[2.0, 2.0, 1.5, 2.0]
>>> round(float(x.loc[70, "ctr"]), 4)      # (2 + 20 * 1/2) / (2 + 20): 2 clicks in 4 impressions overall
0.5455
>>> round(float(x.loc[70, "coec"]), 4)     # rank 1 and 2 both have CTR 1/2 here: expected 1 click
1.3333
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import data_gen
import data_gen.io

FEATURE_SCHEMA_VERSION = 1  # bump when a feature is added, removed or changes meaning
FEATURES = (
    # how much evidence there is (the teacher learns how far to trust each rate)
    "impressions", "clicks", "expected_clicks",
    # attraction: raw, and corrected for the ranks the pair was shown at
    "ctr", "coec", "mean_position",
    # satisfaction after the click
    "long_click_rate", "mean_log_dwell", "like_rate", "collect_rate", "comment_rate", "share_rate",
    # dissatisfaction of the searches that showed the pair
    "resort_rate", "reformulation_rate",
    # what the production ranker thought, and how often it shows the pair when the query comes
    "ranker_score_mean", "display_rate",
    # the query: how often it is searched, how click-happy its users are, its frequency bucket
    "query_searches", "query_clicks_per_search", "bucket",
)
IMPRESSION_PRIOR = 20.0   # pseudo-impressions of the Beta prior of per-impression rates
CLICK_PRIOR = 5.0         # pseudo-clicks of the prior of per-click rates and the mean log dwell
COEC_PRIOR = 2.0          # pseudo expected clicks of the prior of COEC (prior mean 1)
LONG_CLICK_S = 30.0       # a click with dwell >= 30 s satisfied the user (data_gen/README.md §3)
INTERACTIONS = ("like", "collect", "comment", "share")
IMPRESSION_COLUMNS = ("search_id", "query_id", "doc_id", "position", "ranker_score", "click", "dwell_s",
                      *INTERACTIONS, "resorted_by_newest", "reformulated")


@dataclass(frozen=True)
class Counts:
    """Sums over impressions that add across shards; `features_from_counts` makes rates of them.

    pairs:     indexed by (query_id, doc_id): impressions, clicks, sums of position, long clicks,
               log dwell, interactions, search flags, ranker score, and `at_k` = impressions at rank k
    positions: indexed by rank: impressions and clicks (the click prior of each rank)
    searches:  indexed by query_id: number of searches
    """
    pairs: pd.DataFrame
    positions: pd.DataFrame
    searches: pd.Series

    def __add__(self, other: Counts) -> Counts:
        # fill_value=0: a pair (or rank) missing from one shard was simply not shown there.
        return Counts(self.pairs.add(other.pairs, fill_value=0),
                      self.positions.add(other.positions, fill_value=0),
                      self.searches.add(other.searches, fill_value=0))


def count_shard(impressions: pd.DataFrame) -> Counts:
    """Reduce impressions (any number of whole searches) to per-pair, per-rank and per-query sums."""
    missing = [c for c in IMPRESSION_COLUMNS if c not in impressions.columns]
    if missing:
        raise ValueError(f"impressions lack columns {missing}; read them with "
                         f"data_gen.iter_shards(data_dir, 'impressions', columns=list(IMPRESSION_COLUMNS))")
    if not len(impressions):
        raise ValueError("no impressions to count: the shard is empty")
    position = impressions["position"].to_numpy()
    if position.min() < 1:
        raise ValueError(f"positions must be ranks 1, 2, ...; found {position.min()}")
    # A groupby in numpy: number the pairs, then one bincount per column sums each pair's rows.
    # Leaner than a pandas groupby, which would copy all columns into one frame first.
    query = impressions["query_id"].to_numpy()
    pair, doc_ids = pd.factorize(impressions["doc_id"].to_numpy())
    n = len(doc_ids)
    pair_query = np.empty(n, dtype=query.dtype)
    pair_query[pair] = query
    if (pair_query[pair] != query).any():
        raise ValueError("a doc_id appears under two query ids; a document belongs to one query, "
                         "so pairs are identified by doc_id: give each (query, document) pair its own doc_id")
    click = impressions["click"].to_numpy(bool)
    dwell = impressions["dwell_s"].to_numpy(np.float64)

    def per_pair(values):
        return np.bincount(pair, weights=values, minlength=n)

    ranks = int(position.max())
    at = np.bincount(pair * ranks + position - 1, minlength=n * ranks).reshape(n, ranks)
    sums = {
        "impressions": np.bincount(pair, minlength=n), "clicks": per_pair(click), "position_sum": per_pair(position),
        "long_clicks": per_pair(click & (dwell >= LONG_CLICK_S)),
        "log_dwell_sum": per_pair(np.where(click, np.log1p(dwell), 0.0)),
        **{c: per_pair(impressions[c].to_numpy(bool)) for c in (*INTERACTIONS, "resorted_by_newest", "reformulated")},
        "ranker_score_sum": per_pair(impressions["ranker_score"].to_numpy(np.float64)),
        **{f"at_{k}": at[:, k - 1] for k in range(1, ranks + 1)},
    }
    index = pd.MultiIndex.from_arrays([pair_query, doc_ids], names=["query_id", "doc_id"])
    pairs = pd.DataFrame(sums, index=index, dtype=np.float64)
    positions = pd.DataFrame({"impressions": np.bincount(position), "clicks": np.bincount(position, weights=click)},
                             dtype=np.float64).iloc[1:]  # ranks start at 1
    first_row_of_search = ~impressions["search_id"].duplicated().to_numpy()
    searches = pd.Series(query[first_row_of_search]).value_counts().astype(np.float64)
    return Counts(pairs, positions, searches)


def _smooth(k, n, p0: float, m: float):
    """Posterior mean of a rate k / n under a prior of mean p0 worth m observations."""
    return (k + m * p0) / (n + m)


def features_from_counts(counts: Counts, queries: pd.DataFrame) -> pd.DataFrame:
    """The FEATURES of every shown pair, indexed by doc_id, with its query_id; `queries` gives
    each query's frequency bucket (columns query_id, bucket)."""
    p = counts.pairs.fillna(0)  # at_k columns of ranks a shard never reached
    imp, clicks = p["impressions"], p["clicks"]
    total = p.sum()
    click_prior = counts.positions["clicks"] / counts.positions["impressions"]
    ranks = [c for c in p.columns if c.startswith("at_")]
    expected = p[ranks].to_numpy() @ click_prior.reindex([int(c[3:]) for c in ranks]).fillna(0).to_numpy()

    def per_impression(k):
        return _smooth(p[k], imp, total[k] / total["impressions"], IMPRESSION_PRIOR)

    def per_click(k):
        return _smooth(p[k], clicks, total[k] / max(total["clicks"], 1), CLICK_PRIOR)

    query_id = p.index.get_level_values("query_id")
    query_clicks = clicks.groupby(level="query_id").sum()
    searches = counts.searches.reindex(query_id).to_numpy()
    bucket = queries.set_index("query_id")["bucket"].reindex(query_id)
    if bucket.isna().any():
        raise ValueError(f"queries has no bucket for query ids {sorted(set(query_id[bucket.isna().to_numpy()]))[:5]}; "
                         "pass the queries table of the same data directory as the impressions")
    x = pd.DataFrame({
        "query_id": query_id,
        "impressions": imp, "clicks": clicks, "expected_clicks": expected,
        "ctr": per_impression("clicks"),
        "coec": (clicks + COEC_PRIOR) / (expected + COEC_PRIOR),
        "mean_position": p["position_sum"] / imp,
        "long_click_rate": per_click("long_clicks"),
        "mean_log_dwell": per_click("log_dwell_sum"),
        **{f"{c}_rate": per_click(c) for c in INTERACTIONS},
        "resort_rate": per_impression("resorted_by_newest"),
        "reformulation_rate": per_impression("reformulated"),
        "ranker_score_mean": p["ranker_score_sum"] / imp,
        "display_rate": imp.to_numpy() / searches,
        "query_searches": searches,
        "query_clicks_per_search": query_clicks.reindex(query_id).to_numpy() / searches,
        "bucket": bucket.to_numpy(np.float64),
    }).reset_index(level="query_id", drop=True)
    x["query_id"] = x["query_id"].astype(np.int64)
    x.index = x.index.astype(np.int64)
    x = x.sort_index()
    x.attrs["feature_schema_version"] = FEATURE_SCHEMA_VERSION
    return x


def behaviour_features(data_dir: str | Path, workers: int = 1) -> pd.DataFrame:
    """FEATURES of every (query, document) pair in the logs of `data_dir`, indexed by doc_id,
    with columns query_id and FEATURES; pairs never shown have no row. Each impression shard is
    read and counted (count_shard) on its own, in `workers` processes; this process adds the
    counts in shard order, so the features are the same for any number of workers."""
    tasks = [(data_dir, entry) for entry in data_gen.io.shard_entries(data_dir, "impressions")]
    counts = functools.reduce(Counts.__add__, data_gen.io.process_map(_count_shard_file, tasks, workers))
    return features_from_counts(counts, data_gen.read_table(data_dir, "queries", columns=["query_id", "bucket"]))


def _count_shard_file(task: tuple) -> Counts:
    """count_shard of one impression shard, given as (data_dir, its manifest entry): a worker's task."""
    data_dir, entry = task
    return count_shard(data_gen.io.read_shard(data_dir, entry, columns=list(IMPRESSION_COLUMNS)))


def features_of_logs(shards, queries: pd.DataFrame) -> pd.DataFrame:
    """FEATURES of impressions given shard by shard, as DataFrames (a world's logs) or dicts of
    columns (data_gen.resimulate_logs); `queries` holds query_id and bucket. Each shard is
    reduced to per-pair sums before the next is read, so memory is bounded by the shard size."""
    counts = functools.reduce(Counts.__add__, (count_shard(pd.DataFrame(shard)) for shard in shards))
    return features_from_counts(counts, queries)


# --- which pairs to pseudo-label (claim T5) -------------------------------------------------

STRATEGIES = ("covering", "naive")
SCORE_BANDS = 4  # quantile bands of the logged ranker score that 'covering' spreads over
BUCKET_NAMES = ("head", "torso", "tail")


def _fill(sizes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split n as evenly as possible over cells of the given sizes, no cell above its size.

    Cells are filled smallest first, each with an equal share of what is left, so a cell too
    small for its share leaves the rest to the larger ones; ties in size go in random order,
    so the rounding remainder of n / cells lands on random cells, not always the same ones.
    """
    take = np.zeros(len(sizes), dtype=np.int64)
    left = n
    for i, cell in enumerate(np.lexsort((rng.random(len(sizes)), sizes))):
        take[cell] = min(sizes[cell], left // (len(sizes) - i))
        left -= take[cell]
    return take


def select_pairs(features: pd.DataFrame, queries: pd.DataFrame, n: int, strategy: str = "covering",
                 seed: int = 0) -> pd.DataFrame:
    """n rows of `features` to pseudo-label, chosen by `strategy`:

    - 'naive': what the logs give most often, the n most shown pairs (ties by doc_id; no
      randomness, `seed` is unused). Mostly head queries and the ranker's top results.
    - 'covering': n is spread evenly over the query buckets head / torso / tail, then within
      each bucket evenly over SCORE_BANDS quantile bands of the logged ranker score (a cell
      with too few pairs gives its share to the others), drawn at random within each cell.
      So tail queries and documents the ranker rates low are represented, not only the top.

    `queries` gives each query's bucket_name (columns query_id, bucket_name).

    >>> x = pd.DataFrame({"query_id": [0, 0, 1, 1], "impressions": [9, 8, 1, 1],
    ...                   "ranker_score_mean": [0.9, 0.2, 0.8, 0.1]}, index=[0, 1, 10, 11])
    >>> q = pd.DataFrame({"query_id": [0, 1], "bucket_name": ["head", "tail"]})
    >>> select_pairs(x, q, 2, "naive").index.tolist()
    [0, 1]
    >>> sorted(select_pairs(x, q, 2, "covering").query_id.tolist())
    [0, 1]
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
    if not 1 <= n <= len(features):
        raise ValueError(f"n={n} pairs cannot be selected from {len(features)} pairs with features; "
                         f"ask for 1..{len(features)}")
    if strategy == "naive":
        order = np.lexsort((features.index.to_numpy(), -features["impressions"].to_numpy()))
        return features.iloc[np.sort(order[:n])]
    bucket = features["query_id"].map(queries.set_index("query_id")["bucket_name"])
    if bucket.isna().any():
        raise ValueError("some pairs' queries are not in `queries`; pass the queries table of the same data directory")
    # Bands by rank, not value: ties in the score (one per pair here) still split evenly.
    band = features["ranker_score_mean"].rank(method="first").to_numpy() * SCORE_BANDS // (len(features) + 1)
    code = pd.Categorical(bucket, categories=BUCKET_NAMES).codes.astype(np.int64)
    cell = code * SCORE_BANDS + band.astype(np.int64)
    rng = np.random.default_rng(seed)
    per_bucket = _fill(np.bincount(code, minlength=len(BUCKET_NAMES)), n, rng)
    sizes = np.bincount(cell, minlength=len(BUCKET_NAMES) * SCORE_BANDS).reshape(len(BUCKET_NAMES), SCORE_BANDS)
    take = np.concatenate([_fill(size, m, rng) for size, m in zip(sizes, per_bucket)])
    shuffled = rng.permutation(len(features))
    rank_in_cell = pd.Series(np.arange(len(shuffled))).groupby(cell[shuffled]).cumcount().to_numpy()
    chosen = shuffled[rank_in_cell < take[cell[shuffled]]]
    return features.iloc[np.sort(chosen)]
