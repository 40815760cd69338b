"""The generator: determinism, realism against the published figures of data_gen/README.md §3, the rubric's rules, and bad input."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

import data_gen
from data_gen import annotation, rubric
from data_gen.rubric import Content, Need, judge
from relcourse.click_models import fit_pbm, position_bias_exponent
from relcourse.logstats import REALISM_RANGES, ctr_by_position, log_summary

SMALL = dict(n_queries=120, n_searches=3_000, searches_per_shard=1_000, general_corpus_lines=300,
             domain_corpus_lines=300, label_budget=500)


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "smoke"
    data_gen.generate(data_gen.world_config("smoke"), seed=0, out=out, profile="smoke", progress=False)
    return out


def _generate_small(path, seed=0, **overrides):
    return data_gen.generate(data_gen.world_config("smoke", **{**SMALL, **overrides}), seed, path, progress=False)


def _shard_bytes(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    _generate_small(tmp_path / "a", seed=0)
    _generate_small(tmp_path / "b", seed=0)
    _generate_small(tmp_path / "c", seed=1)
    a, b, c = (_shard_bytes(tmp_path / x) for x in "abc")
    assert a == b and len(a) >= 8
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_logs_stream_in_shards_of_the_configured_size(tmp_path):
    manifest = _generate_small(tmp_path / "w")
    files = manifest["tables"]["impressions"]["files"]
    assert len(files) == 3 and all(f["rows"] == 1_000 * 10 for f in files)
    shards = list(data_gen.iter_shards(tmp_path / "w", "impressions", columns=["search_id"]))
    assert [s.search_id.min() for s in shards] == [0, 1_000, 2_000]


def test_realism_of_the_logs(smoke_world):
    imp = data_gen.read_table(smoke_world, "impressions")
    summary = log_summary(imp)
    for name, (lo, hi) in REALISM_RANGES.items():
        assert lo <= summary[name] <= hi, (name, summary[name])
    curve = ctr_by_position(imp).values
    assert np.all(np.diff(curve) < 0.01) and curve[0] > 2 * curve[4]
    # Dwell after a click is Weibull with shape 0.7: heavy-tailed, mean well above the median.
    dwell = imp.dwell_s[imp.click]
    assert dwell.mean() > 1.5 * dwell.median()


def test_click_model_recovers_the_position_bias(smoke_world):
    """An independent estimator (PBM by EM) finds the generator's eta = 0.8 within ±0.1."""
    imp = data_gen.read_table(smoke_world, "impressions")
    theta, _ = fit_pbm(imp.doc_id.values, imp.position.values, imp.click.values)
    assert abs(position_bias_exponent(theta) - 0.8) < 0.1


def test_behaviour_rises_with_relevance_not_only(smoke_world):
    imp = data_gen.read_table(smoke_world, "impressions")
    truth = data_gen.read_table(smoke_world, "truth")
    docs = data_gen.read_table(smoke_world, "docs")
    imp = imp.merge(truth[["doc_id", "tier_v2"]], on="doc_id").merge(docs[["doc_id", "clickbait"]], on="doc_id")
    by_tier = imp.groupby("tier_v2").click.mean()
    assert by_tier.is_monotonic_increasing
    # Click-bait attracts clicks at the same relevance: behaviour is confounded.
    low = imp[imp.tier_v2 <= 1]
    assert low[low.clickbait].click.mean() > 1.5 * low[~low.clickbait].click.mean()
    clicked = imp[imp.click]
    assert clicked.groupby("tier_v2").like.mean().is_monotonic_increasing


def test_annotator_agreement_and_label_designs(smoke_world):
    labels = data_gen.read_table(smoke_world, "labels")
    truth = data_gen.read_table(smoke_world, "truth")[["doc_id", "tier_v2"]]
    m = labels.merge(truth, on="doc_id")
    kappa = annotation.cohen_kappa(m.label_a, m.label_b)
    assert kappa == pytest.approx(cohen_kappa_score(m.label_a, m.label_b))
    assert 0.35 <= kappa <= 0.6
    assert (m.label == m.tier_v2).mean() > (m.label_a == m.tier_v2).mean()
    assert m.cost.sum() <= data_gen.world_config("smoke").label_budget
    assert set(m.split) <= {"train", "valid"} and (m.rubric_version == 2).all()


def test_dawid_skene_agrees_with_arbitration(smoke_world):
    """crowd-kit's Dawid–Skene, which learns each annotator's confusion matrix from the double
    labels alone, is about as accurate as senior arbitration, and both beat one label."""
    from crowdkit.aggregation import DawidSkene
    labels = data_gen.read_table(smoke_world, "labels")
    m = labels.merge(data_gen.read_table(smoke_world, "truth")[["doc_id", "tier_v2"]], on="doc_id")
    long = pd.concat([pd.DataFrame({"task": m.doc_id, "worker": m[f"annotator_{s}"], "label": m[f"label_{s}"]})
                      for s in "ab"])
    ds = DawidSkene(n_iter=100).fit_predict(long).reindex(m.doc_id).values
    acc = {"single": (m.label_a == m.tier_v2).mean(), "arbitration": (m.label == m.tier_v2).mean(),
           "dawid_skene": (ds == m.tier_v2.values).mean()}
    assert acc["arbitration"] > acc["single"] and acc["dawid_skene"] > acc["single"]
    assert abs(acc["dawid_skene"] - acc["arbitration"]) < 0.05


def test_tables_have_what_the_course_needs(smoke_world):
    queries = data_gen.read_table(smoke_world, "queries")
    assert set(queries.bucket) == set(range(10))
    assert set(queries.bucket_name) == {"head", "torso", "tail"}
    assert {"train", "valid", "test", "unlabelled"} <= set(queries.split)
    entities = data_gen.read_table(smoke_world, "entities")
    tail_entities = set(entities.id[entities.corpus_only])
    labelled = queries[queries.split.isin(["train", "valid"])]
    assert not (set(labelled.need_entity) & tail_entities)
    domain = data_gen.read_table(smoke_world, "corpus_domain")
    assert any(name in text for name in entities.name[entities.corpus_only] for text in domain.text)
    assert set(domain.dirt) == {"", "duplicate", "symbol_spam"}
    truth = data_gen.read_table(smoke_world, "truth")
    assert set(truth.tier_v2) == {0, 1, 2, 3} and (truth.tier_v1 != truth.tier_v2).any()


def test_lexical_overlap_alone_does_not_solve_relevance(smoke_world):
    from sklearn.metrics import roc_auc_score
    truth = data_gen.read_table(smoke_world, "truth")
    assert roc_auc_score(truth.tier_v2 >= 2, truth.lexical_overlap) < 0.7


# --- the rubric's rules, one case each --------------------------------------------------------

@pytest.mark.parametrize("need, doc, tier", [
    (Need("product", topic=0), Content("product", topic=0, hyponym=2, main_share=0.9), 3),       # hyponym doc
    (Need("product", topic=0, hyponym=2), Content("product", topic=0, main_share=0.9), 1),       # hypernym doc
    (Need("product", topic=0, entity=5), Content("product", topic=0, entity=6), 1),              # other product
    (Need("product", topic=0), Content("product", topic=1), 0),                                  # other topic
    (Need("product", topic=0, qualifier="size", qual_value=0), Content("product", topic=0), 1),  # important lost
    (Need("product", topic=0, qualifier="price", qual_value=0), Content("product", topic=0), 3),  # unimportant lost
    (Need("product", topic=0, without_feature=True), Content("product", topic=0, has_feature=1), 1),
    (Need("product", topic=0, number=100), Content("product", topic=0, number=110), 1),
    (Need("product", topic=0, entity=5), Content("product", topic=0, entity=5, main_share=0.3), 2),
    (Need("product", topic=0, entity=5), Content("product", topic=0, entity=5, fake_tag=True), 1),
    (Need("route", origin=1, dest=2, mode=0), Content("route", origin=2, dest=1, mode=0), 1),
    (Need("route", origin=1, dest=2, mode=0), Content("route", origin=1, dest=2, mode=0, main_share=0.7), 3),
])
def test_rubric_rules(need, doc, tier):
    assert judge(need, doc, important="size", version=2)[0] == tier


def test_rubric_versions_differ_where_documented():
    need = Need("product", topic=0, number=100)
    assert judge(need, Content("product", topic=0, number=110), "size", 1)[0] == 3
    assert judge(need, Content("product", topic=0, number=110), "size", 2)[0] == 1
    need = Need("product", topic=0, qualifier="price", qual_value=0)
    assert judge(need, Content("product", topic=0, price=1), "size", 1)[0] == 3
    assert judge(need, Content("product", topic=0, price=1), "size", 2)[0] == 1
    with pytest.raises(ValueError, match="rubric version"):
        judge(need, Content("product", topic=0), "size", 3)


@pytest.mark.parametrize("need, doc, v0_tier", [
    # on the subject, contradicting nothing: v0 calls it mid, v1 and v2 low
    (Need("product", topic=0, entity=3), Content("product", topic=0), 2),               # a general guide
    (Need("product", topic=0, hyponym=1), Content("product", topic=0), 2),              # hypernym document
    (Need("route", origin=1, dest=2, mode=0), Content("route", origin=1, dest=2, mode=1), 2),   # other mode
    (Need("product", topic=0, qualifier="size", qual_value=0), Content("product", topic=0), 2),  # size unstated
    # a contradiction stays one under v0
    (Need("route", origin=1, dest=2, mode=0), Content("route", origin=2, dest=1, mode=0), 1),   # reversed
    (Need("product", topic=0, qualifier="size", qual_value=0), Content("product", topic=0, size=1), 1),
    (Need("product", topic=0, entity=3), Content("product", topic=0, entity=4), 1),      # another product
])
def test_the_first_rubric_judges_the_subject_not_the_need(need, doc, v0_tier):
    assert judge(need, doc, "size", 0)[0] == v0_tier
    assert judge(need, doc, "size", 1)[0] <= 1 and judge(need, doc, "size", 2)[0] <= 1


# --- bad input ------------------------------------------------------------------------------------

def test_unknown_profile_and_out_of_range_values():
    with pytest.raises(ValueError, match="smoke, laptop, gpu, gpu-xl"):
        data_gen.world_config("huge")
    with pytest.raises(ValueError, match="n_queries=-5 is out of range"):
        data_gen.world_config("smoke", n_queries=-5)
    with pytest.raises(ValueError, match="unknown data setting"):
        data_gen.world_config("smoke", n_query=5)


def test_cli_reports_bad_input_without_traceback(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "data_gen", *a], capture_output=True, text=True)  # noqa: E731
    bad = run("--profile", "huge", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "choose one of" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("--out", str(tmp_path / "x"), "--set", "n_queries=-1")
    assert bad.returncode == 2 and "out of range" in bad.stderr
    (tmp_path / "a_file").write_text("")
    bad = run("--out", str(tmp_path / "a_file" / "world"))
    assert bad.returncode == 2 and "cannot write" in bad.stderr


def test_existing_other_data_is_not_overwritten(tmp_path):
    _generate_small(tmp_path / "w", seed=0)
    before = _shard_bytes(tmp_path / "w")
    assert _generate_small(tmp_path / "w", seed=0)["seed"] == 0  # the same data: nothing to do
    with pytest.raises(data_gen.DataError, match="already holds other data"):
        _generate_small(tmp_path / "w", seed=1)
    assert _shard_bytes(tmp_path / "w") == before


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr("data_gen.pipeline.corpus_lines", broken)
    with pytest.raises(RuntimeError):
        _generate_small(tmp_path / "w")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_missing_and_foreign_data_are_refused(tmp_path):
    _generate_small(tmp_path / "w")
    shard = tmp_path / "w" / "labels" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(data_gen.DataError, match="checksum"):
        data_gen.read_table(tmp_path / "w", "labels")
    shard.unlink()
    with pytest.raises(data_gen.DataError, match="missing"):
        data_gen.read_table(tmp_path / "w", "labels")
    with pytest.raises(data_gen.DataError, match="no table 'clicks'"):
        data_gen.read_table(tmp_path / "w", "clicks")
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    manifest["schema_version"] = 0
    (tmp_path / "w" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(data_gen.DataError, match="schema version 0"):
        data_gen.read_table(tmp_path / "w", "queries")
    (tmp_path / "w" / "manifest.json").write_text("{not json")
    with pytest.raises(data_gen.DataError, match="corrupt"):
        data_gen.load_manifest(tmp_path / "w")
    shutil.rmtree(tmp_path / "w")
    with pytest.raises(data_gen.DataError, match="python -m data_gen"):
        data_gen.read_table(tmp_path / "w", "queries")


def test_sampling_strategies_and_designs():
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"query_id": np.arange(3000) // 10, "doc_id": np.arange(3000),
                          "bucket": np.repeat(rng.choice(["head", "torso", "tail"], 300), 10),
                          "ranker_score": rng.random(3000)})
    head = annotation.sample_pairs(pairs, 200, "head_only", 0)
    assert (head.bucket == "head").all() and head.ranker_score.is_monotonic_decreasing
    ext = annotation.sample_pairs(pairs, 200, "extremes", 0)
    assert ((ext.ranker_score < 0.25) | (ext.ranker_score > 0.75)).all()
    strat = annotation.sample_pairs(pairs, 600, "stratified", 0, middle_share=0.4)
    middle = strat.ranker_score.between(0.4, 0.6).mean()
    assert 0.33 < middle < 0.47 and strat.bucket.value_counts(normalize=True).min() > 0.28
    first = annotation.sample_pairs(pairs, 600, "shown_first", 0)     # each query's top two, what users see first
    rank = pairs.groupby("query_id").ranker_score.rank(ascending=False)
    assert len(first) == 600 and set(rank[first.index]) == {1, 2} and first.query_id.value_counts().eq(2).all()
    with pytest.raises(ValueError, match="head_only"):
        annotation.sample_pairs(pairs, 10, "random", 0)
    pool = annotation.make_pool(20, 0.1, 0)
    tiers = rng.integers(0, 4, 2000)
    single = annotation.annotate(tiers, "single", pool, 0, budget=1000)
    double = annotation.annotate(tiers, "double", pool, 0, budget=1000)
    assert len(single) == 1000 and len(double) < 500 and double.cost.sum() <= 1000
    assert (double.annotator_a != double.annotator_b).all()
    with pytest.raises(ValueError, match="design"):
        annotation.annotate(tiers, "triple", pool, 0)
    # Anchoring: judgements lean toward a suggested tier, from a stream of their own.
    suggested = rng.integers(0, 4, 2000)
    plain = annotation.annotate(tiers, "double+gold", pool, 0)
    assert plain.equals(annotation.annotate(tiers, "double+gold", pool, 0, suggested=suggested, anchoring=0.0))
    pulled = annotation.annotate(tiers, "double+gold", pool, 0, suggested=suggested, anchoring=0.3)
    assert (pulled.annotator_a == plain.annotator_a).all()         # the same people, only their judgement moved
    gap = lambda labels: np.abs(labels.label.to_numpy().astype(int) - suggested).mean()
    assert gap(pulled) < gap(plain) - 0.1 and (pulled.label == suggested).mean() > (plain.label == suggested).mean()
    with pytest.raises(ValueError, match="anchoring=1.5 must lie in"):
        annotation.annotate(tiers, "single", pool, 0, suggested=suggested, anchoring=1.5)
    with pytest.raises(ValueError, match="anchoring needs `suggested`"):
        annotation.annotate(tiers, "single", pool, 0, suggested=suggested[:10], anchoring=0.3)
    assert rubric.TIER_NAMES[3] == "high"
