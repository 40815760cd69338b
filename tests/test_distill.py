"""Stage 4 on a tiny world: the teacher's scores on the pool, warm and cold students, the
distillation claims' runners, and the errors of bad input."""
import dataclasses
import doctest

import numpy as np
import pandas as pd
import pytest
import torch

import data_gen
from relcourse import distill, experiments, serving
from relcourse.compute import check_equal_compute, claims_compute, run_compute
from relcourse.config import ConfigError, ModelConfig, load_profile, with_overrides
from relcourse.data import UNLABELLED_TEXT_SPLITS
from relcourse.distill import (TEACHER_SCORES, LayerwiseStudent, ensure_distill_data, mid_profile,
                               read_teacher_scores, run_distill, sample_queries, student_profile)
from relcourse.experiments import CLAIM_ARMS, run_arm
from relcourse.finetune import labelled_splits, run_finetune, score
from relcourse.models import RelevanceBert, load_model
from relcourse.pretrain import MODEL_DIR, tokenizer_of
from relcourse.serving import docs_per_second, half_precision, serving_sides
from relcourse.store import RUNS_ENV, StoreError, ensure_data, load_manifest, run_hash
from relcourse.train import read_log

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
    assert metrics["steps"] == profile.distill.steps and "serving" not in metrics   # speeds are measured when shown
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
        assert claims.load_results(profile.name, result.design)[claim_id].status == "inconclusive"   # one seed decides nothing
    assert experiments.select_claims("distill") == ["D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9", "D10", "D11", "D12"]


def test_d2_is_checked_at_equal_compute(profile):
    # D2's baseline has fewer steps than the distilled student (its warm start); beside the effect
    # goes the small model fine-tuned on labels for the steps the distilled student took in all.
    distilled, on_labels, also = distill.distillation_effect(profile, 0, progress=False)
    assert distilled == distill.test_auc(run_distill(profile, 0, progress=False))
    warm = run_finetune(student_profile(profile), 0, progress=False)
    assert on_labels == distill.test_auc(warm)
    took = load_manifest(warm)["metrics"]["steps"] + load_manifest(run_distill(profile, 0, progress=False))["metrics"]["steps"]
    equal = distill.labels_at_equal_steps(profile, warm, run_distill(profile, 0, progress=False))
    assert equal.finetune.steps == took > student_profile(profile).finetune.steps   # same batch size on both stages
    assert equal.pretrain == student_profile(profile).pretrain                      # the same small model
    assert also == {"labels only, equal steps": distill.test_auc(run_finetune(equal, 0, progress=False))}


# --- D3, D4, D8, D9: the student's size, the teacher's size, layer-wise terms, a chain -------

def test_d3_compares_the_recipes_student_with_one_of_half_its_width():
    laptop, spec = load_profile("laptop"), CLAIM_ARMS["D3"]
    arm, baseline = (with_overrides(laptop, a) for a in (spec.arm, spec.baseline))
    assert arm.distill.student == ModelConfig(layers=1, hidden=128, heads=4, intermediate=512)
    assert baseline.distill.student == ModelConfig(layers=1, hidden=64, heads=2, intermediate=256)
    # each warm student starts from the recipe at its own size; the teacher is the same
    assert student_profile(baseline).pretrain.model == baseline.distill.student
    assert baseline.pretrain == arm.pretrain and spec.stage == "distill"


def test_d3s_very_small_student_has_its_size(profile):
    # On smoke the recipe's student is already 1 x 64, the baseline's size: one run serves both arms.
    run = run_arm(profile, 0, CLAIM_ARMS["D3"].baseline, progress=False, stage="distill")
    student, metrics = load_model(run / MODEL_DIR), load_manifest(run)["metrics"]
    assert student.cfg == ModelConfig(layers=1, hidden=64, heads=2, intermediate=256)
    assert metrics["parameters"]["student"] == student.num_parameters() < metrics["parameters"]["teacher"]


def test_d4s_bigger_teacher_changes_the_teacher_and_its_scores_only(profile):
    spec = CLAIM_ARMS["D4"]
    bigger, recipe = (load_manifest(run_arm(profile, 0, a, progress=False, stage="distill")) for a in
                      (spec.arm, spec.baseline))
    assert bigger["upstream"]["student_start"] == recipe["upstream"]["student_start"]   # one warm student
    for stage in ("teacher", "distill_data"):
        assert bigger["upstream"][stage] != recipe["upstream"][stage], stage
    teacher = load_model(run_finetune(with_overrides(profile, spec.arm), 0, progress=False) / MODEL_DIR)
    assert teacher.cfg.layers == 4 and bigger["metrics"]["parameters"]["teacher"] == teacher.num_parameters()
    assert bigger["metrics"]["parameters"]["student"] == recipe["metrics"]["parameters"]["student"]


def test_d8s_layerwise_student_runs_end_to_end_and_differs_from_output_only(profile):
    spec = CLAIM_ARMS["D8"]
    plain, layerwise = (run_arm(profile, 0, a, progress=False, stage="distill") for a in (spec.arm, spec.baseline))
    assert plain != layerwise
    assert load_manifest(plain)["upstream"] == load_manifest(layerwise)["upstream"]   # same teacher, data, start
    scores = [pd.read_parquet(r / "test_scores.parquet").score.to_numpy() for r in (plain, layerwise)]
    assert not np.allclose(*scores)
    logged = [line for line in read_log(layerwise / "train") if "hidden" in line]
    assert logged and all(line["loss"] == pytest.approx(line["output"] + line["hidden"]) for line in logged)
    assert all(load_manifest(r)["metrics"]["train_s"] > 0 for r in (plain, layerwise))
    assert load_model(layerwise / MODEL_DIR).cfg == profile.distill.student   # the served student alone


def test_d5_d6_arms_train_equal_compute_and_d8s_teacher_is_counted(profile):
    for claim_id in ("D5", "D6"):
        spec = CLAIM_ARMS[claim_id]
        check_equal_compute(claim_id, "distill", *(run_compute(with_overrides(profile, side), 0, "distill")
                                                    for side in (spec.arm, spec.baseline)))
    table = claims_compute(profile, 0, ["D6", "D8"], "distill")
    assert table.loc["D6", "x baseline"].to_numpy() == pytest.approx([1, 1], rel=0.15)   # tiny: ± a step or two
    # D8: the same student steps; its baseline also runs the 2-layer teacher forward on every token,
    # 2 x 2 FLOPs per weight of a layer against 6 x 1 to train the 1-layer student
    assert table.loc[("D8", "arm"), "steps"] == table.loc[("D8", "baseline"), "steps"]
    assert table.loc[("D8", "arm"), "x baseline"] == pytest.approx(1 / (1 + 4 / 6), rel=0.05)


def test_layerwise_gradients_reach_the_student_and_the_projection_not_the_teacher():
    torch.manual_seed(0)
    student = RelevanceBert(ModelConfig(layers=1, hidden=32), vocab_size=50, max_len=12)
    teacher = RelevanceBert(ModelConfig(layers=3, hidden=64), vocab_size=50, max_len=12)
    pair = LayerwiseStudent(student, teacher)
    batch = {"input_ids": torch.randint(5, 50, (4, 12)), "token_type_ids": torch.zeros(4, 12, dtype=torch.long),
             "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    batch["attention_mask"][:, 9:] = 0
    pair.train()
    pair(batch)["hidden"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.encoder.parameters() if p.dim() > 1)
    assert pair.hidden_loss.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    pair.eval()   # the logits come from the same pass as the hidden states: they are the student's own
    assert torch.allclose(pair(batch)["relevance"], student.relevance(batch))


def test_d9s_chain_distils_a_mid_student_first_and_names_it_upstream(profile):
    spec = CLAIM_ARMS["D9"]
    single, chain = (with_overrides(profile, a) for a in (spec.arm, spec.baseline))
    run = run_distill(chain, 0, progress=False)
    mid = run_distill(mid_profile(chain), 0, progress=False)          # built by the chain: read back
    manifest, mid_manifest = load_manifest(run), load_manifest(mid)
    assert manifest["upstream"]["via"] == mid_manifest["config_hash"] == manifest["metrics"]["chain"]["via_run"]
    assert load_model(mid / MODEL_DIR).cfg == dataclasses.replace(chain.pretrain.model, layers=2)
    # the mid student starts warm from the recipe at 2 layers: smoke's own teacher, reused
    assert mid_manifest["upstream"]["student_start"] == run_hash(run_finetune(profile, 0, progress=False))
    # the final student fits the mid student's scores; both arms distil the same 4-layer teacher
    pool = load_manifest(ensure_distill_data(chain, 0, progress=False))
    assert pool["upstream"]["teacher"] == mid_manifest["config_hash"] and run_hash(ensure_distill_data(
        chain, 0, progress=False)) == manifest["upstream"]["distill_data"]
    direct = load_manifest(run_distill(single, 0, progress=False))
    assert direct["upstream"]["teacher"] == manifest["upstream"]["teacher"] == mid_manifest["upstream"]["teacher"]
    assert "via" not in direct["upstream"] and "chain" not in direct["metrics"]
    sizes = manifest["metrics"]["parameters"]
    assert sizes["teacher"] > manifest["metrics"]["chain"]["via_parameters"] > sizes["student"]


@pytest.mark.parametrize("overrides, message", [
    ({"distill.via_layers": 2}, r"distill.via_layers=2 must be fewer than the teacher's 2 layers \(pretrain.model"),
    ({"pretrain.model.layers": 4, "distill.via_layers": 1},
     r"distill.via_layers=1 must be more than the student's 1 layers.*set via_layers=0 for a single stage"),
])
def test_a_chain_without_room_for_a_mid_student_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_profile("smoke", overrides)


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
    assert metrics["arithmetic"] == {"train": train, "serve": serve, "cpu_native_bf16": serving.bf16_supported()}


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
    student, teacher, quality = distill.serving_effect(profile, 0, progress=False)
    assert np.isfinite([student, teacher]).all()
    assert quality == {"student test AUC": sides.loc["student", "test AUC"], "teacher test AUC": sides.loc["teacher", "test AUC"]}


def test_speeds_are_measured_when_asked_for_each_run(profile):
    runs = {"teacher": run_finetune(profile, 0, progress=False), "student": run_distill(profile, 0, progress=False)}
    speeds = docs_per_second(profile, 0, runs, pairs=32, repeats=1)
    assert list(speeds) == ["teacher", "student"] and all(np.isfinite(v) and v > 0 for v in speeds.values())


def test_d11_and_d12_are_recorded(profile):
    from relcourse import claims
    for claim_id in ("D11", "D12"):
        result = experiments.run_claim(profile, claim_id, progress=False)
        assert result.seeds == (0,) and np.isfinite(result.mean), claim_id
        assert claims.load_results(profile.name, result.design)[claim_id].status == "inconclusive"
    assert "; student test AUC 0." in result.notes and "; teacher test AUC 0." in result.notes   # D12's quality


def test_teacher_scale_multiplies_the_logits_the_student_fits(profile):
    pool_dir, scorer_dir = ensure_distill_data(profile, 0, progress=False), run_finetune(profile, 0, progress=False)
    as_scored = read_teacher_scores(pool_dir, scorer_dir).set_index("doc_id")["teacher_logit"]
    scaled = with_overrides(profile, {"distill.teacher_scale": 3.0, "distill.pairs_share": 0.5}).distill
    targets = distill.distillation_targets(pool_dir, scorer_dir, scaled, seed=0)
    assert 0 < len(targets) < len(as_scored)                          # still the sampled share of the pool
    assert np.allclose(targets.teacher_logit, 3.0 * as_scored.loc[targets.doc_id].to_numpy())
