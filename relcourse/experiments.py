"""The claims as experiments: each is two arms of one pipeline that differ in one choice.

An arm is a dict of dotted overrides of the profile, the same keys `--set` takes: `{}` is the
recipe, `{"pretrain.replacement": "all_mask"}` the baseline of claim P1. Every setting lives in
the profile and in its stage's cache key, so arms share whatever they have in common (the
recipe's pretraining serves P1–P6 and T2, its post-pretraining every F claim), each stage is
trained once per seed, and no setting can silently reuse a stale run.

The pretraining claims are judged by the probe (PROBE): fine-tune each pretrained model directly
on the human labels, without stage 2, so that a pretraining difference is not washed out or
mixed up with post-pretraining.

`run_claims(profile, stage)` runs both arms of each claim of a stage for every seed of the
profile (in `workers` processes at once), measures (arm − baseline) on the claim's metric, and
records the mean, its 95% interval over seeds and the status in the registry (relcourse.claims),
with the arms' mean metrics in the notes.

>>> CLAIM_ARMS["P1"].baseline
{'finetune.start': 'pretrain', 'pretrain.replacement': 'all_mask'}
>>> arm_label(CLAIM_ARMS["F4"].baseline)
'finetune.labels=stratified, finetune.label_budget_share=0.25, finetune.label_design=single'
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import claims, compute, metrics
from .config import PROFILES, FinetuneConfig, ModelConfig, Profile, design_overrides, with_overrides
from .distill import (distillation_effect, ensure_distill_data, run_distill, serving_effect, size_effect,
                      student_profile)
from .feedback_loop import feedback_effect, run_feedback_loop
from .finetune import run_finetune
from .post_pretrain import ensure_teacher, run_post_pretrain
from .pretrain import ensure_tokenizer, run_pretrain
from .results_files import committed_results
from .stage_keys import DISTILL_PATH, feedback_loop_path, fingerprint, finetune_path, in_pipeline_order
from .store import (NotBuilt, cached_only, cpu_model, ensure_data, git_commit, layout, load_manifest, machine_name,
                    machine_record, machines_read, package_versions, write_json_atomic)
from .train import best_eval
from .workers import build_in_processes

RECIPE: dict = {}                               # the course's recipe: the profile as it is
PROBE = {"finetune.start": "pretrain"}          # fine-tune the pretrained model, no stage 2


def arm_label(arm: dict) -> str:
    """What the arm changes from the recipe, for progress lines and tables.

    >>> arm_label({"pretrain.span": True}), arm_label(RECIPE)
    ('pretrain.span=True', 'recipe')
    """
    return ", ".join(f"{k}={v}" for k, v in arm.items()) or "recipe"


@dataclass(frozen=True)
class ClaimArms:
    arm: dict
    baseline: dict
    metric: str = "auc"          # a column of relcourse.metrics.evaluate, read on the 'all' row
    stage: str = "finetune"      # whose runs the arms are: fine-tuned models, or distilled students
    sized_for: tuple[str, ...] = ()   # profiles whose model sizes the arms' fixed sizes suit; () = any
    equal_compute: str = ""      # the stage whose training compute both arms must match (relcourse.compute)


# A labelling plan at a quarter of the world's labelling cost: at the whole cost, head_only runs
# out of pairs (laptop seed 0: 12,044 of 23,891 units spent, 4,804 pairs) and single labels too
# (15,182 units), so "equal cost" arms would differ in what they spent. At a quarter, every plan
# spends it all, and F3's two arms buy the same number of pairs (2,402 and 2,399).
_PLAN = {"finetune.labels": "stratified", "finetune.label_budget_share": 0.25}
CLAIM_ARMS: dict[str, ClaimArms] = {
    "P1": ClaimArms(PROBE, {**PROBE, "pretrain.replacement": "all_mask"}),
    "P2": ClaimArms({**PROBE, "pretrain.sentence_task": "sop"}, {**PROBE, "pretrain.sentence_task": "nsp"}),
    "P3": ClaimArms({**PROBE, "pretrain.epochs": 1.0}, {**PROBE, "pretrain.epochs": 4.0, "pretrain.data_share": 0.25},
                    equal_compute="pretrain"),
    "P4": ClaimArms(PROBE, {**PROBE, "pretrain.cleaned": False, "pretrain.cleaned_volume": True}),
    "P5": ClaimArms(PROBE, {**PROBE, "pretrain.corpus": "general", "pretrain.tapt_share": 0.0}),
    "P6": ClaimArms({**PROBE, "pretrain.span": True}, PROBE),
    "T2": ClaimArms(RECIPE, PROBE),
    "T3": ClaimArms(RECIPE, {"post_pretrain.mlm_weight": 0.0}),
    # T5 at a quarter of the pool: with the whole pool both selections return the same pairs.
    "T5": ClaimArms({"post_pretrain.pairs_share": 0.25},
                    {"post_pretrain.pairs_share": 0.25, "post_pretrain.selection": "naive"}),
    "F1": ClaimArms(RECIPE, {"finetune.loss": "soft_ce"}, metric="pnr"),
    "F2": ClaimArms(RECIPE, {"finetune.loss": "multiclass"}, metric="pnr"),
    "F3": ClaimArms(_PLAN, {**_PLAN, "finetune.labels": "head_only"}),
    "F4": ClaimArms(_PLAN, {**_PLAN, "finetune.label_design": "single"}),
    # F5: half the labels stale, made under the first guideline (rubric v0, data_gen.rubric), which
    # moves about 11% of pairs between relevant and not. Rubric v1 moves 1.2-1.4%: with half the
    # labels stale, 0.6-0.8% of a plan's labels differed between the arms (laptop seeds 0-2, 2,383-
    # 2,458 labels) and the effect was -0.0002 [-0.0018, +0.0014], a test of nothing.
    "F5": ClaimArms(_PLAN, {**_PLAN, "finetune.stale_share": 0.5, "finetune.stale_rubric": 0}),
    # D3: the recipe's student (laptop 1 x 128, half the teacher's depth) against one of half its
    # width as well (1 x 64); the warm start of each is the recipe at its size. Not on smoke, whose
    # student is already 1 x 64 (both arms would be one run); the GPU profiles have their own (GPU_ARMS).
    "D3": ClaimArms(RECIPE, {"distill.student.hidden": 64, "distill.student.heads": 2,
                             "distill.student.intermediate": 256}, stage="distill", sized_for=("laptop",)),
    # D4: a teacher twice as deep; the student and its warm start are the recipe's (student_profile
    # replaces pretrain.model with the student's size), so only the teacher differs.
    "D4": ClaimArms({"pretrain.model.layers": 4}, RECIPE, stage="distill", sized_for=("smoke", "laptop")),
    # D5 at equal steps: 4x the distinct pairs against a quarter of them read 4x as often.
    "D5": ClaimArms(RECIPE, {"distill.pairs_share": 0.25}, stage="distill", equal_compute="distill"),
    "D6": ClaimArms({"distill.epochs": 1.0}, {"distill.epochs": 2.0, "distill.pairs_share": 0.5}, stage="distill",
                    equal_compute="distill"),
    "D7": ClaimArms(RECIPE, {"distill.start": "cold"}, stage="distill"),
    # D8 at equal student steps, batches and data: the layer-wise arm also runs the teacher on every
    # batch, the cost of the method: not equal compute (relcourse.compute counts it; notebook 05 shows
    # the ratio), so a win for output-only is a win at less compute.
    "D8": ClaimArms(RECIPE, {"distill.hidden_weight": 1.0}, stage="distill"),
    # D9 with a 4-layer teacher, so that a mid size exists: 4 -> 1 layers against 4 -> 2 -> 1.
    "D9": ClaimArms({"pretrain.model.layers": 4}, {"pretrain.model.layers": 4, "distill.via_layers": 2},
                    stage="distill", sized_for=("smoke", "laptop")),
    "D10": ClaimArms(RECIPE, {"distill.loss": "prob_ce"}, stage="distill"),
    # D11: bf16 from the first step and served in bf16, against fp32 training quantised to int8 after
    # (fp32 named, not the profile's precision: the GPU profiles train in bf16).
    "D11": ClaimArms({"distill.train_precision": "bf16", "distill.serve_precision": "bf16"},
                     {"distill.train_precision": "fp32", "distill.serve_precision": "int8"}, stage="distill"),
}
# NSP whose negative second half comes from another paragraph about the same product (P2's probe).
_NSP_SAME_PRODUCT = {**CLAIM_ARMS["P2"].baseline, "pretrain.nsp_negatives": "same_product"}
# The probes' arms (relcourse.claims.PROBES): run by id, never with a stage's claims.
CLAIM_ARMS["P2-why"] = ClaimArms(CLAIM_ARMS["P2"].baseline, _NSP_SAME_PRODUCT)
CLAIM_ARMS["P1-why"] = ClaimArms({**PROBE, "pretrain.replacement": "90/0/10"}, CLAIM_ARMS["P1"].arm)
CLAIM_ARMS["D10-why"] = ClaimArms({"distill.teacher_scale": 3.0}, {"distill.loss": "prob_ce", "distill.teacher_scale": 3.0},
                                  stage="distill")


def _very_small_student(teacher: ModelConfig) -> dict:
    """D3's very small student on a GPU profile: 2 layers at a quarter of the teacher's width
    (64-wide heads, as BERT's), an order of magnitude below the recipe's 4-layer student."""
    hidden = teacher.hidden // 4
    return {"distill.student.layers": 2, "distill.student.hidden": hidden, "distill.student.heads": hidden // 64,
            "distill.student.intermediate": 4 * hidden}


# The size claims at the GPU profiles' sizes (a 4-layer "bigger" teacher would be smaller than
# their 12 or 24 layers). D3: the recipe's 4-layer student against a very small one. D4: a
# teacher twice as deep (gpu-xl: 48 layers, the sources' teacher, with twice the gradient
# accumulation so that each of its steps fits the same GPU: relcourse.gpu_memory, tested).
# D9: teacher -> 4 layers against teacher -> mid -> 4 layers, the mid student 6 of gpu's 12
# layers, 8 of gpu-xl's 24 (a 12 x 1024 mid student would need accumulation at distill's batch
# of 512, which the single-stage arm does not have).
GPU_ARMS: dict[str, dict[str, ClaimArms]] = {
    "gpu": {
        "D3": ClaimArms(RECIPE, _very_small_student(PROFILES["gpu"].pretrain.model), stage="distill"),
        "D4": ClaimArms({"pretrain.model.layers": 24}, RECIPE, stage="distill"),
        "D9": ClaimArms(RECIPE, {"distill.via_layers": 6}, stage="distill"),
    },
    "gpu-xl": {
        "D3": ClaimArms(RECIPE, _very_small_student(PROFILES["gpu-xl"].pretrain.model), stage="distill"),
        "D4": ClaimArms({"pretrain.model.layers": 48, "pretrain.grad_accum": 8, "post_pretrain.grad_accum": 8,
                         "finetune.grad_accum": 2}, RECIPE, stage="distill"),
        "D9": ClaimArms(RECIPE, {"distill.via_layers": 8}, stage="distill"),
    },
}


def claim_arms(claim_id: str, profile_name: str) -> ClaimArms:
    """The arms of a claim on a profile: GPU_ARMS' where the profile has its own, else CLAIM_ARMS'.

    >>> arm_label(claim_arms("D4", "laptop").arm), arm_label(claim_arms("D4", "gpu").arm)
    ('pretrain.model.layers=4', 'pretrain.model.layers=24')
    """
    return GPU_ARMS.get(profile_name, {}).get(claim_id) or CLAIM_ARMS[claim_id]


# Arms a notebook shows beside a claim's two: the rest of a family of options, or (P2) a test of
# why the claim came out as it did: NSP whose negatives name the same product as the positives.
EXTRA_ARMS: dict[str, dict[str, dict]] = {
    "P2": {"NSP, negatives about the same product": _NSP_SAME_PRODUCT},
    "P5": {"general + domain, no TAPT": {**PROBE, "pretrain.tapt_share": 0.0}},
    "P6": {"static masking": {**PROBE, "pretrain.static": True}},
    "F1": {"mse": {"finetune.loss": "mse"}, "pairwise": {"finetune.loss": "pairwise"}},
    "D10": {"margin_mse": {"distill.loss": "margin_mse"}},
}
# Notebook 03's feedback loops (claim T4) on its seed: the design as registered, and the two
# variants it shows beside it (each a registry entry of its own).
FEEDBACK_DESIGNS: dict[str, dict] = {
    "world's labels": {},
    "labels of what the model showed first": {"feedback_loop.teacher_labels": "shown_top"},
    "... by annotators anchored on its suggestion": {"feedback_loop.teacher_labels": "shown_top",
                                                     "feedback_loop.annotator_anchoring": 0.3},
}
# The learning ladder (notebook 04): the same labels and test set, one more stage at each rung.
LADDER: dict[str, dict] = {
    "from scratch": {"finetune.start": "scratch"},
    "pretrained, fine-tuned": PROBE,
    "recipe: post-pretrained, fine-tuned": RECIPE,
    "from scratch + exact-match input": {"finetune.start": "scratch", "tokenizer.exact_match": True},
}


def ladder_results(profile: Profile, seed: int, progress: bool = True) -> dict:
    """Every rung of LADDER on one seed (test metrics and the query-swap check), and the
    references beside the recipe's model (relcourse.ladder): BM25, the LexicalRanker, the text
    ceiling and the LexicalRanker with the recipe's score stacked, overall and by phenomenon."""
    from .lexical import by_phenomenon, phenomena, reversed_routes
    from .ladder import reference_scores
    out = {"models": {}}
    for name, arm in LADDER.items():
        run = run_arm(profile, seed, arm, progress)
        manifest = load_manifest(run)["metrics"]
        out["models"][name] = {**manifest["test"]["all"], "swapped_query_auc": manifest["query_swap"]["auc"],
                               "swapped_query_score_correlation": manifest["query_swap"]["score_correlation"],
                               # what fine-tuning's early stopping saw: budgets are chosen on this, not on test
                               "valid_auc": best_eval(run / "train", "auc")}
    scores = reference_scores(run_arm(profile, seed, RECIPE, progress), profile, seed)
    data_dir = ensure_data(profile, seed, progress=False)
    scores = scores.join(phenomena(data_dir), on="query_id").assign(
        route_reversed=lambda f: f.doc_id.isin(reversed_routes(data_dir)))
    references = ["BM25", "LexicalRanker", "text ceiling", "cross-encoder", "LexicalRanker + cross-encoder"]
    for name in references:
        frame = scores.assign(score=scores[name])
        table = by_phenomenon(frame)
        out.setdefault("references", {})[name] = table.loc["all"].to_dict()
        out.setdefault("auc_by_phenomenon", {})[name] = table["auc"].to_dict()
    out["queries_by_phenomenon"] = by_phenomenon(scores.assign(score=scores["BM25"]))["n_queries"].to_dict()
    return out


def write_ladder(profile: Profile, seeds: list[int], out: Path | None = None, progress: bool = True) -> dict:
    """`ladder_results` of every seed, their summary and the profile's claims registry; written as
    JSON to `out` (atomically) when given: what results/<profile>.json holds."""
    per_seed = {seed: ladder_results(profile, seed, progress) for seed in seeds}
    # the machine that wrote the file; each run's manifest names the one that built it (a CPU run
    # rebuilt on another CPU or thread count can round differently: relcourse.store.cpu_model)
    machine = {"cpu": cpu_model(), "threads": profile.threads, "versions": package_versions()}
    results = {"profile": profile.name, "seeds": seeds, "git_commit": git_commit(), "machine": machine,
               "settings": profile.to_dict(),
               "summary": ladder_summary(per_seed), "per_seed": per_seed,
               "claims": {c: dataclasses.asdict(r) for c, r in claims.load_results(profile.name).items()}}
    if out is not None:
        write_json_atomic(Path(out), _finite(results))
    return results


def _finite(obj):
    """NaN (a metric undefined on a subset) as null, so the file is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return None if isinstance(obj, float) and obj != obj else obj


def ladder_summary(per_seed: dict[int, dict]) -> dict:
    """Mean, per-seed SD and 95% Student-t half-width over seeds of every number of `ladder_results`
    (section -> name -> metric), plus the per-seed values, so a reader sees the spread.

    >>> ladder_summary({0: {"models": {"m": {"auc": 0.8}}}, 1: {"models": {"m": {"auc": 0.9}}}})["models"]["m"]["auc"]
    {'mean': 0.85, 'sd': 0.0707, 'ci95_half_width': 0.6353, 'per_seed': [0.8, 0.9]}
    """
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]
    summary: dict = {}
    for section in ("models", "references", "auc_by_phenomenon"):
        for name in first.get(section, {}):
            for metric in first[section][name]:
                values = [per_seed[s][section][name][metric] for s in seeds]
                values = [float(v) for v in values if v is not None and v == v]   # NaN where undefined
                if not values:
                    continue
                mean = statistics.fmean(values)
                sd = statistics.stdev(values) if len(values) > 1 else float("nan")
                half = claims.t_quantile_975(len(values) - 1) * sd / len(values) ** 0.5 if len(values) > 1 else float("nan")
                summary.setdefault(section, {}).setdefault(name, {})[metric] = {
                    "mean": round(mean, 4), "sd": round(sd, 4), "ci95_half_width": round(half, 4),
                    "per_seed": [round(v, 4) for v in values]}
    return summary


def run_arm(profile: Profile, seed: int, arm: dict = RECIPE, progress: bool = True, stage: str = "finetune") -> Path:
    """The run of this arm: the profile with the arm's overrides, built by its stage's cached
    builder: relcourse.finetune.run_finetune (a fine-tuned model, with its test scores, metrics
    and the query-swap check) or relcourse.distill.run_distill (a distilled student)."""
    builders = {"finetune": run_finetune, "distill": run_distill}
    return builders[stage](with_overrides(profile, arm), seed, progress)


def arm_table(run_dir: Path) -> pd.DataFrame:
    """The test metrics of a finished arm: rows all / head / torso / tail."""
    table = pd.DataFrame.from_dict(load_manifest(run_dir)["metrics"]["test"], orient="index")
    return table.loc[["all", *metrics.BUCKETS], list(metrics.COLUMNS)].rename_axis("subset")


def arm_metric(profile: Profile, seed: int, arm: dict, metric: str = "auc", progress: bool = True,
               stage: str = "finetune") -> float:
    return float(arm_table(run_arm(profile, seed, arm, progress, stage)).loc["all", metric])


def teacher_effect(profile: Profile, seed: int, progress: bool = True) -> tuple[float, float]:
    """Claim T1: test AUC of the teacher's pseudo-labels and of raw CTR (the baseline)."""
    metrics = load_manifest(ensure_teacher(profile, seed, progress))["metrics"]
    return metrics["test"]["all"]["auc"], metrics["raw_ctr_test"]["all"]["auc"]


def build_stage(profile: Profile, stage: str, seed: int, progress: bool = True) -> Path:
    """The recipe's run of one stage (for `relcourse run STAGE`)."""
    builders = {"tokenizer": ensure_tokenizer, "pretrain": run_pretrain, "teacher": ensure_teacher,
                "post_pretrain": run_post_pretrain, "finetune": run_finetune, "distill_data": ensure_distill_data,
                "distill": run_distill}
    if stage not in builders:
        raise ValueError(f"stage {stage!r} is unknown; choose one of {', '.join(builders)}")
    return builders[stage](profile, seed, progress=progress)


# Claims measured by a function of (profile, seed) that returns (arm, baseline) on one seed: the
# teacher's test AUC two ways (T1, T4), runs of different sizes or stages compared (D1, D2), or
# the serving speed of two runs timed on this machine (D12, which adds a dict of what else it
# measured, each side's test AUC: averaged over seeds into the registry's notes).
MEASURED_CLAIMS = {"T1": teacher_effect, "T4": feedback_effect, "D1": size_effect, "D2": distillation_effect,
                   "D12": serving_effect}


def claim_stages(claim_id: str, profile: Profile) -> tuple[str, ...]:
    """The stages a claim's result passes through on `profile`, in pipeline order: what its recipe
    fingerprint covers (relcourse.stage_keys). The size and serving claims (D1, D12) are given the
    whole student path, though only part of it builds their models: a change there flags them too.

    >>> from relcourse.config import PROFILES
    >>> claim_stages("P1", PROFILES["laptop"]), claim_stages("T1", PROFILES["laptop"])
    (('data', 'tokenizer', 'pretrain', 'finetune'), ('data', 'teacher'))
    >>> claim_stages("T2", PROFILES["laptop"])[-3:]
    ('teacher', 'post_pretrain', 'finetune')
    """
    if claim_id == "T1":
        return ("data", "teacher")
    if claim_id == "T4":
        return feedback_loop_path(profile)
    spec = None if claim_id in MEASURED_CLAIMS else claim_arms(claim_id, profile.name)
    if spec is None or spec.stage == "distill":
        return DISTILL_PATH
    return in_pipeline_order(stage for arm in (spec.arm, spec.baseline)
                             for stage in finetune_path(with_overrides(profile, arm)))


def measured_on(profile: Profile, machines: list[dict] | None = None) -> str:
    """The machine a claim's runs were built on, and on a CPU their threads: on one CPU model a run
    rebuilds bit for bit only with the same threads (more of them add floats in another order),
    so claims.pool tells sittings apart by it. With `machines`, the records of the runs the claim
    read (store.machines_read): a cached run is reused whatever threads ask for it, so what built
    them is what counts; runs built in different layouts give 'mixed: ...', naming each.

    >>> from relcourse.config import load_profile
    >>> one = load_profile("laptop", {"threads": 1})
    >>> measured_on(one).endswith(", 1 thread a run")
    True
    >>> built = [{"device": "cpu", "cpu": "X", "threads": 2}, {"device": "cpu", "cpu": "X", "threads": 1}]
    >>> measured_on(one, built[:1]), measured_on(one, built)
    ('cpu: X, 2 threads a run', 'mixed: 1 run cpu: X, 2 threads a run; 1 run cpu: X, 1 thread a run')
    """
    own = layout(machine_record(profile))
    layouts = collections.Counter(layout(m) for m in machines or [])
    if not layouts or set(layouts) == {own}:
        # on a GPU the name of the card, which the manifests do not record
        return own if profile.device == "cpu" else machine_name(profile.device)
    if len(layouts) == 1:
        return next(iter(layouts))
    return claims.MIXED + "; ".join(f"{n} run{'s' if n > 1 else ''} {name}" for name, n in layouts.items())


def run_claim(profile: Profile, claim_id: str, progress: bool = True) -> claims.ClaimResult:
    """Both arms on every seed of the profile; the result is recorded in the registry."""
    per_seed: dict[int, tuple[float, float]] = {}
    extras: dict[int, dict[str, float]] = {}
    with machines_read() as machines:
        for seed in profile.seeds:
            if claim_id in MEASURED_CLAIMS:
                arm, baseline, *more = MEASURED_CLAIMS[claim_id](profile, seed, progress)
                per_seed[seed] = (arm, baseline)
                if more:
                    extras[seed] = more[0]
                continue
            spec = claim_arms(claim_id, profile.name)
            per_seed[seed] = (arm_metric(profile, seed, spec.arm, spec.metric, progress, spec.stage),
                              arm_metric(profile, seed, spec.baseline, spec.metric, progress, spec.stage))
            if spec.equal_compute:
                compute.check_equal_compute(claim_id, spec.equal_compute,
                                            *(compute.run_compute(with_overrides(profile, side), seed,
                                                                  spec.equal_compute)
                                              for side in (spec.arm, spec.baseline)))
    result = claims.measured_arm_by_arm(claim_id, profile.name, per_seed, extras or None,
                                        design=design_overrides(profile),
                                        recipe=fingerprint(profile, claim_stages(claim_id, profile)),
                                        machine=measured_on(profile, machines))
    claims.record(result)
    return result


def notebook_claims(profile: Profile, claim_ids: list[str]) -> dict[str, claims.ClaimResult]:
    """The results a notebook shows for these claims: those the registry holds, in the order given.

    With profile.notebook_claims 'run' (smoke: one seed, a couple of minutes) the notebook runs
    them here. With 'read' (laptop and up, where both arms on every seed take hours) it reads
    the registry, which `relcourse run claims` fills in the background, and where that has no
    result, the profile's committed results files (of the current world); it prints the command
    for the claims neither has (they are left out of what it returns). Every arm of a claim
    recorded here is built, and `run claims` also builds the extra arms the notebook shows on the
    first seed, so a notebook can read any arm of such a claim back at once. A committed result's
    arms were trained elsewhere: the notebooks read back only what arms_built_here allows.
    """
    if profile.notebook_claims == "run":
        return dict(zip(claim_ids, run_claims(profile, claim_ids=claim_ids, workers=notebook_workers(profile),
                                              progress=False)))

    design = design_overrides(profile)
    committed = committed_results(profile.name, design)
    recorded = {c: committed.get(c, r) if r.status == "not run" else r
                for c, r in claims.load_results(profile.name, design).items()}
    missing = [c for c in claim_ids if recorded[c].status == "not run"]
    if missing:
        print(f"The '{profile.name}' claims registry has no result yet for {', '.join(missing)}. On this profile "
              f"a claim takes hours, so the notebook does not run it; run it in the background, then come back:\n"
              + run_claims_command(profile, missing))
    return {c: recorded[c] for c in claim_ids if c not in missing}


def run_claims_command(profile: Profile, claim_ids: list[str]) -> str:
    """The shell command that runs these claims on every seed of the profile, indented for a
    notebook's printout: on CPU one 1-thread worker per thread of the profile (see run_claims).

    >>> from relcourse.config import load_profile
    >>> print(run_claims_command(load_profile("laptop"), ["D4", "D9"]))
        python -m relcourse run claims --profile laptop --claim D4 --claim D9 --workers 2
    """
    workers = f" --workers {profile.threads}" if profile.device == "cpu" and profile.threads > 1 else ""
    return (f"    python -m relcourse run claims --profile {profile.name} "
            f"{' '.join('--claim ' + c for c in claim_ids)}{workers}" + claims.set_options(design_overrides(profile)))


def arms_built_here(profile: Profile, results: dict[str, claims.ClaimResult], seed: int
                    ) -> dict[str, claims.ClaimResult]:
    """Those of a notebook's `results` (notebook_claims) whose runs on `seed` are built here, so
    that reading one back costs nothing: all of them on a 'run' profile (the notebook just built
    them); on a 'read' profile, those whose arms (and extra arms) are on disk, asked of their
    builders without building anything (store.cached_only), and the claims measured by a function
    (MEASURED_CLAIMS), whose runs the notebooks do not read back. A claim known only from the
    committed results files usually has its arms on another machine: building them here would
    turn an hour's course into many hours (a 4-layer teacher alone is over an hour and a half).

    >>> from relcourse.config import load_profile
    >>> from relcourse.store import runs_in
    >>> import tempfile
    >>> committed = {"D4": claims.ClaimResult("D4", "laptop", seeds=(0, 1, 2), status="inconclusive")}
    >>> with tempfile.TemporaryDirectory() as empty, runs_in(empty):   # a fresh checkout: nothing built
    ...     arms_built_here(load_profile("laptop"), committed, 0), list(arms_built_here(load_profile("smoke"), committed, 0))
    ({}, ['D4'])
    """
    if profile.notebook_claims == "run":
        return dict(results)
    return {c: r for c, r in results.items() if c in MEASURED_CLAIMS or _arms_on_disk(profile, c, seed)}


def _arms_on_disk(profile: Profile, claim_id: str, seed: int) -> bool:
    spec = claim_arms(claim_id, profile.name)
    try:
        with cached_only():
            for arm in (spec.arm, spec.baseline, *EXTRA_ARMS.get(claim_id, {}).values()):
                run_arm(profile, seed, arm, progress=False, stage=spec.stage)
    except NotBuilt:
        return False
    return True


def arms_not_built_note(profile: Profile, results: dict[str, claims.ClaimResult], built: dict) -> str:
    """A sentence on the claims of `results` that are not in `built` (what arms_built_here
    returned for them: asking again would probe the store twice), with the command that builds
    them; "" when there are none.

    >>> from relcourse.config import load_profile
    >>> done = claims.ClaimResult("F1", "laptop", seeds=(0, 1, 2), status="inconclusive")
    >>> print(arms_not_built_note(load_profile("laptop"), {"F1": done, "F3": done}, built={"F1": done}))
    F3: the committed results; their arms are not built here, so this notebook does not read them back (it would train them first, hours on 'laptop'). To build them on every seed, in the background:
        python -m relcourse run claims --profile laptop --claim F3 --workers 2
    """
    absent = [c for c in results if c not in built]
    if not absent:
        return ""
    return (f"{', '.join(absent)}: the committed results; their arms are not built here, so this notebook "
            f"does not read them back (it would train them first, hours on '{profile.name}'). To build "
            f"them on every seed, in the background:\n" + run_claims_command(profile, absent))


def runnable_claims(stage: str, profile_name: str | None = None) -> list[str]:
    """The claims of a stage that have experiments here; with a profile's name, only those whose
    arms suit its model sizes (ClaimArms.sized_for, or arms of its own in GPU_ARMS).

    >>> "D3" in runnable_claims("distill"), "D3" in runnable_claims("distill", "smoke")
    (True, False)
    """
    return [c.id for c in claims.CLAIMS if c.stage == stage and (c.id in CLAIM_ARMS or c.id in MEASURED_CLAIMS)
            and (profile_name is None or _suits(c.id, profile_name))]


def _suits(claim_id: str, profile_name: str) -> bool:
    if claim_id in GPU_ARMS.get(profile_name, {}):
        return True
    sized_for = CLAIM_ARMS[claim_id].sized_for if claim_id in CLAIM_ARMS else ()
    return not sized_for or profile_name in sized_for


def select_claims(stage: str | None = None, claim_ids: list[str] | None = None,
                  profile_name: str | None = None) -> list[str]:
    """The claims to run: the ids given (claims or probes), else the stage's claims (those suiting
    the profile's sizes); a clear error for what has no experiment, or none for this profile.

    >>> select_claims(claim_ids=["P2-why"]), select_claims("pretrain")[:2]
    (['P2-why'], ['P1', 'P2'])
    """
    if claim_ids:
        known = [c for s in claims.STAGES for c in runnable_claims(s)] + list(claims.PROBES_BY_ID)
        for claim_id in claim_ids:
            if claim_id not in known:
                raise ValueError(f"claim {claim_id!r} has no experiment here; choose from {', '.join(known)}")
            if profile_name and not _suits(claim_id, profile_name):
                raise ValueError(f"claim {claim_id}'s arms are sized for the {' and '.join(CLAIM_ARMS[claim_id].sized_for)} "
                                 f"models, not {profile_name!r}'s: give it arms of this profile's sizes in "
                                 "relcourse.experiments.GPU_ARMS first")
        return list(claim_ids)
    if stage is None:
        raise ValueError("name the claims: a stage (e.g. --stage pretrain) or claim ids (e.g. --claim T2)")
    ids = runnable_claims(stage, profile_name)
    if not ids:
        raise ValueError(f"no experiments for stage {stage!r}; stages with experiments: "
                         f"{', '.join(s for s in claims.STAGES if runnable_claims(s))}")
    return ids


def claim_jobs(profile: Profile, claim_id: str) -> dict[str, functools.partial]:
    """The runs a claim compares, named: one per (seed, arm), or per seed for a teacher claim.
    Seeds vary fastest, so parallel workers start on different seeds instead of queueing for
    the same upstream stage.

    >>> from relcourse.config import load_profile
    >>> list(claim_jobs(load_profile("laptop"), "P1"))[2:4]
    ['seed 2 finetune.start=pretrain', 'seed 0 finetune.start=pretrain, pretrain.replacement=all_mask']
    """
    if claim_id in MEASURED_CLAIMS:
        return {f"seed {seed} {claim_id}": functools.partial(MEASURED_CLAIMS[claim_id], profile, seed, progress=False)
                for seed in profile.seeds}
    spec = claim_arms(claim_id, profile.name)
    return {_job_name(seed, spec.stage, arm): functools.partial(run_arm, profile, seed, arm, progress=False,
                                                                stage=spec.stage)
            for arm in (spec.arm, spec.baseline) for seed in profile.seeds}


def _job_name(seed: int, stage: str, arm: dict) -> str:
    """'seed 0 recipe' for a fine-tuned arm, 'seed 0 distill recipe' for a distilled one."""
    return f"seed {seed} {'' if stage == 'finetune' else stage + ' '}{arm_label(arm)}"


def _job_seed(job_name: str) -> str:
    """The seed a claim job is named for ('seed 0 recipe' -> '0'): its runs share that seed's
    upstream stages, so the workers build them once before the seed's other arms start."""
    return job_name.split()[1]


def extra_jobs(profile: Profile, claim_id: str) -> dict[str, functools.partial]:
    """The arms a notebook shows beside the claim's two (EXTRA_ARMS), on the profile's first seed,
    the one the notebooks use: built with the claims, so a notebook reading the registry on a big
    profile trains nothing."""
    seed, stage = profile.seeds[0], claim_arms(claim_id, profile.name).stage if claim_id in CLAIM_ARMS else "finetune"
    return {_job_name(seed, stage, arm): functools.partial(run_arm, profile, seed, arm, progress=False, stage=stage)
            for arm in EXTRA_ARMS.get(claim_id, {}).values()}


def run_claims(profile: Profile, stage: str | None = None, claim_ids: list[str] | None = None,
               workers: int = 1, progress: bool = True) -> list[claims.ClaimResult]:
    """Run the claims (a stage's, or the ids given) on every seed and record each in the registry
    as soon as its runs are built; then build the extra arms the notebooks show (extra_jobs).

    With `workers` > 1 the runs are built that many at a time (see build_in_processes). Runs
    that several claims share (the recipe) are built once; a seed's first run builds the stages
    its arms share before its other runs start, while the workers build other seeds' runs
    (relcourse.workers), so no core waits on another's lock. If a run fails, the runs not started are
    cancelled and the error is raised; what finished stays cached for the next try.
    """
    ids = select_claims(stage, claim_ids, profile.name)
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if workers == 1:
        results = [run_claim(profile, claim_id, progress) for claim_id in ids]
        for claim_id in ids:
            for job in extra_jobs(profile, claim_id).values():
                job(progress=progress)   # one run at a time: its progress bar is readable
        return results
    worker_profile = _worker_profile(profile, workers)
    needs = {claim_id: claim_jobs(worker_profile, claim_id) for claim_id in ids}
    extras = {name: job for claim_id in ids for name, job in extra_jobs(worker_profile, claim_id).items()}
    jobs = {name: job for claim_id in ids for name, job in needs[claim_id].items()} | extras   # shared runs once
    results = {}

    def record_finished(built: set[str]) -> str:
        for claim_id in ids:
            if claim_id not in results and built >= needs[claim_id].keys():
                # all cached: quick; with the workers' profile, which computed its jobs (the result names
                # the layout that built its runs from their manifests: measured_on)
                results[claim_id] = run_claim(worker_profile, claim_id, progress=False)
        return f"claims recorded: {', '.join(results) or 'none yet'}"

    build_in_processes(jobs, workers, progress, record_finished, group_of=_job_seed)
    return [results[claim_id] for claim_id in ids]


def _worker_profile(profile: Profile, workers: int) -> Profile:
    """The profile each of `workers` processes builds with: its share of the profile's threads
    and data processes. A small model keeps several threads only partly busy (compare
    `benchmarks/pretrain_throughput.py --threads 1` and `--threads 2`), so separate processes
    of one thread each usually finish sooner than one process of two."""
    return dataclasses.replace(profile, threads=max(1, profile.threads // workers),
                               data_workers=max(1, profile.data_workers // workers))


def notebook_workers(profile: Profile) -> int:
    """Processes a notebook builds its arms in: one per thread on CPU (tiny models gain more from
    two processes than from two threads), one on a GPU."""
    return profile.threads if profile.device == "cpu" else 1


def build_arms(profile: Profile, seed: int, arms: dict[str, dict], workers: int = 1,
               stage: str = "finetune") -> dict[str, Path]:
    """The run of each named arm of `stage` on one seed, built `workers` at a time (cached: an
    arm already built is read back at once)."""
    if workers <= 1 or len(arms) == 1:
        return {name: run_arm(profile, seed, arm, progress=False, stage=stage) for name, arm in arms.items()}
    worker_profile = _worker_profile(profile, workers)
    return build_in_processes({name: functools.partial(run_arm, worker_profile, seed, arm, progress=False, stage=stage)
                               for name, arm in arms.items()}, workers, progress=False)


# Notebook 04's loss comparison: the recipe fine-tuned with every loss stage 3 offers.
LOSSES: tuple[str, ...] = next(f for f in dataclasses.fields(FinetuneConfig) if f.name == "loss").metadata["choices"]


def course_jobs(profile: Profile, seed: int) -> dict[str, functools.partial]:
    """The training runs the notebooks read on one seed, as named jobs for build_in_processes.

    A name's part before ':' is its group, the chain its job shares (relcourse.workers): the
    teacher's stages 1-2 (notebooks 02-03), the student's own recipe at its size (notebook 05's
    warm start), the ladder's three rungs without stage 2 (04) and the feedback loops (03) each
    lead a group, so two workers build two chains at once. The teacher's fine-tuning, the other
    losses (04) and the distilled student (05) follow its stage 2: each fine-tuning needs only
    that, so both workers take them the moment it is built (the student waits on the file lock of
    the teacher's fine-tuning if the other worker is still training it).

    >>> from relcourse.config import load_profile
    >>> list(course_jobs(load_profile("laptop"), 0))[:4]
    ['teacher: post-pretrained', 'student: recipe', 'from scratch: fine-tuned', 'pretrained, fine-tuned: fine-tuned']
    >>> len(course_jobs(load_profile("laptop"), 0))   # + exact-match rung, 3 loops, the recipe, 4 losses, the student
    14
    """
    def finetuned(arm: dict, of: Profile = profile) -> functools.partial:
        return functools.partial(run_finetune, with_overrides(of, arm), seed, progress=False)

    # The rungs without stage 2 need at most the teacher's pretraining, built a third of the way
    # into its chain: their own groups, so the second worker takes them while the first trains on.
    no_stage_2 = {rung: arm for rung, arm in LADDER.items() if arm.get("finetune.start") in ("scratch", "pretrain")}
    recipe = with_overrides(profile, RECIPE)
    jobs = {"teacher: post-pretrained": functools.partial(run_post_pretrain, recipe, seed, progress=False),
            "student: recipe": finetuned(RECIPE, student_profile(profile))}
    jobs |= {f"{rung}: fine-tuned": finetuned(arm) for rung, arm in no_stage_2.items()}
    jobs |= {f"feedback loop, {design}: rounds": functools.partial(run_feedback_loop, with_overrides(profile, arm),
                                                                    seed, progress=False)
             for design, arm in FEEDBACK_DESIGNS.items()}
    jobs["teacher: recipe"] = finetuned(RECIPE)   # first of the followers: the distilled student needs it
    jobs |= {f"teacher: loss {loss}": finetuned({"finetune.loss": loss}) for loss in LOSSES
             if loss != profile.finetune.loss}
    jobs["teacher: distilled student"] = functools.partial(run_distill, profile, seed, progress=False)
    return jobs


def builds_course_first(profile: Profile) -> bool:
    """Whether `relcourse course` builds the notebooks' runs (course_jobs) before it executes
    them: on the profiles whose notebooks read their claims (hours of claims are not the
    course's) and that have more than one notebook worker (CPU threads), where two 1-thread
    processes, one chain each, beat one 2-thread process training stage after stage."""
    return profile.notebook_claims == "read" and notebook_workers(profile) > 1


def build_course_runs(profile: Profile, seed: int, progress: bool = True) -> dict:
    """Build course_jobs in notebook_workers(profile) processes of one thread each; cached runs
    are read back at once, so a second course costs nothing here."""
    workers = notebook_workers(profile)
    jobs = course_jobs(_worker_profile(profile, workers), seed)
    return build_in_processes(jobs, workers, progress, group_of=lambda name: name.split(":")[0])
