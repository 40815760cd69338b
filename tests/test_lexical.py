"""Lexical baselines: BM25 against the textbook formula, overlap features on a hand-made pair,
and the LightGBM ranker on the smoke world."""
import math

import numpy as np
import pandas as pd
import pytest

import data_gen
from relcourse.config import load_profile
from relcourse.lexical import (FEATURES, LexicalRanker, bm25_scores, by_phenomenon, overlap_features, pair_features,
                               phenomena, reversed_routes, tokenise, with_model_score)
from relcourse.metrics import evaluate
from relcourse.store import ensure_data


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELCOURSE_RUNS", str(tmp_path_factory.mktemp("runs")))
        yield ensure_data(load_profile("smoke"), seed=0, progress=False)


@pytest.fixture(scope="module")
def split(world):
    """Features of every pair; train/valid human labels; the test set judged by rubric v2 truth."""
    x = pair_features(world)
    labels = data_gen.read_table(world, "labels")
    queries = data_gen.read_table(world, "queries").set_index("query_id")
    truth = data_gen.read_table(world, "truth").set_index("doc_id")
    test = x.index[queries.split.loc[x.query_id].to_numpy() == "test"]
    return {"x": x.drop(columns="query_id"), "query_id": x.query_id, "truth": truth.tier_v2,
            "train": labels[labels.split == "train"], "valid": labels[labels.split == "valid"], "test": test}


def _fit_and_score(split, x):
    train, valid, test = split["train"], split["valid"], split["test"]
    # One thread: on a busy 2-core CI machine, OpenMP threads waiting on each other once made one fit 200x slower.
    ranker = LexicalRanker(num_threads=1).fit(
        x.loc[train.doc_id], train.label, train.query_id,
        valid=(x.loc[valid.doc_id], valid.label, valid.query_id))
    return ranker, ranker.predict(x.loc[test])


def _textbook_bm25(query, docs, k1=1.2, b=0.75):
    """Robertson-Sparck Jones BM25 with Lucene's IDF, one term and one document at a time."""
    docs = [d.split() for d in docs]
    avgdl = sum(map(len, docs)) / len(docs)
    scores = []
    for d in docs:
        s = 0.0
        for t in set(query.split()):
            df = sum(t in other for other in docs)
            idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
            tf = d.count(t)
            s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(s)
    return scores


def test_tokenise_lowercases_and_splits_on_punctuation():
    assert tokenise("Flights to Rome, #cheap! 😍 2026") == ["flights", "to", "rome", "cheap", "2026"]
    assert tokenise("") == []


def test_bm25_matches_the_textbook_on_three_documents():
    # N = 3; df(a) = df(b) = 2, so idf = ln(1 + 1.5 / 2.5) = ln 1.6 = 0.470004; avgdl = 8/3.
    # "a b c": |d| = 3, k1 * (1 - b + b * 3 / (8/3)) = 1.3125; a and b each 2.2 / 2.3125 = 0.951351
    #          -> 2 * 0.470004 * 0.951351 = 0.894277
    # "a a d": tf(a) = 2: 4.4 / 3.3125 = 1.328302 -> 0.624307
    # "b e":   |d| = 2, 1.2 * (0.25 + 0.5625) = 0.975; 2.2 / 1.975 = 1.113924 -> 0.523549
    docs = ["a b c", "a a d", "b e"]
    got = bm25_scores(["a b"] * 3, docs)
    np.testing.assert_allclose(got, [0.894277, 0.624307, 0.523549], atol=1e-6)
    np.testing.assert_allclose(got, _textbook_bm25("a b", docs), rtol=1e-12)
    # Other queries against the same collection, and a query word no document holds.
    for q in ("c d e", "a", "zz b"):
        np.testing.assert_allclose(bm25_scores([q] * 3, docs), _textbook_bm25(q, docs), rtol=1e-12)


def test_bm25_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths differ"):
        bm25_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="0 <= b <= 1"):
        bm25_scores(["a"], ["a"], b=2)


def test_overlap_features_of_a_hand_made_pair():
    x = overlap_features(["cheap flights from Oslo to Rome"],
                         ["Flights to Rome from Oslo | cheap"],
                         ["We fly daily. Flights from Oslo to Rome, cheap flights from Oslo to Rome."])
    assert list(x.columns) == list(FEATURES) and len(x) == 1
    row = x.iloc[0]
    assert row.query_len == 6 and row.title_len == 6 and row.body_len == 14
    assert row.title_coverage == 1.0 and row.body_coverage == 1.0
    assert row.title_head_coverage == 5 / 6                # 'cheap' is the 6th title word
    # Query bigrams: cheap flights, flights from, from oslo, oslo to, to rome; the title has 2, the body all.
    assert row.title_bigram_share == 2 / 5 and row.body_bigram_share == 1.0
    assert row.title_phrase == 0.0 and row.body_phrase == 1.0
    assert row.title_first_match == 0.0
    assert row.body_query_density == 11 / 14              # all but 'we', 'fly', 'daily'
    assert row.bm25_title > 0 and row.bm25_body > 0

    none = overlap_features(["vacuum"], ["a bicycle"], [""]).iloc[0]
    assert none.title_coverage == 0 and np.isnan(none.title_first_match) and np.isnan(none.title_bigram_share)
    with pytest.raises(ValueError, match="lengths differ"):
        overlap_features(["a"], ["b", "c"], ["d"])


def test_lexical_ranker_beats_chance_on_the_smoke_world(split):
    test, truth, x = split["test"], split["truth"], split["x"]
    y = truth.loc[test].to_numpy()
    bm25 = evaluate(y, x.loc[test].bm25_title + x.loc[test].bm25_body, split["query_id"].loc[test]).loc["all"]
    ranker, scores = _fit_and_score(split, x)
    result = evaluate(y, scores, split["query_id"].loc[test]).loc["all"]
    print(f"\nBM25 AUC {bm25.auc:.3f} PNR {bm25.pnr:.2f}; LexicalRanker AUC {result.auc:.3f} PNR {result.pnr:.2f}")
    assert result.auc > 0.7 and result.pnr > 2
    assert result.auc > bm25.auc
    np.testing.assert_array_equal(scores, _fit_and_score(split, x)[1])   # deterministic


def test_a_perfect_model_score_is_used(split):
    test, truth, x = split["test"], split["truth"], split["x"]
    y = truth.loc[test].to_numpy()
    lexical = evaluate(y, _fit_and_score(split, x)[1], split["query_id"].loc[test]).loc["all"]
    # The true tier as a fake model score: a ranker that uses the feature must get close to perfect.
    x_model = with_model_score(x, truth.loc[x.index].to_numpy())
    combined = evaluate(y, _fit_and_score(split, x_model)[1], split["query_id"].loc[test]).loc["all"]
    print(f"\nwith a perfect score feature: AUC {lexical.auc:.3f} -> {combined.auc:.3f}, "
          f"PNR {lexical.pnr:.2f} -> {combined.pnr:.2f}")
    assert combined.auc > lexical.auc + 0.1 and combined.auc > 0.98


def test_by_phenomenon_breaks_results_down(world, split):
    test, truth = split["test"], split["truth"]
    ranker, scores = _fit_and_score(split, split["x"])
    frame = pd.DataFrame({"query_id": split["query_id"].loc[test].to_numpy(), "label": truth.loc[test].to_numpy(),
                          "score": scores}).join(phenomena(world), on="query_id")
    table = by_phenomenon(frame)
    print("\n" + table[["n_queries", "auc", "pnr"]].round(3).to_string())
    assert list(table.index) == ["all", "plain", "alias", "taxonomy", "synonym", "route", "negation", "numeric",
                                 "stuffing", "tail entity", "rest"]
    assert table.loc["all", "n_docs"] == len(test)
    assert table.loc["tail entity", "n_docs"] + table.loc["rest", "n_docs"] == len(test)
    assert table.loc["tail entity", "n_queries"] > 0          # the smoke test set holds tail-entity queries
    with pytest.raises(ValueError, match="tail_entity"):
        by_phenomenon(frame.drop(columns="tail_entity"))


def test_route_direction_separates_order_from_words(world, split):
    """The 'route direction' subset pits relevant route pairs against the same route reversed:
    the ranker's ordered bigrams read it, word coverage (the same words either way) cannot."""
    test, truth = split["test"], split["truth"]
    _, scores = _fit_and_score(split, split["x"])
    frame = pd.DataFrame({"query_id": split["query_id"].loc[test].to_numpy(), "doc_id": test,
                          "label": truth.loc[test].to_numpy(), "score": scores}).join(phenomena(world), on="query_id")
    frame["route_reversed"] = frame.doc_id.isin(reversed_routes(world))
    direction = frame[(frame.group == "route") & (frame.route_reversed | (frame.label >= 2))]
    assert frame.route_reversed.any() and (frame[frame.route_reversed].group == "route").all()
    ranker = by_phenomenon(frame).loc["route direction"]
    coverage = by_phenomenon(frame.assign(score=split["x"].loc[test, "title_coverage"].to_numpy())).loc["route direction"]
    print(f"\nroute direction: ranker AUC {ranker.auc:.3f}, title coverage {coverage.auc:.3f}")
    assert ranker.n_docs == len(direction)
    assert ranker.auc > 0.9 and abs(coverage.auc - 0.5) < 0.1
    assert "route direction" not in by_phenomenon(frame.drop(columns="route_reversed")).index


def test_ranker_and_model_score_reject_bad_input(split):
    x = split["x"].iloc[:24]
    q, y = np.repeat([0, 1], 12), np.tile([0, 1, 2, 3], 6)
    with pytest.raises(ValueError, match="not trained"):
        LexicalRanker().predict(x)
    with pytest.raises(ValueError, match="tiers 0..3"):
        LexicalRanker().fit(x, y + 1, q)
    with pytest.raises(ValueError, match="lengths differ"):
        LexicalRanker().fit(x, y[:-1], q)
    ranker = LexicalRanker(n_estimators=5).fit(x, y, q)
    with pytest.raises(ValueError, match="bm25_title"):
        ranker.predict(x.drop(columns="bm25_title"))
    with pytest.raises(ValueError, match="one score per row"):
        with_model_score(x, np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        with_model_score(x, np.full(len(x), np.nan))
    with pytest.raises(ValueError, match="already"):
        with_model_score(with_model_score(x, np.zeros(len(x))), np.zeros(len(x)))
