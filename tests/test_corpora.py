"""Pretraining text: cleaning scored against the dirt column, the corpus mixes, TAPT text without
valid/test leaks, and SOP/NSP pairs that are what their labels say."""
import doctest
import time

import numpy as np
import pytest

from data_gen.io import read_table
from relcourse import corpora
from relcourse.config import load_profile
from relcourse.store import ensure_data


@pytest.fixture(scope="module")
def data_dir():
    return ensure_data(load_profile("smoke"), 0, progress=False)


def test_doctests():
    assert doctest.testmod(corpora).failed == 0


@pytest.mark.parametrize("which", ["general", "domain"])
def test_cleaning_removes_dirt_and_keeps_clean_lines(data_dir, which):
    table = read_table(data_dir, f"corpus_{which}")
    report = corpora.cleaning_report(table.text.tolist(), table.dirt.tolist())
    assert report["duplicate_removed"] >= 0.95 and report["symbol_spam_handled"] >= 0.95
    assert report["dirty_handled"] >= 0.95 and report["clean_kept"] >= 0.95
    cleaned = corpora.clean(table.text.tolist())
    assert len({" ".join(t.lower().split()) for t in cleaned}) == len(cleaned)  # no duplicates left
    assert not any(corpora._SPAM.search(t) for t in cleaned)  # no emoji / symbol runs left
    assert all(len(t.split()) >= corpora.MIN_WORDS for t in cleaned)


def test_clean_strips_symbols_dedups_normalised_and_drops_short_lines():
    texts = ["🔥 🔥 the Idenbel K64 is a drill. $$$ ★★★ 🎉", "The Idenbel  K64 is a drill.",
             "the bus runs daily, it is busy!", "👉 !!! ~~~ great", "the bus runs daily, it is busy!"]
    stripped, keep = corpora.clean_mask(texts)
    assert stripped[0] == "the Idenbel K64 is a drill." and stripped[2] == "the bus runs daily, it is busy!"
    assert keep.tolist() == [True, False, True, False, False]
    assert corpora.clean(texts) == ["the Idenbel K64 is a drill.", "the bus runs daily, it is busy!"]
    with pytest.raises(ValueError, match="symbol_spam"):
        corpora.cleaning_report(texts, ["", "dup", "", "", ""])


def test_mixes_contain_what_they_should(data_dir):
    general = read_table(data_dir, "corpus_general").text.tolist()
    domain = read_table(data_dir, "corpus_domain").text.tolist()
    assert corpora.pretraining_texts(data_dir, "general", cleaned=False) == general
    assert corpora.pretraining_texts(data_dir, "domain", cleaned=False) == domain
    assert corpora.pretraining_texts(data_dir, "general+domain", cleaned=False) == general + domain
    both = corpora.pretraining_texts(data_dir, "general+domain", cleaned=True)
    assert both == corpora.clean(general) + corpora.clean(domain)
    assert corpora.pretraining_texts(data_dir, "domain", cleaned=True) == corpora.clean(domain)
    with pytest.raises(ValueError, match="general, general\\+domain, domain"):
        corpora.pretraining_texts(data_dir, "web", cleaned=True)


def test_task_texts_come_from_train_queries_only(data_dir):
    queries = read_table(data_dir, "queries")
    docs = read_table(data_dir, "docs").merge(queries[["query_id", "text", "split"]], on="query_id")
    texts = corpora.task_texts(data_dir)
    train, held_out = docs[docs.split == "train"], docs[docs.split.isin(["valid", "test"])]
    assert len(texts) == len(train) > 0
    # One text per train document, in order, made of its query, title and body: nothing else gets in.
    assert all(t.startswith(q + ".") and title in t and body in t
               for t, q, title, body in zip(texts, train.text, train.title, train.body))
    # And explicitly: no query that exists only in valid/test starts a TAPT text.
    queries_only_held_out = set(held_out.text) - set(docs.text[~docs.index.isin(held_out.index)])
    assert queries_only_held_out and not any(t.split(". ", 1)[0] in queries_only_held_out for t in texts)


@pytest.fixture(scope="module")
def paragraphs(data_dir):
    return corpora.pretraining_texts(data_dir, "general+domain", cleaned=True)[:2000]


def test_sop_labels_are_balanced_and_say_whether_the_order_was_swapped(paragraphs):
    first, second, labels = corpora.sentence_pairs(paragraphs, "sop", seed=0)
    assert len(first) == len(second) == len(labels) == len(paragraphs)
    assert abs(labels.mean() - 0.5) <= 0.05
    for paragraph, a, b, y in zip(paragraphs, first, second, labels):
        assert (b + " " + a if y else a + " " + b) == paragraph


def test_nsp_negatives_come_from_another_paragraph(paragraphs):
    # SOP with the same seed cuts the same way; un-swapping its pairs gives the natural segments.
    sop_first, sop_second, swapped = corpora.sentence_pairs(paragraphs, "sop", seed=3)
    natural = [(b, a) if y else (a, b) for a, b, y in zip(sop_first, sop_second, swapped)]
    first, second, labels = corpora.sentence_pairs(paragraphs, "nsp", seed=3)
    assert abs(labels.mean() - 0.5) <= 0.05
    assert first == [a for a, _ in natural]
    seconds = {b for _, b in natural}
    negatives = [(s, b) for s, (_, b), y in zip(second, natural, labels) if y]
    assert all(s in seconds for s, _ in negatives)
    # Only a chance match of two paragraphs' second sentences reads like the true one.
    assert np.mean([s != b for s, b in negatives]) > 0.9
    assert all(s == b for s, (_, b), y in zip(second, natural, labels) if not y)


def test_same_product_negatives_name_the_same_product_and_leave_the_rest_as_before(data_dir):
    names = corpora.product_names(data_dir)
    paragraphs = [*corpora.pretraining_texts(data_dir, "general", cleaned=True)[:500],
                  *corpora.pretraining_texts(data_dir, "domain", cleaned=True)[:1500]]
    groups = corpora.product_groups(paragraphs, names)
    assert 0.2 < (groups >= 0).mean() < 0.9          # product paragraphs grouped; general text and routes not
    plain = corpora.sentence_pairs(paragraphs, "nsp", seed=3)
    first, second, labels = corpora.sentence_pairs(paragraphs, "nsp", seed=3, groups=groups)
    assert first == plain[0] and np.array_equal(labels, plain[2])   # same cuts, same labels: only negatives move
    assert all(s == b for s, b, y in zip(second, plain[1], labels) if not y)
    # Every grouped negative comes from another paragraph of its product: a brute-force lookup of
    # the second segment among that product's paragraphs, never the paragraph's own.
    sop_first, sop_second, swapped = corpora.sentence_pairs(paragraphs, "sop", seed=3)
    natural_second = [a if y else b for a, b, y in zip(sop_first, sop_second, swapped)]
    seconds_of = {}
    for i, (g, s) in enumerate(zip(groups, natural_second)):
        seconds_of.setdefault(g, []).append((i, s))
    grouped_negatives = [i for i, (g, y) in enumerate(zip(groups, labels)) if y and g >= 0]
    assert len(grouped_negatives) > 100
    for i in grouped_negatives:
        sources = [j for j, s in seconds_of[groups[i]] if s == second[i]]
        assert sources and any(j != i for j in sources)
    # Ungrouped negatives keep their draw from any paragraph.
    assert all(second[i] == plain[1][i] for i, (g, y) in enumerate(zip(groups, labels)) if y and g < 0)
    with pytest.raises(ValueError, match="one id a paragraph"):
        corpora.sentence_pairs(paragraphs, "nsp", seed=3, groups=groups[:-1])


def test_a_product_alone_in_its_group_falls_back_to_any_paragraph():
    texts = ["the Vix A1 is new. it is bright.", "the Vix A10 is old. it is dim.", "the Vix A10 hums. it is loud.",
             "ferries run daily. it is busy."] * 30
    groups = corpora.product_groups(texts[:4], ["Vix A1", "Vix A10"])
    assert groups.tolist() == [0, 1, 1, -1]
    alone = set()   # "Vix A1" is named once: its negatives come from any other paragraph, never its own
    for seed in range(20):
        first, second, labels = corpora.sentence_pairs(texts[:4], "nsp", seed=seed, groups=groups)
        assert all(second[i] in {"it is dim.", "it is loud."} for i in (1, 2))   # Vix A10's pair: each other
        alone |= {second[0]} if labels[0] else set()
    assert alone and alone <= {"it is dim.", "it is loud.", "it is busy."}
    many = corpora.sentence_pairs(texts, "nsp", seed=1, groups=np.tile(groups, 30))
    assert {s for s, g, y in zip(many[1], np.tile(groups, 30), many[2]) if y and g == 1} <= {"it is dim.", "it is loud."}


def test_sentence_pairs_are_deterministic_and_cut_single_sentences():
    texts = ["the lamp is new. it is bright. it was cheap.", "one sentence with six words here.", "word"]
    for task in corpora.TASKS:
        a, b = corpora.sentence_pairs(texts * 50, task, seed=7), corpora.sentence_pairs(texts * 50, task, seed=7)
        assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])
        assert len(a[0]) == 100  # single words cannot be cut: dropped
        assert a[2].tolist() != corpora.sentence_pairs(texts * 50, task, seed=8)[2].tolist()
    assert corpora.split_in_two("one sentence with six words here.", 0.9) == ("one sentence with", "six words here.")
    assert {corpora.split_in_two(texts[0], u)[0] for u in (0.1, 0.9)} == {"the lamp is new.",
                                                                          "the lamp is new. it is bright."}
    with pytest.raises(ValueError, match="sop, nsp"):
        corpora.sentence_pairs(texts, "mlm", seed=0)


def test_sentence_pairs_take_under_a_second_per_100k(paragraphs):
    many = (paragraphs * 50)[:100_000]
    start = time.perf_counter()
    corpora.sentence_pairs(many, "nsp", seed=0)
    assert time.perf_counter() - start < 3.0  # 1 s target; slack for a shared 2-core machine
