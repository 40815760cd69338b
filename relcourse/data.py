"""(query, document) pairs as model inputs, and the two ways to batch them.

A `PairSet` holds the pairs of one split, tokenised once, with a target per pair (a human tier
0..3, or a teacher's pseudo-label in [0, 1]) and the query each pair belongs to.

Batches are a pure function of the step number (and the seed), so a training run killed at
step k and resumed sees exactly the batches it would have seen (see `relcourse.train`):
- `pointwise_batch`: shuffled pairs, epoch after epoch;
- `query_grouped_batch`: whole query groups — `docs_per_query` documents of each of
  batch_size / docs_per_query queries — so a pairwise loss always has pairs to compare.

>>> import torch
>>> pairs = PairSet(query_ids=np.array([0, 0, 0, 1, 1, 2]), doc_ids=np.arange(6),
...                 targets=np.array([3., 1., 0., 2., 0., 1.]),
...                 inputs={"input_ids": torch.arange(6)[:, None]})
>>> b = query_grouped_batch(pairs, step=0, batch_size=4, docs_per_query=2, seed=0)
>>> sorted(b["query_ids"].tolist())   # two queries, two documents each; query 2 has one doc only
[0, 0, 1, 1]
>>> pointwise_batch(pairs, step=0, batch_size=4, seed=0)["targets"].shape
torch.Size([4])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import data_gen

from .config import TokenizerConfig
from .tokenizer import encode_pairs

# How a PairSet stores its tokens: 6 bytes a token instead of encode_pairs' 24 (three int64), so
# that gpu-xl's ~33M pretraining rows fit in host memory; `PairSet.rows` widens a batch back to int64.
COMPACT = {"input_ids": torch.int32, "token_type_ids": torch.int8, "attention_mask": torch.int8}
ENCODE_CHUNK = 65_536   # pairs tokenised at once: bounds the tokenizer's and numpy's temporaries

# The queries whose text and behaviour logs may be read without labels (TAPT, pseudo-labels):
# never valid or test, so nothing about the evaluation queries leaks into training.
UNLABELLED_TEXT_SPLITS = ("train", "unlabelled")


@dataclass(frozen=True)
class PairSet:
    query_ids: np.ndarray          # (n,) query of each pair
    doc_ids: np.ndarray            # (n,)
    targets: np.ndarray            # (n,) tier 0..3 or pseudo-label in [0, 1]
    inputs: dict[str, torch.Tensor]  # tokenised pairs, each (n, max_len)

    def __len__(self) -> int:
        return len(self.doc_ids)

    @cached_property
    def groups(self) -> list[np.ndarray]:
        """Row indices of each query with at least two documents, in query order."""
        order = np.argsort(self.query_ids, kind="stable")
        _, starts, counts = np.unique(self.query_ids[order], return_index=True, return_counts=True)
        return [order[s:s + c] for s, c in zip(starts, counts) if c >= 2]

    def rows(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        """A batch: the model inputs of the given rows, plus targets and query ids as tensors."""
        idx = torch.as_tensor(index)
        return {**{k: v[idx].long() for k, v in self.inputs.items()},
                "targets": torch.as_tensor(self.targets[index], dtype=torch.float32),
                "query_ids": torch.as_tensor(self.query_ids[index])}


def pair_texts(data_dir: str | Path, doc_ids: np.ndarray) -> pd.DataFrame:
    """Query text and document text (title + body) of the given documents, in their order."""
    docs = data_gen.read_table(data_dir, "docs", columns=["doc_id", "query_id", "title", "body"]).set_index("doc_id")
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "text"]).set_index("query_id")
    missing = np.setdiff1d(doc_ids, docs.index.values)
    if missing.size:
        raise ValueError(f"{missing.size} doc_ids are not in {data_dir} (e.g. {missing[:3].tolist()}): "
                         "labels and data come from different worlds; regenerate one of them")
    rows = docs.loc[doc_ids]
    return pd.DataFrame({"doc_id": doc_ids, "query_id": rows.query_id.values,
                         "query": queries.loc[rows.query_id.values, "text"].values,
                         "document": (rows.title + " " + rows.body).values})


def make_pairset(data_dir: str | Path, tokenizer, doc_ids, targets, encoding: TokenizerConfig) -> PairSet:
    """Tokenise the given pairs once, as the profile's `tokenizer` settings say (lengths, the
    exact-match input); batches then only index into the tensors."""
    doc_ids = np.asarray(doc_ids)
    targets = np.asarray(targets, dtype=np.float64)
    if len(doc_ids) != len(targets):
        raise ValueError(f"{len(doc_ids)} doc_ids but {len(targets)} targets: give one target per pair")
    texts = pair_texts(data_dir, doc_ids)
    inputs = encode_compact(tokenizer, texts["query"].tolist(), texts["document"].tolist(), encoding.max_query_len,
                            encoding.max_len, encoding.exact_match)
    return PairSet(texts.query_id.values, doc_ids, targets, inputs)


def encode_compact(tokenizer, queries: list[str], docs: list[str], max_query_len: int, max_len: int,
                   exact_match: bool = False) -> dict[str, torch.Tensor]:
    """`encode_pairs`, ENCODE_CHUNK pairs at a time, into tensors of the COMPACT dtypes.

    >>> from relcourse.tokenizer import train_tokenizer
    >>> tok = train_tokenizer(["red kettle boils", "the blue lamp is red"] * 20, vocab_size=120)
    >>> args = (["red kettle"] * 3, ["blue lamp"] * 3, 4, 12)
    >>> out = encode_compact(tok, *args)
    >>> out["input_ids"].dtype, all(torch.equal(v, out[k]) for k, v in encode_pairs(tok, *args).items())
    (torch.int32, True)
    """
    n = len(queries)
    out = {k: torch.empty((n, max_len), dtype=dtype) for k, dtype in COMPACT.items()}
    for start in range(0, max(n, len(docs), 1), ENCODE_CHUNK):   # at least once: encode_pairs checks the arguments
        end = start + ENCODE_CHUNK
        for k, v in encode_pairs(tokenizer, queries[start:end], docs[start:end], max_query_len, max_len,
                                 exact_match).items():
            out[k][start:start + len(v)] = v
    return out


def unlabelled_pairs(data_dir: str | Path) -> np.ndarray:
    """doc_ids of every candidate pair of the queries whose text and logs training may read
    (UNLABELLED_TEXT_SPLITS), in doc_id order: TAPT's text and post-pretraining's pool."""
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split"])
    allowed = queries.loc[queries["split"].isin(UNLABELLED_TEXT_SPLITS), "query_id"]
    docs = data_gen.read_table(data_dir, "docs", columns=["doc_id", "query_id"])
    return np.sort(docs.loc[docs["query_id"].isin(allowed), "doc_id"].to_numpy())


def pointwise_rows(n: int, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Row numbers step*batch_size ... of an endless sequence of shuffled epochs over n rows."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    return np.array([_epoch_order(seed, p // n, n)[p % n] for p in positions.tolist()])


def pointwise_batch(pairs: PairSet, step: int, batch_size: int, seed: int) -> dict[str, torch.Tensor]:
    """The rows `pointwise_rows` picks, as a batch."""
    return pairs.rows(pointwise_rows(len(pairs), step, batch_size, seed))


def steps_for_epochs(epochs: float, rows: int, batch_size: int) -> int:
    """Optimizer steps that make `epochs` passes over `rows` rows at `batch_size` rows a step (at least 1).

    >>> steps_for_epochs(1.0, 5_000, 32), steps_for_epochs(2.0, 100, 64)
    (157, 4)
    """
    return max(1, math.ceil(epochs * rows / batch_size))


@lru_cache(maxsize=2)  # a batch spans at most two epochs; each order is computed once per epoch
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def query_grouped_batch(pairs: PairSet, step: int, batch_size: int, docs_per_query: int, seed: int) -> dict:
    """batch_size // docs_per_query queries, each with docs_per_query of its documents (fewer
    when a query has fewer). Queries with a single document are never drawn: they give a
    pairwise loss nothing to compare."""
    if batch_size % docs_per_query:
        raise ValueError(f"batch_size={batch_size} must be a multiple of docs_per_query={docs_per_query}")
    groups = pairs.groups
    if not groups:
        raise ValueError("no query has two or more documents: a query-grouped batch needs pairs to compare")
    rng = np.random.default_rng([seed, step])
    chosen = rng.choice(len(groups), size=min(batch_size // docs_per_query, len(groups)), replace=False)
    index = np.concatenate([rng.permutation(groups[g])[:docs_per_query] for g in chosen])
    return pairs.rows(index)

