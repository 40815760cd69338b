"""The one training loop of every stage: pretraining, post-pretraining, fine-tuning, distillation.

A stage hands over three things and the loop does the rest (device, mixed precision, AdamW,
warm-up, clipping, gradient accumulation, logging, checkpoints, evaluation, early stopping):

    batch_at(i)            -> dict of tensors: batch number i, a pure function of i
    loss_fn(model, batch)  -> {"loss": tensor to backpropagate, "mlm": ..., ...}: the rest are logged
    evaluate(model)        -> {"auc": 0.71, ...} (optional): `metric` names the key to maximise

Optimizer step `step` (0, 1, ...) trains on batch_at(step); under `accelerate launch` with P
processes, process p takes batch_at(step * P + p), so every batch is used once. With
cfg.grad_accum = k the loop cuts each batch into k micro-batches of whole query groups
(`micro_batches`) and adds up their gradients: the same batch, the same mean gradient (up to
rounding), 1/k of the activation memory. So a stage's batches, and its results in exact
arithmetic, do not depend on k.

Because batches depend on the step alone, a run is resumable *exactly*: every `checkpoint_every`
steps run_dir/checkpoint/ holds the weights, optimizer, schedule and RNG state, and a run killed
at any step and restarted ends with the same weights, bit for bit on CPU, as one never stopped.
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
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch import nn
from tqdm import tqdm  # plain bars: no widget dependency in notebooks
from transformers import get_linear_schedule_with_warmup

from .config import ConfigError, Profile, Section, setting
from .store import atomic_dir, write_text_atomic

CHECKPOINT, LOG = "checkpoint", "log.jsonl"
REQUIRED = dataclasses.MISSING    # a setting without a default
# Settings that change how a run is watched or where it runs, not what it computes: a run may
# be resumed with other values of these. (More threads can reorder float sums, so on CPU a resume
# with other `threads` is the same run in exact arithmetic, not bit for bit.)
NOT_IN_FINGERPRINT = ("log_every", "checkpoint_every", "threads", "device")


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
    log_every: int = setting(10, "steps between log lines (the first and last step are always logged)", 1, 10**9)
    precision: str = setting("fp32", "fp32, or autocast loss_fn in bf16 / fp16 (fp16 needs CUDA)",
                             choices=("fp32", "bf16", "fp16"))
    device: str = setting("cpu", "where to train; auto = cuda when available", choices=("cpu", "cuda", "auto"))
    threads: int = setting(2, "CPU threads for torch (on CPU only)", 1, 1024)
    seed: int = setting(0, "seed of torch's RNG (dropout) at the start", 0, 2**32 - 1)
    eval_every: int = setting(0, "steps between evaluations (and at the last step); 0 = no evaluation", 0, 10**9)
    patience: int = setting(0, "stop after this many evaluations without improvement; 0 = never", 0, 10**6)

    def check(self) -> None:
        if self.patience and not self.eval_every:
            raise ConfigError("patience", f"={self.patience} needs evaluations: set eval_every > 0, or patience=0")


def profile_settings(profile: Profile, seed: int) -> dict:
    """The TrainConfig settings every stage takes from its profile: where, and in what precision, it trains."""
    return {"device": profile.device, "threads": profile.threads, "precision": profile.precision, "seed": seed}


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
    best evaluated ones when `evaluate` is given. `evaluate(model)` runs in eval mode, without
    gradients, every cfg.eval_every steps and at the last step. In one process loss_fn gets the
    model itself; under several it gets a DistributedDataParallel wrapper, whose forward,
    `m(batch)`, is what averages the gradients: loss_fn must then call the model through it.
    """
    run_dir = Path(run_dir)
    if (evaluate is None) != (cfg.eval_every == 0) or (evaluate is not None and metric is None):
        raise ValueError(f"evaluation needs an `evaluate` function, a `metric` to maximise and cfg.eval_every > 0, "
                         f"or none of them; got evaluate={evaluate is not None}, metric={metric!r}, "
                         f"eval_every={cfg.eval_every}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA GPU: train with device='cpu' or 'auto'")
    accelerator = new_accelerator(cfg)
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    processes, rank, is_main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process

    # Weight decay pulls weights towards 0; on biases and LayerNorm gains (the 1-d tensors)
    # that only hurts, so they get none (as in BERT and nanoGPT).
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=cfg.lr)
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
        torch.set_rng_state(tensors["rng"])
        if tensors["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(tensors["cuda_rng"])
    if is_main:
        drop_log_after(run_dir, run["step"])   # steps past the checkpoint are trained (and logged) again

    def save() -> None:
        if is_main:
            save_checkpoint(run_dir / CHECKPOINT, run, {
                "model": accelerator.unwrap_model(wrapped).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_weights": best_weights, "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None})

    def log(line: dict) -> None:
        if is_main:
            with open(run_dir / LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    # prepare() moves the model to the device, wraps it for several processes and autocasts its forward.
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    wrapped.train()
    clock = time.perf_counter() - run["elapsed_s"]
    bar = tqdm(total=cfg.steps, initial=run["step"], desc="train", disable=not (progress and is_main))
    while run["step"] < cfg.steps and not run["stopped_early"]:
        step, lr = run["step"], scheduler.get_last_lr()[0]
        sums = {}
        for batch in micro_batches(batch_at(step * processes + rank), cfg.grad_accum):
            batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            # accumulate() syncs gradients across processes on the last micro-batch only, and
            # backward() divides the loss by grad_accum, so the step follows the mean gradient.
            # autocast() covers all of loss_fn, which may call model methods other than forward.
            with accelerator.accumulate(wrapped), accelerator.autocast():
                parts = loss_fn(wrapped, batch)
                if "loss" not in parts:
                    raise ValueError(f"loss_fn must return a dict with a 'loss' entry (the tensor to backpropagate); "
                                     f"it returned {sorted(parts)}")
                accelerator.backward(parts["loss"])
            for k, v in parts.items():   # kept as tensors: turning them into floats waits for the GPU
                sums[k] = sums.get(k, 0.0) + (v.detach() if torch.is_tensor(v) else v) / cfg.grad_accum
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(wrapped.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run["step"] = step = step + 1
        run["elapsed_s"] = time.perf_counter() - clock
        bar.update()

        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            losses = {k: float(v) for k, v in sums.items()}
            log({"step": step, "lr": lr, **losses, "elapsed_s": round(run["elapsed_s"], 3)})
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
        if evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            scores = evaluate_once(evaluate, accelerator.unwrap_model(wrapped), metric)
            log({"step": step, "eval": scores})
            if run["best"] is None or scores[metric] > run["best"][metric]:
                run["best"], run["evals_since_best"] = {"step": step, **scores}, 0
                best_weights = {k: v.detach().to("cpu", copy=True)
                                for k, v in accelerator.unwrap_model(wrapped).state_dict().items()}
            else:
                run["evals_since_best"] += 1
                run["stopped_early"] = 0 < cfg.patience <= run["evals_since_best"]
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:   # the last: below
            save()
    bar.close()

    # Undo prepare()'s autocast wrapper: the caller gets back a plain model.
    model = accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)
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


def micro_batches(batch: dict, k: int) -> list[dict]:
    """`batch` cut along its rows into k micro-batches of whole query groups (runs of equal
    `query_ids`; without them, each row is its own group), each cut at the first group start at or
    after i/k of the rows: equal parts when the groups are of equal size and their number divides
    by k. Tensors with another number of rows (post-pretraining's masked copy of some rows) are cut
    into k near-equal parts of their own; values without rows go to every micro-batch.

    >>> batch = {"query_ids": torch.tensor([7, 7, 8, 8, 9, 9]), "x": torch.arange(6), "flag": True}
    >>> [(b["x"].tolist(), b["flag"]) for b in micro_batches(batch, 2)]
    [([0, 1, 2, 3], True), ([4, 5], True)]
    """
    if k == 1:
        return [batch]
    rows = len(batch["input_ids"] if "input_ids" in batch else next(v for v in batch.values() if torch.is_tensor(v)))
    query_ids = batch.get("query_ids")
    starts = (torch.arange(rows) if query_ids is None else
              torch.cat([torch.tensor([0]), torch.nonzero(query_ids[1:] != query_ids[:-1]).flatten() + 1]))
    cuts = [int(starts[i]) if i < len(starts) else rows
            for i in torch.searchsorted(starts, torch.tensor([-(-j * rows // k) for j in range(1, k)])).tolist()]
    sizes = torch.diff(torch.tensor([0, *cuts, rows])).tolist()
    if min(sizes) == 0:
        raise ValueError(f"a batch of {len(starts)} query groups ({rows} rows) cannot be cut into grad_accum={k} "
                         "micro-batches of whole groups: give each step at least grad_accum query groups")
    parts = [{} for _ in range(k)]
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() and len(value) == rows:
            pieces = torch.split(value, sizes)
        elif torch.is_tensor(value) and value.dim():
            pieces = torch.tensor_split(value, k)
            if min(len(p) for p in pieces) == 0:
                raise ValueError(f"batch[{key!r}] has {len(value)} rows, fewer than grad_accum={k} micro-batches")
        else:
            pieces = [value] * k
        for part, piece in zip(parts, pieces):
            part[key] = piece
    return parts


@torch.no_grad()
def evaluate_once(evaluate: Callable[[nn.Module], dict], model: nn.Module, metric: str) -> dict[str, float]:
    model.eval()
    scores = {k: float(v) for k, v in evaluate(model).items()}
    model.train()
    if metric not in scores:
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
