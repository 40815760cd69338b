"""Serving cost: documents scored per second by the teacher and the distilled student, per backend,
with the quality each backend keeps (test AUC, and its largest score difference from fp32).

    python benchmarks/serving.py                       # smoke: builds the runs it needs (about a minute)
    python benchmarks/serving.py --profile laptop --threads 2

Backends, all on this machine's CPU: PyTorch fp32; PyTorch dynamic int8 (`quantize_dynamic`:
the Linear layers' weights stored as int8, activations quantised on the fly, the usual ~2x on
BERT-sized CPUs); bf16 autocast where the CPU has native bf16 (AVX512-BF16 or AMX). Each model is
timed at the profile's input length and at half of it, the sources' cheaper serving length (the
document is cut; the query is kept). ONNX Runtime and GPU backends are not measured here yet.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
import warnings

import numpy as np
import torch

from relcourse import metrics
from relcourse.config import load_profile
from relcourse.data import make_pairset
from relcourse.distill import run_distill
from relcourse.finetune import run_finetune, test_truth
from relcourse.models import load_model
from relcourse.pretrain import MODEL_DIR, tokenizer_of
from relcourse.store import ensure_data

REPEATS = 3       # the best of a few timings: the least disturbed by other work on the machine


def bf16_supported() -> bool:
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def backends(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, contextlib.AbstractContextManager]]:
    """Each backend's model and the context its forward runs in."""
    out = {"fp32": (model, contextlib.nullcontext)}
    with warnings.catch_warnings():   # torch points eager quantisation users to torchao; it still works
        warnings.simplefilter("ignore")
        out["int8 dynamic"] = (torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8),
                               contextlib.nullcontext)
    if bf16_supported():
        out["bf16 autocast"] = (model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    return out


@torch.inference_mode()
def scores_and_rate(model, context, inputs: dict, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Scores of every row and the best rows/s over REPEATS passes."""
    model.eval()
    n, best, out = len(inputs["input_ids"]), float("inf"), None
    for _ in range(REPEATS):
        start, parts = time.perf_counter(), []
        with context():
            for lo in range(0, n, batch_size):
                batch = {k: v[lo:lo + batch_size] for k, v in inputs.items()}
                parts.append(model.relevance(batch).float())
        best, out = min(best, time.perf_counter() - start), torch.cat(parts).numpy()
    return out, n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    profile = load_profile(args.profile, {"threads": args.threads})
    torch.set_num_threads(args.threads)
    models = {"teacher": load_model(run_finetune(profile, args.seed, progress=False) / MODEL_DIR),
              "student": load_model(run_distill(profile, args.seed, progress=False) / MODEL_DIR)}
    data_dir = ensure_data(profile, args.seed, progress=False)
    tokenizer, truth = tokenizer_of(profile, args.seed, progress=False), test_truth(data_dir)
    print(f"profile {args.profile}, {args.threads} threads, {len(truth):,} test pairs, native bf16: {bf16_supported()}")
    print(f"{'model':8} {'layers':>6} {'length':>6} {'backend':>14} {'docs/s':>9} {'test AUC':>9} {'max |Δ| vs fp32':>16}")
    for length in (profile.tokenizer.max_len, profile.tokenizer.max_len // 2):
        encoding = dataclasses.replace(profile.tokenizer, max_len=length)
        pairs = make_pairset(data_dir, tokenizer, truth["doc_id"].to_numpy(), truth["label"].to_numpy(), encoding)
        for name, model in models.items():
            reference = None
            for backend, (runnable, context) in backends(model).items():
                scores, rate = scores_and_rate(runnable, context, pairs.inputs)
                reference = scores if reference is None else reference
                print(f"{name:8} {model.cfg.layers:6} {length:6} {backend:>14} {rate:9.0f} "
                      f"{metrics.auc(pairs.targets, scores):9.4f} {np.abs(scores - reference).max():16.2e}")


if __name__ == "__main__":
    main()
