"""Serving, part 2: score (query, document) pairs with an exported model (relcourse.export).

    python -m relcourse score --model served/student pairs.tsv --out scores.tsv --backend onnx

reads a TSV (tab-separated, a header line) or Parquet file with columns `query` and `document`
and writes one score per input row, in the input's order, as a TSV with the column `score`.

Why the pairs are sorted by length: a batch costs what its longest pair costs (every row is
padded to it), so scoring pairs of similar length together pads least. The pairs are encoded
once as the course encodes them (`relcourse.tokenizer.encode_pairs`: the query cut to
`max_query_len` pieces, the document to the rest of `max_len`), sorted by their number of
tokens, cut into batches, and each batch is trimmed to its own longest pair; the scores are then
put back in the input's order. Padding changes no score (the attention mask hides it), so the
order only changes the speed.

>>> import torch
>>> from relcourse.config import ModelConfig
>>> from relcourse.models import RelevanceBert
>>> from relcourse.export import to_transformers
>>> from relcourse.tokenizer import train_tokenizer
>>> tok = train_tokenizer(["the red kettle boils", "a blue kettle", "the red lamp"] * 20, vocab_size=100)
>>> model = RelevanceBert(ModelConfig(layers=1, hidden=16, heads=2, intermediate=32), len(tok), max_len=16).eval()
>>> scorer = Scorer(tok, Layout(max_query_len=4, max_len=16), TorchLogits(to_transformers(model)))
>>> queries, docs = ["red kettle", "lamp"], ["the red kettle boils", "a blue lamp"]
>>> ours = model.relevance(encode_pairs(tok, queries, docs, 4, 16)).detach().numpy()
>>> bool(np.abs(scorer.score(queries, docs, batch_size=1) - ours).max() < 1e-5)
True
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .export import ONNX_FILE, ONNX_INT8_FILE, ExportError, onnx_logits, onnx_session, read_export_info
from .losses import expected_tier
from .store import write_text_atomic
from .tokenizer import encode_pairs

BACKENDS = {"torch": None, "onnx": ONNX_FILE, "onnx-int8": ONNX_INT8_FILE}   # backend -> the file it reads
COLUMNS = ("query", "document")


class ScoringError(ValueError):
    """The pairs file or the model folder cannot be read; the message says what to fix."""


@dataclass(frozen=True)
class Layout:
    """The input layout of an export (from relcourse_export.json)."""
    max_query_len: int
    max_len: int
    exact_match: bool = False
    num_outputs: int = 1


class TorchLogits:
    """A transformers model as `logits(batch) -> (B, labels)` float32 numpy, in inference mode."""

    def __init__(self, model):
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return self.model(**batch).logits.float().numpy()


class OnnxLogits:
    """An ONNX Runtime session as `logits(batch) -> (B, labels)` float32 numpy."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.session = onnx_session(path, threads)

    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return onnx_logits(self.session, batch)


class Scorer:
    """Texts in, one relevance score per pair out: the logit, or the expected tier of a 4-class model."""

    def __init__(self, tokenizer, layout: Layout, logits):
        self.tokenizer, self.layout, self.logits = tokenizer, layout, logits

    def encode(self, queries: list[str], documents: list[str]) -> dict[str, torch.Tensor]:
        lay = self.layout
        return encode_pairs(self.tokenizer, queries, documents, lay.max_query_len, lay.max_len, lay.exact_match)

    def score_inputs(self, inputs: dict[str, torch.Tensor], batch_size: int = 256) -> np.ndarray:
        """Scores of encoded pairs, batched by length (see the module docstring), in their order."""
        if batch_size < 1:
            raise ScoringError(f"batch_size={batch_size}: give 1 or more")
        lengths = inputs["attention_mask"].sum(1).numpy()
        order = np.argsort(lengths, kind="stable")
        scores = np.zeros(len(order), dtype=np.float32)
        for lo in range(0, len(order), batch_size):
            rows = order[lo:lo + batch_size]
            width = int(lengths[rows].max())                 # the batch's longest pair: no column of padding only
            logits = torch.from_numpy(self.logits({k: v[rows, :width] for k, v in inputs.items()}))
            scores[rows] = (expected_tier(logits) if self.layout.num_outputs == 4 else logits.squeeze(-1)).numpy()
        return scores

    def score(self, queries: list[str], documents: list[str], batch_size: int = 256) -> np.ndarray:
        return self.score_inputs(self.encode(list(queries), list(documents)), batch_size)


def load_scorer(model_dir: str | Path, backend: str = "torch", threads: int | None = None) -> Scorer:
    """The Scorer of an export folder: `backend` torch (transformers), onnx or onnx-int8 (ONNX Runtime)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if backend not in BACKENDS:
        raise ScoringError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    info = read_export_info(model_dir)
    layout = Layout(info["max_query_len"], info["max_len"], info["exact_match"], info["num_outputs"])
    if backend == "torch":
        logits = TorchLogits(AutoModelForSequenceClassification.from_pretrained(model_dir))
    else:
        path = model_dir / BACKENDS[backend]
        if not path.is_file():
            flag = "--int8" if backend == "onnx-int8" else "--onnx"
            raise ExportError(f"{model_dir} has no {path.name}: export the run again with {flag}")
        logits = OnnxLogits(path, threads)
    return Scorer(AutoTokenizer.from_pretrained(model_dir), layout, logits)


def read_pairs(path: str | Path) -> pd.DataFrame:
    """The `query` and `document` columns of a .tsv or .parquet file, as strings."""
    path = Path(path)
    if not path.is_file():
        raise ScoringError(f"{path} does not exist")
    if path.suffix not in (".tsv", ".parquet"):
        raise ScoringError(f"{path}: give a .tsv (tab-separated, header line) or .parquet file")
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else _read_tsv(path)
    except (ValueError, OSError) as e:   # pyarrow's errors and UnicodeDecodeError are ValueErrors
        if isinstance(e, ScoringError):
            raise
        raise ScoringError(f"{path} cannot be read as {path.suffix[1:]}: {str(e).splitlines()[0]}") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ScoringError(f"{path} lacks the column(s) {', '.join(missing)}: it has {list(frame.columns)[:6]}; "
                           "give one row per pair with columns query and document")
    if frame[list(COLUMNS)].isna().any().any():
        raise ScoringError(f"{path} has empty query or document cells: give every pair both texts")
    return frame[list(COLUMNS)].astype(str)


def _read_tsv(path: Path) -> pd.DataFrame:
    """A strict TSV: a header line, then lines of as many tab-separated fields. No quoting (a '"'
    is a character), and a line with a field too many or too few is an error, not a guess."""
    lines = [line.removesuffix("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ScoringError(f"{path} is empty: give a header line (query<TAB>document) and one line per pair")
    header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ScoringError(f"{path}, line {number}: {len(row)} tab-separated fields, the header has "
                               f"{len(header)}; a tab or line break inside a text breaks the TSV: use Parquet")
    return pd.DataFrame(rows, columns=header, dtype=object)


def score_file(model_dir: str | Path, pairs_path: str | Path, out: str | Path | None = None, backend: str = "torch",
               batch_size: int = 256, threads: int | None = None) -> tuple[Path, float]:
    """Score a pairs file, write the scores (atomically) and return (the scores' path, docs/s).
    `out` defaults to the pairs file with the suffix .scores.tsv."""
    if batch_size < 1:
        raise ScoringError(f"batch_size={batch_size}: give 1 or more")
    pairs = read_pairs(pairs_path)
    scorer = load_scorer(model_dir, backend, threads)
    out = Path(out) if out else Path(pairs_path).with_suffix(".scores.tsv")
    start = time.perf_counter()
    scores = scorer.score(pairs["query"].tolist(), pairs["document"].tolist(), batch_size)
    rate = len(pairs) / max(time.perf_counter() - start, 1e-9)
    write_text_atomic(out, "score\n" + "".join(f"{s:.7g}\n" for s in scores))
    return out, rate
