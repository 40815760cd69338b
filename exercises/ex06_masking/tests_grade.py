"""Hidden checks of exercise 6 (80/10/10 masking): the instructor's copy only.

Masking is random, so the checks compare statistics over some 30 000 tokens. The answer key is an
independent implementation: transformers' DataCollatorForLanguageModeling (the masking BERT's own
training scripts use), run here on the same batches with a WordLevel tokenizer of the same
vocabulary. Two shares agree when they differ by less than Z standard errors of a difference of
two binomial proportions; with fixed seeds every result is reproducible, and Z = 5 makes a right
answer fail with a chance below one in a million per comparison, while a wrong split (e.g. 80/20,
or 10% [MASK]) is off by 10 to 70 standard errors. Properties that hold for every draw (specials
untouched, labels only where selected, random words from the regular vocabulary) are checked
exactly. The settings and the public example are in tests_public.py.
"""
from __future__ import annotations

import functools
import math

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

from exercises._checks import check
from exercises.ex06_masking.tests_public import FIRST_REGULAR_ID, MASK_ID, masks_of

PAD, CLS, SEP = 0, 2, 3
VOCAB = 1000
Z = 5.0


def make_batch(seed: int, rows: int = 600, length: int = 96, vocab_size: int = VOCAB):
    """Query-document rows [CLS] query [SEP] document [SEP] [PAD]...: (ids, special mask)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_REGULAR_ID, vocab_size, (rows, length), generator=g)
    ends = torch.randint(8, length, (rows,), generator=g)                 # the last [SEP]
    middle = (ends * torch.rand(rows, generator=g) * 0.5).long().clamp(min=2)
    pos = torch.arange(length)[None, :]
    ids = torch.where(pos == 0, CLS, ids)
    ids = torch.where((pos == middle[:, None]) | (pos == ends[:, None]), SEP, ids)
    ids = torch.where(pos > ends[:, None], PAD, ids)
    return ids, ids < FIRST_REGULAR_ID


@functools.lru_cache(maxsize=None)
def collator(vocab_size: int, mask_prob: float) -> DataCollatorForLanguageModeling:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab_size - FIRST_REGULAR_ID)]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]")),
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mask_prob)


def oracle_masks(ids, special, mask_prob, seed, vocab_size=VOCAB):
    """transformers' masking of the same batch: (masked, labels)."""
    c = collator(vocab_size, mask_prob)
    c.generator = torch.Generator().manual_seed(seed)
    return c.torch_mask_tokens(ids.clone(), special.clone())


def counts(ids, special, masked, labels) -> dict:
    """How many regular tokens, how many selected, and what the selected ones became."""
    selected = (labels != -100) & ~special
    now, before = masked[selected], ids[selected]
    to_mask = int((now == MASK_ID).sum())
    unchanged = int((now == before).sum())
    return {"regular": int((~special).sum()), "selected": int(selected.sum()), "mask": to_mask,
            "unchanged": unchanged, "random": int(selected.sum()) - to_mask - unchanged}


def agree(k1: int, n1: int, k2: int, n2: int) -> tuple[bool, float]:
    """Do k1/n1 and k2/n2 agree within Z standard errors? (and the tolerance, as a share)."""
    pooled = (k1 + k2) / (n1 + n2)
    tol = Z * math.sqrt(max(pooled * (1 - pooled), 1e-6) * (1 / n1 + 1 / n2)) + 1e-9
    return abs(k1 / n1 - k2 / n2) <= tol, tol


@check(2)
def check_specials_and_padding_never_selected(sub):
    """[CLS], [SEP] and [PAD] (special_mask) are never selected, never changed, even at mask_prob 0.9."""
    ids, special = make_batch(1, rows=200)
    masked, labels, what, _ = masks_of(sub, ids, special, VOCAB, 0.9, seed=3)
    for name, bad in (("have a label", special & (labels != -100)), ("were changed", special & (masked != ids))):
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise AssertionError(
                f"mask_tokens(a batch of 200 rows, special_mask, {MASK_ID}, {VOCAB}, 0.9, seed=3): {int(bad.sum())} "
                f"special tokens {name}, e.g. row {row}, position {col} (id {int(ids[row, col])} became "
                f"{int(masked[row, col])}, label {int(labels[row, col])}) — special_mask marks [CLS], [SEP] and [PAD]: "
                "never select them (label -100) and leave them as they are; the model must not learn to predict "
                "padding or the sentence markers")


@check(2)
def check_selection_rate(sub):
    """About mask_prob of the regular tokens are selected (labels set), as transformers' collator does; 0.15 and 0.3."""
    for seed, mask_prob in ((11, 0.15), (12, 0.3)):
        ids, special = make_batch(seed)
        got = counts(ids, special, *masks_of(sub, ids, special, VOCAB, mask_prob, seed=seed)[:2])
        want = counts(ids, special, *oracle_masks(ids, special, mask_prob, seed))
        ok, tol = agree(got["selected"], got["regular"], want["selected"], want["regular"])
        if not ok:
            share, ref = got["selected"] / got["regular"], want["selected"] / want["regular"]
            hint = ("a label must be -100 wherever the token was not selected: with labels everywhere the loss "
                    "trains the model to copy the tokens it can see" if share > 0.9 else
                    "select each regular token with probability mask_prob, independently")
            raise AssertionError(
                f"mask_tokens(a batch of {ids.shape[0]} rows, ..., mask_prob={mask_prob}, seed={seed}) selected "
                f"(set a label at) {got['selected']} of {got['regular']} regular tokens, a share of {share:.4f}; "
                f"transformers' DataCollatorForLanguageModeling selects {ref:.4f}, expected within ±{tol:.4f} — {hint}")


@check(1)
def check_unselected_unchanged(sub):
    """Tokens that are not selected (label -100) reach the model as they are; input_ids itself is not modified."""
    ids, special = make_batch(21, rows=300)
    masked, labels, what, mutated = masks_of(sub, ids, special, VOCAB, 0.15, seed=21, watch=True)
    changed = (labels == -100) & (masked != ids)
    if changed.any():
        raise AssertionError(
            f"mask_tokens(a batch of 300 rows, ..., 0.15, seed=21) changed {int(changed.sum())} tokens that it did not "
            f"select (label -100), of {int((labels == -100).sum())} — the 80/10/10 split applies to the selected tokens "
            "only: [MASK], random word or unchanged is decided for them, every other token stays as it is")
    if 0 in mutated:
        raise AssertionError("mask_tokens changed input_ids in place — the caller's batch (and the labels' "
                             "original ids) would be lost; build new tensors (torch.where, or .clone() first)")


@check(2)
def check_80_10_10_of_the_selected(sub):
    """Of the selected tokens about 80% become [MASK], 10% a random word, 10% stay, as transformers' collator."""
    got, want = {}, {}
    for seed, mask_prob in ((31, 0.15), (32, 0.3)):
        ids, special = make_batch(seed)
        for total, (masked, labels) in ((got, masks_of(sub, ids, special, VOCAB, mask_prob, seed=seed)[:2]),
                                        (want, oracle_masks(ids, special, mask_prob, seed))):
            for k, v in counts(ids, special, masked, labels).items():
                total[k] = total.get(k, 0) + v
    for fate, share in (("mask", "80%"), ("random", "10%"), ("unchanged", "10%")):
        ok, tol = agree(got[fate], got["selected"], want[fate], want["selected"])
        if not ok:
            mine = {k: round(got[k] / max(got["selected"], 1), 4) for k in ("mask", "random", "unchanged")}
            ref = {k: round(want[k] / want["selected"], 4) for k in ("mask", "random", "unchanged")}
            raise AssertionError(
                f"mask_tokens on two batches (mask_prob 0.15 and 0.3): of the {got['selected']} selected tokens the "
                f"shares are {mine}; transformers' DataCollatorForLanguageModeling gives {ref} — the '{fate}' share "
                f"is off by more than ±{tol:.4f}: of the selected tokens {share} should be '{fate}' (one draw per "
                "selected token decides: [MASK] 80%, a random word 10%, unchanged 10%)")


@check(1)
def check_random_words_are_regular(sub):
    """Random replacements are regular words, first_regular_id .. vocab_size - 1, every one of them possible."""
    vocab_size = 12                         # 7 regular words: a draw over all 12 ids hits a special 5 times in 12
    ids, special = make_batch(41, rows=400, vocab_size=vocab_size)
    masked, labels, what, _ = masks_of(sub, ids, special, vocab_size, 0.5, seed=41)
    random = masked[(labels != -100) & ~special & (masked != MASK_ID) & (masked != ids)]
    wrong = sorted({int(v) for v in random if not FIRST_REGULAR_ID <= v < vocab_size})
    if wrong:
        raise AssertionError(
            f"mask_tokens(a batch of 400 rows, ..., vocab_size={vocab_size}, mask_prob=0.5, seed=41) put the ids "
            f"{wrong} as random words — draw them from the regular words {FIRST_REGULAR_ID} .. {vocab_size - 1}: a "
            "random [PAD], [CLS] or [SEP] is a token the model never sees in a real sentence")
    missing = sorted(set(range(FIRST_REGULAR_ID, vocab_size)) - {int(v) for v in random})
    if missing:
        raise AssertionError(
            f"mask_tokens(..., vocab_size={vocab_size}, mask_prob=0.5, seed=41): {random.numel()} random words, "
            f"never the ids {missing} — every regular word {FIRST_REGULAR_ID} .. {vocab_size - 1} should be possible "
            "(torch.randint's upper bound is exclusive: pass vocab_size)")
