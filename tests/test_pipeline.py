"""The stages end to end on a tiny world: pretrain -> teacher -> post-pretrain -> fine-tune, the
claims runner, exact resume of a killed stage, and the errors of bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from relcourse import claims, experiments, pretrain
from relcourse.config import load_profile
from relcourse.experiments import RECIPE, Arm, arm_table, run_arm, run_claim
from relcourse.finetune import labelled_splits
from relcourse.models import load_model
from relcourse.post_pretrain import PostPretrainOptions, run_post_pretrain
from relcourse.pretrain import MODEL_DIR, PretrainOptions, run_pretrain, tokenizer_of
from relcourse.store import RUNS_ENV, ensure_data, load_manifest

TINY = {"data.n_queries": 120, "data.n_searches": 4_000, "data.general_corpus_lines": 400,
        "data.domain_corpus_lines": 600, "data.label_budget": 1_500, "tokenizer.vocab_size": 300,
        "pretrain.steps": 12, "pretrain.batch_size": 16, "pretrain.warmup_steps": 2,
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
    monkeypatch.setattr(experiments, "finetune", lambda *a, **k: pytest.fail("fine-tuned again"))
    monkeypatch.setattr("relcourse.pretrain.train", lambda *a, **k: pytest.fail("pretrained again"))
    assert run_arm(profile, 0, RECIPE, progress=False) == run


def test_post_pretraining_reads_only_pool_queries_and_its_pseudo_labels(profile):
    run = run_post_pretrain(profile, 0, PostPretrainOptions(), PretrainOptions(), progress=False)
    labels = pd.read_parquet(run / "pseudo_labels.parquet")
    import data_gen
    queries = data_gen.read_table(ensure_data(profile, 0, progress=False), "queries")
    splits = set(queries.set_index("query_id").loc[labels["query_id"].unique(), "split"])
    assert splits <= {"train", "unlabelled"}               # valid and test behaviour never leaks in
    assert labels["pseudo_label"].between(0, 1).all()


@pytest.mark.parametrize("options", [PretrainOptions(replacement="all_mask"), PretrainOptions(sentence_task="nsp"),
                                     PretrainOptions(data_share=0.25), PretrainOptions(cleaned=False),
                                     PretrainOptions(corpus="general", tapt_share=0.5),
                                     PretrainOptions(span=True), PretrainOptions(static=True)],
                         ids=lambda o: ",".join(f"{k}={v}" for k, v in o.changes().items()))
def test_every_pretraining_arm_trains_into_its_own_folder(profile, options):
    recipe, arm = run_pretrain(profile, 0, progress=False), run_pretrain(profile, 0, options, progress=False)
    assert arm != recipe
    metrics = load_manifest(arm)["metrics"]
    assert 0 <= metrics["mlm_accuracy"] <= 1 and 0 <= metrics["sentence_accuracy"] <= 1
    if options.data_share < 1:   # equal steps over a quarter of the pairs: about four times the epochs
        assert metrics["epochs"] > 3 * load_manifest(recipe)["metrics"]["epochs"]


def test_a_killed_pretraining_resumes_to_the_same_weights(profile, tmp_path, monkeypatch):
    fresh = load_profile("smoke", {**TINY, "pretrain.lr": 2e-3})   # a config no other test built
    straight = load_model(run_pretrain(fresh, 0, progress=False) / MODEL_DIR)

    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    real_rows = pretrain.pointwise_rows

    def killed_at_step_7(n, step, batch_size, seed):
        if step == 7:
            raise KeyboardInterrupt("killed")
        return real_rows(n, step, batch_size, seed)

    monkeypatch.setattr(pretrain, "pointwise_rows", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(fresh, 0, progress=False)
    monkeypatch.setattr(pretrain, "pointwise_rows", real_rows)
    resumed_dir = run_pretrain(fresh, 0, progress=False)
    log = pd.read_json(resumed_dir / "train" / "log.jsonl", lines=True)
    assert log["step"].dropna().is_monotonic_increasing            # the resumed log has no repeats
    resumed = load_model(resumed_dir / MODEL_DIR)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_claim_is_measured_on_every_seed_and_recorded(profile):
    two_seeds = load_profile("smoke", {**TINY, "seeds": "0,1"})
    result = run_claim(two_seeds, "F2")
    assert result.seeds == (0, 1) and len(result.effects) == 2
    assert np.isfinite(result.interval).all() and result.status in claims.STATUSES
    assert claims.load_results("smoke")["F2"].effects == result.effects


def test_bad_input_is_named(profile):
    data_dir = ensure_data(profile, 0, progress=False)
    tokenizer = tokenizer_of(profile, 0, progress=False)
    with pytest.raises(ValueError, match="tiers 0..3"):
        labelled_splits(data_dir, tokenizer, profile, pd.DataFrame({"doc_id": [1, 2], "label": [0, 5]}))
    with pytest.raises(ValueError, match="lacks columns"):
        labelled_splits(data_dir, tokenizer, profile, pd.DataFrame({"doc_id": [1, 2]}))
    with pytest.raises(ValueError, match="stage 'distill'"):
        experiments.select_claims("distill")
    with pytest.raises(ValueError, match="data_share"):
        PretrainOptions(data_share=0)
    with pytest.raises(ValueError, match="sentence_task"):
        run_pretrain(profile, 0, PretrainOptions(sentence_task="mlm"), progress=False)
    with pytest.raises(ValueError, match="unknown corpus mix"):
        run_pretrain(profile, 0, PretrainOptions(corpus="web"), progress=False)
    assert Arm() != RECIPE
