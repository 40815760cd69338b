"""Offline metrics of a relevance model: AUC, PNR and NDCG@k, overall and by query frequency.

Labels are the human tiers 3 high, 2 mid, 1 low, 0 none; the model gives every (query, document)
pair one score, higher meaning more relevant. Each metric asks a different question of the scores:

- AUC, "is the score a good absolute estimate?": the probability that a relevant pair
  (tier >= 2) scores above an irrelevant one (tier <= 1), ties counting 1/2, over all pairs of the
  set whatever their query (Mann-Whitney U / (n_pos * n_neg); Hanley & McNeil, 1982).
- PNR, positive-negative ratio (正逆序比), "does the score order each result list?": within each
  query, over pairs of documents with different tiers,

      PNR = #pairs in the right order / #inverted pairs

  Pairs the model ties are dropped. 1 is a random order, inf means no inverted pair. The headline
  pools the pairs of all queries; `pnr_per_query` averages the queries instead
  (Zou et al., "Pre-trained language model based ranking in Baidu search", KDD 2021; note 001).
- NDCG@k, "is the top of the list right?": DCG@k = sum over ranks r = 1..k of
  (2^y_r - 1) / log2(r + 1), divided by the DCG@k of the ideal order, per query, averaged over
  queries (Järvelin & Kekäläinen, 2002; the exponential gain as in Burges et al., 2005).

Inputs are three aligned 1-D arrays (lists work too), one entry per (query, document) pair:
labels (n,) integer tiers 0..3, scores (n,) floats, query_ids (n,) any hashable values.
Outputs are plain floats; `evaluate` puts them all in one table.

>>> labels    = [3, 1, 0, 2, 0]
>>> scores    = [0.9, 0.8, 0.1, 0.3, 0.5]
>>> query_ids = [0, 0, 0, 1, 1]
>>> auc(labels, scores)             # 6 (relevant, irrelevant) pairs, 4 in the right order
0.6666666666666667
>>> pair_counts(labels, scores, query_ids)   # (correct, inverted, tied)
(3, 1, 0)
>>> pnr(labels, scores, query_ids)  # query 0 orders its 3 pairs right, query 1 inverts its one
3.0
>>> round(ndcg(labels, scores, query_ids, k=5), 4)   # mean of 1 and (3 / log2(3)) / 3
0.8155
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

TIERS = (0, 1, 2, 3)
RELEVANT_TIER = 2                      # tiers 3 and 2 are "relevant", 1 and 0 are not
BUCKETS = ("head", "torso", "tail")    # query frequency buckets, most frequent first
NDCG_CUTOFFS = (5, 10)


def _as_arrays(labels, scores, query_ids=None) -> tuple[np.ndarray, ...]:
    """Check the inputs once, here, so every metric fails the same clear way on bad data."""
    arrays = {"labels": np.asarray(labels), "scores": np.asarray(scores, dtype=float)}
    if query_ids is not None:
        arrays["query_ids"] = np.asarray(query_ids)
    for name, a in arrays.items():
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one entry per (query, document) pair), got shape {a.shape}")
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have one entry per (query, document) pair, but the lengths differ: {lengths}")
    if not min(lengths.values()):
        raise ValueError("no (query, document) pairs to evaluate: the inputs are empty")
    y = arrays["labels"]
    bad = np.unique(y[~np.isin(y, TIERS)]) if y.dtype.kind in "biuf" else np.unique(y)
    if len(bad):
        raise ValueError(f"labels must be integer tiers 0..3, found {bad[:5].tolist()}"
                         f"{' ...' if len(bad) > 5 else ''}; map your grades onto 0 (none) .. 3 (high)")
    if np.isnan(arrays["scores"]).any():
        raise ValueError(f"scores contain {int(np.isnan(arrays['scores']).sum())} NaN values; "
                         "a NaN has no rank, so fix the model output (or drop those pairs) first")
    arrays["labels"] = y.astype(int)
    if query_ids is not None:
        # Integer codes 0..n_queries-1, in sorted order of the ids: sorting and bincount want them.
        arrays["query_ids"] = np.unique(arrays["query_ids"], return_inverse=True)[1]
    return tuple(arrays.values())


def _runs(sorted_keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows already sorted by `sorted_keys` into runs of equal keys (queries, or tie groups
    within a query). Returns each row's run number, and the first and last row of its run."""
    starts = np.zeros(len(sorted_keys[0]), dtype=bool)
    starts[0] = True
    for key in sorted_keys:
        starts[1:] |= key[1:] != key[:-1]
    run = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.append(first[1:], len(starts)) - 1
    return run, first[run], last[run]


def _pair_counts_per_query(y, s, q) -> tuple[np.ndarray, ...]:
    """Correct, inverted and tied document pairs of each query, in O(n log n), listing no pair.

    Count each pair once, from its better document: right when the worse document scores below
    it, inverted when above, tied when equal. So sort each query's documents by score and, for
    every document, count the lower-tier documents of its query below, within and above its tie
    group (cumulative tier counts over the sorted rows, read at the ends of the group and query).
    """
    order = np.lexsort((s, q))
    y, s, q = y[order], s[order], q[order]
    query, query_first, query_last = _runs([q])
    _, tie_first, tie_last = _runs([q, s])

    one_hot = (y[:, None] == np.array(TIERS)).astype(np.int64)   # (n, 4)
    upto = np.cumsum(one_hot, axis=0)                             # tier counts over rows 0..i
    before = upto - one_hot                                       # ... over rows 0..i-1
    below = before[tie_first] - before[query_first]
    tied = upto[tie_last] - before[tie_first]
    above = upto[query_last] - upto[tie_last]

    lower_tier = np.array(TIERS)[None, :] < y[:, None]           # (n, 4)
    per_document = [(counts * lower_tier).sum(axis=1) for counts in (below, above, tied)]
    return tuple(np.bincount(query, weights=pairs).astype(np.int64) for pairs in per_document)


def pair_counts(labels, scores, query_ids) -> tuple[int, int, int]:
    """(correct, inverted, tied) totals over the pairs of documents with different tiers within
    each query. Queries with a single tier have no such pair."""
    correct, inverted, tied = _pair_counts_per_query(*_as_arrays(labels, scores, query_ids))
    return int(correct.sum()), int(inverted.sum()), int(tied.sum())


_NO_PAIR = "PNR is undefined: no query has two documents of different tiers that the model scores differently"


def pnr(labels, scores, query_ids) -> float:
    """Pooled positive-negative ratio: all correct pairs / all inverted pairs, over all queries.
    inf when no pair is inverted; ValueError when there is no untied pair at all."""
    correct, inverted, _ = pair_counts(labels, scores, query_ids)
    if correct + inverted == 0:
        raise ValueError(_NO_PAIR)
    return correct / inverted if inverted else float("inf")


def pnr_per_query(labels, scores, query_ids) -> float:
    """Mean over queries of each query's PNR.

    Queries without an untied pair of different tiers are skipped. A query with no inverted pair
    counts as if it had one: its ratio is correct / max(inverted, 1). Without that cap a single
    perfectly ordered query would make the mean inf; with it, the mean stays finite and a perfect
    query with many pairs still weighs more than one with a single pair.
    """
    correct, inverted, _ = _pair_counts_per_query(*_as_arrays(labels, scores, query_ids))
    has_pair = correct + inverted > 0
    if not has_pair.any():
        raise ValueError(_NO_PAIR)
    return float(np.mean(correct[has_pair] / np.maximum(inverted[has_pair], 1)))


def _dcg_per_query(gain, rank_key, q, k) -> np.ndarray:
    """DCG@k of each query with documents ranked by descending `rank_key`.

    Documents with equal keys share their positions: each gets the mean gain of its tie group
    times its own discount, which is the DCG averaged over every order of the ties (what
    sklearn's ndcg_score does), instead of whatever order the sort happened to leave them in.
    """
    order = np.lexsort((-rank_key, q))
    gain, rank_key, q = gain[order], rank_key[order], q[order]
    query, query_first, _ = _runs([q])
    tie_group, _, _ = _runs([q, rank_key])
    rank = np.arange(len(q)) - query_first                       # 0-based position in the query
    discount = np.where(rank < k, 1 / np.log2(rank + 2), 0.0)
    mean_gain = np.bincount(tie_group, weights=gain) / np.bincount(tie_group)
    return np.bincount(query, weights=mean_gain[tie_group] * discount)


def ndcg(labels, scores, query_ids, k: int) -> float:
    """Mean NDCG@k over queries, gain 2^y - 1, discount 1 / log2(rank + 1).

    Ties in score are averaged over their orders, as sklearn.metrics.ndcg_score does by default.
    Queries whose labels are all 0 have an ideal DCG of 0 and no NDCG (every order is as good as
    any other): they are left out of the mean, rather than counted as 0 or 1, so they neither
    punish nor flatter the model. ValueError when every query is such a query.
    """
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k must be a positive integer cutoff such as 5 or 10, got {k!r}")
    y, s, q = _as_arrays(labels, scores, query_ids)
    gain = 2.0 ** y - 1
    dcg = _dcg_per_query(gain, s, q, k)
    ideal = _dcg_per_query(gain, gain, q, k)
    has_relevant = ideal > 0
    if not has_relevant.any():
        raise ValueError("NDCG is undefined: every query has only tier-0 documents")
    return float(np.mean(dcg[has_relevant] / ideal[has_relevant]))


def auc(labels, scores) -> float:
    """ROC AUC of relevant (tier >= 2) vs irrelevant (tier <= 1), over all pairs of the set."""
    y, s = _as_arrays(labels, scores)
    relevant = y >= RELEVANT_TIER
    if relevant.all() or not relevant.any():
        raise ValueError(f"AUC needs both relevant (tier >= 2) and irrelevant (tier <= 1) pairs, "
                         f"but all {len(y)} pairs are {'relevant' if relevant.all() else 'irrelevant'}")
    return float(roc_auc_score(relevant, s))


def _or_nan(metric, *args, **kwargs) -> float:
    """A metric that is undefined on this subset (one class, no pair, no relevant document) is a
    NaN cell in the table, not an error: a small bucket should not sink the whole report."""
    try:
        return metric(*args, **kwargs)
    except ValueError:
        return float("nan")


COLUMNS = ("n_queries", "n_docs", "auc", "pnr", "pnr_query_mean", *(f"ndcg@{k}" for k in NDCG_CUTOFFS))


def evaluate(labels, scores, query_ids, buckets=None) -> pd.DataFrame:
    """All metrics in one table: a row 'all', then, if `buckets` is given, one row per bucket.

    buckets: (n,) the frequency bucket of each pair's query, one of 'head', 'torso', 'tail'.
    The bucket rows always come in that order, all three of them, so tables of different runs
    line up; a bucket with no pair has n_queries = n_docs = 0 and NaN metrics. Any metric that
    is undefined on a subset (e.g. AUC of a bucket with only irrelevant pairs) is NaN there.
    Columns: n_queries, n_docs, auc, pnr, pnr_query_mean, ndcg@5, ndcg@10.
    """
    y, s, q = _as_arrays(labels, scores, query_ids)
    query_ids = np.asarray(query_ids)
    subsets = {"all": np.ones(len(y), dtype=bool)}
    if buckets is not None:
        buckets = np.asarray(buckets)
        if buckets.shape != y.shape:
            raise ValueError(f"buckets must have one entry per pair: {len(buckets)} buckets for {len(y)} pairs")
        unknown = set(np.unique(buckets).tolist()) - set(BUCKETS)
        if unknown:
            raise ValueError(f"unknown buckets {sorted(map(str, unknown))}; use {', '.join(BUCKETS)}")
        per_query = pd.Series(buckets).groupby(query_ids).nunique()
        if (per_query > 1).any():
            raise ValueError(f"a query's bucket is a property of the query, but queries "
                             f"{per_query.index[per_query > 1][:5].tolist()} have pairs in more than one bucket")
        subsets |= {b: buckets == b for b in BUCKETS}

    rows = {}
    for name, rows_in in subsets.items():
        y_, s_, q_ = y[rows_in], s[rows_in], q[rows_in]
        if not rows_in.any():
            rows[name] = {"n_queries": 0, "n_docs": 0}   # the other columns fill with NaN
            continue
        rows[name] = {"n_queries": len(np.unique(q_)), "n_docs": len(y_),
                      "auc": _or_nan(auc, y_, s_),
                      "pnr": _or_nan(pnr, y_, s_, q_),
                      "pnr_query_mean": _or_nan(pnr_per_query, y_, s_, q_),
                      **{f"ndcg@{k}": _or_nan(ndcg, y_, s_, q_, k=k) for k in NDCG_CUTOFFS}}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS)).rename_axis("subset")


def records(table: pd.DataFrame, digits: int | None = None) -> dict:
    """An `evaluate` table as JSON-able {row: {column: value}}, NaN as None, for a manifest."""
    def value(v):
        return None if pd.isna(v) else float(v) if digits is None else round(float(v), digits)
    return {row: {k: value(v) for k, v in values.items()} for row, values in table.to_dict(orient="index").items()}
