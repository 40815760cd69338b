"""The reproduction report (relcourse.report): results.json is the single source of REPORT.md."""
import json
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats

from relcourse import claims, report, report_markdown
from relcourse.claims import CLAIMS, summarise
from relcourse.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RELCOURSE_RUNS", str(tmp_path / "runs"))   # an empty live registry
    monkeypatch.setenv("RELCOURSE_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("RELCOURSE_PROFILE", raising=False)


def results_file(path: Path, effects: dict[str, dict[int, float]], profile: str = "smoke") -> Path:
    """A results file as `run ladder --out` writes it, with only a claims registry."""
    entries = {c: claims.to_json(summarise(c, profile, e, notes="arm 0.80, baseline 0.78")) for c, e in effects.items()}
    path.write_text(json.dumps({"profile": profile, "seeds": [0, 1, 2], "claims": entries}))
    return path


def test_regenerating_gives_identical_bytes_and_markdown_comes_from_results_json(tmp_path):
    first = report.write("laptop", out_dir=tmp_path / "a")
    second = report.write("laptop", out_dir=tmp_path / "b")
    names = sorted(p.name for p in first.parent.iterdir())
    assert names == ["REPORT.md", "forest-distill.png", "forest-finetune.png", "forest-post_pretrain.png",
                     "forest-pretrain.png", "results.json"]
    for name in names:
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes(), name
    results = json.loads((first.parent / "results.json").read_text())
    assert report.render(results) == first.read_text()
    before = first.read_bytes()
    first.unlink()
    (first.parent / "forest-distill.png").unlink()
    report.regenerate(first.parent)
    assert first.read_bytes() == before
    assert (first.parent / "forest-distill.png").read_bytes() == (second.parent / "forest-distill.png").read_bytes()


def test_every_claim_appears_with_its_input_and_world():
    text = report.write("laptop").read_text()
    assert all(f"\n| {c.id} | " in text for c in CLAIMS)
    d1 = next(line for line in text.splitlines() if line.startswith("| D1 |"))
    # the world-3 results of later inputs supersede the world-2 one of the earliest (A), and the
    # 14,400-step recipe's (D) that of the 9,600-step one (B)
    assert "D (world 3); supersedes A, B" in d1 and "+2% AUC, 48 vs 12 layers" in d1 and "| inconclusive |" in d1
    assert "| B | `results/laptop-postpretrain9600.json` | learning ladder + claims registry | ladder 3; claims 3 |" in text
    assert "| C | `results/laptop.json` | learning ladder + claims registry | ladder 3; claims 3 |" in text
    assert "## The learning ladder: input B (world 3)" in text and "## The learning ladder: input C (world 3)" in text
    assert "| recipe's test AUC ≥ 0.85 | 0.893, 0.843, 0.916 | 0.884 | **met** |" in text
    # input C: the recipe with 14,400 post-pretraining steps, seven seeds
    assert "| recipe's test AUC ≥ 0.85 | 0.906, 0.883, 0.941, 0.954, 0.879, 0.843, 0.894 | 0.900 | **met** |" in text


def test_the_interval_is_scipys_student_t_on_a_worked_example(tmp_path):
    effects = {0: 0.019646, 1: 0.010996, 2: -0.002574}   # D6 on laptop, rounded
    path = results_file(tmp_path / "r.json", {"D6": effects})
    row = next(r for r in report.build("smoke", [path], live=False)["claims"] if r["id"] == "D6")
    values = list(effects.values())
    lo, hi = stats.t.interval(0.95, 2, loc=statistics.fmean(values), scale=stats.sem(values))
    assert row["interval"] == pytest.approx([lo, hi], abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (-0.0185, 0.0372)
    sd = statistics.stdev(values)
    assert row["sd"] == pytest.approx(sd)
    assert row["mde80"] == pytest.approx((stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) * sd / math.sqrt(3))
    assert row["seeds_for_half_width"] == 4 and row["status"] == "inconclusive"


def test_each_claim_is_powered_for_a_precision_on_its_own_scale(tmp_path):
    # ±0.02 means AUC; a PNR claim asks for ±0.02 of pairwise accuracy p at its baseline's level
    # (PNR = p / (1 - p)), a speed claim for ±10%
    pnr = {"F1": {0: (7.4, 7.5), 1: (7.6, 7.4), 2: (6.9, 7.5)}, "D12": {0: (10.5, 8.4), 1: (10.7, 8.5), 2: (10.6, 8.5)}}
    entries = {c: claims.to_json(summarise(c, "laptop", {s: a - b for s, (a, b) in sides.items()}, sides_by_seed=sides))
               for c, sides in pnr.items()}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"profile": "laptop", "seeds": [0, 1, 2], "claims": entries}))
    rows = {r["id"]: r for r in report.build("laptop", [path], live=False)["claims"]}
    p = 7.4667 / 8.4667   # the baseline's mean PNR as a pairwise accuracy
    assert rows["F1"]["precision_target"] == pytest.approx(0.02 * (1 + 7.4667) ** 2, rel=1e-4)
    assert rows["F1"]["precision_target"] == pytest.approx(0.02 / (1 - p) ** 2, rel=1e-4)
    assert (rows["D12"]["precision_target"], rows["P1"]["precision_target"]) == (0.1, 0.02)
    for c in ("F1", "D12"):
        sd = statistics.stdev([a - b for a, b in pnr[c].values()])
        assert rows[c]["seeds_for_half_width"] == claims.seeds_for_half_width(sd, rows[c]["precision_target"])


def test_one_seed_shows_no_interval_and_says_why(tmp_path):
    path = results_file(tmp_path / "r.json", {"P1": {0: 0.03}})
    out = report.write("smoke", [path], live=False)
    p1 = next(line for line in out.read_text().splitlines() if line.startswith("| P1 |"))
    assert "| +0.0300 | — (1 seed: no spread to judge by) | 1 | — | — | — (±0.02) | inconclusive |" in p1
    assert (out.parent / "forest-pretrain.png").exists()   # drawn as an open dot


def test_an_inconclusive_claim_inside_its_precision_target_is_marked_level(tmp_path):
    effects = {"D8": {0: 0.0002, 1: 0.0011, 2: 0.0024},     # a tie: the interval is inside ±0.02
               "D9": {0: 0.0040, 1: 0.0098, 2: -0.0046},    # [-0.015, +0.021]: narrow, not inside
               "D5": {0: 0.023, 1: 0.024, 2: 0.033}}        # holds: never level, however narrow
    path = results_file(tmp_path / "r.json", effects)
    rows = {r["id"]: r for r in report.build("smoke", [path], live=False)["claims"]}
    assert [rows[c]["status"] for c in effects] == ["inconclusive", "inconclusive", "holds"]
    assert [rows[c]["level"] for c in effects] == [True, False, False]
    lo, hi = rows["D9"]["interval"]
    assert hi - lo <= 2 * 0.02 < 2 * max(abs(lo), abs(hi))   # precise enough, yet its upper end is past +0.02
    markdown = report.write("smoke", [path], live=False).read_text()
    assert "| inconclusive, level within ±0.02 |" in next(l for l in markdown.splitlines() if l.startswith("| D8 |"))
    assert "level" not in next(l for l in markdown.splitlines() if l.startswith("| D9 |"))
    assert "; of the inconclusive, level: D8." in markdown


def test_a_live_result_wins_and_the_row_says_so(tmp_path):
    path = results_file(tmp_path / "r.json", {"D5": {0: 0.02, 1: 0.03}})
    claims.record(summarise("D5", "smoke", {0: 0.01, 1: 0.012, 2: 0.011}))
    rows = {r["id"]: r for r in report.build("smoke", [path])["claims"]}
    assert rows["D5"]["from"] == report.LIVE and rows["D5"]["superseded"] == ["A"] and len(rows["D5"]["seeds"]) == 3
    rows = {r["id"]: r for r in report.build("smoke", [path], live=False)["claims"]}
    assert rows["D5"]["from"] == "A" and rows["D5"]["seeds"] == [0, 1]


def test_keep_copies_the_live_registry_into_a_results_file_the_report_reads(tmp_path, capsys):
    kept = tmp_path / "kept.json"
    with pytest.raises(SystemExit):                                   # nothing live yet: a clear refusal
        main(["report", "--profile", "smoke", "--keep", str(kept)])
    assert "holds no claim result" in capsys.readouterr().err and not kept.exists()
    results_file(kept, {"D5": {0: 0.02, 1: 0.03}, "D6": {0: 0.01, 1: 0.02}})
    claims.record(summarise("D5", "smoke", {0: 0.01, 1: 0.012, 2: 0.011}))
    assert main(["report", "--profile", "smoke", "--keep", str(kept)]) == 0
    assert "2 claims (D5, D6)" in capsys.readouterr().out
    (tmp_path / "runs").rename(tmp_path / "gone")                     # runs/ dies with the machine
    rows = {r["id"]: r for r in report.build("smoke", [kept])["claims"]}
    assert rows["D5"]["seeds"] == [0, 1, 2] and rows["D6"]["seeds"] == [0, 1]   # the live one replaced D5 only


def test_keep_can_pool_the_seeds_of_several_sittings(tmp_path, capsys):
    # a claim that needs more seeds than one sitting trains: seeds 0-1 banked in the committed
    # file, seeds 1-3 run now (seed 1 again: it must measure the same), kept pooled
    recipe = {"pretrain": "4b62fec72434"}

    def sitting(seeds, arm=lambda s: 0.60 + s / 100):
        return summarise("P2", "smoke", {s: arm(s) - 0.6 for s in seeds},
                         sides_by_seed={s: (arm(s), 0.6) for s in seeds}, recipe=recipe)

    kept = tmp_path / "kept.json"
    claims.record(sitting([0, 1]))
    report.keep_registry("smoke", kept)
    (tmp_path / "runs").rename(tmp_path / "first sitting")
    claims.record(sitting([1, 2, 3]))
    assert main(["report", "--profile", "smoke", "--keep", str(kept), "--pool-seeds"]) == 0
    rows = {r["id"]: r for r in report.build("smoke", [kept], live=False)["claims"]}
    assert rows["P2"]["seeds"] == [0, 1, 2, 3] and rows["P2"]["effects"] == pytest.approx([0, 0.01, 0.02, 0.03])

    before = kept.read_bytes()
    claims.record(sitting([3, 4], arm=lambda s: 0.7))                  # seed 3 now measures otherwise
    with pytest.raises(SystemExit):
        main(["report", "--profile", "smoke", "--keep", str(kept), "--pool-seeds"])
    assert "seed 3 measured" in capsys.readouterr().err and kept.read_bytes() == before   # nothing written
    with pytest.raises(SystemExit):
        main(["report", "--profile", "smoke", "--pool-seeds"])         # pooling needs the file
    assert "give the file with --keep" in capsys.readouterr().err


def test_keep_replaces_a_claim_rerun_through_a_new_recipe_and_pools_the_others(tmp_path, capsys):
    def sitting(claim_id, seeds, recipe, arm=0.62):
        return summarise(claim_id, "smoke", {s: arm - 0.6 for s in seeds},
                         sides_by_seed={s: (arm, 0.6) for s in seeds}, recipe=recipe)

    old, new = {"post_pretrain": "9600steps000"}, {"post_pretrain": "14400steps00"}
    kept = tmp_path / "kept.json"
    claims.record(sitting("T3", [0, 1, 2, 3], old))
    claims.record(sitting("P2", [0, 1], new))
    report.keep_registry("smoke", kept)
    (tmp_path / "runs").rename(tmp_path / "first sitting")
    claims.record(sitting("T3", [0, 3], new, arm=0.65))               # T3 re-run on the new recipe
    claims.record(sitting("P2", [1, 2], new))                         # P2 gains a seed
    with pytest.raises(SystemExit):                                   # the recipes differ: no pooling
        main(["report", "--profile", "smoke", "--keep", str(kept), "--pool-seeds"])
    assert "different recipes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--profile", "smoke", "--keep", str(kept), "--pool-seeds", "--replace", "T5"])
    assert "no result for T5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--profile", "smoke", "--keep", str(kept), "--replace", "T3"])
    assert "exception to --pool-seeds" in capsys.readouterr().err
    assert main(["report", "--profile", "smoke", "--keep", str(kept), "--pool-seeds", "--replace", "T3"]) == 0
    rows = {r["id"]: r for r in report.build("smoke", [kept], live=False)["claims"]}
    assert rows["T3"]["seeds"] == [0, 3] and rows["T3"]["mean"] == pytest.approx(0.05)
    assert rows["P2"]["seeds"] == [0, 1, 2]


def test_a_variant_shows_in_its_own_table_and_survives_keep(tmp_path):
    design = {"feedback_loop.teacher_labels": "shown_top"}
    claims.record(summarise("T4", "smoke", {0: 0.01, 1: 0.02}))
    claims.record(summarise("T4", "smoke", {0: -0.04, 1: -0.06, 2: -0.05}, design=design))
    kept = tmp_path / "kept.json"
    report.keep_registry("smoke", kept)
    (tmp_path / "runs").rename(tmp_path / "gone")
    built = report.build("smoke", [kept])
    assert [r["effects"] for r in built["claims"] if r["id"] == "T4"] == [[0.01, 0.02]]
    [variant] = built["variants"]
    assert variant["key"] == "T4 [feedback_loop.teacher_labels=shown_top]" and variant["design"] == design
    assert variant["status"] == "holds" and variant["from"] == "A"
    markdown = report.render(built)
    assert "## Variants of a claim's design" in markdown
    assert "| T4 [feedback_loop.teacher_labels=shown_top] |" in markdown.split("## Variants")[1]


def test_a_probe_shows_in_its_own_table_survives_keep_and_is_not_counted_as_a_claim(tmp_path):
    claims.record(summarise("P2-why", "smoke", {0: 0.04, 1: 0.05, 2: 0.03}))
    kept = tmp_path / "kept.json"
    report.keep_registry("smoke", kept)
    (tmp_path / "runs").rename(tmp_path / "gone")
    built = report.build("smoke", [kept])
    assert all(r["status"] == "not run" for r in built["claims"]) and not built["variants"]
    [probe] = built["probes"]
    assert (probe["key"], probe["explains"], probe["status"], probe["from"]) == ("P2-why", "P2", "holds", "A")
    assert probe["effects"] == [0.04, 0.05, 0.03] and probe["seeds_for_half_width"] is not None
    markdown = report.render(built)
    assert f"**{len(CLAIMS)} claims**: 0 holds" in markdown
    table = markdown.split("## Probes: why a claim came out as it did")[1]
    header = table.split("| P2-why |")[0].strip().splitlines()[-2]
    assert "| explains |" in header and "source notes" not in header
    assert "| P2-why | pretrain | NSP pretrains the better relevance model" in table
    assert "| P2 | test AUC after fine-tuning |" in table


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{ oops", "is not valid JSON"),
    ("[1, 2]", "is not a results file"),
    ('{"claims": {"Z9": {}}}', "unknown claim 'Z9'"),
    ('{"claims": {"P1": {"seeds": [0]}}}', "the entry of claim P1 is malformed"),
    ('{"claims": {"T4 [x=1]": {"claim_id": "T4", "profile": "smoke", "seeds": [], "effects": [], "mean": null, '
     '"interval": [null, null], "status": "not run"}}}', "holds the result 'T4'"),
    ('{"profile": "laptop", "claims": {}}', "holds results of profile 'laptop', not 'smoke'"),
])
def test_bad_input_gives_a_clear_message(tmp_path, capsys, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        report.build("smoke", [path])
    with pytest.raises(SystemExit) as e:
        main(["report", "--profile", "smoke", "--results", str(path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


def test_an_unknown_profile_is_refused(capsys):
    with pytest.raises(ValueError, match="profile 'huge' is unknown"):
        report.build("huge")
    with pytest.raises(SystemExit):
        main(["report", "--profile", "huge"])
    assert "profile 'huge' is unknown" in capsys.readouterr().err


def test_cli_writes_the_report_folder(tmp_path, capsys):
    assert main(["report", "--profile", "laptop", "--no-live"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == str(tmp_path / "reports" / "laptop" / "REPORT.md")
    assert "| Stage 4: distillation and serving | D2, D3, D5, D7, D12 |" in out


def test_the_committed_report_and_readme_are_current(tmp_path):
    """reports/laptop/ is what `make report PROFILE=laptop` makes of the committed results files
    (a live registry dies with its machine: its results belong in a committed results file first)."""
    committed = REPO / "reports" / "laptop"
    inputs = json.loads((committed / "results.json").read_text())["inputs"]
    assert report.LIVE not in [i["label"] for i in inputs], \
        "reports/laptop/ was built with a live registry: commit those results under results/, then regenerate"
    fresh = report.write("laptop", live=False, out_dir=tmp_path / "laptop").parent
    for name in ("results.json", "REPORT.md"):   # the PNG's pixels may differ with the matplotlib version
        assert (committed / name).read_text() == (fresh / name).read_text(), f"run `make report PROFILE=laptop`: {name}"
    summary = report.summary_table(json.loads((committed / "results.json").read_text()))
    assert summary in (REPO / "README.md").read_text()


def test_scipy_quantiles_equal_the_former_hand_written_ones():
    """claims.t_quantile was a bisection on a closed-form t CDF; these are its values."""
    former = {(0.8, 1): 1.3763819204711738, (0.8, 2): 1.0606601717798214, (0.8, 4): 0.9409645772351813,
              (0.8, 29): 0.8541919858818559, (0.9, 3): 1.6377443536962097, (0.975, 1): 12.706204736174676,
              (0.975, 2): 4.302652729749459, (0.975, 3): 3.1824463052837064, (0.975, 9): 2.2621571627982027,
              (0.975, 29): 2.045229642132706}
    for (q, df), value in former.items():
        assert claims.t_quantile(q, df) == pytest.approx(value, abs=1e-6)
    assert [claims.minimum_detectable_effect(0.01, n) for n in (2, 3, 5, 10)] == pytest.approx(
        [0.0995789252156147, 0.03096510147446123, 0.016624761500272076, 0.009947137350096728], abs=1e-6)
    assert [claims.seeds_for_half_width(s) for s in (0.001, 0.01, 0.03, 0.05)] == [2, 4, 12, 27]


def test_a_result_of_an_earlier_design_shows_the_arms_it_was_measured_with():
    """results/laptop-postpretrain9600.json measured F5 with stale labels of rubric v1; the registry's F5 now
    uses rubric v0. Read alone, that file's F5 row names its own baseline and says it is an
    earlier design; with the later results file, the current design wins."""
    from relcourse.takeaways import takeaway
    alone = report.build("laptop", [REPO / "results/laptop-postpretrain9600.json"], live=False)
    row = next(r for r in alone["claims"] if r["id"] == "F5")
    assert row["earlier_design"] and "rubric v1" in row["baseline"]
    assert "earlier design, baseline: half the labels from rubric v1" in report.render(alone)
    assert "an earlier design of the claim" in takeaway("F5", results=alone).text
    current = next(r for r in report.build("laptop", live=False)["claims"] if r["id"] == "F5")
    assert not current["earlier_design"] and current["baseline"] == claims.CLAIMS_BY_ID["F5"].baseline


def test_a_claim_measured_on_an_older_recipe_is_marked_with_the_stages_that_changed(tmp_path):
    from relcourse.config import load_profile, with_overrides
    from relcourse.experiments import claim_stages
    from relcourse.stage_keys import fingerprint

    smoke = load_profile("smoke")
    older = with_overrides(smoke, {"post_pretrain.steps": smoke.post_pretrain.steps + 1})
    entries = {}
    for claim_id, profile in (("T2", older), ("P1", older), ("F1", smoke), ("F2", None)):
        recipe = fingerprint(profile, claim_stages(claim_id, profile)) if profile else None
        entries[claim_id] = claims.to_json(summarise(claim_id, "smoke", {0: 0.01, 1: 0.02}, recipe=recipe))
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"profile": "smoke", "claims": entries}))
    results = report.build("smoke", [path], live=False)
    rows = {r["id"]: r for r in results["claims"]}
    # stage 2 changed: T2 went through it, P1 (the probe: pretrain, then fine-tune) did not
    assert rows["T2"]["recipe_changed"] == ["post_pretrain"] and rows["P1"]["recipe_changed"] == []
    assert rows["F1"]["recipe_changed"] == [] and rows["F2"]["recipe_changed"] is None
    text = report.render(results)
    assert "**Measured on an older recipe** (" in text and "): T2. They are due to be re-run." in text
    assert "A; **older recipe**: post_pretrain settings changed since" in text
    assert "A; recipe not recorded" in text


def test_the_committed_laptop_claims_say_which_recipe_they_were_measured_on():
    """Every committed laptop claim carries its fingerprint (the 9,600-step recipe's entries had
    theirs stamped); since stage 2 grew to 14,400 steps only claims that post-pretrain can be
    older: the probe's (P1-P6) and the teacher's (T1) are current."""
    from relcourse.config import load_profile
    from relcourse.experiments import claim_stages

    laptop = load_profile("laptop")
    rows = [r for r in report.build("laptop", live=False)["claims"] if r["status"] != "not run"]
    assert rows and all(r["recipe_changed"] in ([], ["post_pretrain"]) for r in rows)
    for r in rows:
        if "post_pretrain" not in claim_stages(r["id"], laptop):
            assert r["recipe_changed"] == [], r["id"]
    assert {r["id"] for r in rows if not r["recipe_changed"]} >= {"P1", "P2", "P3", "P4", "P5", "P6", "T1"}


def test_the_live_runs_table_names_each_layout_the_way_claims_do():
    live = {"label": report_markdown.LIVE,
            "runs": {"pretrain": {"runs": 2, "machines": [{"device": "cpu", "threads": 1, "cpu": "X"},
                                                          {"device": "cuda", "threads": 2}],
                                  "git_commits": ["abcdef0123456"], "config_hashes": ["h1"], "seconds": [3.0, 5.0]}}}
    lines = report_markdown._machine_section([live])
    assert "| pretrain | 2 | cpu: X, 1 thread a run; cuda | abcdef0123 | 1 distinct | 4, 8 (2 logged) |" in lines


def test_a_variant_says_which_side_its_settings_reach():
    """P2 run with NSP's negatives changed: SOP ignores the setting, so only the baseline's runs
    differ from the claim's own, and the row says so; a budget change reaches both sides."""
    claims.record(summarise("P2", "smoke", {0: 0.01, 1: 0.02}, design={"pretrain.nsp_negatives": "same_product"}))
    claims.record(summarise("P2", "smoke", {0: 0.01, 1: 0.03}, design={"pretrain.steps": 20}))
    built = report.build("smoke", [])
    sides = {r["key"]: r["sides_changed"] for r in built["variants"]}
    assert sides == {"P2 [pretrain.nsp_negatives=same_product]": ["baseline"], "P2 [pretrain.steps=20]": ["arm", "baseline"]}
    assert all(r["sides_changed"] is None for r in built["claims"])
    variants = report.render(built).split("## Variants")[1]
    assert "the changed settings reach the baseline only (NSP, pretrain.nsp_negatives=same_product)" in variants
    assert variants.count("reach the") == 1
