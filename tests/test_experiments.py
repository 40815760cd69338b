"""Experiment arms: an arm is a function of (profile, seed), whatever the process ran before."""
import shutil

import numpy as np
import pandas as pd
import torch

from relcourse.config import load_profile
from relcourse.experiments import Arm, run_arm
from relcourse.store import RUNS_ENV

# A world and a model small enough to build from nothing in a few seconds.
TINY = {"data.n_queries": 200, "data.n_searches": 4_000, "data.general_corpus_lines": 300,
        "data.domain_corpus_lines": 300, "pretrain.steps": 4, "pretrain.warmup_steps": 1, "finetune.steps": 4}


def test_a_4_class_arm_depends_on_the_seed_not_on_the_global_rng(tmp_path, monkeypatch):
    # The 4-class arm starts a fresh relevance head: it must be drawn from the seed, not from
    # whatever state earlier work in the process (a notebook's other cells) left the global RNG in.
    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    cfg = load_profile("smoke", TINY)
    scores = []
    for earlier_work in (1, 2):
        torch.manual_seed(earlier_work)
        run = run_arm(cfg, 0, Arm(loss="multiclass"), progress=False)
        scores.append(pd.read_parquet(run / "test_scores.parquet").score.to_numpy())
        shutil.rmtree(run)   # build it again from the same cached pretraining run
    np.testing.assert_array_equal(scores[0], scores[1])


def test_notebooks_run_the_claims_on_smoke_and_read_the_registry_above(tmp_path, monkeypatch, capsys):
    from relcourse import claims, experiments

    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    ran = []

    def fake_run_claim(profile, claim_id, progress=True):
        ran.append((profile.name, claim_id))
        return claims.summarise(claim_id, profile.name, {0: 0.01})

    monkeypatch.setattr(experiments, "run_claim", fake_run_claim)
    smoke, laptop = load_profile("smoke"), load_profile("laptop")
    assert (smoke.notebook_claims, laptop.notebook_claims) == ("run", "read")

    assert set(experiments.notebook_claims(smoke, ["F1", "F2"])) == {"F1", "F2"}
    assert ran == [("smoke", "F1"), ("smoke", "F2")]

    # laptop: nothing is trained in the notebook; it names the command for what is missing
    assert experiments.notebook_claims(laptop, ["F1", "F2"]) is None and len(ran) == 2
    assert "relcourse run claims --profile laptop --claim F1 --claim F2" in capsys.readouterr().out
    claims.record(claims.summarise("F1", "laptop", {0: 0.020, 1: 0.021, 2: 0.022}))
    claims.record(claims.summarise("F2", "laptop", {0: -0.01, 1: 0.0, 2: 0.01}))
    read = experiments.notebook_claims(laptop, ["F1", "F2"])
    assert read["F1"].status == "holds" and read["F2"].status == "inconclusive" and len(ran) == 2
