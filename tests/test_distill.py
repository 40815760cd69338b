"""Stage 4 on a tiny world: the teacher's scores on the pool, warm and cold students, the
distillation claims' runners, and the errors of bad input."""
import doctest

import numpy as np
import pandas as pd
import pytest
import torch

import data_gen
from relcourse import distill, experiments
from relcourse.config import ConfigError, load_profile, with_overrides
from relcourse.data import UNLABELLED_TEXT_SPLITS
from relcourse.distill import (TEACHER_SCORES, ensure_distill_data, read_teacher_scores, run_distill, sample_queries,
                               student_profile)
from relcourse.finetune import labelled_splits, run_finetune, score
from relcourse.models import load_model
from relcourse.pretrain import MODEL_DIR, tokenizer_of
from relcourse.serving import half_precision, serving_sides
from relcourse.store import RUNS_ENV, StoreError, ensure_data, load_manifest

from test_pipeline import TINY

TINY_DISTILL = {**TINY, "distill.steps": 8, "distill.batch_size": 16}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUNS_ENV, str(root))
        yield load_profile("smoke", {**TINY_DISTILL, "threads": 1})


def test_the_teacher_scores_the_pool_of_unlabelled_text_queries_only(profile):
    pool_dir = ensure_distill_data(profile, 0, progress=False)
    scores = pd.read_parquet(pool_dir / TEACHER_SCORES)
    queries = data_gen.read_table(ensure_data(profile, 0, progress=False), "queries", columns=["query_id", "split"])
    splits = queries.set_index("query_id").loc[scores["query_id"].unique(), "split"]
    assert set(splits) <= set(UNLABELLED_TEXT_SPLITS)          # never a valid or test query
    assert scores["doc_id"].is_unique and np.isfinite(scores["teacher_logit"]).all()
    assert scores["teacher_logit"].std() > 0
    assert load_manifest(pool_dir)["metrics"]["pairs"] == len(scores)


def test_a_distilled_student_is_smaller_is_judged_on_the_test_set_and_is_reused(profile, monkeypatch):
    run = run_distill(profile, 0, progress=False)
    metrics = load_manifest(run)["metrics"]
    assert 0 <= metrics["test"]["all"]["auc"] <= 1 and -1 <= metrics["teacher_agreement"] <= 1
    assert metrics["parameters"]["student"] < metrics["parameters"]["teacher"]
    assert load_model(run / MODEL_DIR).cfg == profile.distill.student
    assert metrics["steps"] == profile.distill.steps and metrics["serving"]["docs_per_s"]["student"] > 0
    scores = pd.read_parquet(run / "test_scores.parquet")
    teacher = pd.read_parquet(run_finetune(profile, 0, progress=False) / "test_scores.parquet")
    assert np.allclose(scores.set_index("doc_id").loc[teacher.doc_id, "teacher_score"], teacher.score)
    # The warm student started from the recipe at the student's size, which is now built.
    warm = run_finetune(student_profile(profile), 0, progress=False)
    assert load_manifest(run)["upstream"]["student_start"] == load_manifest(warm)["config_hash"]
    monkeypatch.setattr("relcourse.distill.train", lambda *a, **k: pytest.fail("distilled again"))
    assert run_distill(profile, 0, progress=False) == run


def test_cold_students_margin_loss_and_epochs(profile):
    arm = with_overrides(profile, {"distill.start": "cold", "distill.loss": "margin_mse", "distill.epochs": 0.5,
                                   "distill.pairs_share": 0.5})
    run = run_distill(arm, 0, progress=False)
    manifest = load_manifest(run)
    assert "student_start" not in manifest["upstream"]
    metrics = manifest["metrics"]
    assert metrics["epochs"] == pytest.approx(0.5, abs=profile.distill.batch_size / metrics["pairs"])
    pool = load_manifest(ensure_distill_data(profile, 0, progress=False))["metrics"]["pairs"]
    assert 0.5 * pool <= metrics["pairs"] < pool


def test_sample_queries_keeps_whole_queries_and_is_seeded():
    frame = pd.DataFrame({"query_id": np.repeat(np.arange(50), 4), "doc_id": np.arange(200)})
    half = sample_queries(frame, 0.5, seed=3)
    assert half.groupby("query_id").size().eq(4).all() and 100 <= len(half) <= 104
    assert half.equals(sample_queries(frame, 0.5, seed=3)) and not half.equals(sample_queries(frame, 0.5, seed=4))


def test_scores_of_another_teacher_are_refused(profile):
    pool_dir = ensure_distill_data(profile, 0, progress=False)
    other = run_finetune(with_overrides(profile, {"finetune.loss": "mse"}), 0, progress=False)
    with pytest.raises(StoreError, match="was scored by teacher .* rebuild the distillation data"):
        read_teacher_scores(pool_dir, other)


def test_a_four_class_teacher_is_refused(profile):
    with pytest.raises(ValueError, match="distillation fits one logit per pair"):
        ensure_distill_data(with_overrides(profile, {"finetune.loss": "multiclass"}), 0, progress=False)


def test_a_student_reading_another_vocabulary_is_refused(profile, monkeypatch):
    arm = with_overrides(profile, {"distill.steps": 9})
    real = distill.load_model
    monkeypatch.setattr(distill, "load_model", lambda d, **k: _with_vocab(real(d, **k), 7))
    with pytest.raises(ValueError, match="vocabulary of 7 tokens.*must share one tokenizer"):
        run_distill(arm, 0, progress=False)


def _with_vocab(model, size):
    model.vocab_size = size
    return model


def test_distillation_claims_are_measured_and_recorded(profile):
    from relcourse import claims
    for claim_id in ("D1", "D2", "D7", "D10"):
        result = experiments.run_claim(profile, claim_id, progress=False)
        assert result.seeds == (0,) and np.isfinite(result.mean), claim_id
        assert claims.load_results(profile.name)[claim_id].status == "inconclusive"   # one seed decides nothing
    assert experiments.select_claims("distill") == ["D1", "D2", "D5", "D6", "D7", "D10", "D11", "D12"]


def test_docstring_examples():
    assert doctest.testmod(distill).failed == 0


# --- claims D11 (the student's training and serving arithmetic) and D12 (serving speed) ---------

def _training_autocast(monkeypatch) -> list:
    """The autocast dtype (None: off) seen by each training forward of the next students trained."""
    seen, real = [], distill.train

    def spying_train(model, *args, **kwargs):
        def hook(module, inputs):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        handle = model.register_forward_pre_hook(hook)
        try:
            return real(model, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(distill, "train", spying_train)
    return seen


@pytest.mark.parametrize("side, autocast, train, serve", [("arm", torch.bfloat16, "bf16", "bf16"),
                                                           ("baseline", None, "fp32", "int8")])
def test_d11_arms_train_and_serve_in_their_arithmetic(profile, monkeypatch, side, autocast, train, serve):
    seen = _training_autocast(monkeypatch)
    run = experiments.run_arm(profile, 0, getattr(experiments.CLAIM_ARMS["D11"], side), progress=False,
                              stage="distill")
    assert set(seen) == {autocast} and len(seen) >= profile.distill.steps
    metrics = load_manifest(run)["metrics"]
    assert metrics["arithmetic"] == {"train": train, "serve": serve}
    assert metrics["serving"]["cpu_native_bf16"] in (True, False)


def _test_pairs_and_scores(profile, run):
    splits = labelled_splits(ensure_data(profile, 0, progress=False), tokenizer_of(profile, 0, progress=False),
                             profile)
    recorded = pd.read_parquet(run / "test_scores.parquet")
    assert recorded["doc_id"].tolist() == splits.test.doc_ids.tolist()
    return splits.test, recorded["score"].to_numpy(), load_model(run / MODEL_DIR)


def test_d11_int8_test_scores_are_quantize_dynamic_applied_by_hand(profile):
    run = experiments.run_arm(profile, 0, experiments.CLAIM_ARMS["D11"].baseline, progress=False, stage="distill")
    test, recorded, student = _test_pairs_and_scores(profile, run)
    by_hand = torch.ao.quantization.quantize_dynamic(student, {torch.nn.Linear}, dtype=torch.qint8)   # a copy
    np.testing.assert_allclose(recorded, score(by_hand, test), rtol=0, atol=1e-6)
    fp32 = score(student, test)
    assert 0 < np.abs(recorded - fp32).max() < 0.1 * np.abs(fp32).max()   # quantised: close, not equal


def test_d11_bf16_test_scores_are_close_to_fp32(profile):
    run = experiments.run_arm(profile, 0, experiments.CLAIM_ARMS["D11"].arm, progress=False, stage="distill")
    test, recorded, student = _test_pairs_and_scores(profile, run)
    fp32 = score(student, test)
    assert 0 < np.abs(recorded - fp32).max() < 0.05 * np.abs(fp32).max()


def test_d11_bad_settings_are_named(profile):
    with pytest.raises(ConfigError, match="distill.serve_precision='fp16' is not one of fp32, bf16, int8"):
        with_overrides(profile, {"distill.serve_precision": "fp16"})
    with pytest.raises(ConfigError, match="distill.train_precision='fp16' needs CUDA"):
        with_overrides(profile, {"distill.train_precision": "fp16"})
    with pytest.raises(ConfigError, match="distill.train_precision='fp8' is not one of profile, fp32, bf16, fp16"):
        with_overrides(profile, {"distill.train_precision": "fp8"})


def test_d12_times_both_sides_and_keeps_their_quality(profile):
    sides = serving_sides(profile, 0, run_finetune(profile, 0, progress=False), run_distill(profile, 0, progress=False))
    assert sides.index.tolist() == ["teacher", "student"]
    assert sides["length"].tolist() == [profile.tokenizer.max_len, profile.tokenizer.max_len // 2]
    assert sides["arithmetic"].tolist() == ["fp32", half_precision()]
    assert sides["layers"].tolist() == [profile.pretrain.model.layers, profile.distill.student.layers]
    assert np.isfinite(sides["docs/s"]).all() and (sides["docs/s"] > 0).all()
    assert sides.loc["teacher", "test AUC"] == distill.test_auc(run_finetune(profile, 0, progress=False))
    assert 0 <= sides.loc["student", "test AUC"] <= 1
    student, teacher = distill.serving_effect(profile, 0, progress=False)
    assert np.isfinite([student, teacher]).all()


def test_d11_and_d12_are_recorded(profile):
    from relcourse import claims
    for claim_id in ("D11", "D12"):
        result = experiments.run_claim(profile, claim_id, progress=False)
        assert result.seeds == (0,) and np.isfinite(result.mean), claim_id
        assert claims.load_results(profile.name)[claim_id].status == "inconclusive"
