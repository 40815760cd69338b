"""relcourse.serving: the arithmetics a model is served in, checked against quantize_dynamic and
autocast applied by hand on a tiny random-weight model, and the timing core (claims D11, D12 and
benchmarks/serving.py)."""
import contextlib
import copy
import doctest
import time

import numpy as np
import pytest
import torch

from relcourse import serving
from relcourse.claims import CLAIMS_BY_ID
from relcourse.config import ModelConfig
from relcourse.data import COMPACT, PairSet
from relcourse.export import random_batch
from relcourse.finetune import score
from relcourse.models import RelevanceBert

VOCAB, MAX_LEN, ROWS = 60, 16, 40


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = RelevanceBert(ModelConfig(layers=1, hidden=32, heads=2, intermediate=64), VOCAB, MAX_LEN)
    torch.nn.init.normal_(model.relevance_head[1].weight)   # scores of several units, not all near 0
    return model


@pytest.fixture(scope="module")
def pairs():
    inputs = random_batch(VOCAB, MAX_LEN, ROWS, seed=1)
    return PairSet(np.repeat(np.arange(ROWS // 4), 4), np.arange(ROWS), np.zeros(ROWS),
                   {k: v.to(COMPACT[k]) for k, v in inputs.items()})


def test_int8_scores_are_those_of_quantize_dynamic_applied_by_hand(model, pairs):
    by_hand = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    int8 = serving.score_in(model, pairs, "int8")
    np.testing.assert_array_equal(int8, score(by_hand, pairs))
    assert np.abs(int8 - score(model, pairs)).max() > 0                  # quantised: not the fp32 scores
    assert type(model.relevance_head[1]) is torch.nn.Linear               # the model itself is left as it was


def test_bf16_scores_are_autocast_and_close_to_fp32(model, pairs):
    fp32 = serving.score_in(model, pairs, "fp32")
    np.testing.assert_array_equal(fp32, score(model, pairs))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        by_hand = score(model, pairs)
    bf16 = serving.score_in(model, pairs, "bf16")
    np.testing.assert_array_equal(bf16, by_hand)
    delta = np.abs(bf16 - fp32).max()
    assert 0 < delta < 0.05 * np.abs(fp32).max()   # bf16 keeps 8 bits of mantissa: ~1% per product


def test_an_unknown_arithmetic_is_named(model):
    with pytest.raises(ValueError, match="arithmetic 'fp8' is unknown; choose one of fp32, bf16, int8"):
        serving.in_arithmetic(model, "fp8")


def test_half_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    assert serving.half_precision() == ("bf16" if serving.bf16_supported() else "int8")
    monkeypatch.setattr(serving, "bf16_supported", lambda: False)
    assert serving.half_precision() == "int8"


def timed_alone(relevance, x, batch_size=4, repeats=2):
    return serving.timed_together({"one": (relevance, contextlib.nullcontext, {"x": x})}, batch_size, repeats)["one"]


def test_scorers_take_turns_pass_by_pass():
    """Two scorers, two passes: warm-ups first, then A's pass 1, B's pass 1, A's pass 2, B's pass 2,
    so a slow spell of the machine lands on both sides of a speed ratio, not on one."""
    calls = []

    def scorer(name):
        def relevance(batch):
            calls.append(name)
            return batch["x"]
        return relevance

    x = torch.arange(8.0)   # two batches of 4
    scorers = {"a": (scorer("a"), contextlib.nullcontext, {"x": x}),
               "b": (scorer("b"), contextlib.nullcontext, {"x": x[:4]})}
    timings = serving.timed_together(scorers, batch_size=4, repeats=2)
    assert "".join(calls) == "ab" + "aab" + "aab"
    assert set(timings) == {"a", "b"} and all(t.docs_per_s > 0 for t in timings.values())


def test_d12s_metric_names_what_serving_times():
    # the claim's text is typed in relcourse.claims (which must not import torch): it has to name
    # the amounts serving.py really times, or the registry describes another measurement
    metric = CLAIMS_BY_ID["D12"].metric
    assert f"{serving.TIMED_PAIRS:,} test pairs" in metric and f"fastest of {serving.REPEATS} passes" in metric


def test_latencies_are_of_full_batches_only():
    def relevance(batch):             # 20 ms a row: a full batch of 4 takes 80 ms, the short last one 40
        time.sleep(0.02 * len(batch["x"]))
        return batch["x"]

    t = timed_alone(relevance, torch.arange(6.0))
    assert t.p50_ms >= 75


def test_docs_per_second_counts_each_batch_at_its_fastest():
    delays = iter([0.0, 0.2, 0.01, 0.01, 0.2])   # warm-up; pass 1: batch 1 disturbed; pass 2: batch 2 disturbed

    def relevance(batch):
        time.sleep(next(delays))
        return batch["x"]

    t = timed_alone(relevance, torch.arange(8.0))
    assert t.docs_per_s > 8 / 0.1            # both passes took 0.21 s; the batches' fastest times add to 0.02 s


def test_document_lengths_keep_room_for_the_query():
    assert serving.document_lengths(128, 16) == (128, 96, 64)
    assert serving.document_lengths(16, 8) == (16, 12)                # half of 16 would cut into the query


def test_docstring_examples():
    assert doctest.testmod(serving).failed == 0
