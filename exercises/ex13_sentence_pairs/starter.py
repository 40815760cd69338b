"""Exercise 13: the sentence-pair task of pretraining, SOP and NSP, and NSP's hard negatives.
The task is in README.md.

Fill in the three functions below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex13

Use the standard library and numpy; not relcourse (relcourse.corpora is the answer key).
"""
from __future__ import annotations

import re

import numpy as np

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")   # a space after a full stop: "1.5 volt" is not cut


def split_in_two(paragraph, draw):
    """Cut a paragraph into two segments at a sentence boundary chosen by `draw` (a float in [0, 1)).

    With n >= 2 sentences (split after ".", "!" or "?" followed by a space), the first segment
    holds the first 1 + int(draw * (n - 1)) sentences and the second the rest. A single sentence
    is cut between its words, the first segment taking len(words) // 2 of them. A single word (or
    an empty paragraph) cannot be cut: return None. The two segments are joined by single spaces.

    >>> split_in_two("the lamp is new. it is bright. it was cheap.", 0.6)
    ('the lamp is new. it is bright.', 'it was cheap.')
    >>> split_in_two("one sentence with six words here.", 0.3)
    ('one sentence with', 'six words here.')
    """
    raise NotImplementedError("split_in_two: cut the paragraph at a sentence boundary")


def sentence_pairs(paragraphs, task, seed, groups=None):
    """The pairs of the sentence task: (first segments, second segments, labels).

    Cut each paragraph with split_in_two (one uniform draw in [0, 1) per paragraph); drop the
    paragraphs that cannot be cut. Then each pair is a negative (label 1) with probability 1/2,
    else a positive (label 0, the two segments as they were):
      task "sop": a negative has its two segments swapped;
      task "nsp": a negative keeps its first segment and takes the second segment of another
                  paragraph, drawn uniformly; with `groups` (one int per paragraph, -1 for none),
                  of another paragraph of the same group, where the group has one; else of any
                  other paragraph.
    Every draw comes from np.random.default_rng(seed): one seed, one result. An unknown task,
    `groups` of the wrong length, or NSP with fewer than two pairs, raises ValueError.

    >>> first, second, labels = sentence_pairs(["the lamp is new. it is bright."] * 20, "sop", seed=0)
    >>> sorted(set(zip(first, second, [int(y) for y in labels])))   # label 1: the order was swapped
    [('it is bright.', 'the lamp is new.', 1), ('the lamp is new.', 'it is bright.', 0)]
    """
    raise NotImplementedError("sentence_pairs: build the SOP or NSP pairs")


def product_groups(paragraphs, names):
    """For each paragraph, the index in `names` of the product it names first (the name that
    starts earliest in the text), or -1 when it names none. A name counts only as whole words:
    "Vix A1" is not in "Vix A10" nor in "Vix A1s". Where names overlap at the same place, the
    longer one counts. Case as written.

    >>> product_groups(["meet the Lumka K51. it is new.", "i bought the Vix A10 and the Lumka K51.",
    ...                 "ferries run daily."], ["Vix A1", "Lumka K51", "Vix A10"])
    [1, 2, -1]
    """
    raise NotImplementedError("product_groups: find the first product each paragraph names")
