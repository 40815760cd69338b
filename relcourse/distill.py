"""Stage 4: distil the fine-tuned cross-encoder (the teacher) into a small, cheap student.

A cross-encoder reads every (query, document) pair through the whole network, so serving cost
grows with its size; the sources serve 4- to 12-layer students of 24- to 48-layer teachers.
The recipe:
1. `ensure_distill_data`: the teacher scores a pool of unlabelled pairs — every candidate
   document of the training and unlabelled queries (never valid or test) — once, in eval mode;
   the logits go to teacher_scores.parquet, with the teacher's run hash in the manifest.
   Labels are few; teacher scores are as many as there are logged pairs.
2. `run_distill`: the student — warm (the recipe at the student's size: pretrained,
   post-pretrained and fine-tuned like the teacher) or cold (random weights) — fits the
   teacher's scores with `distill.loss` (relcourse.losses: logit_mse, prob_ce, margin_mse) on
   query-grouped batches, early-stopped on the validation queries' human labels; it is judged,
   like every model of the course, on the test queries against the hidden truth. It trains in
   `distill.train_precision` and is validated and tested as it is served, in
   `distill.serve_precision` (fp32, bf16 or int8: relcourse.serving; claim D11).

Two variants the claims compare: with `distill.hidden_weight` > 0 the student also fits the
teacher's hidden states layer by layer (`LayerwiseStudent`, claim D8); with `distill.via_layers`
> 0 the teacher is first distilled into a mid-size student (`mid_profile`), and the student fits
that one's scores (claim D9).

The teacher is the model stages 1-3 train (size `pretrain.model`); a bigger or smaller teacher
is an arm that overrides `pretrain.model`. `student_profile` is the same profile at the
student's size: its recipe is the warm student's start, and the "same small model trained on
labels only" of claims D1 and D2.

>>> from relcourse.config import load_profile
>>> student_profile(load_profile("laptop")).pretrain.model.layers   # laptop: 2-layer teacher, 1-layer student
1
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics
from .config import DistillConfig, Profile, with_overrides
from .data import PairSet, make_pairset, query_grouped_batch, steps_for_epochs, unlabelled_pairs
from .finetune import labelled_splits, run_finetune, score
from .losses import HiddenStateMSELoss, make_loss
from .models import RelevanceBert, load_model, save_model
from .pretrain import MODEL_DIR, ensure_tokenizer, new_model, tokenizer_of
from .serving import bf16_supported, in_arithmetic, score_in, serving_sides
from .store import StoreError, cached_stage, ensure_data, load_manifest, run_hash
from .train import TrainConfig, arithmetic_settings, profile_settings, train

POOL = "candidates of the training and unlabelled queries, v1"   # what ensure_distill_data scores
TEACHER_SCORES = "teacher_scores.parquet"


def student_profile(profile: Profile) -> Profile:
    """The profile with pretrain.model set to the student's size: its recipe trains the warm
    student, and the small model trained on labels only (the baseline of D1 and D2). A chain
    through a mid size (distill.via_layers) belongs to distilling the teacher, not to the
    student's recipe: it is left out (no stage before distillation reads it)."""
    student = dataclasses.asdict(profile.distill.student)
    return with_overrides(profile, {**{f"pretrain.model.{k}": v for k, v in student.items()}, "distill.via_layers": 0})


def mid_profile(profile: Profile) -> Profile:
    """The first link of a distillation chain (distill.via_layers > 0, claim D9): the same
    teacher distilled into a student of its width and heads and via_layers layers. Its warm
    start is the recipe at that size: on laptop, the 2-layer recipe, which is laptop's teacher.

    >>> from relcourse.config import load_profile
    >>> chain = load_profile("laptop", {"pretrain.model.layers": 4, "distill.via_layers": 2})
    >>> mid = mid_profile(chain)
    >>> mid.distill.student.layers, mid.distill.student.hidden, mid.distill.via_layers
    (2, 128, 0)
    >>> student_profile(mid).pretrain.model == load_profile("laptop").pretrain.model   # its start: laptop's teacher
    True
    """
    teacher = dataclasses.asdict(profile.pretrain.model)
    return with_overrides(profile, {**{f"distill.student.{k}": v for k, v in teacher.items()},
                                    "distill.student.layers": profile.distill.via_layers, "distill.via_layers": 0})


def scorer_run(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The run whose model scores the distillation pool, the student's teacher: the fine-tuned
    teacher of stages 1-3, or, in a chain (distill.via_layers > 0), the mid student distilled from it."""
    if profile.distill.via_layers:
        return run_distill(mid_profile(profile), seed, progress)
    return run_finetune(profile, seed, progress)


def test_auc(run_dir: Path) -> float:
    """The test AUC a fine-tuning or distillation run recorded."""
    return float(load_manifest(run_dir)["metrics"]["test"]["all"]["auc"])


def timed_score(model: RelevanceBert, pairs: PairSet, arithmetic: str = "fp32") -> tuple[np.ndarray, float]:
    """relcourse.finetune.score of the pairs in `arithmetic` (relcourse.serving), and the pairs
    scored per second (eval mode, this process's threads): the serving cost, measured rather
    than estimated (an int8 model is quantised before the clock starts)."""
    served, context = in_arithmetic(model, arithmetic)
    with context():
        start = time.perf_counter()
        scores = score(served, pairs)
        return scores, len(pairs) / (time.perf_counter() - start)


def train_precision(profile: Profile) -> str:
    """The student's training arithmetic: distill.train_precision, or with 'profile' the
    profile's precision.

    >>> from relcourse.config import load_profile
    >>> bf16 = load_profile("smoke", {"distill.train_precision": "bf16"})
    >>> train_precision(load_profile("smoke")), train_precision(bf16)
    ('fp32', 'bf16')
    """
    chosen = profile.distill.train_precision
    return profile.precision if chosen == "profile" else chosen


def scoring_device(profile: Profile) -> torch.device:
    """Where the teacher scores: the profile's device ('auto': cuda when there is one).
    load_model reads weights onto the CPU; left there, a GPU profile's teacher would score its
    whole pool (640k pairs on `gpu`) on the host's CPU, hours instead of seconds.

    >>> from relcourse.config import load_profile
    >>> scoring_device(load_profile("smoke")).type
    'cpu'
    """
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(auto if profile.device == "auto" else profile.device)


# --- the distillation data ------------------------------------------------------------------

def distill_data_settings(profile: Profile) -> dict:
    """The distillation data's cache key: the pool and its encoding (the teacher is upstream)."""
    return {"pool": POOL, "tokenizer": dataclasses.asdict(profile.tokenizer)}


def ensure_distill_data(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The teacher's logit on every pair of the distillation pool (teacher_scores.parquet:
    doc_id, query_id, teacher_logit), scored once per teacher. The teacher is the student's:
    `scorer_run` (the mid student in a chain); its run hash is upstream 'teacher'."""
    data_dir = ensure_data(profile, seed, progress)
    teacher_dir = scorer_run(profile, seed, progress)

    def build(out: Path) -> dict:
        teacher = load_model(teacher_dir / MODEL_DIR).to(scoring_device(profile))
        if teacher.num_outputs != 1:
            raise ValueError(f"the teacher in {teacher_dir} has {teacher.num_outputs} outputs; distillation fits one "
                             "logit per pair: distil a teacher fine-tuned with a 1-logit loss (not 'multiclass')")
        doc_ids = unlabelled_pairs(data_dir)
        pairs = make_pairset(data_dir, tokenizer_of(profile, seed, progress), doc_ids, np.zeros(len(doc_ids)),
                             profile.tokenizer)
        logits, rate = timed_score(teacher, pairs)
        pd.DataFrame({"doc_id": doc_ids, "query_id": pairs.query_ids,
                      "teacher_logit": logits}).to_parquet(out / TEACHER_SCORES)
        if progress:
            print(f"[distill] teacher scored {len(doc_ids):,} pairs ({rate:,.0f}/s)")
        return {"pairs": len(doc_ids), "queries": int(np.unique(pairs.query_ids).size),
                "scoring_s": round(len(doc_ids) / rate, 3), "pairs_per_s": round(rate, 1)}

    return cached_stage(profile, "distill_data", seed, distill_data_settings(profile), build,
                        upstream={"data": run_hash(data_dir), "teacher": run_hash(teacher_dir)})


def read_teacher_scores(pool_dir: Path, teacher_dir: Path) -> pd.DataFrame:
    """The pool's teacher scores, after checking that this teacher scored them."""
    scored_by = load_manifest(pool_dir)["upstream"].get("teacher")
    if scored_by != run_hash(teacher_dir):
        raise StoreError(f"{pool_dir} was scored by teacher {scored_by}, not by {teacher_dir.name}: "
                         "rebuild the distillation data with this teacher (ensure_distill_data)")
    frame = pd.read_parquet(pool_dir / TEACHER_SCORES)
    missing = {"doc_id", "query_id", "teacher_logit"} - set(frame.columns)
    if missing:
        raise StoreError(f"{pool_dir / TEACHER_SCORES} lacks columns {sorted(missing)}: delete {pool_dir} and "
                         "rebuild the distillation data")
    return frame


def sample_queries(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Whole queries, in a seeded random order, until `share` of the pairs is reached: a smaller
    pool keeps every query's documents together, so margin_mse still has pairs to compare and
    D5/D6 change the amount of data only, not how it is grouped.

    >>> frame = pd.DataFrame({"query_id": [1, 1, 2, 2, 3, 3], "doc_id": range(6)})
    >>> len(sample_queries(frame, 0.5, seed=0)), len(sample_queries(frame, 1.0, seed=0))
    (4, 6)
    """
    if share >= 1.0:
        return frame
    queries = np.random.default_rng([seed, 11]).permutation(np.unique(frame["query_id"]))
    counts = frame["query_id"].value_counts().loc[queries].to_numpy()
    keep = queries[:int(np.searchsorted(np.cumsum(counts), share * len(frame))) + 1]
    return frame[frame["query_id"].isin(keep)]


def distillation_targets(pool_dir: Path, scorer_dir: Path, cfg: DistillConfig, seed: int) -> pd.DataFrame:
    """The pairs the student reads (`sample_queries` of the pool) with the logits it fits: the
    scorer's, times `cfg.teacher_scale`."""
    pool = sample_queries(read_teacher_scores(pool_dir, scorer_dir), cfg.pairs_share, seed)
    return pool.assign(teacher_logit=pool["teacher_logit"] * cfg.teacher_scale)


# --- the distillation stage -----------------------------------------------------------------

def distill_settings(profile: Profile) -> dict:
    """The distillation stage's cache key (the teacher, its scores and a warm student's start
    are in its upstream hashes)."""
    return {"distill": dataclasses.asdict(profile.distill), "tokenizer": dataclasses.asdict(profile.tokenizer),
            **arithmetic_settings(profile)}


def distill_steps(profile: Profile, pairs: int) -> int:
    """distill.steps, or, with distill.epochs > 0, the steps of that many passes over `pairs`."""
    cfg = profile.distill
    return cfg.steps if not cfg.epochs else steps_for_epochs(cfg.epochs, pairs, cfg.batch_size)


class LayerwiseStudent(nn.Module):
    """What trains when distill.hidden_weight > 0 (claim D8): the student and the projection of
    its hidden-state loss (relcourse.losses.hidden_mse). The teacher runs beside it on every
    batch, in eval mode and without gradients; held in a tuple, it is no submodule, so it is
    neither trained nor checkpointed. The projection is not saved with the served student (it
    has no use at serving time); it stays in the run's training checkpoint.

    >>> from relcourse.config import ModelConfig
    >>> small, big = ModelConfig(layers=1, hidden=32), ModelConfig(layers=2, hidden=64)
    >>> pair = LayerwiseStudent(RelevanceBert(small, 100, 16), RelevanceBert(big, 100, 16))
    >>> sorted({name.split(".")[0] for name, _ in pair.named_parameters()})   # the teacher's are not here
    ['hidden_loss', 'student']
    """

    def __init__(self, student: RelevanceBert, teacher: RelevanceBert):
        super().__init__()
        self.student = student
        self.hidden_loss = HiddenStateMSELoss(student.cfg.layers, teacher.cfg.layers, student.cfg.hidden,
                                              teacher.cfg.hidden)
        self.teacher = (teacher.eval().requires_grad_(False),)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The student's relevance logits and its hidden-state loss, from one pass of each model."""
        states = self.student.layer_states(batch)
        with torch.no_grad():
            teacher_states = self.teacher[0].layer_states(batch)
        return {"relevance": self.student.relevance(batch, states[-1]),
                "hidden": self.hidden_loss(states, teacher_states, batch["attention_mask"])}


def run_distill(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The student distilled from this profile's teacher (cached stage 'distill'): its model,
    test scores and metrics, beside the teacher's. In a chain (distill.via_layers) the student
    fits the mid student's scores; the mid run is upstream 'via' and the metrics' 'chain'."""
    data_dir = ensure_data(profile, seed, progress)
    teacher_dir = run_finetune(profile, seed, progress)
    scorer_dir = scorer_run(profile, seed, progress)     # teacher_dir itself, unless in a chain
    pool_dir = ensure_distill_data(profile, seed, progress)
    cfg = profile.distill
    warm_dir = run_finetune(student_profile(profile), seed, progress) if cfg.start == "warm" else None

    def build(out: Path) -> dict:
        tokenizer = tokenizer_of(profile, seed, progress)
        pool = distillation_targets(pool_dir, scorer_dir, cfg, seed)
        pairs = make_pairset(data_dir, tokenizer, pool["doc_id"].to_numpy(), pool["teacher_logit"].to_numpy(),
                             profile.tokenizer)
        splits = labelled_splits(data_dir, tokenizer, profile)
        torch.manual_seed(seed)   # a cold student's random weights depend on (profile, seed) only
        student = load_model(warm_dir / MODEL_DIR) if warm_dir else new_model(student_profile(profile), len(tokenizer))
        teacher = load_model(teacher_dir / MODEL_DIR).to(scoring_device(profile))
        for name, model in (("student", student), ("teacher", teacher)):
            if model.vocab_size != len(tokenizer):
                raise ValueError(f"the {name} reads a vocabulary of {model.vocab_size} tokens, the tokenizer has "
                                 f"{len(tokenizer)}: teacher and student must share one tokenizer; rebuild the "
                                 "student with this profile's tokenizer")
        # The layer-wise term reads the layers of the model whose scores the student fits: the
        # teacher loaded above, or in a chain the mid student.
        trainee = student
        if cfg.hidden_weight:
            scorer = teacher if scorer_dir == teacher_dir else load_model(scorer_dir / MODEL_DIR).to(
                scoring_device(profile))
            trainee = LayerwiseStudent(student, scorer)
        loss = make_loss(cfg.loss)
        steps = distill_steps(profile, len(pairs))

        def batch_at(step: int) -> dict:
            return query_grouped_batch(pairs, step, cfg.batch_size, cfg.docs_per_query_in_batch, seed)

        def loss_fn(m, batch: dict) -> dict:
            out = m(batch)
            fit = loss(out["relevance"], batch["targets"], batch["query_ids"])
            if not cfg.hidden_weight:
                return {"loss": fit}
            return {"loss": fit + cfg.hidden_weight * out["hidden"], "output": fit, "hidden": out["hidden"]}

        def validate(m):   # m is the student, or the LayerwiseStudent holding it
            # in the serving arithmetic: early stopping keeps the weights that score best as served
            return {"auc": metrics.auc(splits.valid.targets, score_in(student, splits.valid, cfg.serve_precision))}

        tcfg = TrainConfig(steps=steps, lr=cfg.lr, warmup_steps=int(steps * cfg.warmup_share),
                           grad_accum=cfg.grad_accum, checkpoint_every=max(steps // 4, 1),
                           eval_every=max(steps // cfg.evaluations, 1),
                           **{**profile_settings(profile, seed), "precision": train_precision(profile)})
        result = train(trainee, batch_at, loss_fn, tcfg, out / "train", evaluate=validate, metric="auc",
                       progress=progress)
        save_model(student, out / MODEL_DIR)
        student_scores = score_in(student, splits.test, cfg.serve_precision)
        teacher_test = pd.read_parquet(teacher_dir / "test_scores.parquet").set_index("doc_id").loc[
            splits.test.doc_ids, "score"].to_numpy()
        pd.DataFrame({"doc_id": splits.test.doc_ids, "query_id": splits.test.query_ids, "label": splits.test.targets,
                      "bucket_name": splits.test_buckets, "score": student_scores, "teacher_score": teacher_test}
                     ).to_parquet(out / "test_scores.parquet")
        table = metrics.evaluate(splits.test.targets, student_scores, splits.test.query_ids, splits.test_buckets)
        spread = student_scores.std() * teacher_test.std()   # a constant score has no correlation: None
        chain = {"chain": {"via_layers": cfg.via_layers, "via_run": run_hash(scorer_dir),
                           "via_test_auc": test_auc(scorer_dir),
                           "via_parameters": load_manifest(scorer_dir)["metrics"]["parameters"]["student"]}
                 } if cfg.via_layers else {}
        return {"test": metrics.records(table), "teacher_test_auc": test_auc(teacher_dir),
                "teacher_agreement": float(np.corrcoef(student_scores, teacher_test)[0, 1]) if spread > 0 else None,
                "pairs": len(pairs), "queries": int(pool["query_id"].nunique()), "steps": result.steps_done,
                "epochs": round(steps * cfg.batch_size / len(pairs), 3),
                "parameters": {"student": student.num_parameters(), "teacher": teacher.num_parameters()}, **chain,
                "arithmetic": {"train": train_precision(profile), "serve": cfg.serve_precision,
                               "cpu_native_bf16": bf16_supported()},
                "train_s": next(line["elapsed_s"] for line in reversed(result.history) if "elapsed_s" in line)}

    upstream = {"data": run_hash(data_dir), "tokenizer": run_hash(ensure_tokenizer(profile, seed, progress)),
                "teacher": run_hash(teacher_dir), "distill_data": run_hash(pool_dir)}
    if warm_dir is not None:
        upstream["student_start"] = run_hash(warm_dir)
    if cfg.via_layers:
        upstream["via"] = run_hash(scorer_dir)
    return cached_stage(profile, "distill", seed, distill_settings(profile), build, upstream=upstream, resumable=True)


# --- claims measured from whole runs (relcourse.experiments runs them on every seed) ----------

def size_effect(profile: Profile, seed: int, progress: bool = True) -> tuple[float, float]:
    """Claim D1: test AUC of the recipe at the teacher's size and at the student's size."""
    return (test_auc(run_finetune(profile, seed, progress)),
            test_auc(run_finetune(student_profile(profile), seed, progress)))


def distillation_effect(profile: Profile, seed: int, progress: bool = True) -> tuple[float, float, dict]:
    """Claim D2: the distilled student against the same small model trained on labels only (the
    recipe at the student's size, which is also where a warm student starts). Not equal compute:
    the distilled student has its distillation steps on top, as in the sources' comparison. So
    beside the effect goes the check at equal compute: the small model fine-tuned on labels for as
    many steps as the distilled student took in all (labels_at_equal_steps)."""
    distilled, on_labels = run_distill(profile, seed, progress), run_finetune(student_profile(profile), seed, progress)
    equal = run_finetune(labels_at_equal_steps(profile, on_labels, distilled), seed, progress)
    return test_auc(distilled), test_auc(on_labels), {"labels only, equal steps": test_auc(equal)}


def labels_at_equal_steps(profile: Profile, on_labels: Path, distilled: Path) -> Profile:
    """The student's recipe (student_profile) with its fine-tuning given the steps that the
    distilled student took in all: those of its warm start, the run `on_labels`, then those of
    its distillation, the run `distilled`, counted in fine-tuning batches (both stages read rows
    of the same length through the same model, so rows are the compute). Its own early stopping
    may still end it sooner: validation decides, as for every fine-tuning.

    >>> import json, tempfile
    >>> from relcourse.config import load_profile
    >>> runs = [Path(tempfile.mkdtemp()) for _ in range(2)]
    >>> for run, steps in zip(runs, (1_400, 3_000)):   # a warm start stopped early, then 3,000 steps
    ...     _ = (run / "run.json").write_text(json.dumps({"status": "complete", "metrics": {"steps": steps}}))
    >>> labels_at_equal_steps(load_profile("laptop"), *runs).finetune.steps   # 1,400 + 3,000 x 64 / 64
    4400
    """
    student = student_profile(profile)
    warm_steps = load_manifest(on_labels)["metrics"]["steps"]
    rows = load_manifest(distilled)["metrics"]["steps"] * profile.distill.batch_size
    return with_overrides(student, {"finetune.steps": warm_steps + round(rows / student.finetune.batch_size)})


def serving_effect(profile: Profile, seed: int, progress: bool = True) -> tuple[float, float, dict]:
    """Claim D12: log docs/s of the distilled student at half length in half precision, and of
    the teacher at full length in fp32, timed on this CPU (relcourse.serving.serving_sides), and
    what each side's speed costs: its test AUC, recorded beside the effect."""
    sides = serving_sides(profile, seed, run_finetune(profile, seed, progress), run_distill(profile, seed, progress))
    if progress:
        print(f"[D12] seed {seed}:\n{sides.round(4).to_string()}")
    return (math.log(sides.loc["student", "docs/s"]), math.log(sides.loc["teacher", "docs/s"]),
            {f"{side} test AUC": float(sides.loc[side, "test AUC"]) for side in ("student", "teacher")})
