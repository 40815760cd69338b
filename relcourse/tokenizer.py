"""A WordPiece tokenizer trained from scratch, and (query, document) pairs as BERT inputs.

Why train one: the synthetic world invents its own words (brands, product names), so a
pretrained vocabulary would cut them into meaningless pieces; every world gets its own
vocabulary, learnt from its own text by the tokenizer stage (`relcourse.pretrain.ensure_tokenizer`).
It is BERT's recipe: lowercase, split on whitespace and punctuation, then WordPiece, with the
special tokens [PAD] (id 0), [UNK], [CLS], [SEP], [MASK] first, so ids >= FIRST_REGULAR_ID are words.

A cross-encoder reads one sequence, [CLS] query [SEP] document [SEP], with token_type_ids 0 on
the query part and 1 on the document part. `encode_pairs` builds exactly `max_len` tokens: the
query keeps at most `max_query_len` word pieces and is never cut for the document's sake (the
query *is* the question; a document is long and its start says most), the document fills the
rest, and [PAD] the remainder. Pretraining uses the same function on segment pairs (sentence A,
sentence B), with `max_query_len` as the budget of segment A.

>>> tok = train_tokenizer(["the red kettle boils", "a blue kettle", "the red lamp"] * 20, vocab_size=100)
>>> batch = encode_pairs(tok, ["red kettle boils"], ["the blue lamp is red"], max_query_len=2, max_len=12)
>>> tok.convert_ids_to_tokens(batch["input_ids"][0].tolist())   # "is", unseen, falls into pieces
['[CLS]', 'red', 'kettle', '[SEP]', 'the', 'blue', 'lamp', 'i', '##s', 'red', '[SEP]', '[PAD]']
>>> batch["token_type_ids"][0].tolist(), batch["attention_mask"][0].tolist()
([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0])
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .store import atomic_dir, write_json_atomic

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")   # ids 0..4, in this order
FIRST_REGULAR_ID = len(SPECIAL_TOKENS)
INFO_FILE = "relcourse_tokenizer.json"
BUILD_HINT = "the tokenizer stage builds it: python -m relcourse run tokenizer --profile P (run pretrain does too)"


class TokenizerError(ValueError):
    """A saved tokenizer is missing or belongs to another corpus; the message says how to rebuild it."""


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer learnt from `texts`, with `vocab_size` tokens at most."""
    if vocab_size <= FIRST_REGULAR_ID:
        raise ValueError(f"vocab_size={vocab_size} leaves no room for words after the "
                         f"{FIRST_REGULAR_ID} special tokens; use a few hundred or more")
    core = Tokenizer(models.WordPiece(wordpiece_vocab(texts, vocab_size), unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    # The template is what `tokenizer(query, document)` produces; `encode_pairs` builds the same
    # layout itself, to control truncation.
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, core.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
        # transformers' default leaves token_type_ids out; BERT needs them to tell query from document.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def wordpiece_vocab(texts: Iterable[str], vocab_size: int) -> dict[str, int]:
    """The WordPiece vocabulary: special tokens, then each piece a BPE trainer learns, both as a
    word start ("kettle") and as a continuation ("##kettle").

    Why not `tokenizers`' own WordPieceTrainer: it is not deterministic (huggingface/tokenizers
    issue #1794): the "##" pieces get their ids in hash-map order, and ids break ties between
    equally frequent merges, so one corpus can give two vocabularies, and one seed two models.
    Its BPE trainer without a continuation prefix sorts its alphabet and is deterministic; every
    piece it learns can start a word or continue one, so each goes in twice.
    """
    core = Tokenizer(models.BPE(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    pieces_wanted = FIRST_REGULAR_ID + (vocab_size - FIRST_REGULAR_ID) // 2
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=pieces_wanted, special_tokens=list(SPECIAL_TOKENS),
                                                        show_progress=False))
    learnt = sorted(core.get_vocab().items(), key=lambda item: item[1])
    pieces = [piece for piece, _ in learnt if piece not in SPECIAL_TOKENS]
    tokens = [*SPECIAL_TOKENS, *pieces, *(f"##{piece}" for piece in pieces)]
    return {token: i for i, token in enumerate(tokens)}


def corpus_fingerprint(texts: Iterable[str]) -> str:
    """A short, stable hash of the texts (in order), to tell which corpus a tokenizer was built from."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")   # a separator, so ["ab", "c"] and ["a", "bc"] differ
    return digest.hexdigest()[:16]


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path, corpus_fingerprint: str) -> None:
    """Write the tokenizer (transformers' files) and which corpus it came from; the folder
    appears only complete."""
    with atomic_dir(Path(directory)) as tmp:
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / INFO_FILE, {"vocab_size": len(tokenizer), "corpus_fingerprint": corpus_fingerprint})


def load_tokenizer(directory: str | Path, corpus_fingerprint: str | None = None) -> PreTrainedTokenizerFast:
    """A tokenizer saved by `save_tokenizer`; with `corpus_fingerprint`, check it was built from that corpus."""
    directory = Path(directory)
    info_path = directory / INFO_FILE
    if not (info_path.is_file() and (directory / "tokenizer.json").is_file()):
        raise TokenizerError(f"no saved tokenizer in {directory} (tokenizer.json or {INFO_FILE} is missing); "
                             f"{BUILD_HINT}")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if corpus_fingerprint is not None and info["corpus_fingerprint"] != corpus_fingerprint:
        raise TokenizerError(f"the tokenizer in {directory} was built for another corpus: fingerprint "
                             f"{info['corpus_fingerprint']}, expected {corpus_fingerprint}; "
                             f"delete {directory} and rebuild it ({BUILD_HINT})")
    return PreTrainedTokenizerFast.from_pretrained(directory)


def _pieces(tokenizer, texts: list[str], max_pieces: int) -> tuple[np.ndarray, np.ndarray]:
    """Word-piece ids of each text, cut to max_pieces and right-padded: (ids (n, max_pieces), lengths (n,)).

    Through the Rust tokenizer itself (a copy that truncates), not transformers' __call__, whose
    padding and conversion to arrays run row by row in Python: 2.4x faster on 65k pairs, and
    most of what is left runs in Rust's threads (the same ids: tests/test_tokenizer.py)."""
    if not texts:   # the Rust tokenizer rejects an empty batch
        return np.zeros((0, max_pieces), dtype=np.int64), np.zeros(0, dtype=np.int64)
    pieces = [e.ids for e in _truncating(tokenizer, max_pieces).encode_batch(texts, add_special_tokens=False)]
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    ids = np.full((len(pieces), max_pieces), tokenizer.pad_token_id, dtype=np.int64)
    ids[np.arange(max_pieces) < lengths[:, None]] = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int64,
                                                                count=int(lengths.sum()))
    return ids, lengths


@functools.lru_cache(maxsize=8)
def _truncating(tokenizer, max_pieces: int) -> Tokenizer:
    """A copy of `tokenizer`'s Rust tokenizer that cuts at max_pieces and never pads (built once
    per tokenizer and length: a copy of a 16k vocabulary takes ~10 ms)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_pieces)
    return backend


def shared_tokens(input_ids: torch.Tensor, token_type_ids: torch.Tensor, regular: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the regular tokens whose id also occurs among the regular tokens of the other
    segment (query vs document). These are where query and document match word for word.

    >>> ids = torch.tensor([[2, 7, 8, 3, 9, 7, 3]])            # [CLS] a b [SEP] c a [SEP]
    >>> types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    >>> shared_tokens(ids, types, ids > 4).int().tolist()
    [[0, 1, 0, 0, 0, 1, 0]]
    """
    segment = token_type_ids.clamp(max=1)                     # exact-match type 2 is document too
    same_id = input_ids[:, :, None] == input_ids[:, None, :]
    other_segment = (segment[:, :, None] != segment[:, None, :]) & regular[:, None, :]
    return (same_id & other_segment).any(-1) & regular


def encode_pairs(tokenizer, queries: list[str], docs: list[str], max_query_len: int,
                 max_len: int, exact_match: bool = False) -> dict[str, torch.Tensor]:
    """[CLS] query [SEP] document [SEP] [PAD]..., each (n, max_len) int64: input_ids,
    token_type_ids (0 query, 1 document) and attention_mask (0 on [PAD]).

    The query keeps its first `max_query_len` word pieces; the document its first
    max_len - 3 - (query length). For pretraining, queries/docs are segments A/B.
    With `exact_match`, document tokens that also occur in the query get token type 2: the
    model is told where the words match instead of having to find out (an arm of the course)."""
    if len(queries) != len(docs):
        raise ValueError(f"{len(queries)} queries but {len(docs)} documents: give one document per query")
    if not (0 < max_query_len and max_query_len + 3 < max_len):
        raise ValueError(f"max_query_len={max_query_len} and max_len={max_len} leave no room for the document: "
                         "need 0 < max_query_len and max_query_len + 3 ([CLS] and two [SEP]) < max_len")
    n = len(queries)
    # Two batch calls to the Rust tokenizer; the layout is then assembled with array arithmetic.
    query_ids, query_len = _pieces(tokenizer, list(queries), max_query_len)
    doc_ids, doc_len = _pieces(tokenizer, list(docs), max_len - 3)
    doc_len = np.minimum(doc_len, max_len - 3 - query_len)
    pos = np.arange(max_len)[None, :]
    q_end, d_start = query_len[:, None] + 1, query_len[:, None] + 2   # q_end: the first [SEP]
    d_end = d_start + doc_len[:, None]                                # the last [SEP]
    in_query, in_doc = (pos >= 1) & (pos < q_end), (pos >= d_start) & (pos < d_end)
    from_query = np.take_along_axis(query_ids, np.clip(pos - 1, 0, max_query_len - 1), 1)
    from_doc = np.take_along_axis(doc_ids, np.clip(pos - d_start, 0, max_len - 4), 1)
    input_ids = np.full((n, max_len), tokenizer.pad_token_id, dtype=np.int64)
    input_ids[:, 0] = tokenizer.cls_token_id
    input_ids = np.where(in_query, from_query, input_ids)
    input_ids = np.where((pos == q_end) | (pos == d_end), tokenizer.sep_token_id, input_ids)
    input_ids = np.where(in_doc, from_doc, input_ids)
    input_ids, token_types = torch.from_numpy(input_ids), torch.from_numpy((in_doc | (pos == d_end)).astype(np.int64))
    if exact_match:
        regular = torch.from_numpy(in_query | in_doc)
        token_types = token_types + (shared_tokens(input_ids, token_types, regular) & torch.from_numpy(in_doc)).long()
    return {"input_ids": input_ids, "token_type_ids": token_types,
            "attention_mask": torch.from_numpy((pos <= d_end).astype(np.int64))}


def special_tokens_mask(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """True where a token is special ([CLS], [SEP], [PAD], ...): never masked, never predicted."""
    return torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids, dtype=input_ids.dtype,
                                                     device=input_ids.device))
