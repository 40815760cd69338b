import json
import os
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import data_gen
from relcourse import teacher as teacher_module
from relcourse.config import load_profile
from relcourse.features import FEATURES, behaviour_features
from relcourse.post_pretrain import pseudo_labelled_pairs
from relcourse.store import ensure_data
from relcourse.teacher import Teacher, evaluate_teacher, evaluation_set, pseudo_label


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The smoke world, its features, its labels and one teacher trained on them (shared: ~1 s to fit)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELCOURSE_RUNS", str(tmp_path_factory.mktemp("runs")))
        d = ensure_data(load_profile("smoke"), seed=0, progress=False)
        x = behaviour_features(d)
        labels = data_gen.read_table(d, "labels")
        train, valid = labels[labels.split == "train"], labels[labels.split == "valid"]
        yield d, x, train, valid, Teacher(seed=0).fit(x, train, valid=valid)


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RELCOURSE_RUNS", str(tmp_path / "runs"))


def test_teacher_beats_a_random_score_on_held_out_test_queries(world):
    d, x, _, _, teacher = world
    table = evaluate_teacher(teacher, x, d, split="test")
    assert list(table.index) == ["all", "head", "torso", "tail"]
    assert table.loc["all", "auc"] > 0.6 and table.loc["all", "pnr"] > 1
    assert (table.loc[["head", "torso", "tail"], "n_queries"] > 0).all()
    assert evaluate_teacher(teacher, x, d, split="valid").loc["all", "auc"] > 0.6


def test_evaluation_set_uses_truth_for_test_and_human_labels_otherwise(world):
    d, x, _, valid, _ = world
    test = evaluation_set(x, d, "test")
    queries = data_gen.read_table(d, "queries").set_index("query_id")
    assert (queries.split[test.query_id] == "test").all() and test.index.isin(x.index).all()
    truth = data_gen.read_table(d, "truth").set_index("doc_id")
    assert (test.label == truth.tier_v2[test.index]).all()
    v = evaluation_set(x, d, "valid")
    assert (v.label == valid.set_index("doc_id").label[v.index]).all()
    with pytest.raises(ValueError, match="split='unlabelled'"):
        evaluation_set(x, d, "unlabelled")


def test_predictions_are_pseudo_labels_in_the_unit_interval_and_deterministic(world):
    _, x, train, valid, teacher = world
    y = teacher.predict(x)
    assert y.shape == (len(x),) and y.min() >= 0 and y.max() <= 1 and y.std() > 0.1
    np.testing.assert_array_equal(Teacher(seed=0).fit(x, train, valid=valid).predict(x), y)
    gain = teacher.feature_importance()
    assert sorted(gain.index) == sorted(FEATURES) and gain.is_monotonic_decreasing


def test_save_load_round_trip_predicts_identically(world, tmp_path):
    _, x, _, _, teacher = world
    teacher.save(tmp_path / "teacher.json")
    assert os.listdir(tmp_path) == ["teacher.json"]  # no temp file left behind
    loaded = Teacher.load(tmp_path / "teacher.json")
    assert loaded.features == teacher.features and loaded.params == teacher.params
    np.testing.assert_array_equal(loaded.predict(x), teacher.predict(x))
    (tmp_path / "junk.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a saved relcourse teacher"):
        Teacher.load(tmp_path / "junk.json")


def test_missing_or_all_null_feature_is_refused(world):
    _, x, train, _, teacher = world
    with pytest.raises(ValueError, match=r"lack the teacher's columns \['coec'\]"):
        Teacher().fit(x.drop(columns="coec"), train)
    with pytest.raises(ValueError, match="'ctr' is null in every row"):
        Teacher().fit(x.assign(ctr=np.nan), train)
    with pytest.raises(ValueError, match=r"lack the teacher's columns \['bucket'\]"):
        teacher.predict(x.drop(columns="bucket"))


def test_labels_of_one_tier_or_outside_0_3_are_refused(world):
    _, x, train, _, _ = world
    with pytest.raises(ValueError, match="have tier 2.*at least two tiers"):
        Teacher().fit(x, train[train.label == 2])
    with pytest.raises(ValueError, match=r"labels \[4\]"):
        Teacher().fit(x, train.assign(label=train.label.replace(3, 4)))
    with pytest.raises(ValueError, match="none of the .* pairs"):
        Teacher().fit(x, train.assign(doc_id=-1 - train.doc_id))


def test_features_of_another_schema_are_refused(world, tmp_path):
    _, x, _, _, teacher = world
    other = x.copy()
    other.attrs["feature_schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99.*trained on version 1"):
        teacher.predict(other)
    teacher.save(tmp_path / "t.json")
    meta = json.loads((tmp_path / "t.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps({**meta, "feature_schema_version": 0}))
    with pytest.raises(ValueError, match="schema version 1, the teacher was trained on version 0"):
        Teacher.load(tmp_path / "t.json").predict(x)


def test_model_score_feature_is_refused_unless_explicitly_allowed(world, tmp_path):
    _, x, train, _, _ = world
    with_score = x.assign(model_score_round1=np.random.default_rng(0).random(len(x)))
    with pytest.raises(ValueError, match="feedback loop.*allow_model_score_feature=True"):
        Teacher(features=(*FEATURES, "model_score_round1"))
    teacher = Teacher(features=(*FEATURES, "model_score_round1"), allow_model_score_feature=True).fit(with_score, train)
    assert "model_score_round1" in teacher.feature_importance().index
    teacher.save(tmp_path / "t.json")
    assert Teacher.load(tmp_path / "t.json").allow_model_score_feature


def test_predict_before_fit_is_refused(world):
    with pytest.raises(ValueError, match="not trained"):
        Teacher().predict(world[1])


def test_pseudo_label_writes_shards_of_the_teachers_predictions(world, tmp_path):
    d, x, _, _, teacher = world
    pairs = x.index[::3]
    stats = pseudo_label(teacher, d, tmp_path / "pl", pairs=pairs, batch_rows=1000)
    files = sorted(p.name for p in (tmp_path / "pl").iterdir())
    assert files == [f"part-{i:05d}.parquet" for i in range(-(-len(pairs) // 1000))]
    got = pd.read_parquet(tmp_path / "pl")
    assert list(got.columns) == ["doc_id", "query_id", "pseudo_label"]
    assert got.doc_id.tolist() == pairs.tolist() and (got.query_id == x.query_id[pairs].to_numpy()).all()
    np.testing.assert_array_equal(got.pseudo_label, teacher.predict(x.loc[pairs]))
    assert stats["rows"] == len(pairs) and stats["rows_per_s"] > 0


def test_pseudo_label_leaves_nothing_half_written_on_failure(world, tmp_path, monkeypatch):
    d, x, _, _, teacher = world
    out = tmp_path / "pl"
    pseudo_label(teacher, d, out, pairs=x.index[:10])
    calls = []

    def predict_then_fail(features):
        calls.append(len(features))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return np.zeros(len(features))
    monkeypatch.setattr(teacher, "predict", predict_then_fail)
    with pytest.raises(RuntimeError, match="killed"):
        pseudo_label(teacher, d, out, batch_rows=500)
    assert os.listdir(tmp_path) == ["pl"]                    # no temp folder left
    assert len(pd.read_parquet(out)) == 10                     # the earlier set is untouched
    with pytest.raises(ValueError, match="never shown"):
        pseudo_label(teacher, d, tmp_path / "other", pairs=pd.Index([-1]))
    assert not (tmp_path / "other").exists()


@pytest.fixture(scope="module")
def compiled(world):
    """The smoke teacher compiled by lleaves (a few seconds: once per module)."""
    pytest.importorskip("lleaves", reason="lleaves is not installed: the compiled teacher cannot be checked")
    return world[4].compile()


def test_compiled_trees_predict_what_lightgbm_predicts(world, compiled):
    _, x, _, _, teacher = world
    np.testing.assert_allclose(compiled.predict(x), teacher.predict(x), rtol=0, atol=1e-12)


def test_pipeline_pseudo_labels_with_the_compiled_teacher(world, compiled, monkeypatch):
    d, x, _, _, teacher = world
    monkeypatch.setattr(teacher_module, "COMPILE_FROM_ROWS", 0)   # smoke's pool is too small to pay for it
    compiles = []
    monkeypatch.setattr(Teacher, "compile", lambda self: compiles.append(self) or compiled)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # no fallback warning where lleaves is installed
        got = pseudo_labelled_pairs(d, teacher, load_profile("smoke"), seed=0)
    assert compiles == [teacher]
    np.testing.assert_allclose(got["pseudo_label"], teacher.predict(x.loc[got["doc_id"]]), rtol=0, atol=1e-9)


def test_pipeline_falls_back_to_lightgbm_with_a_warning_without_lleaves(world, monkeypatch):
    d, x, _, _, teacher = world
    monkeypatch.setattr(teacher_module, "COMPILE_FROM_ROWS", 0)
    monkeypatch.setitem(sys.modules, "lleaves", None)    # `import lleaves` raises ImportError
    with pytest.warns(UserWarning, match="lleaves is not installed.*pip install lleaves"):
        got = pseudo_labelled_pairs(d, teacher, load_profile("smoke"), seed=0)
    np.testing.assert_array_equal(got["pseudo_label"], teacher.predict(x.loc[got["doc_id"]]))


def test_a_small_pool_is_scored_by_lightgbm_without_compiling(world, monkeypatch):
    d, x, _, _, teacher = world
    monkeypatch.setattr(Teacher, "compile", lambda self: pytest.fail("compiled for a pool of a few thousand pairs"))
    got = pseudo_labelled_pairs(d, teacher, load_profile("smoke"), seed=0)
    np.testing.assert_array_equal(got["pseudo_label"], teacher.predict(x.loc[got["doc_id"]]))


def test_fit_options_refit_the_stage_teacher_exactly(world):
    """A teacher refitted with fit_options (notebook 03's ablation) is the one ensure_teacher built."""
    from relcourse.post_pretrain import ensure_teacher
    from relcourse.teacher import fit_options
    from relcourse.config import with_overrides
    d, x, train, valid, _ = world
    profile = with_overrides(load_profile("smoke"), {"threads": 1})   # 2 threads crawl on a busy 2-core machine
    stage = Teacher.load(ensure_teacher(profile, seed=0, progress=False) / "teacher.json")
    refit = Teacher(seed=0, threads=1).fit(x, train, valid=valid, **fit_options(profile.teacher))
    assert np.array_equal(refit.predict(x), stage.predict(x))
