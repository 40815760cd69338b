"""The text that pretraining reads: cleaned corpora, the task's own text, and sentence pairs.

Three claims of the course are decided by what goes in here (relcourse.claims):
- P4, cleaning helps. The generated corpora carry the dirt that web text has: verbatim
  duplicates and emoji/symbol spam. `clean` drops repeats (after case and whitespace are
  normalised), strips tokens with no letter or digit in them, and drops lines left too short.
  `cleaning_report` scores that against the generator's `dirt` column.
- P5, domain text helps, then the task's own text (DAPT -> TAPT). `pretraining_texts` reads one
  of the MIXES; `task_texts` is the task's text without labels: query + title + body of the
  TRAIN queries' documents only, so valid and test text never leaks into pretraining.
- P2, SOP vs NSP. `sentence_pairs` cuts each paragraph into two segments at a sentence boundary.
  NSP's negative replaces the second segment by one from a random other paragraph; SOP's swaps
  the two segments, so only the order is wrong. In web text another paragraph usually changes
  the topic, which gives NSP away, and ALBERT (Lan et al. 2019) found SOP harder and more useful
  downstream. Here the domain paragraphs all describe products of one shop in one style: another
  paragraph changes the product, not the topic, so NSP asks whether both segments name the same
  product, while SOP's order shows in how a product paragraph opens. On `laptop` that made SOP
  the easier task and NSP the better pretraining for relevance (results/laptop.md). To test that
  reading, NSP can draw the negative of a paragraph that names a product from another paragraph
  about the *same* product (`groups=product_groups(...)`, the setting pretrain.nsp_negatives):
  the names then agree on both sides of every such pair, and only whether the sentences follow
  on is left to judge (general text keeps its negatives from any paragraph). On `laptop` that
  arm lost 92% of NSP's lead over SOP: the names were what NSP taught. Both tasks draw the same
  cuts and labels from the seed: the arms of P2 see the same segments, only the negatives differ.

>>> clean(["the bus runs daily. it is busy.", "The bus  runs daily. it is busy.",
...        "🔥 💯 the lamp is new. it is bright. $$$", "👉 ok !!!"])
['the bus runs daily. it is busy.', 'the lamp is new. it is bright.']
>>> first, second, labels = sentence_pairs(["the lamp is new. it is bright."] * 3, "sop", seed=1)
>>> [(a, b, int(y)) for a, b, y in zip(first, second, labels)]  # label 1: the order was swapped
[('the lamp is new.', 'it is bright.', 0), ('it is bright.', 'the lamp is new.', 1), ('it is bright.', 'the lamp is new.', 1)]
>>> product_groups(["meet the Lumka K51. it is new.", "i bought Lumka K51 and the Vix A1.", "ferries run daily."],
...                ["Vix A1", "Lumka K51"])
array([ 1,  1, -1])
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from data_gen.io import iter_shards, read_table

MIXES = {"general": ("general",), "general+domain": ("general", "domain"), "domain": ("domain",)}
TASKS = ("sop", "nsp")
DIRT_KINDS = ("", "duplicate", "symbol_spam")
MIN_WORDS = 4  # shorter than this after stripping is spam residue ("ok"), not a paragraph to learn from
# A whitespace-delimited run of characters that are neither letters, digits nor spaces.
_JUNK_TOKEN = re.compile(r"(?<!\S)(?:[^\w\s]|_)+(?!\S)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")  # a space after a full stop: "rated at 1.5 volt" is not cut
# What a repaired line must no longer contain, judged independently of how `strip_symbols` works:
# a character outside plain prose (emoji, stars, $, #, ~), or any symbol three times in a row.
_SPAM = re.compile(r"[^\w\s.,;:'\"?!()-]|([^\w\s])\1\1")


def strip_symbols(text: str) -> str:
    """Drop every whitespace-delimited token without a letter or digit ('🔥', '!!!', '★★★');
    punctuation attached to a word ('busy.') stays. Whitespace is collapsed."""
    return " ".join(_JUNK_TOKEN.sub(" ", text).split())


def clean_mask(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Every line with its symbols stripped, and whether cleaning keeps it: False for a repeat of an
    earlier line (compared after stripping, lower-cased, so a spammed copy is a repeat too) and
    for a line left with fewer than MIN_WORDS words. The first occurrence is the one kept."""
    stripped = [strip_symbols(t) for t in texts]
    keep = np.zeros(len(texts), dtype=bool)
    seen: set[str] = set()
    for i, text in enumerate(stripped):
        key = text.lower()
        if len(text.split()) >= MIN_WORDS and key not in seen:
            keep[i] = True
            seen.add(key)
    return stripped, keep


def clean(texts: list[str]) -> list[str]:
    """The lines that cleaning keeps, symbols stripped, in their original order."""
    stripped, keep = clean_mask(texts)
    return [t for t, k in zip(stripped, keep) if k]


def cleaning_report(texts: list[str], dirt: list[str]) -> dict:
    """Score `clean` against the truth of the `dirt` column.

    A dirty line is handled when it is dropped, or (symbol spam) kept with no spam left in it.
    A clean line is kept when it comes out unchanged: kept itself, or, if it repeats an earlier
    line word for word, that earlier copy kept. The generator's clean lines repeat often (the
    domain corpus has few templates per entity), and dropping a repeat loses no text, so
    `clean_rows_kept`, the share of clean rows kept as rows, is reported beside it, not scored."""
    dirt = np.asarray(dirt, dtype=object)
    if unknown := set(dirt) - set(DIRT_KINDS):
        raise ValueError(f"unknown dirt kinds {sorted(unknown)}; expected one of {DIRT_KINDS}")
    stripped, keep = clean_mask(texts)
    kept_keys = {t.lower() for t, k in zip(stripped, keep) if k}
    repaired = np.array([k and not _SPAM.search(t) for t, k in zip(stripped, keep)])
    unchanged = np.array([s == " ".join(t.split()) and s.lower() in kept_keys for s, t in zip(stripped, texts)])
    duplicate, spam, clean_ = dirt == "duplicate", dirt == "symbol_spam", dirt == ""
    handled = ~keep | (spam & repaired)

    def share(hit: np.ndarray, rows: np.ndarray) -> float:
        return float(hit[rows].mean()) if rows.any() else float("nan")
    return {"lines": len(texts), "kept": float(keep.mean()) if len(texts) else float("nan"),
            "dirty_handled": share(handled, duplicate | spam), "duplicate_removed": share(~keep, duplicate),
            "symbol_spam_handled": share(handled, spam), "clean_kept": share(unchanged, clean_),
            "clean_rows_kept": share(keep, clean_)}


@functools.lru_cache(maxsize=4)
def _corpus(data_dir: str, which: str, cleaned: bool) -> tuple[str, ...]:
    # Cached: one run reads the same corpus several times (tokenizer, arm, held-out lines), and a
    # data folder never changes once written (its name is the hash of what built it).
    texts = read_table(data_dir, f"corpus_{which}", columns=["text"]).text.tolist()
    return tuple(clean(texts) if cleaned else texts)


def pretraining_texts(data_dir: str | Path, mix: str, cleaned: bool) -> list[str]:
    """The paragraphs of one corpus mix, general lines first. Each corpus is cleaned on its own,
    so "general+domain" is exactly "general" followed by "domain"."""
    if mix not in MIXES:
        raise ValueError(f"unknown corpus mix {mix!r}; choose one of: {', '.join(MIXES)}")
    key = str(Path(data_dir).resolve())
    return [text for which in MIXES[mix] for text in _corpus(key, which, cleaned)]


def _as_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."


def task_texts(data_dir: str | Path) -> list[str]:
    """"query. title. body" for every document of a TRAIN query, no labels: the text the relevance
    model will be fine-tuned on, for TAPT. The split lives in the queries table; documents belong
    to one query each. Kept raw (tags, emoji and all): TAPT is meant to match the task's text as
    it is. Unlabelled queries are left out too, so TAPT adds only text the course calls "train"."""
    queries = read_table(data_dir, "queries", columns=["query_id", "text", "split"])
    train_query = dict(zip(queries.query_id[queries.split == "train"], queries.text[queries.split == "train"]))
    texts = []
    for docs in iter_shards(data_dir, "docs", columns=["query_id", "title", "body"]):  # bounded memory
        docs = docs[docs.query_id.isin(list(train_query))]
        texts += [" ".join(_as_sentence(part) for part in (train_query[q], title, body))
                  for q, title, body in zip(docs.query_id, docs.title, docs.body)]
    return texts


def split_in_two(paragraph: str, draw: float) -> tuple[str, str] | None:
    """Two segments of a paragraph, cut at a sentence boundary chosen by `draw` in [0, 1).
    A single sentence is cut at the word boundary nearest its middle (still two real halves to
    order); a single word cannot be cut and gives None. first + " " + second is the paragraph."""
    sentences = _SENTENCE_END.split(paragraph.strip())
    if len(sentences) >= 2:
        cut = 1 + int(draw * (len(sentences) - 1))
        return " ".join(sentences[:cut]), " ".join(sentences[cut:])
    words = paragraph.split()
    if len(words) < 2:
        return None
    return " ".join(words[:len(words) // 2]), " ".join(words[len(words) // 2:])


def product_names(data_dir: str | Path) -> list[str]:
    """The names of the world's products (its entities table), as the corpus writes them."""
    return read_table(data_dir, "entities", columns=["name"]).name.tolist()


def product_groups(paragraphs: list[str], names: list[str]) -> np.ndarray:
    """For each paragraph, the index in `names` of the first product name it mentions (whole
    words, case as written), -1 where it names none (general text, routes, synonym lines)."""
    if not names:
        return np.full(len(paragraphs), -1)
    # Longest names first, so that a name containing another ("Vix A1" in "Vix A10") is not cut short.
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")\b")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[m.group()] if (m := pattern.search(p)) else -1 for p in paragraphs])


def sentence_pairs(paragraphs: list[str], task: str, seed: int, groups: np.ndarray | None = None
                   ) -> tuple[list[str], list[str], np.ndarray]:
    """(first segments, second segments, labels) for the sentence task, one pair a paragraph
    (single-word paragraphs are dropped). Half the pairs, at random, are negatives (label 1):
    "sop" swaps the two segments, "nsp" takes the second segment of a random other paragraph —
    with `groups` (one id per paragraph, -1 for none; `product_groups`), of another paragraph of
    the same group where there is one. Deterministic given seed; cuts and labels do not depend on
    the task."""
    if task not in TASKS:
        raise ValueError(f"unknown sentence task {task!r}; choose one of: {', '.join(TASKS)}")
    if groups is not None and len(groups) != len(paragraphs):
        raise ValueError(f"groups has {len(groups)} ids for {len(paragraphs)} paragraphs: give one id a paragraph")
    rng = np.random.default_rng(seed)
    draws = rng.random(len(paragraphs))
    cuts = [split_in_two(p, u) for p, u in zip(paragraphs, draws)]
    kept = np.array([c is not None for c in cuts], dtype=bool)
    pairs = [c for c in cuts if c is not None]
    first, second = [a for a, _ in pairs], [b for _, b in pairs]
    labels = (rng.random(len(pairs)) < 0.5).astype(np.int64)
    if task == "sop":
        return [b if y else a for a, b, y in zip(first, second, labels)], \
               [a if y else b for a, b, y in zip(first, second, labels)], labels
    if len(pairs) == 1:
        raise ValueError("nsp needs at least two paragraphs: its negative is another paragraph's segment")
    # A uniform draw over the n - 1 other paragraphs: draw from 0..n-2, then step over oneself.
    other = rng.integers(max(len(pairs) - 1, 1), size=len(pairs))
    other += other >= np.arange(len(pairs))
    if groups is not None:   # drawn after, so that the ungrouped negatives stay what they always were
        other = _same_group(np.asarray(groups)[kept], other, rng)
    return first, [second[j] if y else b for b, j, y in zip(second, other, labels)], labels


def _same_group(groups: np.ndarray, fallback: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each position, a uniform draw among the *other* positions of its group; `fallback`
    where it has no group (-1) or is its group's only member. Positions are sorted by group, so a
    group is a run [start, start + size): draw 0..size-2 and step over oneself, as above."""
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    start = np.searchsorted(ordered, groups, side="left")
    size = np.searchsorted(ordered, groups, side="right") - start
    rank = np.empty(len(groups), dtype=np.int64)   # each position's place within its group's run
    rank[order] = np.arange(len(groups)) - np.searchsorted(ordered, ordered, side="left")
    pick = rng.integers(np.maximum(size - 1, 1))
    pick += pick >= rank
    return np.where((groups >= 0) & (size >= 2), order[np.minimum(start + pick, len(groups) - 1)], fallback)
