"""The stages end to end on a tiny world: pretrain -> teacher -> post-pretrain -> fine-tune, the
claims runner, exact resume of a killed stage, and the errors of bad input."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from relcourse import claims, cli, experiments, pretrain
from relcourse.compute import check_equal_compute, run_compute
from relcourse.config import load_profile
from relcourse.config import ConfigError, with_overrides
from relcourse.experiments import CLAIM_ARMS, LADDER, PROBE, RECIPE, arm_table, run_arm, run_claim
from relcourse.finetune import labelled_splits
from relcourse.models import load_model
from relcourse.post_pretrain import run_post_pretrain
from relcourse.pretrain import MODEL_DIR, run_pretrain, tokenizer_of
from relcourse.store import RUNS_ENV, ensure_data, load_manifest

TINY = {"data.n_queries": 120, "data.n_searches": 4_000, "data.general_corpus_lines": 400,
        "data.domain_corpus_lines": 600, "data.label_budget": 1_500, "tokenizer.vocab_size": 300,
        "pretrain.steps": 12, "pretrain.batch_size": 16, "pretrain.warmup_steps": 2, "pretrain.tapt_share": 0.25,
        "post_pretrain.steps": 8, "post_pretrain.batch_size": 16, "finetune.steps": 8, "finetune.batch_size": 16}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUNS_ENV, str(root))
        yield load_profile("smoke", TINY)


def test_the_recipe_runs_end_to_end_and_is_reused(profile, monkeypatch):
    run = run_arm(profile, 0, RECIPE, progress=False)
    table = arm_table(run)
    assert list(table.index) == ["all", "head", "torso", "tail"]
    assert 0 <= table.loc["all", "auc"] <= 1 and table.loc["all", "n_docs"] > 0
    scores = pd.read_parquet(run / "test_scores.parquet")
    assert len(scores) == table.loc["all", "n_docs"] and scores["score"].notna().all()
    # Asked again, every stage is found in the store: nothing trains.
    monkeypatch.setattr("relcourse.finetune.finetune", lambda *a, **k: pytest.fail("fine-tuned again"))
    monkeypatch.setattr("relcourse.pretrain.train", lambda *a, **k: pytest.fail("pretrained again"))
    assert run_arm(profile, 0, RECIPE, progress=False) == run


def test_every_rung_of_the_ladder_is_measured_with_the_query_swap_check(profile):
    for name, arm in LADDER.items():
        check = load_manifest(run_arm(profile, 0, arm, progress=False))["metrics"]["query_swap"]
        assert 0 <= check["auc"] <= 1 and -1 <= check["score_correlation"] <= 1, name


def test_the_query_swap_check_tells_a_matcher_from_a_document_classifier(profile, monkeypatch):
    """An oracle that scores 'does the document mention a word of the query' loses its AUC when the
    query is swapped; one that scores the document alone keeps its AUC and its scores."""
    import data_gen
    from relcourse import finetune, metrics
    data_dir = ensure_data(profile, 0, progress=False)
    tokenizer = tokenizer_of(profile, 0, progress=False)
    splits = labelled_splits(data_dir, tokenizer, profile)
    truth = splits.test.targets

    def doc_only(model, pairs, batch_size=512):    # a fixed score per document: ignores the query
        return np.asarray(pairs.doc_ids, dtype=float) % 7

    def query_of(ids):                            # the query's tokens of one encoded pair
        ids = ids.tolist()
        return tuple(ids[1:ids.index(tokenizer.sep_token_id)])

    judged = {(query_of(ids), doc): tier for ids, doc, tier in zip(splits.test.inputs["input_ids"], splits.test.doc_ids, truth)}

    def matcher(model, pairs, batch_size=512):     # a perfect judge of (this query, this document)
        noise = np.random.default_rng(0).random(len(pairs)) * 0.1
        return noise + np.array([judged.get((query_of(ids), doc), 1.5)
                                 for ids, doc in zip(pairs.inputs["input_ids"], pairs.doc_ids)])

    monkeypatch.setattr(finetune, "score", doc_only)
    check = finetune.query_swap(None, data_dir, tokenizer, profile, splits.test, doc_only(None, splits.test), 0)
    assert check["score_correlation"] == pytest.approx(1.0)
    assert check["auc"] == pytest.approx(metrics.auc(truth, doc_only(None, splits.test)))
    monkeypatch.setattr(finetune, "score", matcher)
    real = matcher(None, splits.test)
    check = finetune.query_swap(None, data_dir, tokenizer, profile, splits.test, real, 0)
    assert metrics.auc(truth, real) == 1 and check["auc"] < 0.6 and check["score_correlation"] < 0.3
    queries = data_gen.read_table(data_dir, "queries").set_index("query_id")
    swap = finetune.swapped_queries(splits.test.query_ids, 0)
    assert all(q != swap[q] for q in swap) and set(swap) == set(swap.values())     # a derangement
    assert len(set(queries.loc[list(swap), "text"])) > 1


def test_post_pretraining_reads_the_pairs_unmasked(profile, monkeypatch):
    """The relevance loss sees the real tokens of the whole batch; only MLM's copy, of the
    batch's first mlm_batch_share, is masked."""
    from relcourse import models
    seen = []
    real_forward = models.RelevanceBert.forward

    def watching(self, batch, mlm_labels=None, sentence_labels=None, relevance=True):
        masked_tokens = bool((batch["input_ids"] == tokenizer.mask_token_id).any())
        seen.append(("relevance" if relevance else "mlm", masked_tokens, len(batch["input_ids"])))
        return real_forward(self, batch, mlm_labels, sentence_labels, relevance)

    tokenizer = tokenizer_of(profile, 0, progress=False)
    run_pretrain(profile, 0, progress=False)       # built (or reused) first: only stage 2's passes are watched
    monkeypatch.setattr(models.RelevanceBert, "forward", watching)
    arm = with_overrides(profile, {"post_pretrain.lr": 1.1e-3, "post_pretrain.mlm_batch_share": 0.25})
    run_post_pretrain(arm, 0, progress=False)
    rows = arm.post_pretrain.batch_size
    relevance = [(masked, n) for task, masked, n in seen if task == "relevance"]
    mlm = [(masked, n) for task, masked, n in seen if task == "mlm"]
    assert relevance and not any(masked for masked, _ in relevance)
    assert len(mlm) == len(relevance) and all(masked for masked, _ in mlm)
    assert max(n for _, n in relevance) == rows and max(n for _, n in mlm) == rows // 4


def test_post_pretraining_reads_only_pool_queries_and_its_pseudo_labels(profile):
    run = run_post_pretrain(profile, 0, progress=False)
    labels = pd.read_parquet(run / "pseudo_labels.parquet")
    import data_gen
    queries = data_gen.read_table(ensure_data(profile, 0, progress=False), "queries")
    splits = set(queries.set_index("query_id").loc[labels["query_id"].unique(), "split"])
    assert splits <= {"train", "unlabelled"}               # valid and test behaviour never leaks in
    assert labels["pseudo_label"].between(0, 1).all()


@pytest.mark.parametrize("arm", [{"pretrain.replacement": "all_mask"}, {"pretrain.sentence_task": "nsp"},
                                 {"pretrain.sentence_task": "nsp", "pretrain.nsp_negatives": "same_product"},
                                 {"pretrain.data_share": 0.25}, {"pretrain.cleaned": False},
                                 {"pretrain.cleaned": False, "pretrain.cleaned_volume": True},
                                 {"pretrain.corpus": "general", "pretrain.tapt_share": 0.0},
                                 {"pretrain.span": True}, {"pretrain.static": True},
                                 {"pretrain.epochs": 4.0, "pretrain.data_share": 0.25}],
                         ids=lambda arm: ",".join(f"{k}={v}" for k, v in arm.items()))
def test_every_pretraining_arm_trains_into_its_own_folder(profile, arm):
    recipe, other = run_pretrain(profile, 0, progress=False), run_pretrain(with_overrides(profile, arm), 0, progress=False)
    assert other != recipe
    metrics = load_manifest(other)["metrics"]
    assert 0 <= metrics["mlm_accuracy"] <= 1 and 0 <= metrics["sentence_accuracy"] <= 1
    if "pretrain.data_share" in arm:   # equal steps over a quarter of the pairs: about four times the epochs
        assert metrics["epochs"] > 3 * load_manifest(recipe)["metrics"]["epochs"]
    if "pretrain.epochs" in arm:       # claim P3's arms: exactly 1 and 4 epochs, at the same steps
        one = load_manifest(run_pretrain(with_overrides(profile, {"pretrain.epochs": 1.0}), 0, progress=False))["metrics"]
        batch = profile.pretrain.batch_size      # the last step may run into the next epoch by one batch
        assert 1.0 <= one["epochs"] <= 1.0 + batch / one["pairs"] + 0.01
        assert 4.0 <= metrics["epochs"] <= 4.0 + batch / metrics["pairs"] + 0.01
        assert abs(one["steps"] - metrics["steps"]) <= 1 and metrics["pairs"] == pytest.approx(one["pairs"] / 4, abs=1)
        spec = CLAIM_ARMS["P3"]       # what run_claim checks before it records P3
        check_equal_compute("P3", "pretrain", *(run_compute(with_overrides(profile, side), 0, "pretrain")
                                                for side in (spec.arm, spec.baseline)))
    assert load_manifest(recipe)["metrics"]["tapt_pairs"] > 0
    if arm.get("pretrain.cleaned_volume"):   # the raw corpus, cut to the cleaned corpus's volume
        assert metrics["pairs"] == load_manifest(recipe)["metrics"]["pairs"]
    elif arm.get("pretrain.cleaned") is False:
        assert metrics["pairs"] > load_manifest(recipe)["metrics"]["pairs"]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Bit for bit, parameter by parameter (the first that differs is named)."""
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def killed_then_resumed(monkeypatch, module, batch_function: str, kill_step: int, build):
    """Run `build()` with module.batch_function (called with the step as its second argument)
    raising at `kill_step`, then again as it is: the run folder of the resumed run, whose log
    must show it resumed rather than restarted (no repeated steps)."""
    real = getattr(module, batch_function)

    def killed(*args):
        if args[1] == kill_step:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(module, batch_function, killed)
    with pytest.raises(KeyboardInterrupt):
        build()
    monkeypatch.setattr(module, batch_function, real)
    run_dir = build()
    assert pd.read_json(run_dir / "train" / "log.jsonl", lines=True)["step"].dropna().is_monotonic_increasing
    return run_dir


@pytest.mark.parametrize("stage", ["pretrain", "post_pretrain"])
def test_a_killed_stage_resumes_to_the_same_weights(profile, tmp_path, monkeypatch, stage):
    """Each training stage draws its batches (and masks) per step: killed and resumed, it ends with
    the weights of a run that went straight through."""
    from relcourse import post_pretrain
    build, module, batch_function, kill_step = {
        "pretrain": (run_pretrain, pretrain, "pointwise_rows", 7),
        "post_pretrain": (run_post_pretrain, post_pretrain, "query_grouped_batch", 5)}[stage]
    fresh = load_profile("smoke", {**TINY, f"{stage}.lr": 2e-3})   # a config no other test built
    straight = load_model(build(fresh, 0, progress=False) / MODEL_DIR)
    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    resumed = killed_then_resumed(monkeypatch, module, batch_function, kill_step,
                                  lambda: build(fresh, 0, progress=False))
    assert_same_weights(straight, load_model(resumed / MODEL_DIR))


def test_stage_2s_learning_curve_is_logged_and_changes_no_weight(profile):
    from relcourse.train import read_log
    plain = run_post_pretrain(profile, 0, progress=False)
    curve = run_post_pretrain(with_overrides(profile, {"post_pretrain.validation_points": 2}), 0, progress=False)
    assert curve != plain   # a setting of its own, so its own run
    evaluations = [line for line in read_log(curve / "train") if "eval" in line]
    steps = profile.post_pretrain.steps
    assert [line["step"] for line in evaluations] == [steps // 2, steps] and 0 < evaluations[-1]["eval"]["auc"] < 1
    assert not any("eval" in line for line in read_log(plain / "train"))
    assert_same_weights(load_model(plain / MODEL_DIR), load_model(curve / MODEL_DIR))


def test_a_training_draw_retrains_on_the_same_pairs_labels_and_test_set(profile):
    """training_draw redraws a stage's own randomness (batch order, masks, dropout, a new head) and
    nothing else: stage 2 keeps its pseudo-labelled pairs, fine-tuning its test pairs and labels."""
    stage_2 = run_post_pretrain(profile, 0, progress=False)
    stage_2_redrawn = run_post_pretrain(with_overrides(profile, {"post_pretrain.training_draw": 1}), 0, progress=False)
    assert stage_2_redrawn != stage_2
    assert pd.read_parquet(stage_2 / "pseudo_labels.parquet").equals(
        pd.read_parquet(stage_2_redrawn / "pseudo_labels.parquet"))
    with pytest.raises(AssertionError):
        assert_same_weights(load_model(stage_2 / MODEL_DIR), load_model(stage_2_redrawn / MODEL_DIR))
    tested = [pd.read_parquet(run_arm(with_overrides(profile, {"finetune.training_draw": draw}), 0, RECIPE,
                                      progress=False) / "test_scores.parquet") for draw in (0, 1)]
    pairs = ["query_id", "doc_id", "label"]
    assert tested[0][pairs].equals(tested[1][pairs])
    assert not np.allclose(tested[0]["score"], tested[1]["score"])


def test_the_noise_probe_splits_the_spread_and_writes_its_runs(profile, tmp_path, capsys):
    out = tmp_path / "noise.json"
    cli.main(["noise", "--profile", "smoke", *[f"--set={k}={v}" for k, v in TINY.items()],
              "--stage-2-draws", "0", "1", "--finetune-draws", "0", "1", "--out", str(out)])
    written = json.loads(out.read_text())
    assert [(r["stage_2_draw"], r["finetune_draw"]) for r in written["runs"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len({r["auc"] for r in written["runs"]}) > 1 and written["auc_components"]["within_df"] == 2
    assert "one_run_sd" in capsys.readouterr().out


def test_a_claim_is_measured_on_every_seed_and_recorded(profile):
    two_seeds = load_profile("smoke", {**TINY, "seeds": "0,1"})
    result = run_claim(two_seeds, "F2")
    assert result.seeds == (0, 1) and len(result.effects) == 2
    assert np.isfinite(result.interval).all() and result.status in claims.STATUSES
    assert claims.load_results("smoke", result.design)["F2"].effects == result.effects
    # each side's metric is kept per seed, and the effects are their differences
    spec = experiments.CLAIM_ARMS["F2"]
    assert result.arm_values == tuple(experiments.arm_metric(two_seeds, s, spec.arm, "pnr", False) for s in (0, 1))
    assert np.allclose(np.subtract(result.arm_values, result.baseline_values), result.effects)


def test_bad_input_is_named(profile):
    data_dir = ensure_data(profile, 0, progress=False)
    tokenizer = tokenizer_of(profile, 0, progress=False)
    with pytest.raises(ValueError, match="tiers 0..3"):
        labelled_splits(data_dir, tokenizer, profile, pd.DataFrame({"doc_id": [1, 2], "label": [0, 5]}))
    with pytest.raises(ValueError, match="lacks columns"):
        labelled_splits(data_dir, tokenizer, profile, pd.DataFrame({"doc_id": [1, 2]}))
    with pytest.raises(ValueError, match="no experiments for stage 'serving'"):
        experiments.select_claims("serving")
    with pytest.raises(ConfigError, match="pretrain.data_share"):
        with_overrides(profile, {"pretrain.data_share": 0})
    with pytest.raises(ConfigError, match="pretrain.sentence_task"):
        with_overrides(profile, {"pretrain.sentence_task": "mlm"})
    with pytest.raises(ConfigError, match="pretrain.corpus"):
        with_overrides(profile, {"pretrain.corpus": "web"})
    with pytest.raises(ConfigError, match="finetune.labels"):
        with_overrides(profile, {"finetune.stale_share": 0.5})
    with pytest.raises(ConfigError, match="finetune.stale_rubric=0 names the rubric of stale labels"):
        with_overrides(profile, {"finetune.labels": "stratified", "finetune.stale_rubric": 0})
    with pytest.raises(ConfigError, match="finetune.stale_rubric=2 is not one of 0, 1"):
        with_overrides(profile, {"finetune.labels": "stratified", "finetune.stale_share": 0.5, "finetune.stale_rubric": 2})
    assert PROBE != RECIPE


def test_the_ladder_results_file_is_strict_json_with_every_rung_and_reference(profile, tmp_path):
    import json
    from relcourse.experiments import write_ladder
    write_ladder(profile, [0], tmp_path / "results.json", progress=False)
    results = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert set(results["summary"]["models"]) == set(LADDER)
    assert {"BM25", "LexicalRanker", "text ceiling", "LexicalRanker + cross-encoder"} <= set(results["summary"]["references"])
    recipe = results["per_seed"]["0"]["models"]["recipe: post-pretrained, fine-tuned"]
    assert {"auc", "pnr", "ndcg@10", "swapped_query_auc", "swapped_query_score_correlation", "valid_auc"} <= set(recipe)
    # the validation AUC early stopping kept: the best of the fine-tuning's logged evaluations
    from relcourse.train import read_log
    logged = [line["eval"]["auc"] for line in read_log(run_arm(profile, 0, RECIPE, progress=False) / "train")
              if "eval" in line]
    assert recipe["valid_auc"] == max(logged)
    assert "alias" in results["summary"]["auc_by_phenomenon"]["LexicalRanker"]
    # which CPU wrote it: a rebuild on another CPU may round differently
    import torch
    assert results["machine"]["cpu"].endswith(torch.backends.cpu.get_cpu_capability())
