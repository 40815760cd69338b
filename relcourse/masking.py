"""Masked-language-model inputs: hide some tokens, keep the originals as the labels to predict.

BERT's recipe (Devlin et al., 2019): select ~15% of the tokens (never [CLS], [SEP], [PAD]); the
loss is computed on the selected ones only (every other label is -100, which cross-entropy
ignores). Of the selected tokens 80% become [MASK], 10% a random word, 10% stay as they are.
Why not all [MASK]: [MASK] never occurs at fine-tuning time, so a model trained only on [MASK]
positions may learn that an unmasked token needs no good representation of its own. When any
visible token might be the one being predicted, it must keep a representation of every token
(claim P1 compares it with "all_mask"; probe P1-why with "90/0/10", where the random tenth
becomes [MASK] too, to tell which part of the recipe makes the difference).

Dynamic masking (RoBERTa, Liu et al., 2019): call this for every batch, with a generator seeded
by the step, and each pass over a sample hides other tokens, where static masking (drawn once)
shows the model the same few blanks every epoch.

Span masking (SpanBERT, Joshi et al., 2020): hide contiguous runs of tokens instead of single
ones. A single masked word piece is often given away by its neighbours ("kett ##[MASK]"); a
whole hidden span has to be inferred from its context, which is closer to understanding. Span
lengths follow a geometric distribution (p=0.2) truncated to 1..10, mean 3.8; spans are placed
until mask_prob of each row's regular tokens is covered, stop at special tokens, and are
replaced as a whole (one 80/10/10 draw per span), as in the paper. Claim P6 compares it.

>>> ids = torch.tensor([[2, 11, 12, 13, 14, 15, 16, 17, 18, 3]])         # [CLS] 8 words [SEP]
>>> special = (ids == 2) | (ids == 3)
>>> masked, labels = mask_tokens(ids, special, mask_token_id=4, vocab_size=30, mask_prob=0.3,
...                              generator=torch.Generator().manual_seed(5))
>>> masked.tolist()          # 4 tokens selected: three became [MASK] (id 4), 16 stayed as it was
[[2, 4, 12, 13, 14, 4, 16, 17, 4, 3]]
>>> labels.tolist()          # ... and all four are predicted
[[-100, 11, -100, -100, -100, 15, 16, -100, 18, -100]]
>>> masked, labels = mask_tokens(ids, special, 4, 30, mask_prob=0.3, span=True,
...                              generator=torch.Generator().manual_seed(5))
>>> masked.tolist()          # one span of 3 tokens
[[2, 11, 4, 4, 4, 15, 16, 17, 18, 3]]
"""
from __future__ import annotations

import numpy as np
import torch

from .tokenizer import FIRST_REGULAR_ID

# What a selected token becomes: (share -> [MASK], share -> random regular token); the rest stays.
REPLACEMENTS = {"80/10/10": (0.8, 0.1), "all_mask": (1.0, 0.0), "90/0/10": (0.9, 0.0)}
SPAN_GEOMETRIC_P = 0.2
MAX_SPAN = 10
IGNORE_INDEX = -100   # cross-entropy's default ignore_index: no loss at unselected positions


def selection_probability(special: torch.Tensor, mask_prob: float, focus: torch.Tensor | None = None,
                          focus_share: float = 0.0) -> torch.Tensor:
    """(B, L) chance that each token is selected: mask_prob for every regular token, or, with a
    `focus` (e.g. the words query and document share), a row's expected selections split so that
    about `focus_share` of them fall on focus tokens (all of them, when there are too few).

    >>> special = torch.tensor([[True, False, False, False, False, True]])
    >>> focus = torch.tensor([[False, True, False, False, False, False]])
    >>> [round(p, 3) for p in selection_probability(special, 0.5, focus, focus_share=0.5)[0].tolist()]  # 2 picks, 1 on focus
    [0.0, 1.0, 0.333, 0.333, 0.333, 0.0]
    """
    regular = ~special
    uniform = regular.float() * mask_prob
    if focus is None or focus_share == 0:
        return uniform
    focus = focus & regular
    n, s = regular.sum(1, keepdim=True).float(), focus.sum(1, keepdim=True).float()
    p_focus = (focus_share * mask_prob * n / s.clamp(min=1)).clamp(max=1)
    p_other = ((mask_prob * n - p_focus * s) / (n - s).clamp(min=1)).clamp(0, 1)
    return torch.where(focus, p_focus, regular.float() * p_other)


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_token_id: int, vocab_size: int,
                mask_prob: float = 0.15, replacement: str = "80/10/10", span: bool = False,
                generator: torch.Generator | None = None, first_regular_id: int = FIRST_REGULAR_ID,
                focus: torch.Tensor | None = None, focus_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input_ids, labels), both like input_ids (B, L). Labels hold the original id at the
    selected positions and -100 elsewhere. Random replacements are regular ids, never special.
    `focus` and `focus_share` bias single-token selection (see `selection_probability`).

    All draws are made on the CPU from `generator` (a CPU torch.Generator), so one seed gives
    the same masks whatever device the ids are on."""
    if not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob={mask_prob} must be in (0, 1): the share of tokens to select")
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement={replacement!r} is unknown; choose from {', '.join(REPLACEMENTS)}")
    if input_ids.dim() != 2 or special_mask.shape != input_ids.shape or special_mask.dtype != torch.bool:
        raise ValueError(f"input_ids must be (B, L) and special_mask a bool tensor of the same shape; got "
                         f"{tuple(input_ids.shape)} and {special_mask.dtype} {tuple(special_mask.shape)}")
    if vocab_size <= first_regular_id:
        raise ValueError(f"vocab_size={vocab_size} has no regular token (ids >= {first_regular_id}) to draw")
    ids, special = input_ids.cpu(), special_mask.cpu()
    shape = ids.shape
    if span and focus is not None and focus_share:
        raise ValueError("focused selection is for single tokens: use span=False with a focus")
    if span:
        selected, span_start = _span_selection(special, mask_prob, generator)
    else:   # each token on its own: a span of one, starting where it is
        chance = selection_probability(special, mask_prob, None if focus is None else focus.cpu(), focus_share)
        selected = (torch.rand(shape, generator=generator) < chance) & ~special
        span_start = torch.arange(shape[1]).expand(shape)
    # One uniform draw per span decides its fate; a span's tokens share the draw at its start.
    fate = torch.rand(shape, generator=generator).gather(1, span_start)
    random_ids = torch.randint(first_regular_id, vocab_size, shape, generator=generator, dtype=ids.dtype)
    to_mask_share, to_random_share = REPLACEMENTS[replacement]
    to_mask = selected & (fate < to_mask_share)
    to_random = selected & (fate >= to_mask_share) & (fate < to_mask_share + to_random_share)
    masked = torch.where(to_mask, torch.full_like(ids, mask_token_id), ids)
    masked = torch.where(to_random, random_ids, masked)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return masked.to(input_ids.device), labels.to(input_ids.device)


def span_lengths(uniform: torch.Tensor) -> torch.Tensor:
    """Geometric(p) lengths truncated to 1..MAX_SPAN, by inverting the CDF of uniform draws in [0, 1).

    P(length = k) is proportional to p (1-p)^(k-1) for k = 1..MAX_SPAN (SpanBERT: mean 3.8)."""
    keep = 1 - SPAN_GEOMETRIC_P
    below_max = 1 - keep ** MAX_SPAN                 # P(length <= MAX_SPAN) before truncation
    lengths = torch.ceil(torch.log1p(-uniform * below_max) / np.log(keep))
    return lengths.clamp(1, MAX_SPAN).long()         # the clamp only guards float rounding at the ends


def _span_selection(special: torch.Tensor, mask_prob: float,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(selected (B, L) bool, start position of the span covering each position (B, L))."""
    rows, length = special.shape
    # Everything drawn up front, in bulk: a row never needs more spans than it has tokens.
    budget_draw = torch.rand(rows, generator=generator).numpy()
    start_draw = torch.rand(rows, length, generator=generator).numpy()
    lengths = span_lengths(torch.rand(rows, length, generator=generator)).numpy()
    regular = ~special.numpy()
    # Stochastic rounding keeps the covered share right on average, even in short rows
    # (0.15 of 29 tokens is 4.35: cover 5 tokens in 35% of such rows, 4 in the others).
    budgets = np.floor(mask_prob * regular.sum(axis=1) + budget_draw).astype(int)
    selected = np.zeros_like(regular)
    span_start = np.tile(np.arange(length), (rows, 1))
    for row in range(rows):   # rows are short (<= a few hundred tokens) and hold a few spans each
        free = regular[row].copy()
        left, k = budgets[row], 0
        while left > 0:
            candidates = np.flatnonzero(free)
            start = candidates[int(start_draw[row, k] * len(candidates))]
            # The span runs until its length, the budget, a special token or an earlier span stops it.
            window = free[start:start + min(lengths[row, k], left)]
            end = start + (window.size if window.all() else int(np.argmin(window)))
            free[start:end], selected[row, start:end], span_start[row, start:end] = False, True, start
            left, k = left - (end - start), k + 1
    return torch.from_numpy(selected), torch.from_numpy(span_start)
