"""Public checks of exercise 13 (sentence pairs): the settings and the docstrings' worked examples.

Shipped to students with the starter. The other checks, and their answer keys (a character-by-
character sentence splitter, and paragraphs built so that every segment says where it came
from), are in tests_grade.py, which stays with the instructor.
"""
from __future__ import annotations

from exercises._checks import call_text, check, show

TITLE = "Sentence pairs for SOP and NSP, with hard negatives"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse",)
POINTS = 10


def pairs_of(sub, paragraphs, task, seed, groups=None):
    """The student's sentence_pairs as three lists (labels as ints), and the call as text."""
    args = (paragraphs, task, seed) if groups is None else (paragraphs, task, seed, groups)
    what = call_text("sentence_pairs", *args)
    got = sub.sentence_pairs(*args)
    try:
        first, second, labels = got
        first, second, labels = list(first), list(second), [int(y) for y in labels]
    except (TypeError, ValueError):
        raise AssertionError(f"{what} returned {show(got)}; expected three sequences (first segments, "
                             "second segments, labels)") from None
    if not len(first) == len(second) == len(labels):
        raise AssertionError(f"{what} returned {len(first)} first segments, {len(second)} second segments and "
                             f"{len(labels)} labels; expected one of each per pair")
    if set(labels) - {0, 1}:
        raise AssertionError(f"{what} returned labels {sorted(set(labels))}; expected 0 (as it was) or 1 (a negative)")
    return first, second, labels, what


@check(2)
def check_docstring_examples(sub):
    """The examples of the docstrings: two cuts, a swapped pair, the first product named."""
    for args, want in ((("the lamp is new. it is bright. it was cheap.", 0.6),
                        ("the lamp is new. it is bright.", "it was cheap.")),
                       (("one sentence with six words here.", 0.3), ("one sentence with", "six words here."))):
        got = sub.split_in_two(*args)
        if tuple(got or ()) != want:
            raise AssertionError(f"{call_text('split_in_two', *args)} returned {show(got)}, expected {want}")
    first, second, labels, what = pairs_of(sub, ["the lamp is new. it is bright."] * 20, "sop", 0)
    got = sorted(set(zip(first, second, labels)))
    want = [("it is bright.", "the lamp is new.", 1), ("the lamp is new.", "it is bright.", 0)]
    if got != want:
        raise AssertionError(f"{what}: the distinct (first, second, label) triples are {show(got)}, expected {want} "
                             "(label 0: the segments in their order; 1: swapped; with 20 pairs both occur)")
    args = (["meet the Lumka K51. it is new.", "i bought the Vix A10 and the Lumka K51.", "ferries run daily."],
            ["Vix A1", "Lumka K51", "Vix A10"])
    got = sub.product_groups(*args)
    if [int(g) for g in got] != [1, 2, -1]:
        raise AssertionError(f"{call_text('product_groups', *args)} returned {show(got)}, expected [1, 2, -1]")
