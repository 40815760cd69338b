"""The one training loop of every stage: pretraining, post-pretraining, fine-tuning, distillation.

A stage hands over three things and the loop does the rest (device, mixed precision, AdamW,
warm-up, clipping, gradient accumulation, logging, checkpoints, evaluation, early stopping):

    batch_at(i)            -> dict of tensors: batch number i, a pure function of i
    loss_fn(model, batch)  -> {"loss": tensor to backpropagate, "mlm": ..., ...}: the rest are logged
    evaluate(model)        -> {"auc": 0.71, ...} (optional): `metric` names the key to maximise;
                              without one the evaluations are only logged (a learning curve)

Optimizer step `step` (0, 1, ...) trains on batch_at(step). With cfg.grad_accum = k the loop
cuts each batch into k micro-batches of whole query groups (`micro_batches`) and adds up their
gradients: the same batch, the same mean gradient (up to rounding), 1/k of the activation memory.
Several processes (`torchrun --nproc_per_node P`, `accelerate launch --num_processes P`) share
each batch the same way: every process builds batch_at(step) and trains on its 1/P of the
micro-batches, and the gradients are averaged across processes. So batch sizes are global, and a
stage's batches, and its results in exact arithmetic, depend on neither k nor P (with dropout
on, up to its random masks, which each process draws for its own share, from the same seed).
Only the main process writes run_dir, evaluates and shows a progress bar; every process ends
with the same weights and the same TrainResult.

Because batches depend on the step alone, a run is resumable *exactly*: every `checkpoint_every`
steps, and at the first logged step once `checkpoint_minutes` of training have passed since the
last one (so that a kill loses minutes, not a fifth of an hour-long run), run_dir/checkpoint/
holds the weights, optimizer, schedule and RNG state, and a run killed
at any step and restarted ends with the same weights, bit for bit on CPU, as one never stopped
(under P processes too, restarted with P: each process's RNG state is kept).
A run that finished returns at once. run_dir/log.jsonl gets a JSON line per logged step.

>>> import tempfile
>>> from torch import nn
>>> model, run_dir = nn.Linear(3, 1), Path(tempfile.mkdtemp())
>>> def batch_at(step):
...     x = torch.randn(8, 3, generator=torch.Generator().manual_seed(step))
...     return {"x": x, "y": x.sum(1, keepdim=True)}
>>> def loss_fn(m, batch):
...     return {"loss": nn.functional.mse_loss(m(batch["x"]), batch["y"])}
>>> cfg = TrainConfig(steps=30, lr=0.1, warmup_steps=3, log_every=10)
>>> result = train(model, batch_at, loss_fn, cfg, run_dir, progress=False)
>>> [line["step"] for line in read_log(run_dir)], result.history[-1]["loss"] < result.history[0]["loss"]
([1, 10, 20, 30], True)
>>> train(model, None, loss_fn, cfg, run_dir, progress=False).steps_done     # finished: nothing is trained again
30
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm  # plain bars: no widget dependency in notebooks
from transformers import get_linear_schedule_with_warmup

from .config import ConfigError, Profile, Section, setting
from .store import atomic_dir, write_text_atomic

CHECKPOINT, LOG = "checkpoint", "log.jsonl"
REQUIRED = dataclasses.MISSING    # a setting without a default
# Settings that change how a run is watched or where it runs, not what it computes: a run may
# be resumed with other values of these. (More threads can reorder float sums, so on CPU a resume
# with other `threads` is the same run in exact arithmetic, not bit for bit.)
NOT_IN_FINGERPRINT = ("log_every", "checkpoint_every", "checkpoint_minutes", "threads", "device")


class CheckpointError(ValueError):
    """run_dir/checkpoint cannot be resumed by this run; the message says what differs and what to do."""


@dataclass(frozen=True)
class TrainConfig(Section):
    steps: int = setting(REQUIRED, "optimizer steps", 1, 10**9)
    lr: float = setting(REQUIRED, "peak learning rate, reached at the end of the warm-up", 1e-9, 1.0)
    warmup_steps: int = setting(REQUIRED, "steps of linear warm-up from 0; then linear decay to 0", 0, 10**9)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and LayerNorm weights)", 0.0, 1.0)
    grad_accum: int = setting(1, "micro-batches each batch is cut into (whole query groups), whose gradients add "
                                 "up to one optimizer step", 1, 1024)
    max_grad_norm: float = setting(1.0, "clip the gradient to this L2 norm; 0 = no clipping", 0.0, 1e6)
    checkpoint_every: int = setting(100, "steps between checkpoints; 0 = only at the end", 0, 10**9)
    checkpoint_minutes: float = setting(10.0, "also checkpoint at the first logged step after this many minutes of "
                                              "training since the last checkpoint; 0 = by steps only", 0.0, 1e6)
    log_every: int = setting(10, "steps between log lines (the first and last step are always logged)", 1, 10**9)
    precision: str = setting("fp32", "fp32, or autocast loss_fn in bf16 / fp16 (fp16 needs CUDA)",
                             choices=("fp32", "bf16", "fp16"))
    device: str = setting("cpu", "where to train; auto = cuda when available", choices=("cpu", "cuda", "auto"))
    threads: int = setting(2, "CPU threads for torch (on CPU only)", 1, 1024)
    fused_adamw: bool = setting(False, "AdamW's fused implementation (one kernel per step) instead of its loop")
    seed: int = setting(0, "seed of torch's RNG (dropout) at the start", 0, 2**32 - 1)
    eval_every: int = setting(0, "steps between evaluations (and at the last step); 0 = no evaluation", 0, 10**9)
    patience: int = setting(0, "stop after this many evaluations without improvement; 0 = never", 0, 10**6)

    def check(self) -> None:
        if self.patience and not self.eval_every:
            raise ConfigError("patience", f"={self.patience} needs evaluations: set eval_every > 0, or patience=0")


def arithmetic_settings(profile: Profile) -> dict:
    """The profile's settings that change what every training stage computes (its arithmetic and
    its optimizer's rounding): each stage's cache key holds them."""
    return {"precision": profile.precision, "fused_adamw": profile.fused_adamw}


def training_seed(seed: int, draw: int) -> int:
    """The seed of a stage's training randomness for draw `draw` (its `training_draw` setting):
    the run's seed itself for draw 0, another 32-bit seed for each draw k > 0. Data, labels and
    test set keep `seed`, so runs that differ only in the draw measure the stage's own noise.

    >>> training_seed(3, 0)
    3
    >>> len({training_seed(3, 0), training_seed(3, 1), training_seed(3, 2), training_seed(4, 1)})
    4
    """
    return seed if draw == 0 else int(np.random.SeedSequence([seed, draw]).generate_state(1)[0])


def profile_settings(profile: Profile, seed: int) -> dict:
    """The TrainConfig settings every stage takes from its profile: where, and in what arithmetic, it trains."""
    return {"device": profile.device, "threads": profile.threads, "seed": seed, **arithmetic_settings(profile)}


@dataclass(frozen=True)
class TrainResult:
    steps_done: int             # optimizer steps trained, over all resumes; fewer than cfg.steps when stopped early
    history: list[dict]         # the lines of log.jsonl
    best: dict | None           # {"step": ..., **evaluate(model)} of the best evaluation; None without evaluate
    stopped_early: bool


def train(model: nn.Module, batch_at: Callable[[int], dict], loss_fn: Callable[[nn.Module, dict], dict],
          cfg: TrainConfig, run_dir: Path, evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
          metric: str | None = None, progress: bool = True) -> TrainResult:
    """Train `model` in place for cfg.steps steps, or resume or return a run in `run_dir`.

    The model ends on the training device, in train mode, with the final weights, or with the
    best evaluated ones when `evaluate` and `metric` are given. `evaluate(model)` runs in eval
    mode, without gradients, every cfg.eval_every steps and at the last step; without a `metric`
    its results are only logged, and the run is the same, bit for bit, as one without them.
    loss_fn gets the model itself (on the device, its forward autocast to cfg.precision) and may call it, or any of its methods,
    as often as it needs. Under several processes the main process's `run_dir` is the run's
    folder: the others read its checkpoint and log and write nothing, so theirs may be any
    folder (a scratch one).
    """
    run_dir = Path(run_dir)
    if (evaluate is None) != (cfg.eval_every == 0) or (metric is not None and evaluate is None) \
            or (cfg.patience and metric is None):
        raise ValueError(f"evaluation needs an `evaluate` function and cfg.eval_every > 0 (and a `metric` to "
                         f"maximise for early stopping), or none of them; got evaluate={evaluate is not None}, "
                         f"metric={metric!r}, eval_every={cfg.eval_every}, patience={cfg.patience}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU: train with device='cpu' or 'auto'")
    accelerator = new_accelerator(cfg)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    processes, rank, is_main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if processes > 1:
        run_dir = Path(broadcast_object_list([str(run_dir)])[0])

    # Weight decay pulls weights towards 0; on biases and LayerNorm gains (the 1-d tensors)
    # that only hurts, so they get none (as in BERT and nanoGPT).
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=cfg.lr,
                                  fused=cfg.fused_adamw or None)   # None: torch's default (foreach on CUDA, a loop on CPU)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)

    # What the checkpoint must match to be resumed, as it reads back from JSON.
    fingerprint = json.loads(json.dumps({
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_FINGERPRINT},
        "processes": processes, "parameters": {n: list(p.shape) for n, p in model.state_dict().items()}}))
    # `run` is the bookkeeping a checkpoint keeps beside the tensors, as JSON.
    run = {"step": 0, "elapsed_s": 0.0, "best": None, "evals_since_best": 0, "stopped_early": False,
           "finished": False, "fingerprint": fingerprint}
    best_weights = None
    if (run_dir / CHECKPOINT).exists():
        run, tensors = load_checkpoint(run_dir / CHECKPOINT, fingerprint)
        model.load_state_dict(tensors["model"])
        best_weights = tensors["best_weights"]
        if run["finished"]:
            model.to(accelerator.device)
            return TrainResult(run["step"], read_log(run_dir), run["best"], run["stopped_early"])
        optimizer.load_state_dict(tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        set_rng_state(tensors["process_rngs"][rank] if processes > 1 else tensors)
    if is_main:
        drop_log_after(run_dir, run["step"])   # steps past the checkpoint are trained (and logged) again

    last_save = time.perf_counter()

    def save() -> None:
        nonlocal last_save
        # Each process's RNG too: shares of unequal size draw unequal numbers of dropout masks.
        process_rngs = {"process_rngs": gather_object([rng_state()])} if processes > 1 else {}
        if is_main:
            save_checkpoint(run_dir / CHECKPOINT, run, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_weights": best_weights, **rng_state(), **process_rngs})
        last_save = time.perf_counter()

    def checkpoint_due(step: int) -> bool:
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            return True
        if not cfg.checkpoint_minutes or step % cfg.log_every:
            return False
        # Clocks differ between processes and save() is collective: the main process decides.
        late = time.perf_counter() - last_save >= 60 * cfg.checkpoint_minutes
        return broadcast_object_list([late])[0] if processes > 1 else late

    def log(line: dict) -> None:
        if is_main:
            with open(run_dir / LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    # prepare() moves the model to the device and autocasts its forward. Under several processes
    # DistributedDataParallel averages the gradients; it wraps the whole of loss_fn, because it
    # allows one forward per backward, and loss_fn may call the model more than once.
    if processes == 1:
        model, optimizer = accelerator.prepare(model, optimizer)   # the same model object
        synced, losses_of = model, functools.partial(loss_fn, model)
    else:
        model = accelerator.prepare_model(model, evaluation_mode=True)   # no wrapper of its own
        optimizer = accelerator.prepare_optimizer(optimizer)
        synced = losses_of = data_parallel(accelerator, model, loss_fn)
    model.train()
    clock = time.perf_counter() - run["elapsed_s"]
    bar = tqdm(total=cfg.steps, initial=run["step"], desc="train", disable=not (progress and is_main))
    while run["step"] < cfg.steps and not run["stopped_early"]:
        step, lr = run["step"], scheduler.get_last_lr()[0]
        sums = {}
        for batch in micro_batches(batch_at(step), cfg.grad_accum, processes, rank):
            batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            # accumulate() syncs (averages) gradients across processes on the last micro-batch
            # only, and backward() divides the loss by grad_accum, so the step follows the mean
            # gradient of the processes · grad_accum micro-batches.
            # autocast() covers all of loss_fn, which may call model methods other than forward.
            with accelerator.accumulate(synced), accelerator.autocast():
                parts = losses_of(batch)
                if "loss" not in parts:
                    raise ValueError(f"loss_fn must return a dict with a 'loss' entry (the tensor to backpropagate); "
                                     f"it returned {sorted(parts)}")
                accelerator.backward(parts["loss"])
            for k, v in parts.items():   # kept as tensors: turning them into floats waits for the GPU
                sums[k] = sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v) / cfg.grad_accum
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(synced.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run["step"] = step = step + 1
        run["elapsed_s"] = time.perf_counter() - clock
        bar.update()

        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            losses = mean_over_processes(accelerator, sums)
            log({"step": step, "lr": lr, **losses, "elapsed_s": round(run["elapsed_s"], 3)})
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
        if evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            # The main process evaluates and every process adopts its scores, so that all of them
            # keep the same best weights and stop at the same step (GPU kernels need not agree).
            scores = evaluate_once(evaluate, model, metric) if is_main else None
            if processes > 1:
                scores = broadcast_object_list([scores])[0]
            log({"step": step, "eval": scores})
            if metric is None:
                pass   # a learning curve: logged, selects nothing
            elif run["best"] is None or scores[metric] > run["best"][metric]:
                run["best"], run["evals_since_best"] = {"step": step, **scores}, 0
                best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                run["evals_since_best"] += 1
                run["stopped_early"] = 0 < cfg.patience <= run["evals_since_best"]
        if step < cfg.steps and checkpoint_due(step):   # the last: below
            save()
    bar.close()

    # Undo prepare()'s autocast wrapper: the caller gets back a plain model.
    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    if best_weights is not None:
        model.load_state_dict(best_weights)
    run["finished"] = True
    save()   # the final weights: a rerun of this run loads them and returns
    accelerator.wait_for_everyone()
    return TrainResult(run["step"], read_log(run_dir), run["best"], run["stopped_early"])


def new_accelerator(cfg: TrainConfig) -> Accelerator:
    """An Accelerator with this run's precision. Accelerate keeps one state per process, fixed by
    the first Accelerator, and refuses another precision ("AcceleratorState has already been
    initialized"), so a notebook could not train one arm in fp32 and the next in bf16: the state is
    reset first. Under several processes (accelerate launch) their process group is kept."""
    from accelerate.state import AcceleratorState, PartialState
    if cfg.precision == "fp16" and not (cfg.device != "cpu" and torch.cuda.is_available()):
        # accelerate would train in fp32 without saying so
        raise ValueError(f"precision='fp16' needs CUDA, and this run trains on the CPU (device={cfg.device!r}): "
                         "use bf16 or fp32")
    AcceleratorState._reset_state(reset_partial_state=PartialState._shared_state.get("num_processes", 1) == 1)
    return Accelerator(mixed_precision={"fp32": "no"}.get(cfg.precision, cfg.precision), cpu=cfg.device == "cpu",
                       gradient_accumulation_steps=cfg.grad_accum)


class LossOf(nn.Module):
    """loss_fn(model, batch) as a module, for DistributedDataParallel to wrap: its forward is
    one step's every call of the model (post-pretraining calls it twice: the pairs, then a masked
    copy of some of them), and DistributedDataParallel allows one forward per backward."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, dict], dict]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: dict) -> dict:
        return self.loss_fn(self.model, batch)


def data_parallel(accelerator: Accelerator, model: nn.Module, loss_fn: Callable) -> DistributedDataParallel:
    """loss_fn on `model`, with its gradients averaged over the processes at each backward."""
    devices = [accelerator.local_process_index] if accelerator.device.type == "cuda" else None
    # Every stage leaves some heads of RelevanceBert out of its loss (fine-tuning: MLM and sentence;
    # TAPT: sentence); their gradients stay None, as in one process, only when DDP is told to look.
    return DistributedDataParallel(LossOf(model, loss_fn), device_ids=devices, find_unused_parameters=True)


def micro_batches(batch: dict, k: int, processes: int = 1, rank: int = 0) -> list[dict]:
    """The k micro-batches process `rank` of `processes` trains on: `batch` cut along its rows
    into n = processes · k parts of whole query groups (runs of equal `query_ids`; without them,
    each row is its own group), each cut at the first group start at or after i/n of the rows,
    of which the process takes parts rank·k to rank·k + k - 1. The parts are equal when the
    groups are of equal size and their number divides by n (otherwise each part still weighs
    the same in the step's mean gradient, so its rows weigh a little more or less).
    Tensors with another number of rows (post-pretraining's masked copy of some rows) are cut
    into n near-equal parts of their own; values without rows go to every micro-batch.

    >>> batch = {"query_ids": torch.tensor([7, 7, 8, 8, 9, 9]), "x": torch.arange(6), "flag": True}
    >>> [(b["x"].tolist(), b["flag"]) for b in micro_batches(batch, 2)]
    [([0, 1, 2, 3], True), ([4, 5], True)]
    >>> [b["x"].tolist() for b in micro_batches(batch, 1, processes=3, rank=1)]   # the second of 3 processes
    [[2, 3]]
    """
    n = processes * k
    if n == 1:
        return [batch]
    rows = len(batch["input_ids"] if "input_ids" in batch else next(v for v in batch.values() if torch.is_tensor(v)))
    query_ids = batch.get("query_ids")
    starts = (torch.arange(rows) if query_ids is None else
              torch.cat([torch.tensor([0]), torch.nonzero(query_ids[1:] != query_ids[:-1]).flatten() + 1]))
    cuts = [int(starts[i]) if i < len(starts) else rows
            for i in torch.searchsorted(starts, torch.tensor([-(-j * rows // n) for j in range(1, n)])).tolist()]
    sizes = torch.diff(torch.tensor([0, *cuts, rows])).tolist()
    what = f"grad_accum={k}" if processes == 1 else f"{processes} processes x grad_accum={k}"
    if min(sizes) == 0:
        raise ValueError(f"a batch of {len(starts)} query groups ({rows} rows) cannot be cut into {what} "
                         f"micro-batches of whole groups: give each step at least {n} query groups")
    parts = [{} for _ in range(n)]
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() and len(value) == rows:
            pieces = torch.split(value, sizes)
        elif torch.is_tensor(value) and value.dim():
            pieces = torch.tensor_split(value, n)
            if min(len(p) for p in pieces) == 0:
                raise ValueError(f"batch[{key!r}] has {len(value)} rows, fewer than {what} micro-batches")
        else:
            pieces = [value] * n
        for part, piece in zip(parts, pieces):
            part[key] = piece
    return parts[rank * k:(rank + 1) * k]


def mean_over_processes(accelerator: Accelerator, sums: dict) -> dict[str, float]:
    """The logged values as floats; under several processes their mean over the processes (each
    holds its share's mean), which is the batch's, as in one process, up to rounding."""
    if accelerator.num_processes == 1:
        return {k: float(v) for k, v in sums.items()}
    values = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=accelerator.device) for v in sums.values()])
    return dict(zip(sums, accelerator.reduce(values, "mean").tolist()))


def rng_state() -> dict:
    """torch's RNG states, CPU and CUDA: what dropout draws from."""
    return {"rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


@torch.no_grad()
def evaluate_once(evaluate: Callable[[nn.Module], dict], model: nn.Module, metric: str | None) -> dict[str, float]:
    model.eval()
    scores = {k: float(v) for k, v in evaluate(model).items()}
    model.train()
    if metric is not None and metric not in scores:
        raise ValueError(f"metric {metric!r} is not among the evaluation's results {sorted(scores)}: "
                         f"pass one of them as `metric`")
    return scores


# --- checkpoints and the log ----------------------------------------------------------------

def save_checkpoint(folder: Path, run: dict, tensors: dict) -> None:
    """Write a new checkpoint folder and swap it in: a kill mid-write leaves the previous one intact."""
    with atomic_dir(folder) as tmp:
        torch.save(tensors, tmp / "state.pt")
        write_text_atomic(tmp / "run.json", json.dumps(run, indent=2) + "\n")


def load_checkpoint(folder: Path, fingerprint: dict) -> tuple[dict, dict]:
    """The checkpoint's bookkeeping and tensors, or a CheckpointError when another run wrote it."""
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        saved = run["fingerprint"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{folder} is not a readable checkpoint ({e!r}): delete it to start over") from None
    changes = [f"{k}: {saved['config'].get(k)!r} in the checkpoint, {v!r} now"
               for k, v in fingerprint["config"].items() if saved["config"].get(k) != v]
    if saved["processes"] != fingerprint["processes"]:
        changes.append(f"processes: {saved['processes']} in the checkpoint, {fingerprint['processes']} now")
    if saved["parameters"] != fingerprint["parameters"]:
        names = sorted(set(saved["parameters"]) ^ set(fingerprint["parameters"]) or
                       {n for n, shape in fingerprint["parameters"].items() if saved["parameters"][n] != shape})
        changes.append(f"model parameters {', '.join(names[:3])}{', ...' if len(names) > 3 else ''} differ")
    if changes:
        raise CheckpointError(f"{folder} is from another training config ({'; '.join(changes)}): delete {folder} "
                              "to start over, or train with the original config to resume it")
    return run, torch.load(folder / "state.pt", map_location="cpu", weights_only=True)


def best_eval(run_dir: Path, metric: str) -> float | None:
    """The best value of `metric` over a run's evaluations (its log), None when it logged none:
    what early stopping chose the weights by, a held-out figure to choose budgets by.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / LOG).write_text('{"step": 1, "loss": 0.7}\\n{"step": 2, "eval": {"auc": 0.61}}\\n'
    ...                               '{"step": 4, "eval": {"auc": 0.66}}\\n{"step": 6, "eval": {"auc": 0.64}}\\n')
    >>> best_eval(folder, "auc"), best_eval(folder, "pnr")
    (0.66, None)
    """
    return max((line["eval"][metric] for line in read_log(run_dir) if metric in line.get("eval", {})), default=None)


def read_log(run_dir: Path) -> list[dict]:
    """The lines of run_dir/log.jsonl: {"step", "lr", "loss", ..., "elapsed_s"} and {"step", "eval"}."""
    path = Path(run_dir) / LOG
    if not path.exists():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            break   # the half-written last line of a killed run
    return lines


def drop_log_after(run_dir: Path, step: int) -> None:
    kept = [line for line in read_log(run_dir) if line["step"] <= step]
    write_text_atomic(Path(run_dir) / LOG, "".join(json.dumps(line) + "\n" for line in kept))
