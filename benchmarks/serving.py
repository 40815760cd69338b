"""Serving cost: documents scored per second by the teacher and the distilled student, per backend,
with the latency of a batch and the quality each backend keeps (test AUC, and its largest score
difference from fp32).

    python benchmarks/serving.py                       # smoke: builds the runs it needs (about a minute)
    python benchmarks/serving.py --profile laptop --threads 2 --batch-size 64

Backends, all on this machine's CPU: PyTorch fp32; PyTorch dynamic int8 (`quantize_dynamic`:
the Linear layers' weights stored as int8, activations quantised on the fly, the usual ~2x on
BERT-sized CPUs); bf16 autocast where the CPU has native bf16 (AVX512-BF16 or AMX); ONNX Runtime
fp32 and int8 (the model exported by `relcourse.export`, the int8 file its dynamic quantisation of
the MatMul weights). Each model is timed at the profile's input length and at half of it, the
sources' cheaper serving length (the document is cut; the query is kept). docs/s is the best of
`--repeats` passes; p50/p99 are over every batch of every pass (with few batches, p99 is the
slowest one). GPU backends are not measured here.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from relcourse import metrics
from relcourse.config import load_profile
from relcourse.data import make_pairset
from relcourse.distill import run_distill
from relcourse.export import ONNX_FILE, ONNX_INT8_FILE, export_model
from relcourse.finetune import run_finetune, test_truth
from relcourse.models import load_model
from relcourse.pretrain import MODEL_DIR, tokenizer_of
from relcourse.scoring import OnnxLogits
from relcourse.store import ensure_data

REPEATS = 3       # the best of a few timings: the least disturbed by other work on the machine


def bf16_supported() -> bool:
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def backends(model: torch.nn.Module, served: Path, threads: int) -> dict[str, tuple]:
    """Each backend's scoring function (a batch of inputs -> (B,) scores) and the context it runs in."""
    model.eval()
    out = {"fp32": (model.relevance, contextlib.nullcontext)}
    with warnings.catch_warnings():   # torch points eager quantisation users to torchao; it still works
        warnings.simplefilter("ignore")
        quantised = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    out["int8 dynamic"] = (quantised.relevance, contextlib.nullcontext)
    if bf16_supported():
        out["bf16 autocast"] = (model.relevance, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    for name, file in (("onnx fp32", ONNX_FILE), ("onnx int8", ONNX_INT8_FILE)):
        logits = OnnxLogits(served / file, threads)
        out[name] = (lambda batch, logits=logits: torch.from_numpy(logits(batch)).squeeze(-1), contextlib.nullcontext)
    return out


@dataclasses.dataclass
class Timing:
    scores: np.ndarray
    docs_per_s: float      # the best pass
    p50_ms: float          # per batch, over every pass
    p99_ms: float


@torch.inference_mode()
def timed(relevance, context, inputs: dict, batch_size: int, repeats: int) -> Timing:
    """Scores of every row, the best rows/s over `repeats` passes, and the batches' latencies."""
    n, best, latencies, out = len(inputs["input_ids"]), float("inf"), [], None
    for _ in range(repeats):
        start, parts = time.perf_counter(), []
        with context():
            for lo in range(0, n, batch_size):
                batch = {k: v[lo:lo + batch_size] for k, v in inputs.items()}
                tick = time.perf_counter()
                parts.append(relevance(batch).float())
                latencies.append(time.perf_counter() - tick)
        best, out = min(best, time.perf_counter() - start), torch.cat(parts).numpy()
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return Timing(out, n / best, float(p50), float(p99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per batch (default 256)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"passes per backend (default {REPEATS})")
    args = parser.parse_args()
    profile = load_profile(args.profile, {"threads": args.threads})
    torch.set_num_threads(args.threads)
    runs = {"teacher": run_finetune(profile, args.seed, progress=False),
            "student": run_distill(profile, args.seed, progress=False)}
    models = {name: load_model(run / MODEL_DIR) for name, run in runs.items()}
    data_dir = ensure_data(profile, args.seed, progress=False)
    tokenizer, truth = tokenizer_of(profile, args.seed, progress=False), test_truth(data_dir)
    print(f"profile {args.profile}, {args.threads} threads, {len(truth):,} test pairs, batches of {args.batch_size}, "
          f"native bf16: {bf16_supported()}")
    print(f"{'model':8} {'layers':>6} {'length':>6} {'backend':>14} {'docs/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'test AUC':>9} {'max |Δ| vs fp32':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        served = {name: export_model(run, Path(tmp) / name, onnx=True, int8=True) for name, run in runs.items()}
        for length in (profile.tokenizer.max_len, profile.tokenizer.max_len // 2):
            encoding = dataclasses.replace(profile.tokenizer, max_len=length)
            pairs = make_pairset(data_dir, tokenizer, truth["doc_id"].to_numpy(), truth["label"].to_numpy(), encoding)
            for name, model in models.items():
                reference = None
                for backend, (relevance, context) in backends(model, served[name], args.threads).items():
                    t = timed(relevance, context, pairs.inputs, args.batch_size, args.repeats)
                    reference = t.scores if reference is None else reference
                    print(f"{name:8} {model.cfg.layers:6} {length:6} {backend:>14} {t.docs_per_s:9.0f} "
                          f"{t.p50_ms:8.2f} {t.p99_ms:8.2f} {metrics.auc(pairs.targets, t.scores):9.4f} "
                          f"{np.abs(t.scores - reference).max():16.2e}")


if __name__ == "__main__":
    main()
