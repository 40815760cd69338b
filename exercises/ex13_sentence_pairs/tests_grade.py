"""Hidden checks of exercise 13 (sentence pairs): the instructor's copy only.

Answer keys: a sentence splitter that walks the characters (`key_split_in_two`, no regular
expression) and a name finder that tries every name at every word start (`key_product_groups`);
tests/test_exercises.py checks both against relcourse.corpora, and that the course's own
sentence_pairs passes every check here. The pairs are judged by their properties, since each
student draws their own random numbers: paragraphs of two sentences that name their paragraph
("p17 opens." "p17 closes."), so every segment says where it came from.
"""
from __future__ import annotations

import numpy as np

from exercises._checks import call_text, check, expect_raises, show
from exercises.ex13_sentence_pairs.tests_public import pairs_of


# --- the answer keys ------------------------------------------------------------------------------

def key_split_in_two(paragraph: str, draw: float):
    text = paragraph.strip()
    sentences, start, i = [], 0, 0
    while i < len(text):
        if text[i] in ".!?" and i + 1 < len(text) and text[i + 1].isspace():
            sentences.append(text[start:i + 1])
            i += 1
            while i < len(text) and text[i].isspace():
                i += 1
            start = i
            continue
        i += 1
    sentences.append(text[start:])
    if len(sentences) >= 2:
        cut = 1 + int(draw * (len(sentences) - 1))
        return " ".join(sentences[:cut]), " ".join(sentences[cut:])
    words = paragraph.split()
    if len(words) < 2:
        return None
    return " ".join(words[:len(words) // 2]), " ".join(words[len(words) // 2:])


def key_product_groups(paragraphs, names):
    def word_edge(text, at):   # a position between a word character and something else
        inside = lambda k: 0 <= k < len(text) and (text[k].isalnum() or text[k] == "_")
        return inside(at - 1) != inside(at)

    out = []
    for text in paragraphs:
        found = -1
        for start in range(len(text)):
            hits = [(len(n), i) for i, n in enumerate(names) if text.startswith(n, start)
                    and word_edge(text, start) and word_edge(text, start + len(n))]
            if hits:
                found = max(hits)[1]
                break
        out.append(found)
    return out


def numbered(n: int) -> list[str]:
    """n paragraphs of two sentences, each naming its paragraph."""
    return [f"p{i} opens here. p{i} closes here." for i in range(n)]


def source(segment: str) -> int:
    """The paragraph a segment of `numbered` came from."""
    return int(segment.split()[0][1:])


# --- the checks -----------------------------------------------------------------------------------

SPLIT_CASES = [("the lamp is new. it is bright. it was cheap.", u) for u in (0.0, 0.49, 0.5, 0.99)] + [
    ("rated at 1.5 volt and sold out.", 0.7),           # a full stop inside a number is no boundary
    ("is it new? yes! it is.  and   cheap.", 0.4),     # ? and !, runs of spaces
    ("  one sentence,  no end  ", 0.2), ("word", 0.5), ("", 0.3), ("two words", 0.9),
    ("a. b. c. d. e.", 0.8), ("first.second. third", 0.1)]


@check(2)
def check_split_in_two_against_the_key(sub):
    """Sentence boundaries only after . ! ? and a space; the draw picks the cut; one sentence is
    cut between words; one word is not cut."""
    rng = np.random.default_rng(13)
    words = ["lamp", "new.", "bright!", "cheap?", "it", "is", "1.5", "volt", "the"]
    cases = SPLIT_CASES + [(" ".join(rng.choice(words, size=int(rng.integers(1, 14)))), float(rng.random()))
                           for _ in range(60)]
    for paragraph, draw in cases:
        got, want = sub.split_in_two(paragraph, draw), key_split_in_two(paragraph, draw)
        if (None if got is None else tuple(got)) != want:
            raise AssertionError(f"{call_text('split_in_two', paragraph, draw)} returned {show(got)}, expected "
                                 f"{want!r}")


@check(1)
def check_sop_pairs(sub):
    """SOP: half the pairs, at random, swapped; the rest as written; one seed, one result."""
    paragraphs = numbered(600) + ["word"]
    first, second, labels, what = pairs_of(sub, paragraphs, "sop", 5)
    if len(labels) != 600:
        raise AssertionError(f"{what} returned {len(labels)} pairs, expected 600 (the one-word paragraph cannot "
                             "be cut: drop it)")
    if not 0.42 <= np.mean(labels) <= 0.58:
        raise AssertionError(f"{what}: {np.mean(labels):.0%} of the labels are 1; expected about half")
    for a, b, y in zip(first, second, labels):
        want = (b, a) if y else (a, b)
        if not (want[0].endswith("opens here.") and want[1].endswith("closes here.") and source(a) == source(b)):
            raise AssertionError(f"{what} gave ({a!r}, {b!r}) with label {y}: a 0 keeps the order, a 1 swaps it, "
                                 "and both segments come from the same paragraph")
    again, other = pairs_of(sub, paragraphs, "sop", 5), pairs_of(sub, paragraphs, "sop", 6)
    if again[2] != labels or again[0] != first:
        raise AssertionError(f"{what} twice gave two results: draw everything from np.random.default_rng(seed)")
    if other[2] == labels:
        raise AssertionError(f"{what} and seed 6 gave the same labels: the seed must decide the draws")


def checked_nsp(sub, paragraphs, seed, groups=None):
    """The student's NSP pairs of `numbered` paragraphs, each checked: the first segment in place;
    a positive's second segment its own; a negative's another paragraph's, of the same group where
    `groups` gives it one with other members. (labels, sources of the second segments, the call.)"""
    first, second, labels, what = pairs_of(sub, paragraphs, "nsp", seed, groups)
    sizes = {g: list(groups).count(g) for g in set(groups)} if groups is not None else {}
    for i, (a, b, y) in enumerate(zip(first, second, labels)):
        if a != f"p{i} opens here." or not b.endswith("closes here."):
            raise AssertionError(f"{what}: pair {i} is ({a!r}, {b!r}); NSP keeps each paragraph's first segment in "
                                 "place and takes a second segment")
        j = source(b)
        if not y and j != i:
            raise AssertionError(f"{what}: pair {i} is a positive (label 0) with the second segment of paragraph {j}; "
                                 "a positive keeps its own")
        if y and j == i:
            raise AssertionError(f"{what}: pair {i} is a negative (label 1) but keeps its own second segment, a "
                                 "'negative' that is true; take another paragraph's")
        if y and groups is not None and groups[i] >= 0 and sizes[groups[i]] > 1 and groups[j] != groups[i]:
            raise AssertionError(f"{what}: pair {i} (group {groups[i]}) took its negative from paragraph {j} (group "
                                 f"{groups[j]}); with groups, a negative comes from the same group, so that both "
                                 "segments are about the same product")
    return labels, [source(b) for b in second], what


@check(2)
def check_nsp_negatives_from_another_paragraph(sub):
    """NSP: the first segment stays; a negative's second segment is another paragraph's, drawn at
    random; a positive keeps its own."""
    labels, sources, what = checked_nsp(sub, numbered(800), 1)
    if not 0.42 <= np.mean(labels) <= 0.58:
        raise AssertionError(f"{what}: {np.mean(labels):.0%} of the labels are 1; expected about half")
    neighbours = sum(bool(y) and abs(j - i) == 1 for i, (y, j) in enumerate(zip(labels, sources)))
    if neighbours > 0.1 * sum(labels):
        raise AssertionError(f"{what}: {neighbours} of {sum(labels)} negatives come from the paragraph next door; "
                             "draw the other paragraph at random (a neighbour is often about the same thing)")
    for seed in range(20):   # three paragraphs: a draw that may return the paragraph itself soon does
        checked_nsp(sub, numbered(3), seed)
    expect_raises(ValueError, lambda: sub.sentence_pairs(["p0 opens here. p0 closes here."], "nsp", 0),
                  call_text("sentence_pairs", ["p0 opens here. p0 closes here."], "nsp", 0),
                  hint="one paragraph has no other paragraph to take a negative from")
    expect_raises(ValueError, lambda: sub.sentence_pairs(numbered(4), "mlm", 0),
                  call_text("sentence_pairs", "[4 paragraphs]", "mlm", 0), hint="only 'sop' and 'nsp' are tasks")


@check(2)
def check_same_group_negatives(sub):
    """With groups, a negative comes from another paragraph of its group; a paragraph without a
    group (-1), or alone in its group, takes one from any other paragraph."""
    groups = [i % 3 for i in range(300)] + [-1] * 99 + [7]     # three groups of 100, 99 without, one alone
    labels, sources, what = checked_nsp(sub, numbered(400), 2, groups)
    if not any(y and g == -1 and groups[j] != -1 for y, g, j in zip(labels, groups, sources)):
        raise AssertionError(f"{what}: every negative of a paragraph without a group came from another paragraph "
                             "without a group; -1 means no group: draw from every other paragraph")
    for seed in range(20):   # pairs of paragraphs: each negative has one paragraph to come from
        checked_nsp(sub, numbered(6), seed, [0, 0, 1, 1, -1, -1])
    expect_raises(ValueError, lambda: sub.sentence_pairs(numbered(400), "nsp", 2, groups[:-1]),
                  call_text("sentence_pairs", "[400 paragraphs]", "nsp", 2, "[399 groups]"),
                  hint="one group per paragraph, or the groups say nothing")


@check(1)
def check_product_groups_against_the_key(sub):
    """The first name in the text, whole words only, the longer where two start at one place."""
    names = ["Vix A1", "Vix A10", "Lumka K51", "Moex", "Moex Pro"]
    paragraphs = ["the Vix A10 is new.", "the Vix A1. it hums.", "i bought a Vix A1s.", "Moex Pro and Vix A1",
                  "no product here.", "the Lumka K51, a drill, and the Moex.", "vix a1 in lower case.",
                  "Moexa is not Moex.", ""]
    got, want = sub.product_groups(paragraphs, names), key_product_groups(paragraphs, names)
    if [int(g) for g in got] != want:
        raise AssertionError(f"{call_text('product_groups', paragraphs, names)} returned {show(got)}, expected "
                             f"{want}: the name that starts first, as whole words, the longer one where two "
                             "start at the same place")
    if [int(g) for g in sub.product_groups(paragraphs[:3], [])] != [-1, -1, -1]:
        raise AssertionError("product_groups(paragraphs, []) should give -1 for every paragraph: no names, no groups")
