"""Stage 1: a tokenizer and a BERT trained from scratch on the corpora (MLM + SOP or NSP).

Two cached stages, each a folder under runs/<profile>/:
- `tokenizer`: WordPiece trained once per world on all its text (both corpora, cleaned, and the
  training queries' documents). Every pretraining arm shares it, so a comparison of corpora
  (P4, P5) changes what the model reads, not how words are cut.
- `pretrain`: the model, named by the profile's `pretrain` settings (and the input encoding in
  `tokenizer`). The claims P1–P6 are arms that override one of those settings.

Equal compute in every comparison: every arm runs the same optimizer steps of
`pretrain.batch_size` pairs. P3 sizes both of its arms by epochs (`pretrain.epochs`): one pass
over all the corpus's pairs against four passes over a quarter of them (`data_share`): the
same steps, and the "one epoch" arm is exactly one epoch.

TAPT (task-adaptive pretraining, Gururangan et al. 2020): the last `tapt_share` of the same
steps read the task's own text without labels: the (query, document) pairs of the training and
unlabelled queries, laid out exactly as the relevance model will see them, with MLM only. With
`tapt_match_mask` > 0 the masks favour the words the query and the document share: a hidden
"zorvex" in the document is easiest to fill by finding "zorvex" in the query, so the model
learns to look across [SEP] for matching words, which a relevance model needs and which
paragraphs of prose never ask for.

>>> from relcourse.config import load_profile
>>> load_profile("smoke", {"pretrain.replacement": "all_mask"}).pretrain.replacement   # an arm of P1
'all_mask'
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from . import corpora
from .config import PretrainConfig, Profile
from .data import PairSet, encode_compact, make_pairset, pointwise_rows, steps_for_epochs, unlabelled_pairs
from .masking import mask_tokens
from .models import RelevanceBert, load_model, save_model
from .store import cached_stage, ensure_data, run_hash
from .tokenizer import (corpus_fingerprint, load_tokenizer, save_tokenizer, shared_tokens,
                        special_tokens_mask, train_tokenizer)
from .train import TrainConfig, arithmetic_settings, profile_settings, read_log, train

TOKENIZER_ALGORITHM = "bpe-pieces-as-wordpiece-v1"   # bump when train_tokenizer changes what it learns
HELD_OUT = 512            # segment pairs of domain text kept out of training, to measure MLM and SOP
MODEL_DIR = "model"


# --- the tokenizer stage ---------------------------------------------------------------------

def tokenizer_texts(data_dir: Path) -> list[str]:
    return corpora.pretraining_texts(data_dir, "general+domain", cleaned=True) + corpora.task_texts(data_dir)


def tokenizer_settings(profile: Profile) -> dict:
    """The tokenizer stage's cache key: what the vocabulary depends on (not the input layout)."""
    return {"vocab_size": profile.tokenizer.vocab_size, "algorithm": TOKENIZER_ALGORITHM}


def ensure_tokenizer(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The tokenizer of this world and profile: trained once, then reused by every later stage."""
    data_dir = ensure_data(profile, seed, progress)

    def build(out: Path) -> dict:
        texts = tokenizer_texts(data_dir)
        tokenizer = train_tokenizer(texts, profile.tokenizer.vocab_size)
        save_tokenizer(tokenizer, out / "tokenizer", corpus_fingerprint(texts))
        return {"vocab_size": len(tokenizer), "texts": len(texts)}

    return cached_stage(profile, "tokenizer", seed, tokenizer_settings(profile), build,
                        upstream={"data": run_hash(data_dir)})


def tokenizer_of(profile: Profile, seed: int, progress: bool = True):
    return load_tokenizer(ensure_tokenizer(profile, seed, progress) / "tokenizer")


# --- the pretraining stage -------------------------------------------------------------------

def new_model(profile: Profile, vocab_size: int, num_outputs: int = 1) -> RelevanceBert:
    """A randomly initialised BERT of the profile's size, with the profile's input encoding."""
    return RelevanceBert(profile.pretrain.model, vocab_size, profile.tokenizer.max_len, num_outputs,
                         token_types=3 if profile.tokenizer.exact_match else 2)


def segment_pairs(texts: list[str], tokenizer, profile: Profile, task: str, seed: int,
                  products: list[str] = ()) -> PairSet:
    """Paragraphs cut into two segments (swapped or replaced for the sentence task), tokenised;
    `targets` holds the sentence-task label of each pair. Given `products` (NSP with
    pretrain.nsp_negatives "same_product"), a negative comes from a paragraph naming the same one."""
    groups = corpora.product_groups(texts, list(products)) if products else None
    first, second, labels = corpora.sentence_pairs(texts, task, seed, groups)
    tok = profile.tokenizer
    inputs = encode_compact(tokenizer, first, second, max_query_len=tok.max_len // 2, max_len=tok.max_len,
                            exact_match=tok.exact_match)
    ids = np.arange(len(labels))
    return PairSet(ids, ids, labels.astype(np.float64), inputs)


def masked(batch: dict, tokenizer, profile: Profile, generator: torch.Generator, match_share: float = 0.0) -> tuple:
    """(masked input_ids, MLM labels) of a batch under the profile's masking; `match_share` of the
    selections aimed at the words that query and document share (TAPT)."""
    cfg = profile.pretrain
    special = special_tokens_mask(batch["input_ids"], tokenizer)
    focus = shared_tokens(batch["input_ids"], batch["token_type_ids"], ~special) if match_share else None
    return mask_tokens(batch["input_ids"], special, tokenizer.mask_token_id, len(tokenizer), cfg.mask_prob,
                       cfg.replacement, cfg.span and not match_share, generator, focus=focus, focus_share=match_share)


def pretraining_data(data_dir: Path, tokenizer, profile: Profile, seed: int):
    """(training pairs, TAPT pairs or None, held-out pairs). The held-out pairs are domain text
    of a fixed seed, the same for every arm, so MLM and SOP accuracies compare across arms."""
    cfg = profile.pretrain
    same_product = cfg.sentence_task == "nsp" and cfg.nsp_negatives == "same_product"
    products = corpora.product_names(data_dir) if same_product else []
    held_texts = corpora.pretraining_texts(data_dir, "domain", cleaned=True)[-HELD_OUT:]
    held_out = segment_pairs(held_texts, tokenizer, profile, cfg.sentence_task, 10_000 + seed, products)
    # Compared as cleaning sees them, so a raw arm's spam-decorated copy of a held-out line stays out too.
    held = {_normalised(t) for t in held_texts}
    def usable(cleaned: bool) -> list[str]:
        return [t for t in corpora.pretraining_texts(data_dir, cfg.corpus, cleaned) if _normalised(t) not in held]

    texts = usable(cfg.cleaned)
    volume = len(usable(True)) if cfg.cleaned_volume else len(texts)   # P4 at equal volume
    keep = np.random.default_rng(seed).permutation(len(texts))[:max(1, int(min(volume, len(texts)) * cfg.data_share))]
    train_pairs = segment_pairs([texts[i] for i in sorted(keep)], tokenizer, profile, cfg.sentence_task, seed,
                                products)
    tapt = None
    if cfg.tapt_share:
        doc_ids = unlabelled_pairs(data_dir)
        tapt = make_pairset(data_dir, tokenizer, doc_ids, np.zeros(len(doc_ids)), profile.tokenizer)
    return train_pairs, tapt, held_out


def _normalised(text: str) -> str:
    return corpora.strip_symbols(text).lower()


def step_plan(cfg: PretrainConfig, n_pairs: int) -> tuple[int, int]:
    """(the first TAPT step, the total steps). With cfg.epochs the corpus phase is sized to that
    many passes over its `n_pairs` segment pairs, and TAPT keeps its share of the whole.

    >>> from relcourse.config import PretrainConfig
    >>> step_plan(PretrainConfig(steps=100, tapt_share=0.3), 5_000)
    (70, 100)
    >>> step_plan(PretrainConfig(epochs=1.0, batch_size=32, tapt_share=0.3), 5_000)   # 157 corpus steps + 67 TAPT
    (157, 224)
    """
    if not cfg.epochs:
        return int(cfg.steps * (1 - cfg.tapt_share)), cfg.steps
    corpus_steps = steps_for_epochs(cfg.epochs, n_pairs, cfg.batch_size)
    return corpus_steps, corpus_steps + round(corpus_steps * cfg.tapt_share / (1 - cfg.tapt_share))


def pretrain_settings(profile: Profile) -> dict:
    """The pretraining stage's cache key: every pretraining setting, the input encoding and the precision."""
    pretrain = dataclasses.asdict(profile.pretrain)
    if pretrain["sentence_task"] != "nsp":   # SOP draws no negatives: one run, whatever this says
        del pretrain["nsp_negatives"]
    return {"pretrain": pretrain, "tokenizer": dataclasses.asdict(profile.tokenizer), **arithmetic_settings(profile)}


def run_pretrain(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The pretraining run of this profile and seed: built once, then reused."""
    data_dir = ensure_data(profile, seed, progress)
    tok_dir = ensure_tokenizer(profile, seed, progress)
    cfg = profile.pretrain

    def build(out: Path) -> dict:
        tokenizer = load_tokenizer(tok_dir / "tokenizer")
        train_pairs, tapt, held_out = pretraining_data(data_dir, tokenizer, profile, seed)
        tapt_from, steps = step_plan(cfg, len(train_pairs))
        static = masked(train_pairs.rows(np.arange(len(train_pairs))), tokenizer, profile,
                        torch.Generator().manual_seed(seed)) \
            if cfg.static else None
        torch.manual_seed(seed)
        model = new_model(profile, len(tokenizer))

        def batch_at(step: int) -> dict:
            in_tapt = tapt is not None and step >= tapt_from
            pairs = tapt if in_tapt else train_pairs
            rows = pointwise_rows(len(pairs), step, cfg.batch_size, seed)
            batch = pairs.rows(rows)
            batch["tapt"] = in_tapt
            if static is not None and not in_tapt:
                batch["input_ids"], batch["mlm_labels"] = static[0][rows], static[1][rows]
            else:   # dynamic masking: a fresh draw for every step, reproducible from the step
                batch["input_ids"], batch["mlm_labels"] = masked(
                    batch, tokenizer, profile, torch.Generator().manual_seed(seed * 1_000_003 + step),
                    cfg.tapt_match_mask if in_tapt else 0.0)
            return batch

        def loss_fn(m: RelevanceBert, batch: dict) -> dict:
            if batch["tapt"]:   # the task's pairs have no sentence task: MLM only
                out = m(batch, batch["mlm_labels"], relevance=False)
                return {"loss": out["mlm"], **out}
            out = m(batch, batch["mlm_labels"], batch["targets"].long(), relevance=False)
            return {"loss": cfg.mlm_weight * out["mlm"] + out["sentence"], **out}

        tcfg = TrainConfig(steps=steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps, grad_accum=cfg.grad_accum,
                           checkpoint_every=max(steps // 5, 1), **profile_settings(profile, seed))
        train(model, batch_at, loss_fn, tcfg, out / "train", progress=progress)
        save_model(model, out / MODEL_DIR)
        seen = tapt_from * cfg.batch_size
        return {**held_out_accuracy(model, held_out, tokenizer, profile), "pairs": len(train_pairs),
                "tapt_pairs": len(tapt) if tapt is not None else 0, "epochs": round(seen / len(train_pairs), 2),
                "steps": steps, "parameters": model.num_parameters()}

    return cached_stage(profile, "pretrain", seed, pretrain_settings(profile), build,
                        upstream={"data": run_hash(data_dir), "tokenizer": run_hash(tok_dir)}, resumable=True)


@torch.no_grad()
def held_out_accuracy(model: RelevanceBert, held_out: PairSet, tokenizer, profile: Profile) -> dict:
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
