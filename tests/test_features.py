import functools

import numpy as np
import pandas as pd
import pytest

import data_gen
from relcourse import features as F
from relcourse.config import load_profile
from relcourse.features import (FEATURE_SCHEMA_VERSION, FEATURES, behaviour_features, count_shard,
                                features_from_counts, select_pairs)
from relcourse.store import ensure_data


def tiny_impressions(n_searches=60, seed=0) -> pd.DataFrame:
    """Searches of 3 queries, each showing 4 of its 5 documents; clicks, dwell and interactions at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_searches):
        q = int(rng.integers(0, 3))
        resorted, reformulated = rng.random() < 0.2, rng.random() < 0.3
        for pos, j in enumerate(rng.permutation(5)[:4], start=1):
            click = bool(rng.random() < 0.6 / pos)
            rows.append({"search_id": s, "query_id": q, "doc_id": q * 5 + int(j), "position": pos,
                         "ranker_score": float(j) / 5 + 0.01 * pos, "click": click,
                         "dwell_s": float(rng.exponential(40)) if click else 0.0,
                         **{a: click and bool(rng.random() < 0.4) for a in F.INTERACTIONS},
                         "resorted_by_newest": resorted, "reformulated": reformulated})
    return pd.DataFrame(rows)


QUERIES = pd.DataFrame({"query_id": [0, 1, 2], "bucket": [0, 4, 9], "bucket_name": ["head", "torso", "tail"]})


def brute_force(imp: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """The features straight from their definitions, one pair at a time."""
    clicked = imp[imp.click]
    n_clicks = len(clicked)
    click_prior = {k: g.click.mean() for k, g in imp.groupby("position")}
    out = {}
    for doc, r in imp.groupby("doc_id"):
        q = r.query_id.iloc[0]
        searches = imp[imp.query_id == q].search_id.nunique()
        clicks = r.click.sum()
        expected = sum(click_prior[p] for p in r.position)

        def per_click(k, k0):
            return (k + F.CLICK_PRIOR * k0 / n_clicks) / (clicks + F.CLICK_PRIOR)

        def per_impression(col):
            return (r[col].sum() + F.IMPRESSION_PRIOR * imp[col].mean()) / (len(r) + F.IMPRESSION_PRIOR)

        out[doc] = {
            "query_id": q, "impressions": len(r), "clicks": clicks, "expected_clicks": expected,
            "ctr": per_impression("click"),
            "coec": (clicks + F.COEC_PRIOR) / (expected + F.COEC_PRIOR),
            "mean_position": r.position.mean(),
            "long_click_rate": per_click((r.click & (r.dwell_s >= 30)).sum(), (clicked.dwell_s >= 30).sum()),
            "mean_log_dwell": per_click(np.log1p(r.dwell_s[r.click]).sum(), np.log1p(clicked.dwell_s).sum()),
            **{f"{a}_rate": per_click(r[a].sum(), imp[a].sum()) for a in F.INTERACTIONS},
            "resort_rate": per_impression("resorted_by_newest"),
            "reformulation_rate": per_impression("reformulated"),
            "ranker_score_mean": r.ranker_score.mean(),
            "display_rate": len(r) / searches,
            "query_searches": searches,
            "query_clicks_per_search": imp[imp.query_id == q].click.sum() / searches,
            "bucket": queries.set_index("query_id").bucket[q],
        }
    return pd.DataFrame.from_dict(out, orient="index")


def test_features_match_their_definitions():
    imp = tiny_impressions()
    got = features_from_counts(count_shard(imp), QUERIES)
    want = brute_force(imp, QUERIES)
    assert list(got.columns) == ["query_id", *FEATURES]
    assert got.attrs["feature_schema_version"] == FEATURE_SCHEMA_VERSION
    pd.testing.assert_frame_equal(got, want[got.columns], check_dtype=False, check_names=False, rtol=1e-12)


def test_smoothing_pulls_rare_pairs_to_the_prior_and_leaves_frequent_ones_raw():
    imp = tiny_impressions()
    rare = pd.DataFrame([{**imp.iloc[0].to_dict(), "search_id": 999, "doc_id": 99, "query_id": 2,
                          "click": True, "dwell_s": 50.0}])
    x = features_from_counts(count_shard(pd.concat([imp, rare], ignore_index=True)), QUERIES)
    p0 = (imp.click.sum() + 1) / (len(imp) + 1)
    # one click in one impression: a raw CTR of 1, a smoothed one near the log-wide rate
    assert x.loc[99, "ctr"] == pytest.approx((1 + F.IMPRESSION_PRIOR * p0) / (1 + F.IMPRESSION_PRIOR))
    big = pd.concat([imp] * 50, ignore_index=True).assign(search_id=lambda d: np.arange(len(d)) // 4)
    x = features_from_counts(count_shard(big), QUERIES)
    raw = big.groupby("doc_id").click.mean()
    assert np.allclose(x["ctr"], raw[x.index], atol=0.02)


def test_shard_wise_counts_add_up_to_whole_table_counts():
    imp = tiny_impressions()
    # three shards of whole searches; the last one never shows rank 4, so its at_4 column is missing
    parts = [imp[imp.search_id < 20], imp[(imp.search_id >= 20) & (imp.search_id < 40)], imp[imp.search_id >= 40]]
    parts[2] = parts[2][parts[2].position < 4]
    whole = features_from_counts(count_shard(pd.concat(parts)), QUERIES)
    summed = features_from_counts(functools.reduce(F.Counts.__add__, map(count_shard, parts)), QUERIES)
    pd.testing.assert_frame_equal(summed, whole, rtol=1e-12)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELCOURSE_RUNS", str(tmp_path_factory.mktemp("runs")))
        d = ensure_data(load_profile("smoke"), seed=0, progress=False)
        yield d, behaviour_features(d), data_gen.read_table(d, "queries")


def test_behaviour_features_stream_shards_like_the_whole_table(smoke):
    d, x, queries = smoke
    assert len(data_gen.load_manifest(d)["tables"]["impressions"]["files"]) > 1
    whole = features_from_counts(count_shard(data_gen.read_table(d, "impressions")), queries)
    pd.testing.assert_frame_equal(x, whole, rtol=1e-9)


def test_features_counted_in_worker_processes_equal_one_process(smoke):
    d, x, _ = smoke
    pd.testing.assert_frame_equal(behaviour_features(d, workers=2), x, check_exact=True)
    with pytest.raises(ValueError, match="workers=0 must be"):
        behaviour_features(d, workers=0)


def test_pairs_never_shown_have_no_row(smoke):
    d, x, _ = smoke
    shown = data_gen.read_table(d, "impressions", columns=["doc_id"]).doc_id.unique()
    docs = data_gen.read_table(d, "docs", columns=["doc_id"]).doc_id
    assert len(shown) < len(docs)  # the smoke world has pairs the ranker never shows
    assert sorted(x.index) == sorted(shown)
    assert x[list(FEATURES)].notna().all().all()


def test_covering_selection_spans_buckets_and_score_bands(smoke):
    _, x, queries = smoke
    sel = select_pairs(x, queries, 1200, "covering", seed=0)
    assert len(sel) == 1200 and sel.index.is_unique and sel.index.isin(x.index).all()
    buckets = sel.query_id.map(queries.set_index("query_id").bucket_name).value_counts()
    assert set(buckets.index) == {"head", "torso", "tail"} and buckets.max() - buckets.min() <= 1
    bands = pd.qcut(x.ranker_score_mean, F.SCORE_BANDS, labels=False)[sel.index].value_counts()
    assert len(bands) == F.SCORE_BANDS and bands.min() > 0.8 * 1200 / F.SCORE_BANDS
    assert select_pairs(x, queries, 1200, "covering", seed=0).index.equals(sel.index)
    assert not select_pairs(x, queries, 1200, "covering", seed=1).index.equals(sel.index)


def test_covering_gives_a_small_cell_share_to_the_others(smoke):
    _, x, queries = smoke
    tail = x.query_id.map(queries.set_index("query_id").bucket_name) == "tail"
    x = x[~tail | (x.index.isin(x[tail].index[:10]))]   # only 10 tail pairs left
    buckets = select_pairs(x, queries, 900, "covering").query_id.map(
        queries.set_index("query_id").bucket_name).value_counts()
    assert buckets["tail"] == 10 and buckets["head"] + buckets["torso"] == 890


def test_naive_selection_takes_the_most_shown_pairs(smoke):
    _, x, queries = smoke
    sel = select_pairs(x, queries, 500, "naive")
    rest = x.drop(sel.index)
    assert sel.impressions.min() >= rest.impressions.max()
    head = sel.query_id.map(queries.set_index("query_id").bucket_name).eq("head").mean()
    assert head > 0.8  # what the logs give most often: head queries


@pytest.mark.parametrize("n, strategy, match", [(0, "naive", "n=0"), (10**9, "covering", "n=1000000000"),
                                                (10, "random", "strategy='random'")])
def test_select_pairs_refuses_bad_requests(smoke, n, strategy, match):
    _, x, queries = smoke
    with pytest.raises(ValueError, match=match):
        select_pairs(x, queries, n, strategy)


def test_bad_impressions_are_refused_with_a_fix():
    imp = tiny_impressions()
    with pytest.raises(ValueError, match=r"lack columns \['dwell_s'\].*iter_shards"):
        count_shard(imp.drop(columns="dwell_s"))
    with pytest.raises(ValueError, match="empty"):
        count_shard(imp.iloc[:0])
    with pytest.raises(ValueError, match="no bucket for query ids \\[2\\]"):
        features_from_counts(count_shard(imp), QUERIES[QUERIES.query_id < 2])
