"""Serving a model: the arithmetic it scores in, and how fast it scores.

Three arithmetics, all PyTorch (benchmarks/serving.py adds ONNX Runtime beside them):

- fp32: the model as trained;
- bf16: autocast, the matrix products in bfloat16 (fast on CPUs with AVX512-BF16 or AMX,
  emulated and slow on others; `bf16_supported` says which this one is);
- int8: `quantize_dynamic`, the Linear layers' weights stored as int8 and their inputs quantised
  on the fly, on the CPU (the usual ~2x for a BERT-base there).

`in_arithmetic` gives the model and the context to score it in; `score_in` scores a PairSet
that way (claim D11 tests the student in its serving arithmetic); `timed` times a scorer batch
by batch, robustly (claim D12 and the serving benchmark); `serving_sides` measures claim D12's
two sides: the teacher at full length in fp32 against the student at half length in half
precision (`half_precision`: bf16 where this CPU has it natively, else int8).

>>> document_lengths(max_len=32, max_query_len=8)
(32, 24, 16)
>>> half_precision() in HALF_PRECISION
True
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import metrics
from .config import Profile
from .data import PairSet, make_pairset
from .finetune import score, test_truth
from .models import RelevanceBert, load_model
from .pretrain import MODEL_DIR, tokenizer_of
from .store import ensure_data, load_manifest

ARITHMETICS = ("fp32", "bf16", "int8")
HALF_PRECISION = ("bf16", "int8")   # claim D12's "half precision", in order of preference
REPEATS = 3            # timed passes: each batch's fastest is the least disturbed by other work on the machine
SERVE_BATCH = 256      # pairs per timed batch
TIMED_PAIRS = 512      # test pairs claim D12 times: enough for several batches, seconds on the CPU profiles
LENGTH_SHARES = (1, 3 / 4, 1 / 2)   # of the profile's max_len: the serving lengths measured


def bf16_supported() -> bool:
    """Whether this CPU has native bf16 (AVX512-BF16 or AMX): bf16 autocast is fast only there."""
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def half_precision() -> str:
    """Claim D12's half precision on this CPU: the first of HALF_PRECISION it runs natively."""
    return "bf16" if bf16_supported() else "int8"


def quantised(model: RelevanceBert) -> RelevanceBert:
    """A dynamic-int8 copy of the model on the CPU (`quantize_dynamic` of its Linear layers); the
    model itself is left as it is (quantised kernels run on the CPU only)."""
    cpu_copy = copy.deepcopy(model).to("cpu")
    with warnings.catch_warnings():   # torch points eager quantisation users to torchao; it still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(cpu_copy, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def in_arithmetic(model: RelevanceBert, arithmetic: str):
    """(the model to score with, a function returning the context to score in) for `arithmetic`.

    >>> from relcourse.config import ModelConfig
    >>> model = RelevanceBert(ModelConfig(layers=1, hidden=16, heads=2, intermediate=32), 50, max_len=8)
    >>> served, context = in_arithmetic(model, "int8")
    >>> type(served.relevance_head[1]).__name__, served is model
    ('Linear', False)
    >>> with in_arithmetic(model, "bf16")[1]():
    ...     torch.get_autocast_dtype("cpu")
    torch.bfloat16
    """
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic {arithmetic!r} is unknown; choose one of {', '.join(ARITHMETICS)}")
    if arithmetic == "int8":
        return quantised(model), contextlib.nullcontext
    if arithmetic == "bf16":
        device = next(model.parameters()).device.type
        return model, lambda: torch.autocast(device, dtype=torch.bfloat16)
    return model, contextlib.nullcontext


def score_in(model: RelevanceBert, pairs: PairSet, arithmetic: str) -> np.ndarray:
    """relcourse.finetune.score of the pairs, computed in `arithmetic` (fp32 scores exactly as `score`)."""
    served, context = in_arithmetic(model, arithmetic)
    with context():
        return score(served, pairs)


@dataclasses.dataclass
class Timing:
    scores: np.ndarray
    docs_per_s: float      # rows over the sum of each batch's fastest pass
    p50_ms: float          # per full batch, over every pass
    p99_ms: float


@torch.inference_mode()
def timed(relevance, context, inputs: dict, batch_size: int, repeats: int) -> Timing:
    """Scores of every row, rows/s, and the latencies of the full batches (a short last batch
    would pull p50 down). Each batch is timed in every one of `repeats` passes and rows/s counts
    its fastest time: other work on the machine only ever slows a batch down, so the fastest is
    the least disturbed. One batch runs untimed first: the first call of a backend allocates and
    picks its kernels, which is not what serving pays per query.

    >>> inputs = {"x": torch.arange(10.0)}
    >>> t = timed(lambda batch: batch["x"] * 2, contextlib.nullcontext, inputs, batch_size=4, repeats=2)
    >>> t.scores.tolist() == [2.0 * i for i in range(10)], t.docs_per_s > 0, t.p50_ms <= t.p99_ms
    (True, True, True)
    """
    n = len(next(iter(inputs.values())))
    starts = range(0, n, batch_size)
    seconds, parts = np.zeros((repeats, len(starts))), []
    with context():
        relevance({k: v[:batch_size] for k, v in inputs.items()})
        for r in range(repeats):
            for b, lo in enumerate(starts):
                batch = {k: v[lo:lo + batch_size] for k, v in inputs.items()}
                tick = time.perf_counter()
                scores = relevance(batch).float()
                seconds[r, b] = time.perf_counter() - tick
                if r == 0:
                    parts.append(scores)
    full = seconds[:, :max(n // batch_size, 1)]          # the full batches (or the one short batch there is)
    p50, p99 = np.percentile(full, [50, 99]) * 1e3
    return Timing(torch.cat(parts).numpy(), float(n / seconds.min(axis=0).sum()), float(p50), float(p99))


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch's intra-op threads set to `threads` inside, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def document_lengths(max_len: int, max_query_len: int) -> tuple[int, ...]:
    """The input lengths measured: LENGTH_SHARES of max_len, each long enough for the query's
    budget, [CLS], two [SEP] and one document token."""
    lengths = (max(round(max_len * share), max_query_len + 4) for share in LENGTH_SHARES)
    return tuple(dict.fromkeys(lengths))


def test_pairsets(profile: Profile, seed: int, lengths: tuple[int, ...], progress: bool = False) -> dict[int, PairSet]:
    """The test pairs encoded at each length (the document cut, the query kept), with their true tiers."""
    data_dir = ensure_data(profile, seed, progress)
    tokenizer, truth = tokenizer_of(profile, seed, progress), test_truth(data_dir)
    return {n: make_pairset(data_dir, tokenizer, truth["doc_id"].to_numpy(), truth["label"].to_numpy(),
                            dataclasses.replace(profile.tokenizer, max_len=n)) for n in lengths}


def serving_sides(profile: Profile, seed: int, teacher_dir: Path, student_dir: Path,
                  pairs: int = TIMED_PAIRS, repeats: int = REPEATS) -> pd.DataFrame:
    """Claim D12's two sides on this machine's CPU, one row each: the teacher (a fine-tuning run)
    at the profile's full input length in fp32, and the student (a distillation run) at the
    shortest of `document_lengths` in `half_precision`. docs/s: `timed` on the first `pairs`
    test pairs, on profile.threads threads; test AUC: over every test pair, the teacher's as its
    run recorded it (fp32 at full length: this side), the student's scored here at its length
    and in its arithmetic."""
    encoding = profile.tokenizer
    lengths = document_lengths(encoding.max_len, encoding.max_query_len)
    sides = {"teacher": (teacher_dir, lengths[0], "fp32"), "student": (student_dir, lengths[-1], half_precision())}
    pairsets = test_pairsets(profile, seed, (lengths[0], lengths[-1]))
    rows = {}
    with torch_threads(profile.threads):
        for name, (run, length, arithmetic) in sides.items():
            model = load_model(run / MODEL_DIR).eval()
            served, context = in_arithmetic(model, arithmetic)
            test = pairsets[length]
            inputs = {k: v[:pairs].long() for k, v in test.inputs.items()}   # PairSets store compact dtypes
            timing = timed(served.relevance, context, inputs, SERVE_BATCH, repeats)
            if name == "teacher":
                auc = load_manifest(run)["metrics"]["test"]["all"]["auc"]
            else:
                with context():
                    auc = metrics.auc(test.targets, score(served, test))
            rows[name] = {"layers": model.cfg.layers, "length": length, "arithmetic": arithmetic,
                          "docs/s": timing.docs_per_s, "test AUC": float(auc)}
    return pd.DataFrame.from_dict(rows, orient="index")
