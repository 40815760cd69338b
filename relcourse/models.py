"""One BERT with three small heads, so a checkpoint flows from stage to stage unchanged.

    input_ids ─► BertModel (transformers, built from scratch) ─► hidden states (B, L, H)
                   ├─ mlm head        every selected position ─► vocabulary logits   (stages 1, 2)
                   ├─ sentence head   [CLS] ─► 2 logits: swapped/random or not        (stage 1)
                   └─ relevance head  [CLS] ─► 1 logit (or 4 for the 4-class anti-pattern)
                                                                                 (stages 2, 3, 4)

Why one class and not a model per stage: the stages hand each other the *same* encoder. Post-
pretraining keeps the MLM head (claim T3: a little MLM keeps the language knowledge), fine-tuning
keeps the relevance head that post-pretraining trained, and the student of distillation is the
same class at a smaller size. A state dict saved by one stage loads into the next as it is.

The MLM loss is computed on the selected positions only: their hidden states are gathered
before the vocabulary projection, the costliest matrix product of a small model (L x H x V),
so 85% of that work is skipped. Labels use -100 for "not selected", as in transformers.

>>> from relcourse.config import ModelConfig
>>> model = RelevanceBert(ModelConfig(layers=1, hidden=32, heads=2, intermediate=64), vocab_size=100, max_len=16)
>>> batch = {"input_ids": torch.randint(5, 100, (3, 16)), "token_type_ids": torch.zeros(3, 16, dtype=torch.long),
...          "attention_mask": torch.ones(3, 16, dtype=torch.long)}
>>> model.relevance(batch).shape           # one logit per (query, document) pair
torch.Size([3])
>>> [tuple(h.shape) for h in model.layer_states(batch)]   # the embeddings' output, then the one layer's
[(3, 16, 32), (3, 16, 32)]
>>> labels = torch.full((3, 16), -100); labels[:, 3] = 7
>>> out = model(batch, mlm_labels=labels, sentence_labels=torch.tensor([0, 1, 0]))
>>> sorted(out)
['mlm', 'mlm_accuracy', 'relevance', 'sentence', 'sentence_accuracy']
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from .config import ModelConfig
from .store import atomic_dir, write_json_atomic

WEIGHTS, CONFIG = "model.pt", "model.json"


class ModelError(ValueError):
    """A saved model is missing or does not fit what the caller expects."""


def bert_config(cfg: ModelConfig, vocab_size: int, max_len: int, token_types: int = 2) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                      num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate,
                      max_position_embeddings=max_len, type_vocab_size=token_types, pad_token_id=0)


class RelevanceBert(nn.Module):
    """`token_types` is 2 (query, document), or 3 with the exact-match input (a document token
    that also occurs in the query; see relcourse.tokenizer.encode_pairs)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, max_len: int, num_outputs: int = 1, token_types: int = 2):
        super().__init__()
        if num_outputs not in (1, 4):
            raise ModelError(f"num_outputs={num_outputs}: use 1 (a relevance score) or 4 (one logit per tier)")
        self.cfg, self.vocab_size, self.max_len, self.num_outputs = cfg, vocab_size, max_len, num_outputs
        self.token_types = token_types
        bert = bert_config(cfg, vocab_size, max_len, token_types)
        self.encoder = BertModel(bert, add_pooling_layer=False)
        # The MLM head of BERT: a transform, then a projection tied to the input embeddings
        # (the same matrix reads tokens in and writes them out; fewer parameters to learn).
        self.mlm_transform = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
                                           nn.LayerNorm(cfg.hidden, eps=bert.layer_norm_eps))
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.sentence_head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 2))
        self.relevance_head = nn.Sequential(nn.Dropout(bert.hidden_dropout_prob), nn.Linear(cfg.hidden, num_outputs))

    def encode(self, batch: dict, every_layer: bool = False):
        """The encoder's output; with every_layer, also the output of the embeddings and of each layer."""
        length = batch["input_ids"].shape[1]
        if length > self.max_len:
            raise ModelError(f"inputs of {length} tokens, but the model has {self.max_len} positions: encode "
                             f"with max_len <= {self.max_len}, or pretrain a model with tokenizer.max_len={length}")
        return self.encoder(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                            attention_mask=batch["attention_mask"], output_hidden_states=every_layer)

    def hidden_states(self, batch: dict) -> torch.Tensor:
        return self.encode(batch).last_hidden_state

    def layer_states(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """layers + 1 tensors (B, L, H): the embeddings' output, then each layer's; the last is
        hidden_states(batch). Layer-wise distillation (relcourse.losses.hidden_mse) reads them."""
        return self.encode(batch, every_layer=True).hidden_states

    def relevance(self, batch: dict, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) logits, or (B, 4) for a 4-class model, from the [CLS] vector."""
        hidden = self.hidden_states(batch) if hidden is None else hidden
        logits = self.relevance_head(hidden[:, 0])
        return logits.squeeze(-1) if self.num_outputs == 1 else logits

    def mlm_loss(self, hidden: torch.Tensor, mlm_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy over the selected positions (mlm_labels != -100) only."""
        selected = mlm_labels != -100
        vectors = self.mlm_transform(hidden[selected])                       # (n_selected, H)
        logits = vectors @ self.encoder.embeddings.word_embeddings.weight.T + self.mlm_bias
        targets = mlm_labels[selected]
        return F.cross_entropy(logits, targets), (logits.argmax(-1) == targets).float().mean()

    def forward(self, batch: dict, mlm_labels: torch.Tensor | None = None,
                sentence_labels: torch.Tensor | None = None, relevance: bool = True) -> dict[str, torch.Tensor]:
        """One pass of the encoder, read by the heads a stage asks for:
        relevance logits, MLM loss and accuracy (given mlm_labels), sentence-task loss and
        accuracy (given sentence_labels). Training calls `model(batch, ...)`; under several
        processes relcourse.train wraps the whole loss, not the model, to average gradients."""
        hidden = self.hidden_states(batch)
        out = {"relevance": self.relevance(batch, hidden)} if relevance else {}
        if mlm_labels is not None:
            out["mlm"], out["mlm_accuracy"] = self.mlm_loss(hidden, mlm_labels)
        if sentence_labels is not None:
            logits = self.sentence_head(hidden[:, 0])
            out["sentence"] = F.cross_entropy(logits, sentence_labels)
            out["sentence_accuracy"] = (logits.argmax(-1) == sentence_labels).float().mean()
        return out

    def num_parameters(self, embeddings: bool = True) -> int:
        skip = {id(p) for p in self.encoder.embeddings.parameters()} if not embeddings else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    def describe(self) -> dict:
        return {"model": dataclasses.asdict(self.cfg), "vocab_size": self.vocab_size,
                "max_len": self.max_len, "num_outputs": self.num_outputs, "token_types": self.token_types}


def save_model(model: RelevanceBert, directory: str | Path) -> None:
    """Weights and shape, written atomically: a reader finds the old model or the new one."""
    with atomic_dir(Path(directory)) as tmp:
        torch.save(model.state_dict(), tmp / WEIGHTS)
        write_json_atomic(tmp / CONFIG, model.describe())


def load_model(directory: str | Path, num_outputs: int | None = None, expect: ModelConfig | None = None,
               strict_heads: bool = False) -> RelevanceBert:
    """The saved model; `num_outputs` different from the saved one starts a fresh relevance head
    (a 4-class model from a 1-logit checkpoint). `expect` checks the saved size."""
    directory = Path(directory)
    if not (directory / WEIGHTS).is_file() or not (directory / CONFIG).is_file():
        raise ModelError(f"no saved model in {directory} (expected {WEIGHTS} and {CONFIG}); build the stage "
                         "that writes it first (see the notebook of that stage or `python -m relcourse run`)")
    saved = json.loads((directory / CONFIG).read_text())
    cfg = ModelConfig(**saved["model"])
    if expect is not None and expect != cfg:
        raise ModelError(f"the model in {directory} has {cfg}, but this run expects {expect}: "
                         "it was trained with another config; rebuild it with this profile")
    model = RelevanceBert(cfg, saved["vocab_size"], saved["max_len"], num_outputs or saved["num_outputs"],
                          saved.get("token_types", 2))
    state = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
    if model.num_outputs != saved["num_outputs"] and not strict_heads:
        state = {k: v for k, v in state.items() if not k.startswith("relevance_head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("relevance_head.") for k in missing):
        raise ModelError(f"{directory} does not fit a RelevanceBert: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model
