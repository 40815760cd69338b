"""Batches: query groups really share a batch, batches are a pure function of the step."""
import numpy as np
import pytest
import torch

from relcourse.data import PairSet, pointwise_batch, query_grouped_batch


def _pairs(query_sizes):
    query_ids = np.repeat(np.arange(len(query_sizes)), query_sizes)
    n = len(query_ids)
    return PairSet(query_ids, np.arange(n), np.random.default_rng(0).integers(0, 4, n).astype(float),
                   {"input_ids": torch.arange(n)[:, None]})


def test_documents_of_one_query_share_a_batch():
    pairs = _pairs([5, 1, 3, 4, 2, 6, 1, 3])
    for step in range(20):
        batch = query_grouped_batch(pairs, step, batch_size=8, docs_per_query=2, seed=0)
        counts = np.unique(batch["query_ids"].numpy(), return_counts=True)[1]
        assert (counts == 2).all() and len(counts) == 4
        # Rows are the right rows: the input of a row is its doc id here.
        assert np.array_equal(pairs.query_ids[batch["input_ids"][:, 0].numpy()], batch["query_ids"].numpy())


def test_single_document_queries_are_never_drawn():
    pairs = _pairs([1, 3, 1, 2])
    seen = {int(q) for s in range(30) for q in query_grouped_batch(pairs, s, 4, 2, 0)["query_ids"]}
    assert seen == {1, 3}
    with pytest.raises(ValueError, match="two or more documents"):
        query_grouped_batch(_pairs([1, 1]), 0, 4, 2, 0)
    with pytest.raises(ValueError, match="multiple"):
        query_grouped_batch(pairs, 0, 5, 2, 0)


def test_batches_are_a_pure_function_of_the_step():
    pairs = _pairs([4] * 10)
    for fn in (lambda s: query_grouped_batch(pairs, s, 8, 4, seed=3), lambda s: pointwise_batch(pairs, s, 7, seed=3)):
        assert torch.equal(fn(5)["input_ids"], fn(5)["input_ids"])
        assert not torch.equal(fn(5)["input_ids"], fn(6)["input_ids"])


def test_pointwise_batches_visit_every_pair_once_per_epoch():
    pairs = _pairs([3] * 10)  # 30 pairs, batches of 6: one epoch = 5 steps
    epoch = torch.cat([pointwise_batch(pairs, s, 6, seed=1)["input_ids"][:, 0] for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(30))
    next_epoch = torch.cat([pointwise_batch(pairs, s, 6, seed=1)["input_ids"][:, 0] for s in range(5, 10)])
    assert sorted(next_epoch.tolist()) == list(range(30)) and not torch.equal(epoch, next_epoch)
    straddling = pointwise_batch(pairs, 2, 14, seed=1)["input_ids"][:, 0]  # rows 28..41: two epochs
    assert len(straddling) == 14
