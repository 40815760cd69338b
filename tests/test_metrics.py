"""relcourse.metrics against independent oracles: brute-force loops over pairs, and sklearn."""
import doctest
import itertools
import math
import time

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from relcourse import metrics

SEEDS = [0, 1, 2, 3, 4]


def random_set(seed, n_queries=40, max_docs=12):
    """Queries of 1..max_docs documents, rows shuffled so a query's rows are not contiguous,
    scores on a coarse grid so the model ties often, and some single-tier queries."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_docs + 1, n_queries)
    query_ids = np.repeat(rng.permutation(1000)[:n_queries], sizes)
    labels = rng.integers(0, 4, len(query_ids))
    single_tier = np.isin(query_ids, query_ids[rng.integers(0, len(query_ids), 5)])
    labels[single_tier] = rng.integers(0, 4)
    scores = np.round(rng.normal(labels * 0.3, 1.0), 1)
    shuffle = rng.permutation(len(query_ids))
    return labels[shuffle], scores[shuffle], query_ids[shuffle]


def by_query(labels, scores, query_ids):
    for q in np.unique(query_ids):
        rows = query_ids == q
        yield labels[rows], scores[rows]


def brute_pair_counts(y, s):
    correct = inverted = tied = 0
    for i, j in itertools.permutations(range(len(y)), 2):
        if y[i] > y[j]:
            correct += s[i] > s[j]
            inverted += s[i] < s[j]
            tied += s[i] == s[j]
    return correct, inverted, tied


# --- AUC -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_auc_matches_mann_whitney_double_loop(seed):
    labels, scores, _ = random_set(seed)
    positives, negatives = scores[labels >= 2], scores[labels <= 1]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    assert metrics.auc(labels, scores) == pytest.approx(wins / (len(positives) * len(negatives)))


def test_auc_with_one_class_says_so():
    with pytest.raises(ValueError, match="irrelevant"):
        metrics.auc([0, 1, 1], [0.1, 0.2, 0.3])


# --- PNR -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_pair_counts_and_pnr_match_double_loop(seed):
    labels, scores, query_ids = random_set(seed)
    per_query = [brute_pair_counts(y, s) for y, s in by_query(labels, scores, query_ids)]
    correct, inverted, tied = map(sum, zip(*per_query))
    assert tied > 0  # the grid of scores makes ties, so the test covers them
    assert metrics.pair_counts(labels, scores, query_ids) == (correct, inverted, tied)
    assert metrics.pnr(labels, scores, query_ids) == pytest.approx(correct / inverted)

    ratios = [c / max(i, 1) for c, i, _ in per_query if c + i > 0]
    assert metrics.pnr_per_query(labels, scores, query_ids) == pytest.approx(np.mean(ratios))


def test_pnr_conventions():
    # query 'a' is perfect (3 pairs), 'b' inverts its one pair, 'c' has one tier, 'd' one document
    labels = [2, 1, 0, 3, 1, 2, 2, 3]
    scores = [0.9, 0.5, 0.1, 0.2, 0.8, 0.4, 0.6, 0.7]
    query_ids = ["a", "a", "a", "b", "b", "c", "c", "d"]
    assert metrics.pair_counts(labels, scores, query_ids) == (3, 1, 0)
    assert metrics.pnr(labels, scores, query_ids) == 3.0
    # 'a' counts 3 / max(0, 1) = 3, 'b' 0 / 1 = 0; 'c' and 'd' have no pair and are skipped
    assert metrics.pnr_per_query(labels, scores, query_ids) == 1.5
    assert metrics.pnr(labels[:3], scores[:3], query_ids[:3]) == math.inf


def test_pnr_drops_tied_pairs_and_fails_without_any_pair():
    assert metrics.pair_counts([1, 0, 2], [0.5, 0.5, 0.9], [0, 0, 0]) == (2, 0, 1)
    for labels, scores in [([1, 0], [0.5, 0.5]), ([2, 2], [0.1, 0.9])]:  # all tied; one tier
        with pytest.raises(ValueError, match="PNR is undefined"):
            metrics.pnr(labels, scores, [0, 0])
        with pytest.raises(ValueError, match="PNR is undefined"):
            metrics.pnr_per_query(labels, scores, [0, 0])


def test_pnr_is_fast_on_tens_of_thousands_of_queries():
    rng = np.random.default_rng(0)
    query_ids = np.repeat(np.arange(30_000), 20)
    labels, scores = rng.integers(0, 4, len(query_ids)), rng.normal(size=len(query_ids))
    start = time.perf_counter()
    metrics.pnr(labels, scores, query_ids)
    metrics.ndcg(labels, scores, query_ids, k=10)
    assert time.perf_counter() - start < 5  # about 1 s on 2 cores; a Python loop over pairs takes minutes


# --- NDCG ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 5, 10])
def test_ndcg_matches_sklearn_per_query_including_ties(seed, k):
    labels, scores, query_ids = random_set(seed)
    per_query = []
    for y, s in by_query(labels, scores, query_ids):
        if not y.any():
            continue  # all tier 0: no ideal order, left out of the mean
        if len(y) == 1:
            per_query.append(1.0)  # sklearn refuses a one-document list; it is trivially ideal
            continue
        # sklearn's gain is y_true itself, so 2**y - 1 makes it our exponential gain
        per_query.append(ndcg_score([2.0 ** y - 1], [s], k=k))
    assert metrics.ndcg(labels, scores, query_ids, k=k) == pytest.approx(np.mean(per_query))


def test_ndcg_leaves_out_all_zero_queries():
    labels, scores = [2, 0, 0, 0], [0.1, 0.9, 0.5, 0.4]
    one_query = metrics.ndcg(labels[:2], scores[:2], [0, 0], k=5)
    assert one_query == pytest.approx(1 / math.log2(3))
    assert metrics.ndcg(labels, scores, [0, 0, 1, 1], k=5) == one_query
    with pytest.raises(ValueError, match="only tier-0"):
        metrics.ndcg(labels[2:], scores[2:], [1, 1], k=5)
    with pytest.raises(ValueError, match="positive integer"):
        metrics.ndcg(labels, scores, [0, 0, 1, 1], k=0)


# --- input checks ----------------------------------------------------------------------------

@pytest.mark.parametrize("labels, scores, query_ids, message", [
    ([1, 0], [0.1, 0.2, 0.3], [0, 0], r"lengths differ: \{'labels': 2, 'scores': 3, 'query_ids': 2\}"),
    ([1, 4, -1], [0.1, 0.2, 0.3], [0, 0, 0], r"integer tiers 0..3, found \[-1, 4\]"),
    ([1, 0.5, 2], [0.1, 0.2, 0.3], [0, 0, 0], r"found \[0.5\]"),
    ([1, 0, 2], [0.1, float("nan"), 0.3], [0, 0, 0], "1 NaN"),
    ([], [], [], "empty"),
    ([[1, 0]], [[0.1, 0.2]], [[0, 0]], "1-D"),
])
def test_bad_inputs_raise_clear_errors(labels, scores, query_ids, message):
    for call in (lambda: metrics.pnr(labels, scores, query_ids),
                 lambda: metrics.ndcg(labels, scores, query_ids, k=5),
                 lambda: metrics.evaluate(labels, scores, query_ids)):
        with pytest.raises(ValueError, match=message):
            call()


# --- evaluate --------------------------------------------------------------------------------

def test_evaluate_breaks_down_by_bucket_with_an_empty_one():
    labels, scores, query_ids = random_set(0, n_queries=60)
    buckets = np.where(query_ids % 2 == 0, "head", "tail")  # no torso query
    table = metrics.evaluate(labels, scores, query_ids, buckets)

    assert list(table.index) == ["all", "head", "torso", "tail"]
    assert list(table.columns) == ["n_queries", "n_docs", "auc", "pnr", "pnr_query_mean", "ndcg@5", "ndcg@10"]
    for name, rows in [("all", slice(None)), ("head", buckets == "head"), ("tail", buckets == "tail")]:
        y, s, q = labels[rows], scores[rows], query_ids[rows]
        expected = [len(np.unique(q)), len(y), metrics.auc(y, s), metrics.pnr(y, s, q),
                    metrics.pnr_per_query(y, s, q), metrics.ndcg(y, s, q, k=5), metrics.ndcg(y, s, q, k=10)]
        assert table.loc[name].tolist() == pytest.approx(expected)
    assert table.loc["torso", ["n_queries", "n_docs"]].tolist() == [0, 0]
    assert table.loc["torso"].drop(["n_queries", "n_docs"]).isna().all()


def test_evaluate_gives_nan_where_a_metric_is_undefined():
    # tail: tiers 1 and 0 only, so no AUC (no relevant pair) but a PNR and an NDCG (tier 1 gains 1);
    # torso: tier 0 only, so nothing is defined
    table = metrics.evaluate(labels=[3, 0, 1, 0, 0, 0], scores=[0.9, 0.1, 0.8, 0.2, 0.5, 0.4],
                             query_ids=[0, 0, 1, 1, 2, 2],
                             buckets=["head", "head", "tail", "tail", "torso", "torso"])
    assert math.isnan(table.loc["tail", "auc"])
    assert table.loc["tail", ["pnr", "ndcg@5"]].tolist() == [math.inf, 1.0]
    assert table.loc["torso", "n_docs"] == 2
    assert table.loc["torso"].drop(["n_queries", "n_docs"]).isna().all()
    assert table.loc["all", "auc"] == 1.0


def test_evaluate_checks_buckets():
    args = ([1, 0], [0.2, 0.1], [0, 0])
    with pytest.raises(ValueError, match=r"unknown buckets \['middle'\]"):
        metrics.evaluate(*args, buckets=["head", "middle"])
    with pytest.raises(ValueError, match="more than one bucket"):
        metrics.evaluate(*args, buckets=["head", "tail"])
    with pytest.raises(ValueError, match="one entry per pair"):
        metrics.evaluate(*args, buckets=["head"])
    assert list(metrics.evaluate(*args).index) == ["all"]


def test_docstring_example():
    assert doctest.testmod(metrics).failed == 0
