"""Serving cost: documents scored per second by the teacher and the distilled student, per backend
and document length, with the latency of a batch and the quality each backend keeps (test AUC and
PNR, and its largest score difference from PyTorch fp32). Notebook 06 is its chapter.

    python benchmarks/serving.py                       # smoke: builds the runs it needs (about a minute)
    python benchmarks/serving.py --profile laptop --threads 2 --rounds 9   # the trained models, 9 rounds
    python benchmarks/serving.py --widths 128 256 512 768 --lengths 32 128   # where int8 pays (random weights)
    python benchmarks/serving.py --widths 128 --layers 1 --lengths 16 32 --rounds 9   # the laptop student's size, 9 rounds

Backends, all on this machine's CPU: PyTorch fp32; PyTorch dynamic int8 (`quantize_dynamic`:
the Linear layers' weights stored as int8, activations quantised on the fly, the usual ~2x for
a BERT-base on a CPU); bf16 autocast where the CPU has native bf16 (AVX512-BF16 or AMX); ONNX Runtime
fp32 and int8 (the model exported by `relcourse.export`, the int8 file its dynamic quantisation of
the MatMul weights). Each model is timed at the profile's input length, at three quarters and at
half of it (`document_lengths`: the document is cut, the query kept), every batch padded to that
length, so a length's docs/s is the cost of documents that long. Speed is timed on the first
`timed_pairs` test pairs (TIMED_PAIRS, as claim D12 times them: long enough to be sustained work),
each batch in each of `repeats` passes, a model's backends taking turns pass by pass (so that
other work on the machine slows them alike); docs/s counts each batch's fastest time (the least
disturbed by that work); p50/p99 are over the full batches of every pass, after one untimed
warm-up batch (with few batches, p99 is the slowest one). Quality is one more pass, untimed, over
every test pair. GPU backends are not measured here. The PyTorch arithmetics and the timing are
relcourse.serving's, which claims D11 and D12 use too.

With --widths, nothing is trained: random-weight models of each width (64-dim heads, feed-forward
4 x width) are exported and timed the same way, and each backend's speed is given as a multiple of
PyTorch fp32's. int8's usual ~2x is a BERT-base-width figure; at the course's CPU widths the fixed
costs around each small matrix product (dispatch, quantising the activations) weigh as much as the
arithmetic int8 saves, and this sweep shows where on the machine at hand the crossover lies.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relcourse import metrics, serving
from relcourse.config import ModelConfig, Profile, load_profile
from relcourse.data import PairSet
from relcourse.distill import run_distill
from relcourse.export import ONNX_FILE, ONNX_INT8_FILE, export_model, export_onnx, quantize_int8, random_batch, to_transformers
from relcourse.finetune import run_finetune
from relcourse.models import RelevanceBert, load_model
from relcourse.pretrain import MODEL_DIR
from relcourse.scoring import OnnxLogits
from relcourse.serving import (REPEATS, SERVE_BATCH, TIMED_PAIRS, Timing, bf16_supported, document_lengths,
                               in_arithmetic, scores_of, timed_together, torch_threads)
from relcourse.store import cpu_model

BACKEND = {"fp32": "fp32", "int8": "int8 dynamic", "bf16": "bf16 autocast"}   # each PyTorch arithmetic's row name
HALF_PRECISION = tuple(BACKEND[a] for a in serving.HALF_PRECISION)   # D12's "half precision", in order of preference

# An outside reference: sentence-transformers' cross-encoders for MS MARCO (SBERT.net, "MS MARCO
# Cross-Encoders"): NDCG@10 on TREC DL 2019 and documents per second on one V100 GPU.
MS_MARCO_CROSS_ENCODERS = pd.DataFrame(
    [("MiniLM-L12", 12, 74.31, 960), ("MiniLM-L6", 6, 74.30, 1_800), ("MiniLM-L4", 4, 73.04, 2_500),
     ("MiniLM-L2", 2, 71.01, 4_100), ("TinyBERT-L2", 2, 69.84, 9_000)],
    columns=["model", "layers", "NDCG@10", "docs/s"]).set_index("model")


def machine(threads: int) -> str:
    """One line on where the timings come from: the CPU (and the vector ISA torch uses on it), its
    logical cores, the threads used."""
    load = ""
    if hasattr(os, "getloadavg"):   # above the thread count, other work competes for the cores: timings jitter
        load = f"; load average {os.getloadavg()[0]:.1f} over the last minute"
    return (f"{cpu_model()}: {os.cpu_count()} logical cores, timed on {threads} thread(s); native bf16: "
            f"{'yes' if bf16_supported() else 'no'}; torch {torch.__version__}{load}")


def served_runs(profile: Profile, seed: int, progress: bool = False) -> dict[str, Path]:
    """The recipe's fine-tuned teacher and the student distilled from it: the cached runs of
    stages 3 and 4 (notebooks 04 and 05 build the same ones)."""
    return {"teacher": run_finetune(profile, seed, progress), "student": run_distill(profile, seed, progress)}


def backends(model: torch.nn.Module, served: Path, threads: int) -> dict[str, tuple]:
    """Each backend's scoring function (a batch of inputs -> (B,) scores) and the context it runs in."""
    model.eval()
    out = {}
    for arithmetic in ("fp32", "int8", *(["bf16"] if bf16_supported() else [])):
        scorer, context = in_arithmetic(model, arithmetic)
        out[BACKEND[arithmetic]] = (scorer.relevance, context)
    for name, file in (("onnx fp32", ONNX_FILE), ("onnx int8", ONNX_INT8_FILE)):
        logits = OnnxLogits(served / file, threads)
        out[name] = (lambda batch, logits=logits: torch.from_numpy(logits(batch)).squeeze(-1), contextlib.nullcontext)
    return out


def over_rounds(timings: list[dict[str, Timing]], backend: str) -> dict[str, float]:
    """One backend's speed over rounds of `timed_together` (each a dict of backend -> Timing): the
    median round's docs/s, p50 and p99, and its docs/s as a multiple of PyTorch fp32's in the same
    round, paired round by round: the median ratio ("× fp32") and its range. A ratio of medians
    would pair a fast fp32 round with a slow one of the other backend.

    >>> rounds = [{"fp32": Timing(100.0, 2.0, 3.0), "onnx int8": Timing(190.0, 1.0, 1.5)},
    ...           {"fp32": Timing(60.0, 3.0, 4.0), "onnx int8": Timing(150.0, 1.5, 2.0)},
    ...           {"fp32": Timing(80.0, 2.5, 3.5), "onnx int8": Timing(170.0, 1.2, 1.8)}]
    >>> {k: round(v, 2) for k, v in over_rounds(rounds, "onnx int8").items()}
    {'docs/s': 170.0, 'p50 ms': 1.2, 'p99 ms': 1.8, '× fp32': 2.12, '× fp32 min': 1.9, '× fp32 max': 2.5}
    """
    rates = np.array([t[backend].docs_per_s for t in timings])
    ratios = rates / np.array([t[BACKEND["fp32"]].docs_per_s for t in timings])
    return {"docs/s": float(np.median(rates)), "p50 ms": float(np.median([t[backend].p50_ms for t in timings])),
            "p99 ms": float(np.median([t[backend].p99_ms for t in timings])), "× fp32": float(np.median(ratios)),
            "× fp32 min": float(ratios.min()), "× fp32 max": float(ratios.max())}


def timed_rounds(scorers: dict[str, tuple], inputs: dict, batch_size: int, repeats: int,
                 rounds: int) -> dict[str, dict[str, float]]:
    """Every scorer (name -> (relevance, context)) timed on `inputs` in `rounds` rounds of
    `timed_together`, the backends taking turns within each round: {name: `over_rounds` of it}."""
    timings = [timed_together({name: (relevance, context, inputs) for name, (relevance, context) in scorers.items()},
                              batch_size, repeats) for _ in range(rounds)]
    return {name: over_rounds(timings, name) for name in scorers}


def speed_ups(table: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """The "× fp32" column as text, `rows` down and one column per backend, each with its range
    over rounds where there was more than one.

    >>> table = pd.DataFrame({"length": [32, 32], "backend": ["fp32", "onnx int8"], "× fp32": [1.0, 2.12],
    ...                       "× fp32 min": [1.0, 1.9], "× fp32 max": [1.0, 2.5]})
    >>> speed_ups(table, ["length"]).to_dict("records")
    [{'fp32': '1.00', 'onnx int8': '2.12 (1.90–2.50)'}]
    """
    def text(row) -> str:
        ranged = row["× fp32 min"] < row["× fp32 max"]
        return f"{row['× fp32']:.2f}" + (f" ({row['× fp32 min']:.2f}–{row['× fp32 max']:.2f})" if ranged else "")

    return (table.assign(text=table.apply(text, axis=1)).pivot(index=rows, columns="backend", values="text")
            [list(table.backend.unique())].rename_axis(columns=None))


def benchmark(models: dict[str, tuple[RelevanceBert, Path]], pairsets: dict[int, PairSet], threads: int,
              batch_size: int = SERVE_BATCH, repeats: int = REPEATS, timed_pairs: int = TIMED_PAIRS,
              rounds: int = 1) -> pd.DataFrame:
    """One row per model x input length x backend: docs/s and p50/p99 ms per batch on the first
    `timed_pairs` pairs; its speed as a multiple of PyTorch fp32's on the same model and inputs
    ("× fp32"); test AUC, PNR and the largest |score difference| from PyTorch fp32 at the same
    length on all of them. `models` maps a name to (the course's model, its export folder with
    both ONNX files); `pairsets` maps a length to the test pairs encoded at that length.

    With `rounds` > 1 every model and length is timed that many times over, the backends taking
    turns within each round (`timed_rounds`). On a small model one round cannot settle a ratio near 2:
    the fp32 side alone moved by 40% between runs of the laptop student (results/laptop.md)."""
    rows = []
    with torch_threads(threads):
        for name, (model, served) in models.items():
            served_backends = backends(model, served, threads)
            for length, pairs in pairsets.items():
                inputs = {k: v.long() for k, v in pairs.inputs.items()}   # PairSets store compact dtypes
                timed = {k: v[:timed_pairs] for k, v in inputs.items()}
                speeds = timed_rounds(served_backends, timed, batch_size, repeats, rounds)
                scores = {backend: scores_of(relevance, context, inputs, batch_size)
                          for backend, (relevance, context) in served_backends.items()}
                reference = scores[BACKEND["fp32"]]
                for backend in served_backends:
                    quality = metrics.evaluate(pairs.targets, scores[backend], pairs.query_ids).loc["all"]
                    rows.append({"model": name, "layers": model.cfg.layers, "length": length, "backend": backend,
                                 **speeds[backend], "test AUC": quality["auc"], "PNR": quality["pnr"],
                                 "max |Δ| vs fp32": float(np.abs(scores[backend] - reference).max())})
    return pd.DataFrame(rows)


def measure(profile: Profile, seed: int = 0, batch_size: int = SERVE_BATCH, repeats: int = REPEATS,
            lengths: tuple[int, ...] | None = None, progress: bool = False, timed_pairs: int = TIMED_PAIRS,
            rounds: int = 1) -> pd.DataFrame:
    """`benchmark` of the profile's teacher and distilled student (built or read from the cache)
    on its test pairs, at `lengths` (default `document_lengths`), on `profile.threads` threads."""
    runs = served_runs(profile, seed, progress)
    encoding = profile.tokenizer
    lengths = lengths or document_lengths(encoding.max_len, encoding.max_query_len)
    pairsets = serving.test_pairsets(profile, seed, lengths, progress)
    with tempfile.TemporaryDirectory() as tmp:
        models = {name: (load_model(run / MODEL_DIR), export_model(run, Path(tmp) / name, onnx=True, int8=True))
                  for name, run in runs.items()}
        return benchmark(models, pairsets, profile.threads, batch_size, repeats, timed_pairs, rounds)


def random_model(width: int, layers: int, vocab: int, max_len: int) -> RelevanceBert:
    """A relevance model of the usual shape (64-dim heads, feed-forward 4 x width) with random
    weights: it costs what a trained model of that size costs, since no kernel reads the values."""
    torch.manual_seed(0)
    shape = ModelConfig(layers=layers, hidden=width, heads=max(width // 64, 1), intermediate=4 * width)
    return RelevanceBert(shape, vocab, max_len).eval()


def by_width(widths: tuple[int, ...], lengths: tuple[int, ...], layers: int = 2, vocab: int = 8_000,
             threads: int = 2, batch_size: int = 64, repeats: int = REPEATS, pass_seconds: float = 1.0,
             rounds: int = 1) -> pd.DataFrame:
    """docs/s of every backend for a random model of each width at each input length, and its
    speed-up over PyTorch fp32 on the same model and inputs. Each model is exported to ONNX fp32
    and int8 as a trained one is. The pairs timed are sized per model and length so that a fp32
    pass takes about `pass_seconds`: a fixed count would be all noise at width 128 and take
    minutes at 768. With `rounds` > 1 each model and length is timed that many times over
    (`timed_rounds`): at width 128 the speed-up moves more from one run to the next than it differs
    between backends within a run (results/laptop.md), so a verdict there reads the median round.

    >>> table = by_width((16, 32), (8,), layers=1, vocab=60, batch_size=4, repeats=1, pass_seconds=0.01, rounds=3)
    >>> len(table) == 2 * table.backend.nunique(), set(table.loc[table.backend == "fp32", "× fp32 max"])
    (True, {1.0})
    """
    rows = []
    with torch_threads(threads), tempfile.TemporaryDirectory() as tmp:
        for width in widths:
            model, served = random_model(width, layers, vocab, max(lengths)), Path(tmp) / str(width)
            served.mkdir()
            export_onnx(to_transformers(model), served / ONNX_FILE)
            quantize_int8(served / ONNX_FILE, served / ONNX_INT8_FILE)
            scorers = backends(model, served, threads)
            for length in lengths:
                probe = {"fp32": (model.relevance, contextlib.nullcontext, random_batch(vocab, length, batch_size))}
                rate = timed_together(probe, batch_size, repeats=1)["fp32"].docs_per_s   # a first estimate
                pairs = batch_size * max(1, round(pass_seconds * rate / batch_size))
                inputs = random_batch(vocab, length, pairs, seed=length)
                speeds = timed_rounds(scorers, inputs, batch_size, repeats, rounds)
                rows += [{"width": width, "layers": layers, "length": length, "backend": name, "pairs timed": pairs,
                          **speeds[name]} for name in scorers]
    return pd.DataFrame(rows)


def headline(table: pd.DataFrame) -> pd.DataFrame:
    """Claim D12's two arms from a `benchmark` table: the teacher at full length in fp32, and the
    student at the shortest length in half precision (bf16 where measured, else int8), with the
    speed-up of each over the teacher's row.

    >>> table = pd.DataFrame({"model": ["teacher", "student", "student"], "length": [32, 16, 16],
    ...                       "backend": ["fp32", "fp32", "int8 dynamic"], "docs/s": [100.0, 300.0, 500.0],
    ...                       "test AUC": [0.8, 0.78, 0.77]})
    >>> headline(table)[["backend", "speed-up"]].to_dict("list")
    {'backend': ['fp32', 'int8 dynamic'], 'speed-up': [1.0, 5.0]}
    """
    teacher = table[(table.model == "teacher") & (table.length == table.length.max()) & (table.backend == "fp32")]
    half = next(b for b in HALF_PRECISION if b in set(table.backend))
    student = table[(table.model == "student") & (table.length == table.length.min()) & (table.backend == half)]
    arms = pd.concat([teacher, student]).set_index("model")
    return arms.assign(**{"speed-up": arms["docs/s"] / teacher["docs/s"].iloc[0]})


def _plain_log_axis(ax) -> None:
    """A log x axis labelled 500, 1,000, 2,000, ... rather than 5x10^2 and crowded minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_sources(ax=None):
    """MS_MARCO_CROSS_ENCODERS as quality against documents per second (log scale)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    ref = MS_MARCO_CROSS_ENCODERS
    ax.plot(ref["docs/s"], ref["NDCG@10"], "o", color="#3c78d8")
    for name, row in ref.iterrows():
        ax.annotate(name, (row["docs/s"], row["NDCG@10"]), textcoords="offset points", xytext=(6, 3), fontsize=8)
    _plain_log_axis(ax)
    ax.set(xlim=(ref["docs/s"].min() / 1.5, ref["docs/s"].max() * 2.5), ylim=(ref["NDCG@10"].min() - 0.7,
           ref["NDCG@10"].max() + 0.7), xlabel="documents per second (log scale, one V100)",
           ylabel="NDCG@10, TREC DL 2019", title="sentence-transformers' MS MARCO cross-encoders")
    return ax


def plot_quality_cost(table: pd.DataFrame, ax=None):
    """Test AUC against docs/s (log scale): one point per model x backend x length, the legend
    naming each model x backend (colour: the model; marker: the backend). The full-length point
    is filled; shorter documents are open and smaller, joined to it by a thin line."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8.5, 4.5))[1]
    colours = dict(zip(table.model.unique(), ("#38761d", "#3c78d8", "#cc0000", "#e69138")))
    markers = dict(zip(table.backend.unique(), "osD^v<>"))
    lengths = sorted(table.length.unique(), reverse=True)
    sizes = dict(zip(lengths, (9, 6.5, 4.5, 3.5)))
    for (name, backend), rows in table.groupby(["model", "backend"], sort=False):
        rows = rows.sort_values("length", ascending=False)
        colour, marker = colours[name], markers[backend]
        ax.plot(rows["docs/s"], rows["test AUC"], "-", color=colour, lw=0.7, alpha=0.4)
        for _, row in rows.iterrows():
            full = row.length == lengths[0]
            ax.plot(row["docs/s"], row["test AUC"], marker, ms=sizes[row.length], color=colour,
                    mfc=colour if full else "white", label=f"{name} · {backend}" if full else None)
    _plain_log_axis(ax)
    shorter = " and ".join(str(n) for n in lengths[1:])
    ax.set(xlabel="documents scored per second (log scale, this machine's CPU)", ylabel="test AUC",
           title=f"quality against serving cost (filled: {lengths[0]} tokens"
                 + (f"; open, smaller: {shorter})" if shorter else ")"))
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    return ax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=SERVE_BATCH, help=f"pairs per batch (default {SERVE_BATCH})")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"passes per backend (default {REPEATS})")
    parser.add_argument("--widths", type=int, nargs="+", help="time random-weight models of these widths "
                        "instead of the profile's trained ones (nothing is trained)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128], help="with --widths: input lengths")
    parser.add_argument("--layers", type=int, default=2, help="with --widths: layers of each model")
    parser.add_argument("--rounds", type=int, default=1, help="time each model and length this many times; "
                        "the speed-ups are the median round's, with their range")
    args = parser.parse_args()
    if args.widths:
        print(f"random-weight models, {args.layers} layer(s), batches of {args.batch_size}, {machine(args.threads)}")
        table = by_width(tuple(args.widths), tuple(args.lengths), args.layers, threads=args.threads,
                         batch_size=args.batch_size, repeats=args.repeats, rounds=args.rounds)
        with pd.option_context("display.width", 160, "display.max_rows", None):
            print(table.round(2).to_string(index=False))
            print(f"\nspeed-up over PyTorch fp32, median of {args.rounds} round(s) and range (rows: width, input "
                  "length):\n", speed_ups(table, ["width", "length"]).to_string())
        return
    profile = load_profile(args.profile, {"threads": args.threads})
    print(f"profile {args.profile}, batches of {args.batch_size}, {machine(args.threads)}")
    table = measure(profile, args.seed, args.batch_size, args.repeats, rounds=args.rounds)
    with pd.option_context("display.width", 160, "display.max_rows", None):
        print(table.round({"docs/s": 0, "p50 ms": 2, "p99 ms": 2, "× fp32": 2, "× fp32 min": 2, "× fp32 max": 2,
                           "test AUC": 4, "PNR": 3}).to_string(index=False))
        print(f"\nspeed-up over PyTorch fp32, median of {args.rounds} round(s) and range (rows: model, input "
              "length):\n", speed_ups(table, ["model", "length"]).to_string())
        print("\nclaim D12's arms:\n", headline(table).round(3).to_string())


if __name__ == "__main__":
    main()
