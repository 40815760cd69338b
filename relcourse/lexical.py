"""The lexical baselines every model stands beside: BM25, generic query-document overlap
features, and a LightGBM LambdaRank ranker on them, as search engines ranked before BERT
(and still do, with a relevance model's score as one more feature; data_gen/README.md §7).

All text goes through one `tokenise`: lowercase, runs of letters and digits (punctuation, '#'
and emoji split or vanish). Features read only the query and document text, never the world's
hidden structure, so what they miss (aliases, taxonomy, word order, negation) is what a
cross-encoder can add.

BM25 (Robertson & Zaragoza, "The probabilistic relevance framework: BM25 and beyond", 2009),
with Lucene's non-negative IDF; for query q and document d in a collection of N documents,

    bm25(q, d) = sum over distinct terms t of q of  idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

tf = count of t in d, df(t) = documents holding t, |d| = tokens of d, avgdl = mean |d|.
The collection is the documents passed in: compute features once over all candidate documents
of a world (every document belongs to one query), then split, so train and test share one IDF.

>>> docs = ["a b c", "a a d", "b e"]
>>> bm25_scores(["a b"] * 3, docs).round(4).tolist()     # hand-checked in tests/test_lexical.py
[0.8943, 0.6243, 0.5235]
>>> x = overlap_features(["flights from Oslo to Rome"], ["Flights to Rome from Oslo!"], ["Daily flights."])
>>> x.loc[0, ["title_coverage", "title_bigram_share", "title_phrase"]].tolist()   # same words, not the same route
[1.0, 0.5, 0.0]
"""
from __future__ import annotations

import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import sparse

import data_gen
from data_gen.queries import GROUPS

from .metrics import RELEVANT_TIER, evaluate

TOKEN = re.compile(r"[^\W_]+")   # runs of letters and digits, any script
TITLE_HEAD = 5                   # the first words of a title, the ones a user reads
K1, B = 1.2, 0.75                # BM25 term-frequency saturation and length normalisation, the usual values
FEATURES = (
    "bm25_title", "bm25_body",
    "query_len", "title_len", "body_len",
    "title_coverage", "body_coverage", "title_head_coverage",   # share of the query's words found
    "title_bigram_share", "body_bigram_share",                   # share of its word pairs, in order
    "title_phrase", "body_phrase",                               # the whole query, verbatim
    "title_first_match",                                         # where the first query word shows up
    "body_query_density",                                        # query words per body word: stuffing
)


def tokenise(text: str) -> list[str]:
    """'Flights to Rome, #cheap!' -> ['flights', 'to', 'rome', 'cheap']"""
    return TOKEN.findall(text.lower())


def _bigrams(tokens: list[str]) -> list[str]:
    return [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def _counts(*columns: list[list[str]], analyzer=list) -> list[sparse.csr_matrix]:
    """Count matrices (rows x terms) of aligned columns of token lists, over one shared vocabulary
    of the terms `analyzer` makes of each token list."""
    vocabulary: dict[str, int] = {}
    entries = []
    for column in columns:
        rows, terms = [], []
        for i, tokens in enumerate(column):
            for term in analyzer(tokens):
                rows.append(i)
                terms.append(vocabulary.setdefault(term, len(vocabulary)))
        entries.append((rows, terms, len(column)))
    # A term seen twice in a row is two (row, term) entries: building the matrix sums them into a count.
    return [sparse.csr_matrix((np.ones(len(rows)), (rows, terms)), shape=(n, len(vocabulary)))
            for rows, terms, n in entries]


def _check_aligned(**columns) -> int:
    lengths = {name: len(c) for name, c in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"one entry per (query, document) pair is needed, but the lengths differ: {lengths}")
    return next(iter(lengths.values()))


def _bm25(query_counts: sparse.csr_matrix, doc_counts: sparse.csr_matrix, k1: float, b: float) -> np.ndarray:
    n_docs = doc_counts.shape[0]
    df = np.asarray((doc_counts > 0).sum(axis=0)).ravel()
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    doc_len = np.asarray(doc_counts.sum(axis=1)).ravel()
    norm = k1 * (1 - b + b * doc_len / max(doc_len.mean(), 1e-12))
    # Saturate every stored term count in place: (tf * (k1 + 1)) / (tf + norm of its row).
    weights = doc_counts.copy()
    row_of_entry = np.repeat(np.arange(n_docs), np.diff(weights.indptr))
    tf = weights.data
    weights.data = tf * (k1 + 1) / (tf + norm[row_of_entry]) * idf[weights.indices]
    return np.asarray((query_counts > 0).multiply(weights).sum(axis=1)).ravel()


def bm25_scores(queries_text, docs_text, k1: float = K1, b: float = B) -> np.ndarray:
    """BM25 of each (query, document) pair; IDF and average length from `docs_text`."""
    _check_aligned(queries_text=queries_text, docs_text=docs_text)
    if k1 < 0 or not 0 <= b <= 1:
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}; the usual values are 1.2 and 0.75")
    q, d = _counts([tokenise(t) for t in queries_text], [tokenise(t) for t in docs_text])
    return _bm25(q, d, k1, b)


def _share(query: sparse.csr_matrix, doc: sparse.csr_matrix) -> np.ndarray:
    """Share of each row's distinct query terms that the document holds; NaN for no query term."""
    found = np.asarray((query > 0).multiply(doc > 0).sum(axis=1)).ravel()
    total = np.asarray((query > 0).sum(axis=1)).ravel()
    return np.divide(found, total, out=np.full(len(total), np.nan), where=total > 0)


def _phrase(query: list[str], doc: list[str]) -> float:
    return float(bool(query) and f" {' '.join(query)} " in f" {' '.join(doc)} ")


def _first_match(query: list[str], doc: list[str]) -> float:
    words = set(query)
    return next((float(i) for i, t in enumerate(doc) if t in words), np.nan)


def overlap_features(query_text, title, body) -> pd.DataFrame:
    """FEATURES of each (query, title, body) triple, one row per pair, in input order.
    NaN where a feature is undefined (no query bigram, no query word in the title):
    LightGBM learns which way missing values go."""
    _check_aligned(query_text=query_text, title=title, body=body)
    q, t, d = ([tokenise(x) for x in column] for column in (query_text, title, body))
    q_words, t_words, d_words, head_words = _counts(q, t, d, [tokens[:TITLE_HEAD] for tokens in t])
    q_pairs, t_pairs, d_pairs = _counts(q, t, d, analyzer=_bigrams)
    lengths = {name: np.array([len(x) for x in tokens], float) for name, tokens in (("q", q), ("t", t), ("d", d))}
    body_hits = np.asarray((q_words > 0).multiply(d_words).sum(axis=1)).ravel()
    return pd.DataFrame({
        "bm25_title": _bm25(q_words, t_words, K1, B),
        "bm25_body": _bm25(q_words, d_words, K1, B),
        "query_len": lengths["q"], "title_len": lengths["t"], "body_len": lengths["d"],
        "title_coverage": _share(q_words, t_words),
        "body_coverage": _share(q_words, d_words),
        "title_head_coverage": _share(q_words, head_words),
        "title_bigram_share": _share(q_pairs, t_pairs),
        "body_bigram_share": _share(q_pairs, d_pairs),
        "title_phrase": [_phrase(a, b) for a, b in zip(q, t)],
        "body_phrase": [_phrase(a, b) for a, b in zip(q, d)],
        "title_first_match": [_first_match(a, b) for a, b in zip(q, t)],
        "body_query_density": np.divide(body_hits, lengths["d"], out=np.zeros_like(body_hits),
                                        where=lengths["d"] > 0),
    }, columns=list(FEATURES))


def pair_features(data_dir: str | Path) -> pd.DataFrame:
    """overlap_features of every candidate (query, document) pair of a world, indexed by doc_id,
    with its query_id first: one collection, so train, valid and test share one IDF."""
    docs = data_gen.read_table(data_dir, "docs", columns=["doc_id", "query_id", "title", "body"])
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "text"])
    pairs = docs.merge(queries, on="query_id").sort_values("doc_id", ignore_index=True)
    x = overlap_features(pairs.text.tolist(), pairs.title.tolist(), pairs.body.tolist())
    return pd.concat([pairs[["query_id"]], x], axis=1).set_index(pairs.doc_id)


def with_model_score(features: pd.DataFrame, scores, name: str = "model_score") -> pd.DataFrame:
    """`features` plus a relevance model's score as one more column: how a cross-encoder earns its
    place in a production ranker, beside the lexical and behaviour features."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(features),):
        raise ValueError(f"scores must be 1-D with one score per row of features: got shape {scores.shape} "
                         f"for {len(features)} rows")
    if np.isnan(scores).any():
        raise ValueError(f"scores hold {int(np.isnan(scores).sum())} NaN values; score every pair first")
    if name in features.columns:
        raise ValueError(f"features already have a column {name!r}; pass another name=")
    return features.assign(**{name: scores})


class LexicalRanker:
    """LightGBM LambdaRank on per-pair features, trained on labelled pairs grouped by query.

    Deterministic for a given (data, seed, num_threads). With `valid`, training stops once
    NDCG@10 on it has not improved for `patience` rounds, and predictions use the best round.
    Give it no more threads than there are idle cores: OpenMP threads wait for each other, and
    on a busy 2-core machine a 2-thread fit of a few thousand rows once took 200x longer than
    a 1-thread one."""

    def __init__(self, num_threads: int = 1, seed: int = 0, n_estimators: int = 500, learning_rate: float = 0.05,
                 num_leaves: int = 15, min_data_in_leaf: int = 20, patience: int = 50):
        if num_threads < 1:
            raise ValueError(f"num_threads={num_threads} must be >= 1 (use the profile's threads)")
        self.n_estimators, self.patience = n_estimators, patience
        self.params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "learning_rate": learning_rate,
                       "num_leaves": num_leaves, "min_data_in_leaf": min_data_in_leaf, "seed": seed,
                       "num_threads": num_threads, "deterministic": True,
                       "force_row_wise": True,  # deterministic needs one fixed histogram layout
                       "verbose": -1}
        self.booster: lgb.Booster | None = None
        self.columns: list[str] | None = None

    def _dataset(self, features: pd.DataFrame, labels, query_ids, reference=None) -> lgb.Dataset:
        """Rows sorted by query, since LambdaRank reads a query's documents as consecutive rows."""
        labels, query_ids = np.asarray(labels), np.asarray(query_ids)
        _check_aligned(features=features, labels=labels, query_ids=query_ids)
        if not np.isin(labels, (0, 1, 2, 3)).all():
            raise ValueError("labels must be tiers 0..3 (3 high, 2 mid, 1 low, 0 none)")
        order = np.argsort(query_ids, kind="stable")
        sizes = np.unique(query_ids[order], return_counts=True)[1]
        return lgb.Dataset(self._select(features).iloc[order], labels[order].astype(int), group=sizes,
                           reference=reference)

    def fit(self, features: pd.DataFrame, labels, query_ids, valid: tuple | None = None) -> LexicalRanker:
        """Train on aligned rows; `valid` = (features, labels, query_ids) of held-out queries."""
        if not isinstance(features, pd.DataFrame):
            raise ValueError(f"features must be a DataFrame (e.g. from overlap_features), "
                             f"got {type(features).__name__}")
        self.columns, self.booster = list(features.columns), None
        train = self._dataset(features, labels, query_ids)
        kwargs = {}
        if valid is not None:
            kwargs = {"valid_sets": [self._dataset(*valid, reference=train)],
                      "callbacks": [lgb.early_stopping(self.patience, verbose=False)]}
        self.booster = lgb.train(self.params, train, num_boost_round=self.n_estimators, **kwargs)
        return self

    def _select(self, features: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            raise ValueError(f"features lack the columns the ranker was trained on: {missing}")
        return features[self.columns]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """One score per row, higher = more relevant (from the best round when fit had `valid`)."""
        if self.booster is None:
            raise ValueError("the ranker is not trained yet; call fit() first")
        return self.booster.predict(self._select(features))


def phenomena(data_dir: str | Path) -> pd.DataFrame:
    """Per query_id: its phenomenon `group` and `tail_entity` (it names a corpus-only product, one
    no human label ever names), the columns `by_phenomenon` breaks results down by."""
    queries = data_gen.read_table(data_dir, "queries",
                                  columns=["query_id", "group", "need_entity", "need_entity2"])
    entities = data_gen.read_table(data_dir, "entities", columns=["id", "corpus_only"])
    tail = entities.id[entities.corpus_only]
    names_tail = queries.need_entity.isin(tail) | queries.need_entity2.isin(tail)
    return pd.DataFrame({"group": queries.group.to_numpy(), "tail_entity": names_tail.to_numpy()},
                        index=queries.query_id.rename("query_id"))


def reversed_routes(data_dir: str | Path) -> np.ndarray:
    """doc_ids of the documents that serve their route query's route the other way round ("B to
    A" for "A to B"): the same words, so only word order tells them from the relevant ones."""
    truth = data_gen.read_table(data_dir, "truth", columns=["doc_id", "candidate_kind", "query_id"])
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "group"])
    route = truth.query_id.isin(queries.query_id[queries.group == "route"])
    return truth.doc_id[route & (truth.candidate_kind == "reversed")].to_numpy()


def by_phenomenon(eval_frame: pd.DataFrame) -> pd.DataFrame:
    """metrics.evaluate's 'all' row for all pairs, each phenomenon group, and tail-entity queries
    vs the rest. `eval_frame`: one row per pair with query_id, label (tier 0..3), score, and the
    query's group and tail_entity (join `phenomena(data_dir)` on query_id). With a boolean column
    `route_reversed` (doc_id in `reversed_routes(data_dir)`) also 'route direction': the relevant
    route pairs against the reversed ones, where 0.5 means the ranker ignores direction. Subsets
    without pairs, or where a metric is undefined, are NaN."""
    missing = {"query_id", "label", "score", "group", "tail_entity"} - set(eval_frame.columns)
    if missing:
        raise ValueError(f"eval_frame lacks the columns {sorted(missing)}; join phenomena(data_dir) on query_id")
    subsets = {"all": np.ones(len(eval_frame), bool),
               **{group: (eval_frame.group == group).to_numpy() for group in GROUPS},
               "tail entity": eval_frame.tail_entity.to_numpy(bool), "rest": ~eval_frame.tail_entity.to_numpy(bool)}
    if "route_reversed" in eval_frame:
        relevant = (eval_frame.label >= RELEVANT_TIER).to_numpy()
        subsets["route direction"] = (eval_frame.group == "route").to_numpy() & (
            relevant | eval_frame.route_reversed.to_numpy(bool))
    rows = {}
    for name, rows_in in subsets.items():
        part = eval_frame[rows_in]
        rows[name] = (evaluate(part.label, part.score, part.query_id).loc["all"] if len(part)
                      else pd.Series({"n_queries": 0, "n_docs": 0}))
    return pd.DataFrame(rows).T.rename_axis("subset")
