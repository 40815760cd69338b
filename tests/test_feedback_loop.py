"""Claim T4 on a tiny world: the logs re-simulated under another ranker, the two loops side by
side, the cached stage and the claim in the registry."""
import numpy as np
import pandas as pd
import pytest

import data_gen
from relcourse import claims, experiments
from relcourse.config import ConfigError, load_profile
from relcourse.feedback_loop import (BEHAVIOUR, COLUMNS, LOOPS, feedback_effect, rounds_table, run_feedback_loop,
                                     simulate_loops)
from relcourse.store import RUNS_ENV, ensure_data, load_manifest

TINY = {"data.n_queries": 150, "data.n_searches": 4_000, "data.searches_per_shard": 2_000,
        "data.general_corpus_lines": 100, "data.domain_corpus_lines": 100, "data.label_budget": 900}
FAST = {"feedback_loop.rounds": 2, "feedback_loop.student_rounds": 60, "feedback_loop.finetune_rounds": 20}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUNS_ENV, str(tmp_path_factory.mktemp("runs")))
        yield load_profile("smoke", {**TINY, **FAST})


@pytest.fixture(scope="module")
def world(profile):
    return ensure_data(profile, 0, progress=False)


@pytest.fixture(scope="module")
def loops(world, profile):
    return simulate_loops(world, 0, profile.feedback_loop)


def _impressions(shards) -> pd.DataFrame:
    return pd.concat([pd.DataFrame(s) for s in shards], ignore_index=True)


def test_the_worlds_own_ranker_and_seed_reproduce_its_logs(world):
    pools, ranker = data_gen.world_pools(world)
    assert ranker.shape == pools.tier.shape == (150, 12)
    again = _impressions(data_gen.resimulate_logs(world, ranker.ravel(), seed=0, match_scale=False))
    pd.testing.assert_frame_equal(again, data_gen.read_table(world, "impressions"))


def test_another_ranker_changes_what_is_shown_not_how_users_behave(world):
    pools, ranker = data_gen.world_pools(world)
    truth = pools.tier.astype(float).ravel()

    def top_tier(scores):
        imp = _impressions(data_gen.resimulate_logs(world, scores, seed=7, n_searches=3_000))
        assert imp.search_id.nunique() == 3_000
        return pools.tier.ravel()[imp.doc_id[imp.position == 1]].mean()

    # match_scale puts any score on the old ranker's scale: truth and its negation rank opposite ways.
    assert top_tier(truth) > top_tier(ranker.ravel()) > top_tier(-truth)
    with pytest.raises(ValueError, match="one per candidate pair"):
        data_gen.resimulate_logs(world, truth[:-1], seed=7)
    with pytest.raises(ValueError, match="n_searches"):
        data_gen.resimulate_logs(world, truth, seed=7, n_searches=0)


def test_both_loops_start_together_and_differ_in_the_model_score_only(loops):
    assert list(loops.columns) == list(COLUMNS) and len(loops) == len(LOOPS) * (FAST["feedback_loop.rounds"] + 1)
    by_loop = loops.set_index(["round", "loop"])
    start = by_loop.loc[0]
    pd.testing.assert_series_equal(start.loc["clean"], start.loc["fed_back"], check_names=False)
    later = loops[loops["round"] > 0]
    assert (later.loc[later.loop == "clean", "model_score_gain_share"] == 0).all()
    assert (later.loc[later.loop == "fed_back", "model_score_gain_share"] > 0).all()
    measured = ["teacher_auc", "model_auc", "pseudo_truth_corr"]
    assert loops[measured].apply(lambda c: c.between(-1, 1)).all().all()
    assert loops.loc[loops["round"] > 0, "pseudo_model_corr"].notna().all()
    assert "ranker_score_mean" not in BEHAVIOUR  # the model's score by the side door, once it ranks


def test_the_loops_are_a_function_of_world_seed_and_options(world, loops, profile):
    pd.testing.assert_frame_equal(simulate_loops(world, 0, profile.feedback_loop), loops)


def test_the_claim_reads_the_cached_stage_and_is_recorded(profile):
    run = run_feedback_loop(profile, 0, progress=False)
    table = rounds_table(run)
    last = load_manifest(run)["metrics"]
    assert last["clean"]["teacher_auc"] == round(table.query("round == 2 and loop == 'clean'").teacher_auc.item(), 4)
    assert run_feedback_loop(profile, 0, progress=False) == run   # reused, not simulated again
    fed_back, clean, also = feedback_effect(profile, 0)
    assert (fed_back, clean) == tuple(table.query("round == 2").set_index("loop").model_auc[["fed_back", "clean"]])
    assert also["teacher AUC clean"] == table.query("round == 2 and loop == 'clean'").teacher_auc.item()
    assert set(also) == {f"{what} {loop}" for what in ("teacher AUC", "label-model agreement")
                         for loop in ("fed_back", "clean")}
    result = experiments.run_claim(profile, "T4", progress=False)
    assert result.effects == (fed_back - clean,) and result.status == "inconclusive"   # one seed
    assert "label-model agreement fed_back" in result.notes
    assert claims.load_results("smoke", result.design)["T4"].effects == result.effects
    assert "T4" in experiments.runnable_claims("post_pretrain")


def test_labels_the_model_chooses_are_what_its_ranking_showed_first(world, profile, loops):
    """teacher_labels='shown_top': each round's teacher learns from labels bought from the round's
    logs, each query's documents in the ranker's order, at the world's labelling cost per split."""
    from relcourse.config import with_overrides
    from relcourse.features import behaviour_features
    from relcourse.feedback_loop import _teacher_labels, _World

    options = with_overrides(profile, {"feedback_loop.teacher_labels": "shown_top"}).feedback_loop
    seen, x = _World(world, 0), behaviour_features(world)
    train, valid = _teacher_labels(seen, x, 1, options)
    for split, labels in (("train", train), ("valid", valid)):
        assert set(labels.split) == {split} and labels.strategy.eq("shown_first").all()
        assert seen.label_cost[split] - 6 < labels.cost.sum() <= seen.label_cost[split]   # the same cost, to a pair
        shown = x[x.query_id.isin(labels.query_id)].assign(labelled=lambda t: t.index.isin(labels.doc_id))
        by_query = shown.groupby(["query_id", "labelled"]).ranker_score_mean.agg(["min", "max"]).unstack()
        unlabelled_max = by_query[("max", False)].fillna(-np.inf)
        assert (by_query[("min", True)] >= unlabelled_max).all()   # nothing ranked above a labelled pair is unlabelled
    assert _teacher_labels(seen, x, 1, profile.feedback_loop)[0] is seen.train   # the world's own, by default
    chosen = simulate_loops(world, 0, options)
    assert list(chosen.columns) == list(COLUMNS)
    assert chosen.loc[0, "teacher_auc"] != loops.loc[0, "teacher_auc"]   # other labels from the start


def test_anchored_annotators_carry_the_models_verdict_into_its_teachers_labels(world, profile):
    """annotator_anchoring: the labels a round buys lean toward the tiers that round's ranker
    suggests, so they agree more with its score than unanchored labels of the same pairs."""
    from relcourse.config import with_overrides
    from relcourse.features import behaviour_features
    from relcourse.feedback_loop import _teacher_labels, _World

    seen, x = _World(world, 0), behaviour_features(world)
    shown_top = {"feedback_loop.teacher_labels": "shown_top"}
    plain = _teacher_labels(seen, x, 1, with_overrides(profile, shown_top).feedback_loop)[0]
    anchored = _teacher_labels(seen, x, 1, with_overrides(
        profile, {**shown_top, "feedback_loop.annotator_anchoring": 0.5}).feedback_loop)[0]
    n = min(len(plain), len(anchored))      # arbitration, paid per disagreement, ends the budget a pair or so apart
    assert abs(len(plain) - len(anchored)) < 10 and anchored.doc_id[:n].equals(plain.doc_id[:n])
    agreement = [labels[:n].label.corr(labels[:n].ranker_score, method="spearman") for labels in (plain, anchored)]
    assert agreement[1] > agreement[0] + 0.1
    with pytest.raises(ConfigError, match="set teacher_labels=shown_top as well"):
        load_profile("smoke", {"feedback_loop.annotator_anchoring": 0.5})


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="feedback_loop.rounds=0 is out of range"):
        load_profile("smoke", {"feedback_loop.rounds": 0})
    with pytest.raises(ConfigError, match="feedback_loop.selection='random' is not one of covering, naive"):
        load_profile("smoke", {"feedback_loop.selection": "random"})
    with pytest.raises(ConfigError, match="feedback_loop.pairs_share=0"):
        load_profile("smoke", {"feedback_loop.pairs_share": 0})
    assert np.isclose(load_profile("smoke").feedback_loop.pairs_share, 0.5)


def test_the_recipes_own_model_can_run_the_loop(profile, world):
    """relevance_model='cross_encoder': each round post-pretrains the pretrained BERT on its
    pseudo-labels and fine-tunes it on the human labels (a few steps here); the stage's key sees
    the stage-2 and fine-tuning settings it trains with, the lexical stand-in's does not."""
    from relcourse.config import with_overrides
    from relcourse.feedback_loop import feedback_loop_settings
    few = {"feedback_loop.relevance_model": "cross_encoder", "feedback_loop.rounds": 1, "pretrain.steps": 10,
           "post_pretrain.steps": 6, "finetune.steps": 6}
    encoder_profile = with_overrides(profile, few)
    run = run_feedback_loop(encoder_profile, 0, progress=False)
    table = rounds_table(run)
    assert list(table.columns) == list(COLUMNS) and len(table) == 4 and table.model_auc.between(0, 1).all()
    assert table.loc[table["round"] == 1, "pseudo_model_corr"].notna().all()
    assert not (run / "models").exists()                  # checkpoints were only needed to resume
    more_steps = with_overrides(encoder_profile, {"post_pretrain.steps": 7})
    assert feedback_loop_settings(more_steps) != feedback_loop_settings(encoder_profile)
    assert feedback_loop_settings(with_overrides(profile, {"post_pretrain.steps": 7})) == feedback_loop_settings(profile)
    with pytest.raises(ValueError, match="needs a CrossEncoderStudent"):
        simulate_loops(world, 0, encoder_profile.feedback_loop)
    with pytest.raises(ConfigError, match="feedback_loop.relevance_model='bert' is not one of lexical, cross_encoder"):
        load_profile("smoke", {"feedback_loop.relevance_model": "bert"})
