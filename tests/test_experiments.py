"""Experiment arms: an arm is a function of (profile, seed), whatever the process ran before."""
import dataclasses
import json
import shutil

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from relcourse.config import load_profile
from relcourse.experiments import run_arm
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
        run = run_arm(cfg, 0, {"finetune.start": "pretrain", "finetune.loss": "multiclass"}, progress=False)
        scores.append(pd.read_parquet(run / "test_scores.parquet").score.to_numpy())
        shutil.rmtree(run)   # build it again from the same cached pretraining run
    np.testing.assert_array_equal(scores[0], scores[1])


def test_notebooks_run_the_claims_on_smoke_and_read_the_registry_above(tmp_path, monkeypatch, capsys):
    from relcourse import claims, experiments, results_files

    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    monkeypatch.setitem(results_files.DEFAULT_INPUTS, "laptop", ())    # no committed results, at first
    ran = []

    def fake_run_claims(profile, stage=None, claim_ids=None, workers=1, progress=True):
        ran.append((profile.name, tuple(claim_ids), workers))
        return [claims.summarise(claim_id, profile.name, {0: 0.01}) for claim_id in claim_ids]

    monkeypatch.setattr(experiments, "run_claims", fake_run_claims)
    smoke, laptop = load_profile("smoke"), load_profile("laptop")
    assert (smoke.notebook_claims, laptop.notebook_claims) == ("run", "read")

    assert set(experiments.notebook_claims(smoke, ["F1", "F2"])) == {"F1", "F2"}
    assert ran == [("smoke", ("F1", "F2"), 2)]      # one 1-thread process per thread of the profile

    # laptop: nothing is trained in the notebook; it names the command for what is missing
    assert experiments.notebook_claims(laptop, ["F1", "F2"]) == {} and len(ran) == 1
    assert "relcourse run claims --profile laptop --claim F1 --claim F2 --workers 2" in capsys.readouterr().out
    claims.record(claims.summarise("F1", "laptop", {0: 0.020, 1: 0.021, 2: 0.022}))
    read = experiments.notebook_claims(laptop, ["F1", "F2"])     # what is recorded, and the command for the rest
    assert list(read) == ["F1"] and read["F1"].status == "holds"
    assert "relcourse run claims --profile laptop --claim F2 --workers 2" in capsys.readouterr().out
    claims.record(claims.summarise("F2", "laptop", {0: -0.01, 1: 0.0, 2: 0.01}))
    read = experiments.notebook_claims(laptop, ["F1", "F2"])
    assert read["F1"].status == "holds" and read["F2"].status == "inconclusive" and len(ran) == 1

    # a claim the registry lacks is read from the committed results files, of the current world only
    for world, effects in ((2, {0: 0.5, 1: 0.6}), (3, {0: 0.03, 1: 0.04})):
        committed = tmp_path / f"world{world}.json"
        committed.write_text(json.dumps({"profile": "laptop", "world_version": world, "claims": {
            "F3": claims.to_json(claims.summarise("F3", "laptop", effects))}}))
        monkeypatch.setitem(results_files.DEFAULT_INPUTS, "laptop", (str(committed),))
        read = experiments.notebook_claims(laptop, ["F1", "F3"])
        assert read["F1"].effects == (0.020, 0.021, 0.022)
        assert ("F3" in read) == (world == 3) and read.get("F3", read["F1"]).effects != (0.5, 0.6)



def test_claims_built_by_parallel_workers_match_a_single_process(tmp_path, monkeypatch):
    # Two spawned 1-thread workers must record what one 1-thread process records, bit for bit:
    # an arm is a function of (profile, seed), not of which process built it or in which order.
    from relcourse import claims, experiments

    recorded = {}
    for workers in (2, 1):
        monkeypatch.setenv(RUNS_ENV, str(tmp_path / f"workers{workers}"))
        cfg = load_profile("smoke", {**TINY, "seeds": "0,1", "threads": workers})
        [result] = experiments.run_claims(cfg, claim_ids=["P6"], workers=workers, progress=False)
        assert claims.load_results("smoke", result.design)["P6"].effects == result.effects
        recorded[workers] = result.effects
        assert result.machine.endswith(", 1 thread a run")   # each worker's layout, not the profile's 2 threads
        # 2 arms x 2 seeds, and the static-masking arm notebook 02 shows beside them, on seed 0
        assert len(list((tmp_path / f"workers{workers}" / "smoke" / "finetune").glob("[0-9]*"))) == 5
        arms = {"probe": experiments.PROBE, "span": experiments.CLAIM_ARMS["P6"].arm}
        # built above, read back, in the arms' order whichever process finished first
        assert list(experiments.build_arms(cfg, 1, arms, workers).items()) == [
            (name, run_arm(cfg, 1, arm, progress=False)) for name, arm in arms.items()]
    assert len(recorded[2]) == 2 and recorded[2] == recorded[1]


def test_a_claim_names_the_layout_that_built_the_runs_it_read(tmp_path, monkeypatch):
    # Threads are not in a run's key, so a claim asked for with 2 threads reads back runs that
    # 1-thread workers built: it must say so, and say "mixed" once it also reads a 2-thread run.
    from relcourse import claims, experiments

    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    one_thread = load_profile("smoke", {**TINY, "seeds": "0", "threads": 1})
    assert experiments.run_claim(one_thread, "P1", progress=False).machine.endswith(", 1 thread a run")
    two_threads = load_profile("smoke", {**TINY, "seeds": "0", "threads": 2})
    assert experiments.run_claim(two_threads, "P1", progress=False).machine.endswith(", 1 thread a run")
    mixed = experiments.run_claim(load_profile("smoke", {**TINY, "seeds": "0,1", "threads": 2}), "P1", progress=False)
    assert mixed.machine.startswith(claims.MIXED) and ", 2 threads a run" in mixed.machine
    with pytest.raises(ValueError, match="share no seed"):   # a mixed result is no layout to pool by
        claims.pool(dataclasses.replace(mixed, seeds=(5, 6)), mixed)


def test_claim_jobs_name_what_each_arm_changes():
    from relcourse import experiments

    laptop = load_profile("laptop")
    assert list(experiments.claim_jobs(laptop, "P6")) == [
        f"seed {s} {name}" for name in ("finetune.start=pretrain, pretrain.span=True", "finetune.start=pretrain") for s in (0, 1, 2)]
    assert list(experiments.claim_jobs(laptop, "T1")) == ["seed 0 T1", "seed 1 T1", "seed 2 T1"]
    # what notebook 02 shows beside P6, built with the claims on the seed the notebooks use
    assert list(experiments.extra_jobs(laptop, "P6")) == ["seed 0 finetune.start=pretrain, pretrain.static=True"]
    assert experiments.extra_jobs(laptop, "P1") == {}
    # beside P2, the test of its mechanism: P2's own NSP arm with negatives about the same product
    assert list(experiments.extra_jobs(laptop, "P2")) == [
        "seed 0 finetune.start=pretrain, pretrain.sentence_task=nsp, pretrain.nsp_negatives=same_product"]


def test_every_claims_arms_are_valid_profiles_on_the_cpu_profiles():
    from relcourse import experiments
    from relcourse.config import with_overrides

    for name in ("smoke", "laptop"):
        for spec in experiments.CLAIM_ARMS.values():
            for arm in (spec.arm, spec.baseline):
                with_overrides(load_profile(name), arm)   # an unknown key or a broken rule raises ConfigError
    # D9's jobs: the direct student of a 4-layer teacher, and the chain through a 2-layer one
    assert list(experiments.claim_jobs(load_profile("laptop"), "D9"))[::3] == [
        "seed 0 distill pretrain.model.layers=4", "seed 0 distill pretrain.model.layers=4, distill.via_layers=2"]


def test_claims_with_fixed_sizes_run_only_where_they_suit_and_the_gpu_profiles_have_their_own():
    from relcourse import experiments
    from relcourse.config import with_overrides

    assert set(experiments.runnable_claims("distill")) - set(experiments.runnable_claims("distill", "smoke")) == {"D3"}
    for name in ("gpu", "gpu-xl"):
        assert experiments.runnable_claims("distill", name) == experiments.runnable_claims("distill")
    with pytest.raises(ValueError, match="sized for the laptop models, not 'smoke'"):
        experiments.select_claims(claim_ids=["D3"], profile_name="smoke")
    gpu, xl = load_profile("gpu"), load_profile("gpu-xl")
    arms = {(name, c): experiments.claim_arms(c, name) for name in ("gpu", "gpu-xl") for c in ("D3", "D4", "D9")}
    small = with_overrides(gpu, arms["gpu", "D3"].baseline).distill.student
    assert (small.layers, small.hidden, small.heads) == (2, 192, 3) and arms["gpu", "D3"].arm == experiments.RECIPE
    assert with_overrides(gpu, arms["gpu", "D4"].arm).pretrain.model.layers == 2 * gpu.pretrain.model.layers == 24
    assert with_overrides(xl, arms["gpu-xl", "D4"].arm).pretrain.model.layers == 48   # the sources' teacher
    assert [with_overrides(p, arms[p.name, "D9"].baseline).distill.via_layers for p in (gpu, xl)] == [6, 8]
    assert list(experiments.claim_jobs(gpu, "D4"))[0] == "seed 0 distill pretrain.model.layers=24"
    assert experiments.claim_arms("D4", "laptop") is experiments.CLAIM_ARMS["D4"]


def test_the_course_builds_what_its_notebooks_read_before_it_runs_them(tmp_path, monkeypatch):
    # On a profile whose notebooks read their claims, `relcourse course` first builds the runs the
    # notebooks train (two chains at once); then what notebooks 03 to 05 ask for is all cached:
    # the same runs, so the notebooks train nothing more.
    from relcourse.config import design_overrides, with_overrides
    from relcourse.distill import run_distill, student_profile
    from relcourse import claims
    from relcourse.course import run_course
    from relcourse.experiments import (FEEDBACK_DESIGNS, LADDER, LOSSES, arms_built_here, arms_not_built_note,
                                       build_arms, build_course_runs, builds_course_first, course_jobs,
                                       notebook_workers)
    from relcourse.feedback_loop import run_feedback_loop
    from relcourse.finetune import run_finetune
    from relcourse.post_pretrain import run_post_pretrain

    from test_distill import TINY_DISTILL

    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    cfg = load_profile("smoke", {**TINY_DISTILL, "notebook_claims": "read"})
    assert builds_course_first(cfg) and not builds_course_first(load_profile("smoke"))   # smoke runs its claims
    assert not builds_course_first(load_profile("smoke", {"notebook_claims": "read", "threads": 1}))
    built = build_course_runs(cfg, 0, progress=False)
    assert list(built) == list(course_jobs(cfg, 0))
    runs = sorted(tmp_path.glob("smoke/*/0-*"))

    # what the notebooks call (03: the feedback loops; 04: the five losses and the ladder, two
    # processes; 05: the student's own recipe and the distilled student)
    read = [*(run_feedback_loop(with_overrides(cfg, arm), 0, progress=False) for arm in FEEDBACK_DESIGNS.values()),
            *build_arms(cfg, 0, {loss: {"finetune.loss": loss} for loss in LOSSES}, notebook_workers(cfg)).values(),
            *build_arms(cfg, 0, LADDER, notebook_workers(cfg)).values(),
            run_finetune(student_profile(cfg), 0, progress=False), run_distill(cfg, 0, progress=False)]
    assert sorted(tmp_path.glob("smoke/*/0-*")) == runs          # nothing new was trained
    assert set(built.values()) == set(read) | {run_post_pretrain(cfg, 0, progress=False)}

    # A notebook reads back the arms of a recorded claim only where they are on disk: F1's and
    # F2's are course runs (the recipe, soft_ce, mse, pairwise, multiclass), F3's label plans are
    # not, and T1 (measured by a function) has none to read. Asking builds nothing.
    recorded = {c: claims.summarise(c, "smoke", {0: 0.01, 1: 0.02}) for c in ("T1", "F1", "F2", "F3")}
    assert list(arms_built_here(cfg, recorded, 0)) == ["T1", "F1", "F2"]
    assert list(arms_built_here(cfg, recorded, 1)) == ["T1"]            # seed 1: nothing built
    assert sorted(tmp_path.glob("smoke/*/0-*")) == runs and not list(tmp_path.glob("smoke/*/1-*"))
    note = arms_not_built_note(cfg, recorded, arms_built_here(cfg, recorded, 0))
    assert note.startswith("F3: the committed results") and "run claims --profile smoke --claim F3 --workers 2" in note
    assert arms_not_built_note(cfg, {"F1": recorded["F1"]}, {"F1": recorded["F1"]}) == ""
    assert list(arms_built_here(load_profile("smoke"), recorded, 1)) == list(recorded)   # 'run': the notebook built them

    # End to end, as on a fresh checkout that reads results recorded elsewhere: every claim has a
    # result but none of its arms is built beyond the course's runs. Notebooks 02-06 run through,
    # 02-05 print the command for what is not built, and none trains anything (06 serves the
    # course's teacher and distilled student).
    design = design_overrides(cfg)   # the tiny world's settings: the registry keeps its results apart
    for claim in claims.CLAIMS:
        claims.record(claims.summarise(claim.id, "smoke", {0: 0.01, 1: 0.02}, sides_by_seed={0: (0.61, 0.6), 1: (0.62, 0.6)},
                                       design=design))
    executed = run_course("smoke", 0, tmp_path / "executed", only=["02", "03", "04", "05", "06"],
                          overrides={**TINY_DISTILL, "notebook_claims": "read"})
    # (notebook 02 also trains a tokenizer of laptop's vocabulary, seconds, to compare the two)
    assert [p for p in sorted(tmp_path.glob("smoke/*/0-*")) if p.parent.name != "tokenizer"] == \
        [p for p in runs if p.parent.name != "tokenizer"]
    assert [p.name[:2] for p in executed] == ["02", "03", "04", "05", "06"]
    for path in executed[:-1]:
        printed = "".join(o.get("text", "") for c in nbformat.read(path, as_version=4).cells
                          for o in c.get("outputs", []) if o.output_type == "stream")
        assert "their arms are not built here" in printed, path.name
