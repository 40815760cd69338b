"""Public checks of exercise 6 (80/10/10 masking): the settings and the docstring's example.

Shipped to students with the starter. Masking is random, so the worked example checks what every
right answer shares, whatever order it draws in: the shapes, labels that are -100 or the original
id, and one seed giving one result. The statistical checks, and their answer key (transformers'
DataCollatorForLanguageModeling on the same batches), are in tests_grade.py, with the instructor.
"""
from __future__ import annotations

import torch

from exercises._checks import call_text, check, show

TITLE = "BERT's 80/10/10 masking"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse.masking", "relcourse", "transformers")
POINTS = 10

MASK_ID, FIRST_REGULAR_ID = 4, 5          # ids 0..4: [PAD] [UNK] [CLS] [SEP] [MASK]
EXAMPLE = torch.tensor([[2, 11, 12, 13, 14, 15, 16, 17, 18, 3, 0, 0]])


def masks_of(sub, ids, special, vocab_size, mask_prob, seed, watch=False):
    """The student's (masked, labels) as int64 tensors shaped like ids, the call as text, and the
    positions of the arguments the function changed in place (with watch=True)."""
    what = call_text("mask_tokens", ids, special, MASK_ID, vocab_size, mask_prob, seed=seed)
    reply = sub._remote("mask_tokens", ids, special, MASK_ID, vocab_size, mask_prob, seed=seed, watch=watch)
    got = reply.value
    if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
        raise AssertionError(f"{what} returned {show(got)}; expected a tuple of two tensors (masked input_ids, labels)")
    for name, t in zip(("masked input_ids", "labels"), got):
        if t.shape != ids.shape or t.is_floating_point() or t.dtype == torch.bool:
            raise AssertionError(f"{what}: the {name} are a {t.dtype} tensor of shape {tuple(t.shape)}; expected "
                                 f"integer ids of the input's shape {tuple(ids.shape)}")
    return got[0].long(), got[1].long(), what, reply.mutated


@check(2)
def check_docstring_example(sub):
    """The docstring's example: two id tensors, labels -100 or the original id, same seed same result."""
    ids, special = EXAMPLE, EXAMPLE < FIRST_REGULAR_ID
    selected = 0
    for seed in range(8):
        masked, labels, what, _ = masks_of(sub, ids, special, 30, 0.5, seed)
        if not ((labels == -100) | (labels == ids)).all():
            raise AssertionError(f"{what} gave labels {show(labels)}; each label must be the original id (a selected "
                                 f"token, the word to predict) or -100 (not selected), for the input {show(ids)}")
        again, labels_again, _, _ = masks_of(sub, ids, special, 30, 0.5, seed)
        if not (torch.equal(again, masked) and torch.equal(labels_again, labels)):
            raise AssertionError(f"{what} gave two different results for the same seed — draw everything from "
                                 "torch.Generator().manual_seed(seed) (pass generator=... to torch.rand and "
                                 "torch.randint), not from torch's global random state")
        selected += int((labels != -100).sum())
    if selected == 0:
        raise AssertionError("mask_tokens selected no token in 8 calls with mask_prob=0.5 (every label was -100): "
                             "select each regular token with probability mask_prob")
