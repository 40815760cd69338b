"""A GPU profile, proven on CPU before anyone pays for the GPU hour.

    python -m relcourse dry-run --profile gpu                 # full depth: slow on CPU (see below)
    python -m relcourse dry-run --profile gpu-xl --layers 1   # full width, length and batch layout, 1 layer

Every stage of the recipe (data, tokenizer, pretrain with TAPT, teacher, post_pretrain,
finetune with its evaluations, distill_data, distill with its warm student) runs through its own
`run_*` function, in a scratch runs/ folder, with the profile's
- model widths (hidden, heads, feed-forward), input length (max_len, max_query_len) and
  vocabulary size setting (the tokenizer learns what the tiny world's text holds: a few thousand),
- batch layout: whole query groups of docs_per_query_in_batch, post-pretraining's MLM copy, and
  the gradient accumulation (each stage's grad_accum micro-batches a step);
- precision: the profile's bf16 where this CPU has native bf16 (AVX512-BF16 or AMX), else fp32;
and, shrunk so that it runs in minutes on 2 cores (`dry_run_overrides` lists them):
- the world: the smoke world, smaller still (SMALL_WORLD), and pretraining's held-out pairs;
- the steps (`steps`) and the micro-batches (`groups` query groups each, pretraining's `groups x
  4` rows), at most DRY_ACCUM of them a step (two exercise what four do);
- the depth, when `layers` is given (the test uses 1: depth repeats the same shapes).

Each training stage runs as the GPU run should, through the stage's own TrainConfig, and it is
checked to resume exactly: trained uninterrupted in a scratch folder, then killed after
`interrupt_at` steps and resumed from its checkpoint, the two must end with the same weights, bit
for bit. That is done by `checked_training`, which stands in for relcourse.train.train inside the
stage modules while the dry run lasts; it also records the autocast dtype seen inside the loss,
each micro-batch's shape, the micro-batches per step and that every logged loss is finite.

The memory of one *full-size* step of each stage is estimated (relcourse.gpu_memory) and its
activations checked against the bytes autograd saves on CPU at the full width, extrapolated.

What must not run on CPU: the full-size steps themselves (a BERT-large step at batch 512 x 256
tokens needs ~200 GiB; BERT-base's 15 s per 8 rows on 2 cores), and anything CUDA-only (fused
attention kernels, CUDA RNG state in checkpoints): the GPU's first minutes check those.

>>> overrides = dry_run_overrides("gpu", steps=2, layers=1)
>>> overrides["post_pretrain.batch_size"], overrides["pretrain.model.layers"], "tokenizer.max_len" in overrides
(8, 1, False)
>>> dry_run_overrides("gpu-xl")["pretrain.batch_size"]    # 2 micro-batches of 4 rows
8
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distill, finetune, gpu_memory, post_pretrain, pretrain, train as loop
from .config import PROFILES, load_profile
from .serving import bf16_supported
from .data import ENCODE_CHUNK
from .store import load_manifest, runs_in

STAGE_MODULES = (pretrain, post_pretrain, finetune, distill)   # each calls relcourse.train.train as `train`
# The smallest world the generator allows (50 queries of 10 documents), so that scoring (the
# teacher's pool, validation, test, query swap), in fp32 at full width and length, stays short.
SMALL_WORLD = {"n_queries": 50, "docs_per_query": 10, "n_searches": 2_000, "general_corpus_lines": 200,
               "domain_corpus_lines": 60, "label_budget": 500.0}
PRETRAIN_ROWS_PER_GROUP = 4
DRY_ACCUM = 2


class DryRunError(AssertionError):
    """A stage failed a check of the dry run; the message says which and how."""


def dry_run_overrides(name: str, steps: int = 2, groups: int = 1, layers: int | None = None,
                      threads: int = 2, device: str = "cpu") -> dict:
    """The dotted overrides that shrink profile `name` to a dry run on `device` (cpu, or cuda on
    the GPU itself, in the profile's own precision); everything else is kept."""
    base = load_profile(name)
    world = {f"data.{k}": v for k, v in dataclasses.asdict(PROFILES["smoke"].data).items()}
    world |= {f"data.{k}": v for k, v in SMALL_WORLD.items()} | {"data.seeds": (0,)}
    precision = base.precision if device == "cuda" or bf16_supported() else "fp32"
    out = world | {"device": device, "threads": threads, "precision": precision,
                   "pretrain.warmup_steps": 1,
                   "pretrain.tapt_share": 0.5,   # the last half of the steps read the task's pairs (TAPT)
                   "finetune.evaluations": 1, "distill.evaluations": 1}
    for stage in ("pretrain", "post_pretrain", "finetune", "distill"):
        cfg = getattr(base, stage)
        rows, accum = getattr(cfg, "docs_per_query_in_batch", PRETRAIN_ROWS_PER_GROUP), min(cfg.grad_accum, DRY_ACCUM)
        out |= {f"{stage}.steps": steps, f"{stage}.grad_accum": accum, f"{stage}.batch_size": groups * rows * accum}
    if layers is not None:
        out |= {"pretrain.model.layers": layers, "distill.student.layers": min(layers, base.distill.student.layers)}
    return out


# --- the stand-in for relcourse.train.train --------------------------------------------------

@dataclass
class StageCheck:
    stage: str
    model: str                   # layers x hidden
    steps: int
    autocast: str                # the dtype autocast had inside loss_fn, or "off"
    grad_accum: int              # as the stage configured its training
    micro_batches: int           # loss_fn calls per optimizer step
    batch_rows: int              # of the first micro-batch
    queries_per_batch: int       # distinct queries in the first batch (0: not query-grouped)
    seq_len: int
    resumed_from: int            # the checkpoint's step the resumed run started from
    max_weight_diff: float       # resumed vs uninterrupted final weights
    s_per_step: float
    finite: bool                 # every logged loss is finite


class _Interrupted(Exception):
    pass


@dataclass
class CheckedTraining:
    """relcourse.train.train as the stage calls it, run twice more to check resume."""
    interrupt_at: int
    checks: list[StageCheck] = field(default_factory=list)

    def __call__(self, model, batch_at, loss_fn, cfg, run_dir, evaluate=None, metric=None, progress=True):
        run_dir = Path(run_dir)
        stage = run_dir.parent.parent.name
        cfg = dataclasses.replace(cfg, checkpoint_every=self.interrupt_at)
        if cfg.steps <= self.interrupt_at:
            raise DryRunError(f"{stage}: {cfg.steps} steps leave nothing to resume after step {self.interrupt_at}")
        seen = {"calls": 0}

        on = "cuda" if cfg.device == "cuda" else "cpu"

        def watched(m, batch):
            seen["calls"] += 1
            seen.setdefault("autocast", str(torch.get_autocast_dtype(on)).removeprefix("torch.")
                            if torch.is_autocast_enabled(on) else "off")
            seen.setdefault("shape", tuple(batch["input_ids"].shape))
            seen.setdefault("queries", len(torch.unique(batch["query_ids"])) if "query_ids" in batch else 0)
            return loss_fn(m, batch)

        def stopping(index):
            if index >= self.interrupt_at:
                raise _Interrupted
            return batch_at(index)

        args = dict(evaluate=evaluate, metric=metric, progress=False)
        with tempfile.TemporaryDirectory() as scratch:
            reference = copy.deepcopy(model)
            loop.train(reference, batch_at, watched, cfg, Path(scratch), **args)
            try:
                loop.train(copy.deepcopy(model), stopping, watched, cfg, run_dir, **args)
                raise DryRunError(f"{stage}: the run was never interrupted")
            except _Interrupted:
                pass
            resumed_from = json.loads((run_dir / loop.CHECKPOINT / "run.json").read_text())["step"]
            start, seen["calls"] = time.perf_counter(), 0
            result = loop.train(model, batch_at, watched, cfg, run_dir, evaluate=evaluate, metric=metric,
                                progress=progress)
            seconds = time.perf_counter() - start
        ours, theirs = model.state_dict(), reference.state_dict()
        diff = max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in ours)
        losses = [v for line in result.history for k, v in line.items() if k not in ("step", "lr", "elapsed_s", "eval")]
        self.checks.append(StageCheck(
            stage, f"{model.cfg.layers}x{model.cfg.hidden}", result.steps_done, seen["autocast"], cfg.grad_accum,
            seen["calls"] / max(cfg.steps - resumed_from, 1), seen["shape"][0],
            seen["queries"], seen["shape"][1], resumed_from, diff, seconds / max(cfg.steps - resumed_from, 1),
            all(math.isfinite(v) for v in losses)))
        return result


@contextmanager
def checked_training(interrupt_at: int):
    """While the block runs, every stage module trains through a CheckedTraining (yielded)."""
    checker = CheckedTraining(interrupt_at)
    originals = [(module, module.train) for module in STAGE_MODULES]
    for module, _ in originals:
        module.train = checker
    try:
        yield checker
    finally:
        for module, original in originals:
            module.train = original


# --- the dry run -----------------------------------------------------------------------------

@dataclass
class DryRun:
    profile: str
    device: str
    precision: str
    overrides: dict
    vocab: tuple[int, int]          # (the profile's setting, what the tokenizer learnt)
    checks: list[StageCheck]
    estimates: list[gpu_memory.Estimate]         # full size, bf16, fused attention (as the GPU run should)
    fp32_estimates: list[gpu_memory.Estimate]    # full size, fp32 (precision=fp32)
    whole_estimates: list[gpu_memory.Estimate]   # full size, bf16, without gradient accumulation
    measured_activations: dict[str, float]       # stage -> bytes autograd saves, measured on CPU, extrapolated
    peak_rss: tuple[int, float] | None           # (grown, estimated) bytes of one small step, on CPU
    host_bytes: tuple[int, int]                  # pretraining's tokenised rows: (full profile estimate, bytes)
    host_rows_check: tuple[int, int]             # on the dry-run world: (estimated rows, rows built)
    seconds: float


def run_dry(name: str, steps: int = 2, interrupt_at: int = 1, groups: int = 1, layers: int | None = None,
            threads: int = 2, root: Path | None = None, progress: bool = False, device: str = "cpu") -> DryRun:
    """Every stage of profile `name`, shrunk as `dry_run_overrides` says, with the checks above.
    On device='cuda' (the GPU's first minutes) the stages also run CUDA's own kernels: fused
    attention, fused AdamW, the CUDA RNG state in checkpoints. Exact resume there needs
    deterministic kernels, which the run asks torch for while it lasts."""
    start = time.perf_counter()
    overrides = dry_run_overrides(name, steps, groups, layers, threads, device)
    profile = load_profile(name, overrides)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as scratch, runs_in(root or scratch), deterministic(device == "cuda"):
        with checked_training(interrupt_at) as checker:
            distill.run_distill(profile, profile.seeds[0], progress=progress)
        learnt = len(pretrain.tokenizer_of(profile, profile.seeds[0], progress=False))
        built = load_manifest(pretrain.run_pretrain(profile, profile.seeds[0], progress=False))["metrics"]
    full = load_profile(name)
    steps_full = gpu_memory.training_steps(full)
    measure = "bf16" if profile.precision == "bf16" else "fp32"
    return DryRun(
        name, device, profile.precision, overrides, (full.tokenizer.vocab_size, learnt), checker.checks,
        [gpu_memory.estimate(s, "bf16", "fused") for s in steps_full],
        [gpu_memory.estimate(s, "fp32", "fused") for s in steps_full],
        [gpu_memory.estimate(gpu_memory.whole(s), "bf16", "fused") for s in steps_full],
        {s.stage: gpu_memory.measured_activations(s, measure) for s in steps_full},
        gpu_memory.peak_rss_of_step(steps_full[1], rows=2, layers=1, precision=measure),
        (gpu_memory.host_pretraining_rows(full), gpu_memory.host_pretraining_bytes(full)),
        (gpu_memory.host_pretraining_rows(profile), built["pairs"] + built["tapt_pairs"]),
        time.perf_counter() - start)


@contextmanager
def deterministic(on: bool):
    """torch's deterministic kernels while the block runs (CUDA's scatter-adds, as in an embedding's
    backward, otherwise sum in a different order each run). cuBLAS needs its workspace setting
    before its first call: `benchmarks/gpu_check.py` sets CUBLAS_WORKSPACE_CONFIG at start."""
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def failures(report: DryRun) -> list[str]:
    """What a dry run found wrong with the *code* (the memory verdicts are findings, not failures)."""
    problems = []
    for c in report.checks:
        if c.micro_batches != c.grad_accum:
            problems.append(f"{c.stage}: {c.micro_batches:g} micro-batches a step, not grad_accum={c.grad_accum}")
        if c.max_weight_diff != 0:
            problems.append(f"{c.stage}: resumed weights differ from uninterrupted ones by {c.max_weight_diff:.3g}")
        if not c.finite:
            problems.append(f"{c.stage}: a logged loss is not finite")
        if report.precision == "bf16" and c.autocast != "bfloat16":
            problems.append(f"{c.stage}: autocast was {c.autocast} inside the loss, not bfloat16")
    for e in report.estimates:
        measured = report.measured_activations[e.step.stage]
        formula = gpu_memory.activation_bytes(e.step, "bf16" if report.precision == "bf16" else "fp32", "math")
        if not 0.9 <= formula / measured <= 1.1:
            problems.append(f"{e.step.stage}: activation formula {formula / gpu_memory.GIB:.1f} GiB vs measured "
                            f"{measured / gpu_memory.GIB:.1f} GiB")
    estimated, built = report.host_rows_check
    if not built <= estimated <= 1.5 * built:
        problems.append(f"host rows: estimated {estimated}, pretraining built {built}")
    return problems


def render(report: DryRun) -> str:
    """The dry run as text: the stage checks, then the memory of a full-size step per stage."""
    gib = gpu_memory.GIB
    target = gpu_memory.TARGET_GPU.get(report.profile, "H100 80GB")
    lines = [f"dry run of profile {report.profile!r} on {report.device} ({report.seconds:.0f} s), "
             f"precision {report.precision}",
             f"  vocabulary: profile {report.vocab[0]:,}, learnt from the dry-run world {report.vocab[1]:,}",
             f"  shrunk: {', '.join(f'{k}={v}' for k, v in report.overrides.items() if not k.startswith('data.'))}; "
             f"world: smoke with {SMALL_WORLD}",
             f"  {'stage':14} {'model':>7} {'steps':>5} {'autocast':>9} {'micro':>5} {'batch':>9} {'queries':>7} "
             f"{'resumed@':>8} {'max|Δw|':>8} {'s/step':>7} finite"]
    for c in report.checks:
        lines.append(f"  {c.stage:14} {c.model:>7} {c.steps:5d} {c.autocast:>9} {c.micro_batches:5g} "
                     f"{c.batch_rows:4d}x{c.seq_len:<4d} "
                     f"{c.queries_per_batch:7d} {c.resumed_from:8d} {c.max_weight_diff:8.1g} {c.s_per_step:7.1f} "
                     f"{c.finite}")
    lines.append(f"  one full-size training step, GiB (weights+grads+AdamW+bf16 copies, activations of one "
                 f"micro-batch, +{gpu_memory.CUDA_OVERHEAD / gib:.0f} CUDA); target {target}:")
    lines.append(f"  {'stage':14} {'model':>9} {'micro x rows x len':>18} {'params':>7} {'bf16 total':>10} "
                 f"{'(act fused/math/CPU-measured)':>30} {'fp32 total':>10} {'no accum':>8}  fits bf16 on")
    for e, f32, w in zip(report.estimates, report.fp32_estimates, report.whole_estimates):
        s = e.step
        math_act = gpu_memory.activation_bytes(s, "bf16", "math") / gib
        fits = [g for g in gpu_memory.GPUS if e.fits(g)]
        lines.append(f"  {s.stage:14} {s.model.layers:>3}x{s.model.hidden:<5} "
                     f"{s.micro_batches:>7} x{s.rows + s.mlm_rows:>5}x{s.seq_len:<4} "
                     f"{e.params / 1e6:6.0f}M {e.total / gib:10.1f} {e.activations / gib:12.1f} /{math_act:6.1f} /"
                     f"{report.measured_activations[s.stage] / gib:6.1f}   {f32.total / gib:10.1f} "
                     f"{w.total / gib:8.1f}  {', '.join(fits) or 'NONE'}")
    if report.peak_rss:
        grown, estimated = report.peak_rss
        lines.append(f"  CPU check, post_pretrain step at 1 layer x 2 rows: resident set grew {grown / 2**20:.0f} MiB, "
                     f"estimated {estimated / 2**20:.0f} MiB (ratio {grown / estimated:.2f})")
    rows, size = report.host_bytes
    lines.append(f"  host RAM: pretraining keeps ~{rows / 1e6:.1f}M tokenised rows (corpus pairs + TAPT pool, "
                 f"int32 ids, int8 types and mask, encoded {ENCODE_CHUNK:,} at a time): {size / gib:.1f} GiB; "
                 f"on the dry-run world the estimate {report.host_rows_check[0]:,} "
                 f"rows vs {report.host_rows_check[1]:,} built")
    problems = failures(report)
    lines.append("  problems: " + ("; ".join(problems) if problems else "none"))
    return "\n".join(lines)
