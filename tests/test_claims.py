import dataclasses
import json
import math
import re
import statistics

import pytest

from relcourse.claims import (CLAIMS, CLAIMS_BY_ID, PROBES, STAGES, Claim, ClaimResult, get_claim, load_probes,
                              load_results, load_variants,
                              minimum_detectable_effect, pool, record, results_path, summarise, t_quantile_975)
from relcourse.report import claims_table, write_report
from relcourse.store import StoreError

@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RELCOURSE_RUNS", str(tmp_path / "runs"))


# The claims the source notes make, four stages: 6 on pretraining, 5 on post-pretraining,
# 5 on fine-tuning, 12 on distillation and serving.
CLAIM_IDS = [f"{prefix}{i}" for prefix, n in (("P", 6), ("T", 5), ("F", 5), ("D", 12)) for i in range(1, n + 1)]


def test_registry_holds_every_claim_once_in_stage_order():
    assert [c.id for c in CLAIMS] == CLAIM_IDS


def test_every_claim_is_fully_described():
    prefix_stage = {"P": "pretrain", "T": "post_pretrain", "F": "finetune", "D": "distill"}
    for c in CLAIMS:
        assert c.stage == prefix_stage[c.id[0]] and c.stage in STAGES
        assert c.statement and c.metric and c.arm and c.baseline and c.sources
        assert all(re.fullmatch(r"\d{3}", s) for s in c.sources)
        assert "|" not in c.statement + c.metric  # would break the Markdown table
    assert get_claim("T4").direction == -1  # feeding the score back is expected to hurt


def test_unknown_claim_lists_the_claims():
    with pytest.raises(ValueError, match="P1, P2, .*D12.*the probes: P2-why, P1-why, D10-why"):
        get_claim("P9")


def test_every_probe_explains_a_claim_with_arms_of_its_own():
    from relcourse import experiments
    assert not set(CLAIMS_BY_ID) & {p.id for p in PROBES}
    for probe in PROBES:
        claim = CLAIMS_BY_ID[probe.explains]
        assert probe.stage == claim.stage and not probe.sources and get_claim(probe.id) is probe
        spec = experiments.CLAIM_ARMS[probe.id]
        assert spec.arm != spec.baseline
        assert experiments.select_claims(claim_ids=[probe.id]) == [probe.id]
        assert probe.id not in experiments.select_claims(probe.stage)   # a stage's claims leave probes out
    # P2's probe: P2's own baseline (NSP) against NSP whose negatives are about the same product
    spec = experiments.CLAIM_ARMS["P2-why"]
    assert spec.arm == experiments.CLAIM_ARMS["P2"].baseline
    assert {k: v for k, v in spec.baseline.items() if spec.arm.get(k) != v} == {"pretrain.nsp_negatives": "same_product"}


@pytest.mark.parametrize("sources, explains", [((), ""), (("001",), "P2")])
def test_a_claim_names_its_sources_and_a_probe_the_claim_it_explains_not_both(sources, explains):
    with pytest.raises(ValueError, match="one of the two"):
        Claim("X1", "pretrain", "s", sources, "m", "a", "b", explains=explains)


def test_a_probe_is_recorded_apart_from_the_claims_and_their_variants():
    record(summarise("P2", "smoke", {0: -0.05, 1: -0.04}))
    record(summarise("P2", "smoke", {0: -0.01, 1: 0.01}, design={"pretrain.nsp_negatives": "same_product"}))
    record(summarise("P2-why", "smoke", {0: 0.04, 1: 0.05, 2: 0.045}))
    assert load_results("smoke")["P2"].effects == (-0.05, -0.04) and "P2-why" not in load_results("smoke")
    assert list(load_variants("smoke")) == ["P2 [pretrain.nsp_negatives=same_product]"]
    assert list(load_probes("smoke")) == ["P2-why"] and load_probes("smoke")["P2-why"].status == "holds"


@pytest.mark.parametrize("effects, status", [
    ([0.02, 0.03, 0.025], "holds"),
    ([-0.02, -0.03, -0.025], "does not hold"),
    ([0.02, -0.02, 0.01], "inconclusive"),
    # All negative, yet with 3 seeds t(2) = 4.30 makes the interval [-0.045, +0.005]: too spread to judge.
    ([-0.02, -0.03, -0.01], "inconclusive"),
    ([0.02], "inconclusive"),
])
def test_status_follows_the_interval(effects, status):
    r = summarise("P2", "smoke", dict(enumerate(effects)))
    assert r.status == status
    assert r.mean == pytest.approx(statistics.fmean(effects))
    assert r.seeds == tuple(range(len(effects))) and r.effects == tuple(effects)


def test_one_seed_has_no_interval():
    r = summarise("P2", "smoke", {4: 0.1})
    assert math.isnan(r.interval[0]) and math.isnan(r.interval[1])


def test_expected_direction_minus_one_flips_the_verdict():
    assert summarise("T4", "smoke", {0: -0.02, 1: -0.03, 2: -0.025}).status == "holds"
    assert summarise("T4", "smoke", {0: 0.02, 1: 0.03, 2: 0.025}).status == "does not hold"


def test_interval_is_the_student_t_interval():
    scipy_stats = pytest.importorskip("scipy.stats")
    effects = [0.011, 0.004, 0.02, -0.001, 0.009]
    r = summarise("D2", "smoke", dict(enumerate(effects)))
    lo, hi = scipy_stats.t.interval(0.95, len(effects) - 1, loc=statistics.fmean(effects),
                                    scale=scipy_stats.sem(effects))
    assert r.interval == pytest.approx((lo, hi), abs=1e-12)
    for df in range(1, 40):
        assert t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-9)
    for seeds in (2, 3, 5, 10):   # the power a claim has: t quantiles from scipy as the oracle
        t = scipy_stats.t.ppf(0.975, seeds - 1) + scipy_stats.t.ppf(0.8, seeds - 1)
        assert minimum_detectable_effect(0.013, seeds) == pytest.approx(t * 0.013 / math.sqrt(seeds), abs=1e-9)
    assert math.isnan(minimum_detectable_effect(0.01, 1))


def test_summarise_rejects_missing_or_non_finite_effects():
    with pytest.raises(ValueError, match="at least one seed"):
        summarise("P1", "smoke", {})
    with pytest.raises(ValueError, match="finite"):
        summarise("P1", "smoke", {0: float("nan")})


def test_without_results_every_claim_is_not_run():
    results = load_results("smoke")
    assert list(results) == list(CLAIMS_BY_ID)
    assert {r.status for r in results.values()} == {"not run"}


def test_record_merges_by_claim_id_and_round_trips():
    record(summarise("P1", "smoke", {0: 0.01, 1: 0.02}, notes="first"))
    record(summarise("P2", "smoke", {0: 0.05}))
    sides = {0: (0.63, 0.60), 1: (0.65, 0.61), 2: (0.64, 0.605)}    # each side's metric, per seed
    record(summarise("P1", "smoke", {0: 0.03, 1: 0.04, 2: 0.035}, notes="rerun", sides_by_seed=sides))
    results = load_results("smoke")
    assert results["P1"] == summarise("P1", "smoke", {0: 0.03, 1: 0.04, 2: 0.035}, notes="rerun", sides_by_seed=sides)
    assert results["P1"].arm_values == (0.63, 0.65, 0.64) and results["P1"].baseline_values == (0.60, 0.61, 0.605)
    assert results["P2"].arm_values == ()          # given as effects only
    assert results["P2"].status == "inconclusive" and math.isnan(results["P2"].interval[0])
    assert results["D12"] == ClaimResult("D12", "smoke")
    assert load_results("laptop")["P1"].status == "not run"  # results are per profile
    stored = json.loads(results_path("smoke").read_text())  # strict JSON: NaN is stored as null
    assert stored["P2"]["interval"] == [None, None]


def test_a_variant_of_a_claims_design_is_kept_apart_and_never_replaces_the_claim():
    design = {"feedback_loop.relevance_model": "cross_encoder", "feedback_loop.rounds": 2}
    record(summarise("T4", "smoke", {0: 0.01, 1: 0.02}))
    record(summarise("T4", "smoke", {0: -0.03, 1: -0.05}, design=design))
    assert load_results("smoke")["T4"].effects == (0.01, 0.02)                  # the claim as designed
    variant = load_results("smoke", design)["T4"]
    assert variant.effects == (-0.03, -0.05) and variant.design == design
    assert variant.key == "T4 [feedback_loop.relevance_model=cross_encoder, feedback_loop.rounds=2]"
    assert load_results("smoke", design)["T1"].status == "not run"
    assert list(load_variants("smoke")) == [variant.key]
    stored = json.loads(results_path("smoke").read_text())
    assert "design" not in stored["T4"] and stored[variant.key]["design"] == design


def test_run_claim_records_a_run_with_changed_settings_as_a_variant(monkeypatch):
    from relcourse import experiments
    from relcourse.config import load_profile

    monkeypatch.setitem(experiments.MEASURED_CLAIMS, "T1", lambda profile, seed, progress: (0.9 + seed / 100, 0.8))
    experiments.run_claim(load_profile("smoke", {"seeds": "0,1", "threads": 1}), "T1", progress=False)
    experiments.run_claim(load_profile("smoke", {"seeds": "0,1", "teacher.max_rounds": 7}), "T1", progress=False)
    assert load_results("smoke")["T1"].design == {}                              # seeds and threads are not design
    assert list(load_variants("smoke")) == ["T1 [teacher.max_rounds=7]"]


def test_run_claim_records_the_recipe_it_measured_and_the_registry_keeps_it(monkeypatch):
    from relcourse import experiments
    from relcourse.config import load_profile
    from relcourse.stage_keys import own_key

    smoke = load_profile("smoke", {"seeds": "0,1"})
    monkeypatch.setitem(experiments.MEASURED_CLAIMS, "T1", lambda profile, seed, progress: (0.9 + seed / 100, 0.8))
    experiments.run_claim(smoke, "T1", progress=False)
    recorded = load_results("smoke")["T1"].recipe
    assert recorded == {"data": own_key("data", smoke), "teacher": own_key("teacher", smoke)}
    assert json.loads(results_path("smoke").read_text())["T1"]["recipe"] == recorded
    record(summarise("P1", "smoke", {0: 0.01}))      # an entry without one reads back as {}
    assert "recipe" not in json.loads(results_path("smoke").read_text())["P1"]
    assert load_results("smoke")["P1"].recipe == {}


def test_run_claim_records_the_machine_that_measured_it(monkeypatch):
    from relcourse import experiments
    from relcourse.config import load_profile
    from relcourse.store import cpu_model

    monkeypatch.setitem(experiments.MEASURED_CLAIMS, "T1", lambda profile, seed, progress: (0.9 + seed / 100, 0.8))
    experiments.run_claim(load_profile("smoke", {"seeds": "0,1"}), "T1", progress=False)
    assert load_results("smoke")["T1"].machine == f"cpu: {cpu_model()}, 2 threads a run"
    record(summarise("P1", "smoke", {0: 0.01}))      # an entry without one reads back as ""
    assert "machine" not in json.loads(results_path("smoke").read_text())["P1"]
    assert load_results("smoke")["P1"].machine == ""


def test_run_claim_keeps_each_seeds_extra_measurements(monkeypatch):
    from relcourse import experiments
    from relcourse.config import load_profile

    monkeypatch.setitem(experiments.MEASURED_CLAIMS, "D2", lambda profile, seed, progress:
                        (0.86 + seed / 100, 0.84, {"labels only, equal steps": 0.83 + seed / 1000}))
    experiments.run_claim(load_profile("smoke", {"seeds": "0,1"}), "D2", progress=False)
    result = load_results("smoke")["D2"]
    assert result.extra_values == {"labels only, equal steps": (0.83, 0.831)}
    assert result.notes == "arm 0.8650, baseline 0.8400 (mean over seeds [0, 1]); labels only, equal steps 0.8305"


RECIPE = {"data": "6e5843ab295f", "pretrain": "4b62fec72434"}


def sitting(seeds, arm=lambda s: 0.60 + s / 100, **extra):
    """A result of P2 measured on `seeds` in one sitting: arm 0.60 + seed/100, baseline 0.60."""
    return summarise("P2", "laptop", {s: arm(s) - 0.6 for s in seeds}, sides_by_seed={s: (arm(s), 0.6) for s in seeds},
                     recipe=extra.pop("recipe", RECIPE), **extra)


def test_sittings_on_other_layouts_pool_only_through_a_seed_that_agrees():
    # a banked entry that names no machine (or another thread layout) pools once a seed measured
    # in both comes out the same: the evidence that both sittings compute alike
    both = pool(sitting([0, 1, 2]), sitting([2, 3], machine="cpu: X, 1 thread a run"))
    assert both.seeds == (0, 1, 2, 3) and both.machine == "cpu: X, 1 thread a run"
    assert pool(sitting([0, 1], machine="cpu: X, 1 thread a run"),
                sitting([2, 3], machine="cpu: X, 1 thread a run")).seeds == (0, 1, 2, 3)   # same layout: no seed needed


def test_pooling_adds_the_seeds_of_another_sitting():
    both = pool(sitting([0, 1, 2]), sitting([2, 3, 4, 5]))   # seed 2 in both, measured alike
    at_once = sitting(range(6))                              # as if all six had run in one sitting
    assert dataclasses.replace(both, notes="") == at_once and both.status == "holds"
    assert both.notes == "arm 0.6250, baseline 0.6000 (mean over seeds [0, 1, 2, 3, 4, 5])"


@pytest.mark.parametrize("banked, new, message", [
    (sitting([0, 1]), sitting([1, 2], arm=lambda s: 0.7), "seed 1 measured .* before and .* now"),
    (sitting([0, 1], recipe={"pretrain": "000000000000"}), sitting([2, 3]), "different recipes"),
    (sitting([0, 1], recipe={}), sitting([2, 3]), "not recorded"),
    (sitting([0, 1], machine="cpu: A"), sitting([2, 3], machine="cpu: B"), "different machines.*share no seed"),
    (sitting([0, 1]), sitting([2, 3], machine="cpu: B"), "not recorded; cpu: B.*share no seed"),
    (summarise("P2", "laptop", {0: 0.01, 1: 0.02}, recipe=RECIPE), sitting([2, 3]), "each side's values"),
    (sitting([0, 1], notes="arm 0.6050, baseline 0.6000 (mean over seeds [0, 1]); teacher AUC 0.9100"),
     sitting([2, 3]), "notes of one say more than its per-seed values"),
    (sitting([0, 1], extras_by_seed={0: {"x": 1.0}, 1: {"x": 2.0}}), sitting([2, 3]), "different extras"),
    (sitting([0, 1], design={"pretrain.steps": 10}), sitting([2, 3]), "different results"),
])
def test_pooling_refuses_seeds_that_do_not_belong_together(banked, new, message):
    with pytest.raises(ValueError, match=f"cannot pool the seeds of P2.*{message}"):
        pool(banked, new)


def test_corrupt_results_file_says_how_to_fix_it():
    path = results_path("smoke")
    path.parent.mkdir(parents=True)
    path.write_text("{ oops")
    with pytest.raises(StoreError, match="corrupt.*re-run"):
        load_results("smoke")


def test_report_renders_every_claim(tmp_path):
    ids = CLAIM_IDS
    record(summarise("F1", "smoke", {0: 0.02, 1: 0.03, 2: 0.025}, notes="arm 1.30, baseline 1.27"))
    table = claims_table("smoke")
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == ids
    f1 = next(row for row in rows if row.startswith("| F1 |"))
    assert "+0.0250" in f1 and "[+0.0126, +0.0374]" in f1
    assert f1.endswith("| — (no baseline level recorded) | holds | arm 1.30, baseline 1.27 |")
    assert sum(row.endswith("| not run |  |") for row in rows) == len(ids) - 1

    out = write_report("smoke", tmp_path / "report.md")
    assert table in out.read_text()
