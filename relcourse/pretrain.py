"""Stage 1: a tokenizer and a BERT trained from scratch on the corpora (MLM + SOP or NSP).

Two cached stages, each a folder under runs/<profile>/:
- `tokenizer`: WordPiece trained once per world on all its text (both corpora, cleaned, and the
  training queries' documents). Every pretraining arm shares it, so a comparison of corpora
  (P4, P5) changes what the model reads, not how words are cut.
- `pretrain`: the model, named by the profile's pretraining settings *and* the `PretrainOptions`
  of one experimental arm. The claims P1–P6 are arms that differ from the recipe in one option.

Equal compute in every comparison: every arm runs the profile's `pretrain.steps` optimizer steps
of `pretrain.batch_size` segment pairs. P3 (`data_share`) keeps the steps and shrinks the pool of
distinct samples, so the small pool is seen for more epochs. P5's DAPT → TAPT arm spends the last
`tapt_share` of the same steps on the task's own text instead of adding steps.

>>> PretrainOptions(replacement="all_mask").changes()      # what an arm changes, for its label
{'replacement': 'all_mask'}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import corpora
from .config import Profile
from .data import PairSet, pointwise_rows
from .masking import mask_tokens
from .models import RelevanceBert, load_model, save_model
from .store import cached_stage, ensure_data, run_hash
from .tokenizer import corpus_fingerprint, encode_pairs, load_tokenizer, save_tokenizer, special_tokens_mask, train_tokenizer
from .train import TrainConfig, read_log, train

TOKENIZER_ALGORITHM = "bpe-pieces-as-wordpiece-v1"   # bump when train_tokenizer changes what it learns
HELD_OUT = 512            # segment pairs of domain text kept out of training, to measure MLM and SOP
MODEL_DIR = "model"


@dataclass(frozen=True)
class PretrainOptions:
    """One arm of the pretraining experiments; the defaults are the course's recipe."""
    replacement: str = "80/10/10"       # P1: what a selected token becomes; or "all_mask"
    sentence_task: str | None = None    # P2: "sop" or "nsp"; None = the profile's pretrain.sentence_task
    data_share: float = 1.0             # P3: share of the corpus's segment pairs used (same steps)
    cleaned: bool = True                # P4: dedup and symbol-spam removal
    corpus: str = "general+domain"      # P5: "general", "general+domain" or "domain"
    tapt_share: float = 0.0             # P5: last share of the steps on the task's own text (TAPT)
    span: bool = False                  # P6: mask whole spans instead of single tokens
    static: bool = False                # P6: masks drawn once per sample instead of every step

    def __post_init__(self):
        if not 0 < self.data_share <= 1:
            raise ValueError(f"data_share={self.data_share} must be in (0, 1]: the share of the pairs kept")
        if not 0 <= self.tapt_share < 1:
            raise ValueError(f"tapt_share={self.tapt_share} must be in [0, 1): the share of steps on task text")

    def changes(self) -> dict:
        """The options that differ from the recipe."""
        default = PretrainOptions()
        return {k: v for k, v in dataclasses.asdict(self).items() if getattr(default, k) != v}


# --- the tokenizer stage ---------------------------------------------------------------------

def tokenizer_texts(data_dir: Path) -> list[str]:
    return corpora.pretraining_texts(data_dir, "general+domain", cleaned=True) + corpora.task_texts(data_dir)


def ensure_tokenizer(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The tokenizer of this world and profile: trained once, then reused by every later stage."""
    data_dir = ensure_data(profile, seed, progress)

    def build(out: Path) -> dict:
        texts = tokenizer_texts(data_dir)
        tokenizer = train_tokenizer(texts, profile.tokenizer.vocab_size)
        save_tokenizer(tokenizer, out / "tokenizer", corpus_fingerprint(texts))
        return {"vocab_size": len(tokenizer), "texts": len(texts)}

    config = {"vocab_size": profile.tokenizer.vocab_size, "algorithm": TOKENIZER_ALGORITHM}
    return cached_stage(profile, "tokenizer", seed, config, build, upstream={"data": run_hash(data_dir)})


def tokenizer_of(profile: Profile, seed: int, progress: bool = True):
    return load_tokenizer(ensure_tokenizer(profile, seed, progress) / "tokenizer")


# --- the pretraining stage -------------------------------------------------------------------

def segment_pairs(texts: list[str], tokenizer, profile: Profile, task: str, seed: int) -> PairSet:
    """Paragraphs cut into two segments (swapped or replaced for the sentence task), tokenised;
    `targets` holds the sentence-task label of each pair."""
    first, second, labels = corpora.sentence_pairs(texts, task, seed)
    max_len = profile.tokenizer.max_len
    inputs = encode_pairs(tokenizer, first, second, max_query_len=max_len // 2, max_len=max_len)
    ids = np.arange(len(labels))
    return PairSet(ids, ids, labels.astype(np.float64), inputs)


def masked(batch: dict, tokenizer, profile: Profile, options: PretrainOptions, generator: torch.Generator) -> tuple:
    special = special_tokens_mask(batch["input_ids"], tokenizer)
    return mask_tokens(batch["input_ids"], special, tokenizer.mask_token_id, len(tokenizer),
                       profile.pretrain.mask_prob, options.replacement, options.span, generator)


def pretraining_data(data_dir: Path, tokenizer, profile: Profile, options: PretrainOptions, seed: int, task: str):
    """(training pairs, TAPT pairs or None, held-out pairs). The held-out pairs are domain text
    of a fixed seed, the same for every arm, so MLM and SOP accuracies compare across arms."""
    held_texts = corpora.pretraining_texts(data_dir, "domain", cleaned=True)[-HELD_OUT:]
    held_out = segment_pairs(held_texts, tokenizer, profile, task, seed=10_000 + seed)
    # Compared as cleaning sees them, so a raw arm's spam-decorated copy of a held-out line stays out too.
    held = {_normalised(t) for t in held_texts}
    texts = [t for t in corpora.pretraining_texts(data_dir, options.corpus, options.cleaned) if _normalised(t) not in held]
    keep = np.random.default_rng(seed).permutation(len(texts))[:max(1, int(len(texts) * options.data_share))]
    train_pairs = segment_pairs([texts[i] for i in sorted(keep)], tokenizer, profile, task, seed)
    tapt = segment_pairs(corpora.task_texts(data_dir), tokenizer, profile, task, seed) if options.tapt_share else None
    return train_pairs, tapt, held_out


def _normalised(text: str) -> str:
    return corpora.strip_symbols(text).lower()


def run_pretrain(profile: Profile, seed: int, options: PretrainOptions = PretrainOptions(),
                 progress: bool = True) -> Path:
    """The pretraining run of this profile, seed and arm: built once, then reused."""
    data_dir = ensure_data(profile, seed, progress)
    tok_dir = ensure_tokenizer(profile, seed, progress)
    cfg = profile.pretrain
    task = options.sentence_task or cfg.sentence_task
    if task not in ("sop", "nsp"):
        raise ValueError(f"sentence_task={task!r} is unknown; use 'sop' or 'nsp'")

    def build(out: Path) -> dict:
        tokenizer = load_tokenizer(tok_dir / "tokenizer")
        train_pairs, tapt, held_out = pretraining_data(data_dir, tokenizer, profile, options, seed, task)
        tapt_from = int(cfg.steps * (1 - options.tapt_share))
        static = masked(train_pairs.inputs, tokenizer, profile, options, torch.Generator().manual_seed(seed)) \
            if options.static else None
        torch.manual_seed(seed)
        model = RelevanceBert(cfg.model, len(tokenizer), profile.tokenizer.max_len)

        def batch_at(step: int) -> dict:
            pairs = tapt if tapt is not None and step >= tapt_from else train_pairs
            rows = pointwise_rows(len(pairs), step, cfg.batch_size, seed)
            batch = pairs.rows(rows)
            if static is not None and pairs is train_pairs:
                batch["input_ids"], batch["mlm_labels"] = static[0][rows], static[1][rows]
            else:   # dynamic masking: a fresh draw for every step, reproducible from the step
                batch["input_ids"], batch["mlm_labels"] = masked(
                    batch, tokenizer, profile, options, torch.Generator().manual_seed(seed * 1_000_003 + step))
            return batch

        def loss_fn(m: RelevanceBert, batch: dict) -> dict:
            out = m(batch, batch["mlm_labels"], batch["targets"].long(), relevance=False)
            return {"loss": cfg.mlm_weight * out["mlm"] + out["sentence"], **out}

        def evaluate(m: RelevanceBert) -> dict:
            return held_out_accuracy(m, held_out, tokenizer, profile, options)

        tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, device=profile.device,
                           threads=profile.threads, seed=seed, checkpoint_every=max(cfg.steps // 5, 1))
        train(model, batch_at, loss_fn, tcfg, out / "train", progress=progress)
        save_model(model, out / MODEL_DIR)
        seen = cfg.steps * cfg.batch_size
        return {**evaluate(model), "pairs": len(train_pairs), "epochs": round(seen / len(train_pairs), 2),
                "parameters": model.num_parameters()}

    config = {"pretrain": dataclasses.asdict(cfg), "max_len": profile.tokenizer.max_len,
              "options": dataclasses.asdict(dataclasses.replace(options, sentence_task=task))}
    return cached_stage(profile, "pretrain", seed, config, build,
                        upstream={"data": run_hash(data_dir), "tokenizer": run_hash(tok_dir)}, resumable=True)


@torch.no_grad()
def held_out_accuracy(model: RelevanceBert, held_out: PairSet, tokenizer, profile: Profile,
                      options: PretrainOptions) -> dict:
    """MLM accuracy (on selected tokens) and sentence-task accuracy on the held-out pairs, with
    a fixed single-token 80/10/10 mask so every arm is measured on the same question."""
    model.eval()
    batch = held_out.rows(np.arange(len(held_out)))
    ids, labels = mask_tokens(batch["input_ids"], special_tokens_mask(batch["input_ids"], tokenizer),
                              tokenizer.mask_token_id, len(tokenizer), profile.pretrain.mask_prob,
                              generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in {**batch, "input_ids": ids}.items()}
    out = model(batch, labels.to(device), batch["targets"].long(), relevance=False)
    model.train()
    return {"mlm_accuracy": float(out["mlm_accuracy"]), "sentence_accuracy": float(out["sentence_accuracy"]),
            "mlm_loss": float(out["mlm"])}


def pretrained_model(run_dir: Path) -> RelevanceBert:
    return load_model(Path(run_dir) / MODEL_DIR)


def training_log(run_dir: Path) -> list[dict]:
    return read_log(Path(run_dir) / "train")
