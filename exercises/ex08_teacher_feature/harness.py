"""Exercise 8's world: the logs a feature is computed from, and the teacher that judges it.

Used by the grader's checks (in the trusted process) and by learners to measure their own
feature:

    .venv/bin/python -m exercises.ex08_teacher_feature.harness            # your starter.py
    .venv/bin/python -m exercises.ex08_teacher_feature.harness --split test

The command above imports YOUR starter.py into this process: it is a tool for your own code on
your own machine. The grader never does that; it runs student code in a confined process.

The logs are the course's smoke world (relcourse.store.ensure_data(load_profile("smoke"), 0)),
every search of every query, as three tables, the way a search engine's log pipeline writes them:

    searches     one row per search:              search_id, query_id, resorted_by_newest, reformulated
    impressions  one row per result shown:        search_id, doc_id, position (1 = top), click
    clicks       one row per clicked result:      search_id, doc_id, dwell_s, like, collect, comment, share

and `pairs` (query_id, doc_id), every pair shown at least once. The production ranker's score is
left out on purpose: the teacher reads what users did, nothing a model computed.

The baseline teacher is relcourse.teacher.Teacher on the attraction features of
relcourse.features (BASELINE_FEATURES: counts, CTR, COEC, position, display rate, query
statistics). It knows how often a pair was clicked, not whether the click satisfied anyone.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
BASELINE_FEATURES = ("impressions", "clicks", "expected_clicks", "ctr", "coec", "mean_position", "display_rate",
                     "query_searches", "query_clicks_per_search", "bucket")
STUDENT_COLUMN = "student_feature"
SEEDS = tuple(range(10))          # teacher seeds; the AUC is their mean (one seed is noisy)
RENAME_SEED = 20240917            # the id renaming of the leak check
EVAL_SPLITS = ("test", "unlabelled")   # queries no human label of the training set touches
_LOCK = threading.RLock()


@dataclass(frozen=True)
class World:
    logs: dict                  # {"searches", "impressions", "clicks"}: DataFrames
    pairs: pd.DataFrame         # query_id, doc_id: every shown pair, sorted by doc_id
    features: pd.DataFrame      # relcourse.features of the same logs, indexed by doc_id
    train: pd.DataFrame         # human labels (doc_id, label) the teacher is fitted on
    valid: pd.DataFrame         # human labels it is early-stopped on
    truth: pd.Series            # careful judgement (tier, rubric v2) of the pairs of EVAL_SPLITS queries, by doc_id


@dataclass(frozen=True)
class Renamed:
    """The same logs with every doc_id and query_id renamed by a random permutation of the ids,
    search_ids renumbered in the same time order, and the rows of every table shuffled."""
    logs: dict
    pairs: pd.DataFrame
    doc_map: pd.Series          # original doc_id -> renamed doc_id


def _log_tables(imp: pd.DataFrame) -> dict:
    first = ~imp["search_id"].duplicated()
    searches = imp.loc[first, ["search_id", "query_id", "resorted_by_newest", "reformulated"]]
    clicked = imp[imp["click"]]
    clicks = clicked[["search_id", "doc_id", "dwell_s", "like", "collect", "comment", "share"]].assign(
        dwell_s=clicked["dwell_s"].astype(np.float64).round(1))          # logged to a tenth of a second
    tables = {"searches": searches, "impressions": imp[["search_id", "doc_id", "position", "click"]],
              "clicks": clicks}
    return {name: _plain(t) for name, t in tables.items()}


def _plain(t: pd.DataFrame) -> pd.DataFrame:
    """int64 ids, float64 numbers, bool flags, a fresh RangeIndex."""
    out = {}
    for c in t.columns:
        kind = t[c].dtype.kind
        out[c] = t[c].to_numpy(bool if kind == "b" else np.float64 if kind == "f" else np.int64)
    return pd.DataFrame(out)


@functools.lru_cache(maxsize=1)
def _world() -> World:
    import data_gen
    from relcourse import features as F
    from relcourse.config import load_profile
    from relcourse.store import ensure_data

    data_dir = ensure_data(load_profile("smoke"), 0, progress=False)
    imp = data_gen.read_table(data_dir, "impressions").sort_values(["search_id", "position"], kind="stable")
    imp = imp.reset_index(drop=True)
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket"])
    labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "split", "label"])
    truth = data_gen.read_table(data_dir, "truth", columns=["query_id", "doc_id", "tier_v2"])
    # The baseline features come from the same impressions (the ranker score is zeroed: it is not used).
    features = F.features_of_logs([imp.assign(ranker_score=0.0)], queries[["query_id", "bucket"]])
    pairs = features[["query_id"]].reset_index()[["query_id", "doc_id"]].astype(np.int64)
    held_out = queries.loc[queries["split"].isin(EVAL_SPLITS), "query_id"]
    truth = truth[truth["query_id"].isin(held_out) & truth["doc_id"].isin(features.index)]
    return World(logs=_log_tables(imp), pairs=pairs, features=features,
                 train=labels.loc[labels["split"] == "train", ["doc_id", "label"]],
                 valid=labels.loc[labels["split"] == "valid", ["doc_id", "label"]],
                 truth=truth.set_index("doc_id")["tier_v2"])


def world() -> World:
    with _LOCK:                 # the grader grades two files at a time, in threads
        return _world()


@functools.lru_cache(maxsize=1)
def _renamed() -> Renamed:
    w = _world()
    rng = np.random.default_rng(RENAME_SEED)
    docs = w.pairs["doc_id"].to_numpy()
    doc_map = pd.Series(rng.permutation(docs), index=docs)
    query_ids = np.unique(w.pairs["query_id"].to_numpy())
    query_map = pd.Series(rng.permutation(query_ids), index=query_ids)
    search_ids = np.unique(w.logs["searches"]["search_id"].to_numpy())
    search_map = pd.Series(1000 + np.cumsum(rng.integers(1, 4, len(search_ids))), index=search_ids)  # same order

    def rename(t: pd.DataFrame) -> pd.DataFrame:
        t = t.copy()
        for column, mapping in (("doc_id", doc_map), ("query_id", query_map), ("search_id", search_map)):
            if column in t.columns:
                t[column] = mapping.reindex(t[column].to_numpy()).to_numpy(np.int64)
        return t.iloc[rng.permutation(len(t))].reset_index(drop=True)

    return Renamed(logs={name: rename(t) for name, t in w.logs.items()}, pairs=rename(w.pairs), doc_map=doc_map)


def renamed() -> Renamed:
    with _LOCK:
        return _renamed()


# --- what the student's function returned ------------------------------------------------------

def values_of(got, pairs: pd.DataFrame, what: str) -> np.ndarray:
    """The student's result as a float array aligned with `pairs`, or an AssertionError saying why not."""
    n = len(pairs)
    if isinstance(got, pd.Series) and len(got) == n and set(got.index) == set(pairs["doc_id"]):
        got = got.reindex(pairs["doc_id"].to_numpy())       # a Series indexed by doc_id: align it
    if isinstance(got, (pd.Series, pd.DataFrame)) or hasattr(got, "tolist"):
        got = got.tolist() if not isinstance(got, pd.DataFrame) else got.to_numpy().tolist()
    if not isinstance(got, (list, tuple)):
        raise AssertionError(f"{what} returned {type(got).__name__}; expected a list (or numpy array) of "
                             f"{n} numbers, one per row of `pairs`")
    if len(got) != n:
        raise AssertionError(f"{what} returned {len(got)} values for {n} pairs; expected one number per row of "
                             "`pairs`, in the same order (every pair in `pairs` was shown at least once)")
    try:
        x = np.array([float(v) for v in got], dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(v for v in got if not isinstance(v, (int, float, np.number)))
        raise AssertionError(f"{what} returned a value {bad!r} that is not a number") from None
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise AssertionError(f"{what} returned {int((~np.isfinite(x)).sum())} values that are NaN or infinite "
                             f"(the first for doc_id {int(pairs['doc_id'].iloc[i])}); a rate over zero events "
                             "needs a prior: smooth it, (k + m * p0) / (n + m)")
    return x


def null_world_auc(values_renamed: np.ndarray) -> float:
    """AUC of the values returned for the renamed logs, read as if each renamed id were the real pair
    of that id, against the human labels (train and valid). The behaviour behind each id belongs to
    another pair, so a feature of behaviour scores about 0.5; one that reads the id scores its labels."""
    from relcourse import metrics
    w, r = world(), renamed()
    by_id = pd.Series(values_renamed, index=r.pairs["doc_id"].to_numpy())
    labels = pd.concat([w.train, w.valid])
    labels = labels[labels["doc_id"].isin(by_id.index)]
    return metrics.auc(labels["label"].to_numpy(), by_id.reindex(labels["doc_id"].to_numpy()).to_numpy())


def single_auc(values: np.ndarray, labels: pd.DataFrame | None = None) -> float:
    """AUC of the feature alone on the real logs, against the human labels (train and valid)."""
    from relcourse import metrics
    w = world()
    by_id = pd.Series(values, index=w.pairs["doc_id"].to_numpy())
    labels = pd.concat([w.train, w.valid]) if labels is None else labels
    labels = labels[labels["doc_id"].isin(by_id.index)]
    return metrics.auc(labels["label"].to_numpy(), by_id.reindex(labels["doc_id"].to_numpy()).to_numpy())


# --- the teacher --------------------------------------------------------------------------------

def teacher_auc(extra: np.ndarray | None, seeds=SEEDS) -> dict:
    """Mean AUC over `seeds` of the baseline teacher, with the extra column if given, on the held-out
    truth ("test": every pair of the test and unlabelled queries) and on the valid labels."""
    from relcourse import metrics
    from relcourse.teacher import Teacher

    w = world()
    x = w.features
    names = BASELINE_FEATURES
    if extra is not None:
        x = x.assign(**{STUDENT_COLUMN: pd.Series(extra, index=w.pairs["doc_id"].to_numpy()).reindex(x.index)})
        names = BASELINE_FEATURES + (STUDENT_COLUMN,)
    test_x = x.loc[w.truth.index]
    valid = w.valid[w.valid["doc_id"].isin(x.index)]
    valid_x = x.loc[valid["doc_id"].to_numpy()]
    test, val = [], []
    for seed in seeds:
        # one thread: LightGBM's threads spin, and the grader may share its cores with another file
        teacher = Teacher(names, seed=seed, threads=1).fit(x, w.train, valid=w.valid)
        test.append(metrics.auc(w.truth.to_numpy(), teacher.predict(test_x)))
        val.append(metrics.auc(valid["label"].to_numpy(), teacher.predict(valid_x)))
    return {"test": float(np.mean(test)), "valid": float(np.mean(val)), "test_per_seed": test}


@functools.lru_cache(maxsize=1)
def _baseline() -> dict:
    return teacher_auc(None)


def baseline() -> dict:
    with _LOCK:
        return _baseline()


# --- for learners: measure your own feature ------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exercises.ex08_teacher_feature.harness",
                                     description="Measure your feature: the teacher's AUC with and without it.")
    parser.add_argument("file", nargs="?", type=Path, default=HERE / "starter.py", help="default: starter.py")
    parser.add_argument("--split", choices=("valid", "test"), default="valid",
                        help="valid: the human labels the teacher early-stops on (tune on this); "
                             "test: the held-out truth the grader uses (look once, at the end)")
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location("ex08_your_feature", args.file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    w = world()
    start = time.perf_counter()
    values = values_of(module.feature({k: t.copy() for k, t in w.logs.items()}, w.pairs.copy()), w.pairs,
                       "feature(logs, pairs)")
    print(f"your feature: {time.perf_counter() - start:.1f} s for {len(w.logs['impressions'])} impressions, "
          f"AUC alone (human labels) {single_auc(values):.4f}")
    base, yours = baseline(), teacher_auc(values)
    print(f"teacher AUC on {args.split}: baseline {base[args.split]:.4f}, with your feature {yours[args.split]:.4f} "
          f"({yours[args.split] - base[args.split]:+.4f}; mean of {len(SEEDS)} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
