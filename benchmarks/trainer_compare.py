"""Our training loop and scoring against Hugging Face's, on the same model, data and batch.

    python benchmarks/trainer_compare.py --threads 2                  # laptop size: 2 x 128, 32 tokens, batch 64
    python benchmarks/trainer_compare.py --profile smoke --steps 40
    python benchmarks/trainer_compare.py --profile gpu --device cuda --precision bf16 --threads 8

Why: the course trains with its own loop (relcourse.train) and scores with its own function
(relcourse.finetune.score). If either were much slower than the library everyone knows, a
learner would pay for it in every run. Here both sides get the same thing:
- training: our RelevanceBert at the profile's fine-tuning size, the same initial weights, the
  same rows (random token ids, every other row half padded: speed does not depend on the words),
  the same batch, AdamW, linear warm-up, clipping at 1.0 and a pointwise logistic loss, in
  fp32; ours through relcourse.train.train, theirs through transformers.Trainer (with a thin
  wrapper that returns the loss). Steps/s are timed after `--warmup` steps. Ours runs twice:
  with torch's AdamW loop (the CPU profiles) and fused (the profile setting `fused_adamw`,
  Trainer's default and the GPU profiles'): on a small model the optimizer's per-tensor loop is a
  few % of a step, which is all the difference between the two loops;
- inference: our `score` against the same network loaded as a plain
  AutoModelForSequenceClassification (relcourse.export writes it as ELECTRA, exactly our BERT),
  batch after batch of SCORE_BATCH rows under inference_mode.
MFU: the FLOPs of a step (6 N + 12 L H T per token for training, 2 N + 4 L H T for a forward; N
the non-embedding parameters, T the length) per second, against this machine's measured matmul
ceiling (a large fp32 and a bf16 matmul loop, the same threads). On a loaded machine every
number moves; the ratios between the two sides, measured in turns, move least.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pretrain_throughput import matmul_flops   # benchmarks/ is the script's own folder on sys.path
from relcourse.compute import flops_per_token
from relcourse.config import load_profile
from relcourse.data import PairSet
from relcourse.export import random_batch, to_transformers
from relcourse.finetune import SCORE_BATCH, score
from relcourse.models import RelevanceBert
from relcourse.train import TrainConfig, read_log, train

LR, WARMUP = 1e-4, 2


def rows(model: RelevanceBert, n: int) -> dict[str, torch.Tensor]:
    batch = random_batch(model.vocab_size, model.max_len, rows=n)
    return {**batch, "labels": (torch.arange(n) % 2).float()}


def ours(model: RelevanceBert, data: dict, batch: int, steps: int, threads: int, fused: bool,
         device: str = "cpu", precision: str = "fp32") -> float:
    """Steps/s of relcourse.train.train after WARMUP steps (from its own log's clock)."""
    n = len(data["labels"])

    def batch_at(step):
        index = torch.arange(step * batch, (step + 1) * batch) % n
        return {k: v[index] for k, v in data.items()}

    def loss_fn(m, b):
        return {"loss": F.binary_cross_entropy_with_logits(m(b)["relevance"], b["labels"])}

    cfg = TrainConfig(steps=steps, lr=LR, warmup_steps=WARMUP, log_every=1, checkpoint_every=0, threads=threads,
                      fused_adamw=fused, device=device, precision=precision)
    with tempfile.TemporaryDirectory() as run_dir:
        train(model, batch_at, loss_fn, cfg, Path(run_dir), progress=False)
        clock = {line["step"]: line["elapsed_s"] for line in read_log(Path(run_dir))}
    return (steps - WARMUP) / (clock[steps] - clock[WARMUP])


class WithLoss(nn.Module):
    """Our model as transformers.Trainer calls a model: keyword tensors in, {"loss", "logits"} out."""

    def __init__(self, model: RelevanceBert):
        super().__init__()
        self.model = model

    def forward(self, input_ids, token_type_ids, attention_mask, labels):
        logits = self.model({"input_ids": input_ids, "token_type_ids": token_type_ids,
                             "attention_mask": attention_mask})["relevance"]
        return {"loss": F.binary_cross_entropy_with_logits(logits, labels), "logits": logits}


def theirs(model: RelevanceBert, data: dict, batch: int, steps: int, device: str = "cpu",
           precision: str = "fp32") -> float:
    """Steps/s of transformers.Trainer on the same model and rows, after WARMUP steps."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()     # the GPU runs behind the Python that queues its work
            stamps.append(time.perf_counter())

    dataset = [{k: v[i] for k, v in data.items()} for i in range(len(data["labels"]))]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=LR,
                                 warmup_steps=WARMUP, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
                                 logging_strategy="no", save_strategy="no", report_to=[], use_cpu=device == "cpu",
                                 bf16=precision == "bf16",
                                 dataloader_num_workers=0, disable_tqdm=True, seed=0)
        Trainer(model=WithLoss(model), args=args, train_dataset=dataset, callbacks=[Clock()]).train()
    return (steps - WARMUP) / (stamps[steps - 1] - stamps[WARMUP - 1])


def scoring_rates(model: RelevanceBert, n: int, repeats: int, precision: str = "fp32") -> tuple[float, float]:
    """(our score, a plain AutoModelForSequenceClassification forward): rows/s, best of `repeats`,
    on the model's device, both under bf16 autocast when `precision` is bf16."""
    from transformers import AutoModelForSequenceClassification

    device = next(model.parameters()).device
    data = rows(model, n)
    pairs = PairSet(np.zeros(n, dtype=np.int64), np.arange(n), np.zeros(n),
                    {k: data[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
    with tempfile.TemporaryDirectory() as folder:
        to_transformers(model).save_pretrained(folder)
        hf = AutoModelForSequenceClassification.from_pretrained(folder).to(device).eval()

    @torch.inference_mode()
    def plain():   # as our score does: each batch to the device, its scores back to the host
        for lo in range(0, n, SCORE_BATCH):
            hf(**{k: data[k][lo:lo + SCORE_BATCH].to(device)
                  for k in ("input_ids", "token_type_ids", "attention_mask")}).logits.float().cpu()

    def best(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return n / min(times)

    best(plain)      # warm-up
    return best(lambda: score(model, pairs)), best(plain)


def compare(profile_name: str, device: str = "cpu", precision: str = "fp32", threads: int = 2, steps: int = 30,
            score_rows: int = 4096, repeats: int = 3) -> dict:
    """Both comparisons at the fine-tuning shapes of `profile_name`, printed; the figures returned."""
    from transformers.utils import logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    torch.set_num_threads(threads)
    profile = load_profile(profile_name)
    batch, length = profile.finetune.batch_size, profile.tokenizer.max_len
    torch.manual_seed(0)
    model = RelevanceBert(profile.pretrain.model, profile.tokenizer.vocab_size, length)
    data = rows(model, 8 * batch)

    peaks = {name: matmul_flops(device, dtype) for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    peak = peaks[precision if precision == "bf16" else "fp32"]
    print(f"{profile_name}: model {model.cfg.layers} x {model.cfg.hidden}, {model.num_parameters() / 1e6:.2f}M "
          f"parameters, batch {batch} x {length} tokens, {device}, {precision}, {threads} threads; matmul ceiling "
          f"fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; MFU against {precision}")
    # Trainer's default optimizer is torch's fused AdamW; ours is the profile's choice (fused_adamw)
    rates = {f"relcourse.train{', fused' * fused}": ours(copy.deepcopy(model), data, batch, steps, threads, fused,
                                                          device, precision) for fused in (False, True)}
    rates["transformers.Trainer"] = theirs(copy.deepcopy(model), data, batch, steps, device, precision)
    torch.set_num_threads(threads)    # in case either side changed it
    step_flops = batch * length * flops_per_token(model, length, training=True)
    out = {"profile": profile_name, "device": device, "precision": precision, "peaks": peaks, "train_steps_per_s": rates,
           "train_mfu": {k: r * step_flops / peak for k, r in rates.items()}}
    for name, rate in rates.items():
        print(f"  train  {name:22} {rate:7.2f} steps/s  {rate * step_flops / 1e9:8.1f} GFLOP/s  "
              f"MFU {out['train_mfu'][name]:5.1%}")
    for name in ("relcourse.train", "relcourse.train, fused"):
        print(f"  train  {name} / Trainer: {rates[name] / rates['transformers.Trainer']:.2f}x")
    ours_rate, plain_rate = scoring_rates(model.to(device).eval(), score_rows, repeats, precision)
    row_flops = length * flops_per_token(model, length, training=False)
    out["score_rows_per_s"] = {"relcourse score": ours_rate, "AutoModelForSeqCls": plain_rate}
    for name, rate in out["score_rows_per_s"].items():
        print(f"  score  {name:22} {rate:7.0f} rows/s   {rate * row_flops / 1e9:8.1f} GFLOP/s  "
              f"MFU {rate * row_flops / peak:5.1%}")
    print(f"  score  ours / plain: {ours_rate / plain_rate:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="both sides under bf16 autocast, or not")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="training steps per side (the first 2 untimed)")
    parser.add_argument("--rows", type=int, default=4096, help="rows scored per pass")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    compare(args.profile, args.device, args.precision, args.threads, args.steps, args.rows, args.repeats)


if __name__ == "__main__":
    main()
