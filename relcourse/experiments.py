"""The claims as experiments: each is two arms of one pipeline that differ in one choice.

An `Arm` names a whole pipeline up to a fine-tuned cross-encoder: the pretraining options, the
post-pretraining options (or none: fine-tune the pretrained model directly), the fine-tuning
loss and the human labels it learns from. `run_arm` builds it through the cached stages, so
arms share whatever they have in common: the recipe's pretraining run serves P1–P6 and T2, the
recipe's post-pretraining run serves every F claim, and each is trained once per seed.

`run_claims(profile, stage)` runs both arms of each claim of a stage for every seed of the
profile (in `workers` processes at once), measures (arm − baseline) on the claim's metric, and
records the mean, its 95% interval over seeds and the status in the registry (relcourse.claims),
with the arms' mean metrics in the notes.

>>> CLAIM_ARMS["P1"].baseline.pretrain.replacement
'all_mask'
>>> CLAIM_ARMS["F4"].arm.labels
LabelsSpec(strategy='stratified', design='double+gold', rubric='v2')
"""
from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

import data_gen

from . import claims, metrics
from .config import Profile
from .feedback_loop import feedback_effect
from .finetune import finetune, labelled_splits, score
from .labelling import LabellingPlan, mix_rubric_versions, run_plan
from .models import load_model, save_model
from .post_pretrain import PostPretrainOptions, ensure_teacher, run_post_pretrain
from .pretrain import MODEL_DIR, PretrainOptions, ensure_tokenizer, run_pretrain, tokenizer_of
from .store import cached_stage, ensure_data, load_manifest, run_hash

STALE_SHARE = 0.5   # F5: share of the pairs whose label is left over from rubric v1


@dataclass(frozen=True)
class LabelsSpec:
    """Which human labels fine-tuning reads, bought with the budget the world's own training
    labels cost, so every spec is an equal-cost alternative (claims F3, F4, F5)."""
    strategy: str = "stratified"     # head_only, extremes or stratified
    design: str = "double+gold"      # single, double or double+gold
    rubric: str = "v2"               # "v2", or "mixed": STALE_SHARE of the labels from rubric v1

    def labels(self, data_dir: Path, seed: int) -> pd.DataFrame:
        world = data_gen.read_table(data_dir, "labels", columns=["split", "cost"])
        budget = float(world.loc[world["split"] == "train", "cost"].sum())
        plan = LabellingPlan(budget, self.strategy, self.design, rubric_version=2)
        labels = run_plan(plan, data_dir, seed)
        if self.rubric == "mixed":
            old = run_plan(dataclasses.replace(plan, rubric_version=1), data_dir, seed)
            labels = mix_rubric_versions(old, labels, STALE_SHARE, seed)
        elif self.rubric != "v2":
            raise ValueError(f"rubric={self.rubric!r} is unknown; use 'v2' or 'mixed'")
        return labels.pairs[["doc_id", "label"]]


@dataclass(frozen=True)
class Arm:
    """A pipeline up to a fine-tuned model; the defaults are the course's recipe minus stage 2."""
    pretrain: PretrainOptions = PretrainOptions()
    post_pretrain: PostPretrainOptions | None = None   # None: fine-tune the pretrained model
    loss: str | None = None                            # None: the profile's finetune.loss
    labels: LabelsSpec | None = None                   # None: the world's default training labels

    def label(self) -> str:
        """What the arm changes from the recipe, for progress lines.

        >>> Arm(PretrainOptions(span=True)).label()
        'pretrain.span=True, post_pretrain=None'
        >>> RECIPE.label()
        'recipe'
        """
        changed = []
        for field in dataclasses.fields(self):
            mine, recipe = getattr(self, field.name), getattr(RECIPE, field.name)
            if mine == recipe:
                continue
            if dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(recipe):   # options: name what differs
                changed += [f"{field.name}.{f.name}={getattr(mine, f.name)}" for f in dataclasses.fields(mine)
                            if getattr(mine, f.name) != getattr(recipe, f.name)]
            else:
                changed.append(f"{field.name}={mine}")
        return ", ".join(changed) or "recipe"


RECIPE = Arm(post_pretrain=PostPretrainOptions())


@dataclass(frozen=True)
class ClaimArms:
    arm: Arm
    baseline: Arm
    metric: str = "auc"          # a column of relcourse.metrics.evaluate, read on the 'all' row


CLAIM_ARMS: dict[str, ClaimArms] = {
    "P1": ClaimArms(Arm(), Arm(PretrainOptions(replacement="all_mask"))),
    "P2": ClaimArms(Arm(PretrainOptions(sentence_task="sop")), Arm(PretrainOptions(sentence_task="nsp"))),
    "P3": ClaimArms(Arm(), Arm(PretrainOptions(data_share=0.25))),
    "P4": ClaimArms(Arm(), Arm(PretrainOptions(cleaned=False))),
    "P5": ClaimArms(Arm(PretrainOptions(tapt_share=0.2)), Arm(PretrainOptions(corpus="general"))),
    "P6": ClaimArms(Arm(PretrainOptions(span=True)), Arm()),
    "T2": ClaimArms(RECIPE, Arm()),
    "T3": ClaimArms(RECIPE, Arm(post_pretrain=PostPretrainOptions(mlm_weight=0.0))),
    "T5": ClaimArms(RECIPE, Arm(post_pretrain=PostPretrainOptions(selection="naive"))),
    "F1": ClaimArms(RECIPE, dataclasses.replace(RECIPE, loss="soft_ce"), metric="pnr"),
    "F2": ClaimArms(RECIPE, dataclasses.replace(RECIPE, loss="multiclass"), metric="pnr"),
    "F3": ClaimArms(dataclasses.replace(RECIPE, labels=LabelsSpec()),
                    dataclasses.replace(RECIPE, labels=LabelsSpec(strategy="head_only"))),
    "F4": ClaimArms(dataclasses.replace(RECIPE, labels=LabelsSpec()),
                    dataclasses.replace(RECIPE, labels=LabelsSpec(design="single"))),
    "F5": ClaimArms(dataclasses.replace(RECIPE, labels=LabelsSpec()),
                    dataclasses.replace(RECIPE, labels=LabelsSpec(rubric="mixed"))),
}
# Arms a notebook shows beside a claim's two: the rest of a family of options.
EXTRA_ARMS: dict[str, dict[str, Arm]] = {
    "P5": {"general + domain": Arm()},
    "P6": {"static masking": Arm(PretrainOptions(static=True))},
    "F1": {"mse": dataclasses.replace(RECIPE, loss="mse"), "pairwise": dataclasses.replace(RECIPE, loss="pairwise")},
}


def upstream_model(profile: Profile, seed: int, arm: Arm, progress: bool = True) -> Path:
    """The run folder of the model the arm fine-tunes: post-pretrained, or only pretrained."""
    if arm.post_pretrain is None:
        return run_pretrain(profile, seed, arm.pretrain, progress)
    return run_post_pretrain(profile, seed, arm.post_pretrain, arm.pretrain, progress)


def run_arm(profile: Profile, seed: int, arm: Arm = RECIPE, progress: bool = True) -> Path:
    """The fine-tuned model of this arm (cached stage 'finetune'): model, test scores, metrics."""
    data_dir = ensure_data(profile, seed, progress)
    start = upstream_model(profile, seed, arm, progress)
    cfg = profile.finetune if arm.loss is None else dataclasses.replace(profile.finetune, loss=arm.loss)

    def build(out: Path) -> dict:
        tokenizer = tokenizer_of(profile, seed, progress)
        train_labels = arm.labels.labels(data_dir, seed) if arm.labels else None
        splits = labelled_splits(data_dir, tokenizer, profile, train_labels)
        # A 4-class arm gets a fresh head, drawn from the global RNG: seed it, or the head (and the
        # whole arm) would depend on what the process ran before instead of on (profile, seed).
        torch.manual_seed(seed)
        model = load_model(start / MODEL_DIR, num_outputs=4 if cfg.loss == "multiclass" else 1)
        result = finetune(model, splits, cfg, profile, seed, out / "train", progress)
        save_model(model, out / MODEL_DIR)
        pd.DataFrame({"doc_id": splits.test.doc_ids, "query_id": splits.test.query_ids,
                      "label": splits.test.targets, "bucket_name": splits.test_buckets,
                      "score": score(model, splits.test)}).to_parquet(out / "test_scores.parquet")
        table = result["test"]
        return {"test": {row: {k: (None if pd.isna(v) else float(v)) for k, v in values.items()}
                         for row, values in table.to_dict(orient="index").items()},
                "train_pairs": len(splits.train), "steps": result["train"].steps_done,
                "stopped_early": result["train"].stopped_early}

    config = {"finetune": dataclasses.asdict(cfg), "labels": dataclasses.asdict(arm.labels) if arm.labels else None}
    return cached_stage(profile, "finetune", seed, config, build,
                        upstream={"data": run_hash(data_dir), "model": run_hash(start)}, resumable=True)


def arm_table(run_dir: Path) -> pd.DataFrame:
    """The test metrics of a finished arm: rows all / head / torso / tail."""
    table = pd.DataFrame.from_dict(load_manifest(run_dir)["metrics"]["test"], orient="index")
    return table.loc[["all", *metrics.BUCKETS], list(metrics.COLUMNS)].rename_axis("subset")


def arm_metric(profile: Profile, seed: int, arm: Arm, metric: str = "auc", progress: bool = True) -> float:
    return float(arm_table(run_arm(profile, seed, arm, progress)).loc["all", metric])


def teacher_effect(profile: Profile, seed: int, progress: bool = True) -> tuple[float, float]:
    """Claim T1: test AUC of the teacher's pseudo-labels and of raw CTR (the baseline)."""
    metrics = load_manifest(ensure_teacher(profile, seed, progress))["metrics"]
    return metrics["test"]["all"]["auc"], metrics["raw_ctr_test"]["all"]["auc"]


def build_stage(profile: Profile, stage: str, seed: int, progress: bool = True) -> Path:
    """The recipe's run of one stage (for `relcourse run STAGE`)."""
    builders = {"tokenizer": lambda: ensure_tokenizer(profile, seed, progress),
                "pretrain": lambda: run_pretrain(profile, seed, PretrainOptions(), progress),
                "teacher": lambda: ensure_teacher(profile, seed, progress),
                "post_pretrain": lambda: run_post_pretrain(profile, seed, PostPretrainOptions(), PretrainOptions(), progress),
                "finetune": lambda: run_arm(profile, seed, RECIPE, progress)}
    if stage not in builders:
        raise ValueError(f"stage {stage!r} is unknown; choose one of {', '.join(builders)}")
    return builders[stage]()


# Claims with no fine-tuned arms: each seed's (arm, baseline) is the teacher's test AUC, two ways.
TEACHER_CLAIMS = {"T1": teacher_effect, "T4": feedback_effect}


def run_claim(profile: Profile, claim_id: str, progress: bool = True) -> claims.ClaimResult:
    """Both arms on every seed of the profile; the result is recorded in the registry."""
    per_seed: dict[int, tuple[float, float]] = {}
    for seed in profile.seeds:
        if claim_id in TEACHER_CLAIMS:
            per_seed[seed] = TEACHER_CLAIMS[claim_id](profile, seed, progress)
            continue
        spec = CLAIM_ARMS[claim_id]
        per_seed[seed] = (arm_metric(profile, seed, spec.arm, spec.metric, progress),
                          arm_metric(profile, seed, spec.baseline, spec.metric, progress))
    arm_mean = statistics.fmean(a for a, _ in per_seed.values())
    base_mean = statistics.fmean(b for _, b in per_seed.values())
    notes = f"arm {arm_mean:.4f}, baseline {base_mean:.4f} (mean over seeds {list(per_seed)})"
    result = claims.summarise(claim_id, profile.name, {s: a - b for s, (a, b) in per_seed.items()}, notes)
    claims.record(result)
    return result


def notebook_claims(profile: Profile, claim_ids: list[str]) -> dict[str, claims.ClaimResult] | None:
    """The results a notebook shows for these claims, or None while some are not in the registry.

    With profile.notebook_claims 'run' (smoke: one seed, a couple of minutes) the notebook runs
    them here. With 'read' (laptop and up, where both arms on every seed take hours) it reads
    the registry, which `relcourse run claims` fills in the background, and prints that command
    for the claims it lacks; every arm of a recorded claim is built, and `run claims` also builds
    the extra arms the notebook shows on the first seed, so a notebook can then read any arm back
    at once.
    """
    if profile.notebook_claims == "run":
        return {c: run_claim(profile, c, progress=False) for c in claim_ids}
    recorded = claims.load_results(profile.name)
    missing = [c for c in claim_ids if recorded[c].status == "not run"]
    if missing:
        # on CPU, suggest one 1-thread worker per thread of the profile (see run_claims)
        workers = f" --workers {profile.threads}" if profile.device == "cpu" and profile.threads > 1 else ""
        print(f"The '{profile.name}' claims registry has no result yet for {', '.join(missing)}. On this profile "
              f"a claim takes hours, so the notebook does not run it; run it in the background, then come back:\n"
              f"    python -m relcourse run claims --profile {profile.name} "
              f"{' '.join('--claim ' + c for c in missing)}{workers}")
        return None
    return {c: recorded[c] for c in claim_ids}


def runnable_claims(stage: str) -> list[str]:
    """The claims of a stage that have experiments here."""
    return [c.id for c in claims.CLAIMS if c.stage == stage and (c.id in CLAIM_ARMS or c.id in TEACHER_CLAIMS)]


def select_claims(stage: str | None = None, claim_ids: list[str] | None = None) -> list[str]:
    """The claims to run: the ids given, else the stage's; a clear error for what has no experiment."""
    if claim_ids:
        known = [c for s in claims.STAGES for c in runnable_claims(s)]
        for claim_id in claim_ids:
            if claim_id not in known:
                raise ValueError(f"claim {claim_id!r} has no experiment here; choose from {', '.join(known)}")
        return list(claim_ids)
    if stage is None:
        raise ValueError("name the claims: a stage (e.g. --stage pretrain) or claim ids (e.g. --claim T2)")
    ids = runnable_claims(stage)
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
    ['seed 2 post_pretrain=None', 'seed 0 pretrain.replacement=all_mask, post_pretrain=None']
    """
    if claim_id in TEACHER_CLAIMS:
        return {f"seed {seed} {claim_id}": functools.partial(TEACHER_CLAIMS[claim_id], profile, seed, progress=False)
                for seed in profile.seeds}
    spec = CLAIM_ARMS[claim_id]
    return {f"seed {seed} {arm.label()}": functools.partial(run_arm, profile, seed, arm, progress=False)
            for arm in (spec.arm, spec.baseline) for seed in profile.seeds}


def extra_jobs(profile: Profile, claim_id: str) -> dict[str, functools.partial]:
    """The arms a notebook shows beside the claim's two (EXTRA_ARMS), on the profile's first seed,
    the one the notebooks use: built with the claims, so a notebook reading the registry on a big
    profile trains nothing."""
    seed = profile.seeds[0]
    return {f"seed {seed} {arm.label()}": functools.partial(run_arm, profile, seed, arm, progress=False)
            for arm in EXTRA_ARMS.get(claim_id, {}).values()}


def run_claims(profile: Profile, stage: str | None = None, claim_ids: list[str] | None = None,
               workers: int = 1, progress: bool = True) -> list[claims.ClaimResult]:
    """Run the claims (a stage's, or the ids given) on every seed and record each in the registry
    as soon as its runs are built; then build the extra arms the notebooks show (extra_jobs).

    With `workers` > 1 the runs are built that many at a time, each in its own process with
    profile.threads // workers threads: a small model keeps several threads only partly busy
    (compare `benchmarks/pretrain_throughput.py --threads 1` and `--threads 2`), so separate
    processes usually finish sooner. Runs that several claims share (the recipe) are built once;
    stages are cached and locked, so two workers needing one upstream stage build it once. If a
    run fails, the runs not started are cancelled and the error is raised; what finished stays
    cached for the next try.
    """
    ids = select_claims(stage, claim_ids)
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if workers == 1:
        results = [run_claim(profile, claim_id, progress) for claim_id in ids]
        for claim_id in ids:
            for job in extra_jobs(profile, claim_id).values():
                job(progress=progress)   # one run at a time: its progress bar is readable
        return results
    worker_profile = dataclasses.replace(profile, threads=max(1, profile.threads // workers))
    needs = {claim_id: claim_jobs(worker_profile, claim_id) for claim_id in ids}
    extras = {name: job for claim_id in ids for name, job in extra_jobs(worker_profile, claim_id).items()}
    jobs = {name: job for claim_id in ids for name, job in needs[claim_id].items()} | extras   # shared runs once
    built, results = set(), {}
    # spawn, not fork: a forked child inherits torch's thread pools in whatever state they are in
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(job): name for name, job in jobs.items()}
        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc="claim runs", disable=not progress):
                future.result()
                built.add(futures[future])
                for claim_id in ids:
                    if claim_id not in results and built >= needs[claim_id].keys():
                        results[claim_id] = run_claim(profile, claim_id, progress=False)   # all cached: quick
                if progress:
                    tqdm.write(f"{time.strftime('%H:%M:%S')} built {futures[future]}; claims recorded: "
                               f"{', '.join(results) or 'none yet'}")
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return [results[claim_id] for claim_id in ids]
