"""The GPU's first minutes: is the `gpu` profile right, and fast, on a real GPU? One script, one run.

    make gpu-check                                   # = python benchmarks/gpu_check.py --out build/gpu_check
    python benchmarks/gpu_check.py --parts steps compare --profiles gpu gpu-xl

A GPU hour is expensive and the CPU cannot run a full-size step, so before `make course
PROFILE=gpu` this checks, in order, what only the GPU can tell (each part reported even when an
earlier one fails; the figures go to OUT/gpu_check.json, rewritten after each part):

1. machine: the GPU, torch and transformers, and the ceilings measured here (a large bf16 and
   fp32 matmul): MFU below is against the one of the profile's precision, not a datasheet;
2. steps: one full-size training step of each stage of each profile, through relcourse.train
   (bf16 autocast, fused AdamW, the stage's micro-batches) on random rows at the stage's shapes
   (relcourse.gpu_memory.training_steps): seconds per step, MFU, and peak GPU memory beside the
   estimate that `relcourse dry-run` prints; then each stage's training time at the profile's
   step count (training only: evaluations, data, tokenizer and teacher come on top);
3. compare: our loop against transformers.Trainer and our scoring against a plain
   AutoModelForSequenceClassification, bf16, at the fine-tuning shapes (benchmarks/trainer_compare.py);
4. dry-run: every stage of the recipe through its own code on the GPU (relcourse.dry_run with
   device=cuda): the profile's full depth and widths on the dry run's tiny world, with exact resume;
5. pipeline (not in the default parts: minutes of CPU work): the whole recipe of the first profile
   on its full world, each training stage cut to --pipeline-steps steps, every stage timed on its
   own; each stage's full time is then projected as its measured wall time plus its remaining
   steps at the s/step of part 2: the pipeline's wall time without paying for all of its steps.

FLOPs per token (relcourse.compute): 6 N + 12 L H T for a training pass (N the weights of the
transformer's layers, T tokens), 2 N + 4 L H T for the forward of a model run beside it (the
teacher, in layer-wise distillation only: otherwise its scores come with the data, as in the
stage), the MLM head counted for its 15%.
"""
from __future__ import annotations

import os

# cuBLAS reads this once, at its first call: the dry run's exact-resume check needs its
# deterministic workspace (torch.use_deterministic_algorithms asks for it).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse
import dataclasses
import json
import platform
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from pretrain_throughput import matmul_flops   # benchmarks/ is the script's own folder on sys.path
from trainer_compare import compare
from relcourse import gpu_memory
from relcourse.compute import shape_flops_per_token
from relcourse.config import load_profile, parse_overrides
from relcourse.distill import LayerwiseStudent
from relcourse.models import RelevanceBert
from relcourse.store import write_json_atomic
from relcourse.train import TrainConfig, read_log, train

PARTS = ("machine", "steps", "compare", "dry-run", "pipeline")
DEFAULT_PARTS = PARTS[:4]
TRAINED = ("pretrain", "post_pretrain", "finetune", "distill")
WARMUP, TIMED = 3, 12


def machine(device: str) -> dict:
    import transformers
    props = torch.cuda.get_device_properties(0) if device == "cuda" else None
    out = {"gpu": props.name if props else "none (CPU)", "memory_gib": props.total_memory / 2**30 if props else 0,
           "sms": props.multi_processor_count if props else 0, "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "python": platform.python_version(), "cpus": os.cpu_count()}
    torch.backends.cuda.matmul.allow_tf32 = False          # fp32 as fp32; the profiles train in bf16
    out["bf16_tflops"] = matmul_flops(device, torch.bfloat16, repeats=20) / 1e12
    out["fp32_tflops"] = matmul_flops(device, torch.float32, repeats=5) / 1e12
    print(f"{out['gpu']}, {out['memory_gib']:.0f} GiB, {out['sms']} SMs; torch {out['torch']} (CUDA {out['cuda']}), "
          f"transformers {out['transformers']}, Python {out['python']}, {out['cpus']} CPUs")
    print(f"  matmul ceilings measured here: bf16 {out['bf16_tflops']:.0f} TFLOP/s, fp32 {out['fp32_tflops']:.0f} TFLOP/s")
    return out


def step_flops(step: gpu_memory.Step) -> float:
    """FLOPs of one optimizer step of `step` (all its micro-batches)."""
    def per_token(model_cfg, training: bool) -> float:
        return shape_flops_per_token(model_cfg, step.vocab, step.seq_len, training)
    k, length = step.micro_batches, step.seq_len
    mlm_head = 6 * step.model.hidden * step.vocab * step.mask_prob * step.mlm_rows * length * k
    scorer = per_token(step.layerwise, False) * step.rows * length * k if step.layerwise else 0.0
    return (step.rows + step.mlm_rows) * length * k * per_token(step.model, True) + mlm_head + scorer


def batch_of(step: gpu_memory.Step) -> dict:
    """The rows of one optimizer step: relevance rows, and the MLM rows under their own keys."""
    batch = {}
    if step.rows:
        (rel,) = gpu_memory.step_inputs(step.rows * step.micro_batches, step, mlm=False)
        batch |= rel | {"targets": torch.randn(step.rows * step.micro_batches)}
    if step.mlm_rows:
        mlm, labels, sentence, _ = gpu_memory.step_inputs(step.mlm_rows * step.micro_batches, step, mlm=True)
        batch |= {f"mlm_{k}": v for k, v in mlm.items()} | {"mlm_labels": labels, "sentence_labels": sentence}
    return batch


def stage_loss(step: gpu_memory.Step):
    """The loss of a step with the stage's passes: the relevance rows fit scores that come with
    the batch (distillation's teacher scored its pool before the stage: relcourse.distill), plus
    the hidden-state term when the model is a LayerwiseStudent (claim D8: the scorer runs on
    every batch), and the MLM + sentence heads on the MLM rows."""
    def loss_fn(model, batch):
        loss = 0.0
        if "input_ids" in batch:
            out = model({k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
            loss = loss + F.mse_loss(out["relevance"].float(), batch["targets"]) + out.get("hidden", 0.0)
        if "mlm_labels" in batch:
            mlm = {k.removeprefix("mlm_"): batch[k] for k in ("mlm_input_ids", "mlm_token_type_ids", "mlm_attention_mask")}
            out = model(mlm, batch["mlm_labels"], batch["sentence_labels"], relevance=False)
            loss = loss + out["mlm"] + out["sentence"]
        return {"loss": loss}
    return loss_fn


def measure_step(step: gpu_memory.Step, precision: str, peak_flops: float, threads: int, device: str) -> dict:
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = RelevanceBert(step.model, step.vocab, step.seq_len)
    # held on the device as the stage holds them (distillation's teacher); run only by a layer-wise step
    frozen = {m: RelevanceBert(m, step.vocab, step.seq_len).to(device).eval().requires_grad_(False) for m in step.frozen}
    trainee = LayerwiseStudent(model, frozen[step.layerwise]) if step.layerwise else model
    batch = batch_of(step)
    cfg = TrainConfig(steps=WARMUP + TIMED, lr=1e-4, warmup_steps=1, grad_accum=step.micro_batches, log_every=1,
                      checkpoint_every=0, precision=precision, device=device, fused_adamw=True, threads=threads)
    with tempfile.TemporaryDirectory() as run_dir:
        train(trainee, lambda i: batch, stage_loss(step), cfg, Path(run_dir), progress=False)
        clock = {line["step"]: line["elapsed_s"] for line in read_log(Path(run_dir)) if "elapsed_s" in line}
    seconds = (clock[WARMUP + TIMED] - clock[WARMUP]) / TIMED
    peak = torch.cuda.max_memory_allocated() if cuda else float("nan")
    estimate = gpu_memory.estimate(step, precision, "fused")
    flops = step_flops(step)
    del model, trainee, frozen
    return {"stage": step.stage, "model": f"{step.model.layers}x{step.model.hidden}",
            "rows": (step.rows + step.mlm_rows) * step.micro_batches, "micro_batches": step.micro_batches,
            "seq_len": step.seq_len, "s_per_step": seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / peak_flops, "peak_gib": peak / 2**30,
            "estimate_gib": (estimate.total - gpu_memory.CUDA_OVERHEAD) / 2**30}


def steps_part(profiles: list[str], peaks: dict[str, float], threads: int, device: str, overrides: dict) -> list[dict]:
    """measure_step for every stage of every profile; MFU against the ceiling of the profile's precision."""
    out = []
    print(f"  {'profile':7} {'stage':14} {'model':>8} {'rows x len':>11} {'micro':>5} {'s/step':>7} {'TFLOP/s':>8} "
          f"{'MFU':>5} {'peak GiB':>8} {'est. GiB':>8} {'steps':>6} {'train min':>9}")
    for name in profiles:
        profile = load_profile(name, overrides)
        for step in gpu_memory.training_steps(profile):
            peak = peaks["bf16" if profile.precision == "bf16" else "fp32"]
            r = measure_step(step, profile.precision, peak, threads, device)
            r |= {"profile": name, "profile_steps": getattr(profile, step.stage).steps}
            r["train_minutes"] = r["profile_steps"] * r["s_per_step"] / 60
            out.append(r)
            print(f"  {name:7} {r['stage']:14} {r['model']:>8} {r['rows']:5d}x{r['seq_len']:<5d} {r['micro_batches']:5d} "
                  f"{r['s_per_step']:7.3f} {r['tflops']:8.0f} {r['mfu']:5.0%} {r['peak_gib']:8.1f} "
                  f"{r['estimate_gib']:8.1f} {r['profile_steps']:6d} {r['train_minutes']:9.1f}", flush=True)
        total = sum(r["train_minutes"] for r in out if r["profile"] == name)
        print(f"  {name}: the four training stages at the profile's steps: {total:.1f} min (training only)")
    return out


def dry_run_part(profiles: list[str], threads: int, device: str, layers: int | None) -> list[dict]:
    from relcourse.dry_run import failures, render, run_dry
    out = []
    for name in profiles:
        report = run_dry(name, steps=2, interrupt_at=1, layers=layers, threads=threads, device=device)
        print(render(report), flush=True)
        out.append({"profile": name, "seconds": report.seconds, "problems": failures(report),
                    "checks": [dataclasses.asdict(c) for c in report.checks]})
    return out


def pipeline_part(name: str, steps: int, s_per_step: dict[str, float], threads: int, device: str,
                  overrides: dict) -> list[dict]:
    """Every stage of profile `name` in order, each timed on its own (the upstream ones are
    cached by then), training stages cut to `steps` steps, in a fresh runs folder (nothing
    cached from an earlier run); see the module docstring."""
    from relcourse.distill import ensure_distill_data, run_distill
    from relcourse.finetune import run_finetune
    from relcourse.post_pretrain import ensure_teacher, run_post_pretrain
    from relcourse.pretrain import ensure_tokenizer, run_pretrain
    from relcourse.store import ensure_data, runs_in

    full = load_profile(name, overrides)
    short = load_profile(name, {**overrides, "device": device, "threads": threads,
                                **{f"{stage}.steps": steps for stage in TRAINED}})
    seed = short.seeds[0]
    stages = (("data", ensure_data), ("tokenizer", ensure_tokenizer), ("pretrain", run_pretrain),
              ("teacher", ensure_teacher), ("post_pretrain", run_post_pretrain), ("finetune", run_finetune),
              ("distill_data", ensure_distill_data), ("distill", run_distill))
    print(f"  {'stage':14} {'wall s':>8} {'steps':>6} {'projected s':>11}")
    with tempfile.TemporaryDirectory() as runs, runs_in(runs):
        out = [timed_stage(stage, build, short, full, seed, steps, s_per_step) for stage, build in stages]
    print(f"  {name}: measured {sum(r['wall_s'] for r in out) / 60:.1f} min with {steps} steps a stage; projected at "
          f"the profile's steps {sum(r['projected_s'] for r in out) / 60:.1f} min")
    return out


def timed_stage(stage: str, build, short, full, seed: int, steps: int, s_per_step: dict[str, float]) -> dict:
    start = time.perf_counter()
    build(short, seed, progress=False)
    wall = time.perf_counter() - start
    remaining = getattr(full, stage).steps - steps if stage in TRAINED else 0
    projected = wall + (remaining * s_per_step.get(stage, float("nan")) if remaining else 0.0)
    print(f"  {stage:14} {wall:8.1f} {steps if remaining else 0:6d} {projected:11.1f}", flush=True)
    return {"stage": stage, "wall_s": wall, "steps": steps if remaining else 0, "projected_s": projected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS))
    parser.add_argument("--profiles", nargs="+", default=["gpu", "gpu-xl"], help="for steps (compare and dry-run: the first)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu only to test this script (tests/test_gpu_check.py), with --set to shrink the shapes")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="profile overrides (steps and pipeline parts)")
    parser.add_argument("--layers", type=int, help="the dry run's teacher depth (default: the profile's)")
    parser.add_argument("--pipeline-steps", type=int, default=40, help="steps of each training stage in part pipeline")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA GPU here (torch.cuda.is_available() is False): run it on a "
                         "machine with one, with a CUDA build of torch; on CPU, `relcourse dry-run` checks the shapes")
    results, started = {}, time.perf_counter()
    peaks = {}
    for part in [p for p in PARTS if p in args.parts or p == "machine"]:
        print(f"\n== {part} ({time.perf_counter() - started:.0f} s in)", flush=True)
        try:
            if part == "machine":
                results[part] = machine(args.device)
                peaks = {k: results[part][f"{k}_tflops"] * 1e12 for k in ("bf16", "fp32")}
            elif part == "steps":
                results[part] = steps_part(args.profiles, peaks, args.threads, args.device, overrides)
            elif part == "compare":
                results[part] = compare(args.profiles[0], args.device, "bf16", args.threads, steps=30, score_rows=8192)
            elif part == "dry-run":
                results[part] = dry_run_part(args.profiles[:1], args.threads, args.device, args.layers)
            else:
                measured = {r["stage"]: r["s_per_step"] for r in results.get("steps", [])
                            if isinstance(r, dict) and r.get("profile") == args.profiles[0]}
                results[part] = pipeline_part(args.profiles[0], args.pipeline_steps, measured, args.threads,
                                              args.device, overrides)
        except Exception as e:                          # report it and go on: the next part may still tell
            traceback.print_exc()
            results[part] = {"error": f"{type(e).__name__}: {e}"}
        if args.out:
            write_json_atomic(args.out / "gpu_check.json", json.loads(json.dumps(results, default=str)))
    print(f"\ngpu_check: {time.perf_counter() - started:.0f} s; parts failed: "
          f"{[p for p, r in results.items() if isinstance(r, dict) and 'error' in r] or 'none'}")


if __name__ == "__main__":
    main()
