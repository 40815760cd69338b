"""Exercise 6, instructor solution: every draw at once, from one generator.

One uniform draw per token selects it, a second decides its fate (below 0.8: [MASK]; 0.8 to 0.9:
a random word; above: unchanged), so the three shares are of the *selected* tokens only.
relcourse.masking.mask_tokens does the same, plus span masking and focused selection.
"""
from __future__ import annotations

import torch


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_token_id: int, vocab_size: int,
                mask_prob: float = 0.15, seed: int = 0, first_regular_id: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: select mask_prob of the regular tokens; of those 80% [MASK], 10% random, 10% unchanged."""
    generator = torch.Generator().manual_seed(seed)
    shape = input_ids.shape
    selected = (torch.rand(shape, generator=generator) < mask_prob) & ~special_mask.bool()
    fate = torch.rand(shape, generator=generator)
    random_words = torch.randint(first_regular_id, vocab_size, shape, generator=generator, dtype=input_ids.dtype)
    to_mask = selected & (fate < 0.8)
    to_random = selected & (fate >= 0.8) & (fate < 0.9)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_words, masked)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    return masked, labels
