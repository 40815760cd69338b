"""Serving a model: the arithmetic it scores in, and how fast it scores.

Three arithmetics, all PyTorch (benchmarks/serving.py adds ONNX Runtime beside them):

- fp32: the model as trained;
- bf16: autocast, the matrix products in bfloat16 (fast on CPUs with AVX512-BF16 or AMX,
  emulated and slow on others; `bf16_supported` says which this one is);
- int8: `quantize_dynamic`, the Linear layers' weights stored as int8 and their inputs quantised
  on the fly, on the CPU (the usual ~2x for a BERT-base there).

`in_arithmetic` gives the model and the context to score it in; `score_in` scores a PairSet
that way (claim D11 tests the student in its serving arithmetic); `timed_together` times scorers
batch by batch, in turn and robustly (claim D12 and the serving benchmark), and `scores_of` gives
a scorer's scores, untimed; `serving_sides` measures claim D12's two sides: the teacher at full
length in fp32 against the student at half length in half precision (`half_precision`: bf16
where this CPU has it natively, else int8).

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
# Test pairs claim D12 times: 16 batches a pass, seconds on the CPU profiles. Sustained work is what
# a serving machine does. At 512 pairs (two batches; a student pass of ~25 ms on laptop) the log
# ratio read higher: +0.15 on average, +0.11 to +0.21 in each of five rounds that timed both
# amounts back to back on laptop's three seeds (idle machine), while the level of both drifted by
# ±0.1 from minute to minute. A short burst flatters the small model.
TIMED_PAIRS = 4_096
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
    docs_per_s: float      # rows over the sum of each batch's fastest pass
    p50_ms: float          # per full batch, over every pass
    p99_ms: float


@torch.inference_mode()
def timed_together(scorers: dict[str, tuple], batch_size: int, repeats: int) -> dict[str, Timing]:
    """Each scorer's rows/s, and the latencies of its full batches (a short last batch would pull
    p50 down). `scorers` maps a name to (relevance, context, inputs); `scores_of` gives the scores.

    The scorers take turns: pass 1 of each, then pass 2 of each, and so on, so that whatever else
    the machine does in those seconds slows them alike and their speed ratio stays put; timed one
    after the other, a burst of other work would land on one side only. Each batch is timed in
    every one of `repeats` passes and rows/s counts its fastest time: other work only ever slows a
    batch down, so the fastest is the least disturbed. One batch of each runs untimed first: the
    first call of a backend allocates and picks its kernels, which is not what serving pays per query.

    >>> inputs = {"x": torch.arange(10.0)}
    >>> t = timed_together({"double": (lambda b: b["x"] * 2, contextlib.nullcontext, inputs)}, batch_size=4,
    ...                    repeats=2)["double"]
    >>> t.docs_per_s > 0, t.p50_ms <= t.p99_ms
    (True, True)
    """
    batches = {name: _batches(inputs, batch_size) for name, (_, _, inputs) in scorers.items()}
    seconds = {name: np.zeros((repeats, len(parts))) for name, parts in batches.items()}
    for name, (relevance, context, _) in scorers.items():
        with context():
            relevance(batches[name][0])
    for r in range(repeats):
        for name, (relevance, context, _) in scorers.items():
            with context():
                for b, batch in enumerate(batches[name]):
                    tick = time.perf_counter()
                    relevance(batch)
                    seconds[name][r, b] = time.perf_counter() - tick
    timings = {}
    for name, parts in batches.items():
        n = sum(_rows(batch) for batch in parts)
        full = seconds[name][:, :max(n // batch_size, 1)]   # the full batches (or the one short batch there is)
        p50, p99 = np.percentile(full, [50, 99]) * 1e3
        timings[name] = Timing(float(n / seconds[name].min(axis=0).sum()), float(p50), float(p99))
    return timings


@torch.inference_mode()
def scores_of(relevance, context, inputs: dict, batch_size: int) -> np.ndarray:
    """A scorer's scores of every row of `inputs`, batch by batch in `context`, untimed.

    >>> scores_of(lambda b: b["x"] * 2, contextlib.nullcontext, {"x": torch.arange(5.0)}, batch_size=2).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    with context():
        return torch.cat([relevance(batch).float() for batch in _batches(inputs, batch_size)]).numpy()


def _rows(batch: dict) -> int:
    return len(next(iter(batch.values())))


def _batches(inputs: dict, batch_size: int) -> list[dict]:
    return [{k: v[lo:lo + batch_size] for k, v in inputs.items()} for lo in range(0, _rows(inputs), batch_size)]


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
    shortest of `document_lengths` in `half_precision`. docs/s: `timed_together` on the first
    `pairs` test pairs, the two sides taking turns, on profile.threads threads; test AUC: over
    every test pair, the teacher's as its run recorded it (fp32 at full length: this side), the
    student's scored here at its length and in its arithmetic."""
    encoding = profile.tokenizer
    lengths = document_lengths(encoding.max_len, encoding.max_query_len)
    sides = {"teacher": (teacher_dir, lengths[0], "fp32"), "student": (student_dir, lengths[-1], half_precision())}
    pairsets = test_pairsets(profile, seed, (lengths[0], lengths[-1]))
    models = {name: load_model(run / MODEL_DIR).eval() for name, (run, _, _) in sides.items()}
    served = {name: in_arithmetic(models[name], arithmetic) for name, (_, _, arithmetic) in sides.items()}
    with torch_threads(profile.threads):
        timings = _timed(served, {name: pairsets[length] for name, (_, length, _) in sides.items()}, pairs, repeats)
        rows = {}
        for name, (run, length, arithmetic) in sides.items():
            if name == "teacher":
                auc = load_manifest(run)["metrics"]["test"]["all"]["auc"]
            else:
                model, context = served[name]
                with context():
                    auc = metrics.auc(pairsets[length].targets, score(model, pairsets[length]))
            rows[name] = {"layers": models[name].cfg.layers, "length": length, "arithmetic": arithmetic,
                          "docs/s": timings[name].docs_per_s, "test AUC": float(auc)}
    return pd.DataFrame.from_dict(rows, orient="index")


def docs_per_second(profile: Profile, seed: int, runs: dict[str, Path], pairs: int = TIMED_PAIRS,
                    repeats: int = REPEATS) -> dict[str, float]:
    """Each run's model (a fine-tuning or distillation run) timed now, on this machine: docs/s in
    fp32 PyTorch at the profile's input length on the first `pairs` test pairs, the models taking
    turns (`timed_together`) on profile.threads threads. A run's manifest is no place for a speed:
    it would keep whatever load the machine had the day the run was built."""
    pairset = test_pairsets(profile, seed, (profile.tokenizer.max_len,))[profile.tokenizer.max_len]
    served = {name: in_arithmetic(load_model(run / MODEL_DIR).eval(), "fp32") for name, run in runs.items()}
    with torch_threads(profile.threads):
        timings = _timed(served, dict.fromkeys(runs, pairset), pairs, repeats)
    return {name: timing.docs_per_s for name, timing in timings.items()}


def _timed(served: dict[str, tuple], pairsets: dict[str, PairSet], pairs: int, repeats: int) -> dict[str, Timing]:
    """`timed_together` of served models ({name: in_arithmetic(...)}), each on the first `pairs`
    rows of its PairSet."""
    scorers = {name: (model.relevance, context,
                      {k: v[:pairs].long() for k, v in pairsets[name].inputs.items()})   # PairSets store compact dtypes
               for name, (model, context) in served.items()}
    return timed_together(scorers, SERVE_BATCH, repeats)
