"""Exercise 6: BERT's 80/10/10 masking for masked-language-model pretraining. The task is in README.md.

Fill in the function below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex06

Use torch; not relcourse.masking nor transformers (those are the answer keys).
"""
from __future__ import annotations

import torch


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_token_id: int, vocab_size: int,
                mask_prob: float = 0.15, seed: int = 0, first_regular_id: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input_ids, labels) for masked-language-model training, both int64 tensors shaped like input_ids.

    input_ids:        (B, L) int64 token ids: [CLS] words [SEP] and [PAD] at the end of short rows
    special_mask:     (B, L) bool, True at [CLS], [SEP], [PAD]: never selected, never changed
    mask_token_id:    the id of [MASK]
    vocab_size:       ids run 0 .. vocab_size - 1; the regular words are first_regular_id .. vocab_size - 1
    mask_prob:        the chance that a regular token is selected (BERT: 0.15)
    seed:             draw everything from torch.Generator().manual_seed(seed): one seed, one result

    Each regular token is selected with probability mask_prob. A selected token becomes [MASK] with
    probability 0.8, a random regular word (uniform over first_regular_id .. vocab_size - 1) with
    probability 0.1, and stays as it is with probability 0.1. labels holds the original id at every
    selected position and -100 everywhere else (cross-entropy ignores -100). Tokens that are not
    selected stay as they are. Do not change input_ids itself.

    >>> ids = torch.tensor([[2, 11, 12, 13, 14, 15, 16, 17, 18, 3, 0, 0]])   # [CLS] 8 words [SEP] [PAD] [PAD]
    >>> special = ids < 5                                    # 0..4: [PAD] [UNK] [CLS] [SEP] [MASK]
    >>> masked, labels = mask_tokens(ids, special, mask_token_id=4, vocab_size=30, mask_prob=0.5, seed=0)
    >>> masked.shape == labels.shape == ids.shape
    True
    >>> bool(((labels == -100) | (labels == ids)).all())    # a label is the original id, or -100
    True
    >>> torch.equal(mask_tokens(ids, special, 4, 30, 0.5, seed=0)[1], labels)   # same seed, same selection
    True

    For example, seed=2 may give (it depends on the order of your draws):
    masked [[2, 11, 12, 4, 14, 15, 4, 17, 18, 3, 0, 0]] and labels [[-100, 11, -100, 13, -100, -100, 16, 17,
    -100, -100, -100, -100]]: four words selected; 13 and 16 became [MASK], 11 and 17 stayed as they were.
    """
    raise NotImplementedError("mask_tokens: select tokens, then decide what each selected token becomes")
