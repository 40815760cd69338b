"""Training compute (relcourse.compute): the FLOP count against torch's own counter, and the
equal-compute promise of claims P3, D5 and D6."""
import pytest
from torch.utils.flop_counter import FlopCounterMode

from relcourse.compute import Compute, check_equal_compute, flops_per_token
from relcourse.config import ModelConfig
from relcourse.experiments import CLAIM_ARMS
from relcourse.export import random_batch
from relcourse.models import RelevanceBert


@pytest.mark.parametrize("shape, length", [((2, 64, 2, 256), 32), ((3, 128, 4, 512), 48)])
def test_flops_per_token_match_torchs_flop_counter(shape, length):
    layers, hidden, heads, intermediate = shape
    model = RelevanceBert(ModelConfig(layers, hidden, heads, intermediate), vocab_size=1_000, max_len=length)
    batch, rows = random_batch(1_000, length, rows=4), 4
    with FlopCounterMode(display=False) as forward:
        model(batch)["relevance"]
    with FlopCounterMode(display=False) as step:
        model(batch)["relevance"].sum().backward()
    # the counter sees matrix products only; the formula also counts biases and layer norms (~2%)
    assert flops_per_token(model, length, training=False) == pytest.approx(forward.get_total_flops() / (rows * length), rel=0.03)
    assert flops_per_token(model, length, training=True) == pytest.approx(step.get_total_flops() / (rows * length), rel=0.03)


def test_unequal_compute_is_named_with_both_sides():
    side = Compute(steps=1_000, rows=32, tokens=32, train_flops_per_token=1e6)
    check_equal_compute("P3", "pretrain", side, Compute(1_005, 32, 32, 1e6))          # a rounded epoch: fine
    with pytest.raises(ValueError, match=r"claim P3 promises equal compute in pretrain.*1250 steps x 32.*\(1000 x 32 x 32\), 1\.250 times"):
        check_equal_compute("P3", "pretrain", Compute(1_250, 32, 32, 1e6), side)
    with pytest.raises(ValueError, match="1.500 times"):   # a teacher run alongside is compute too
        check_equal_compute("D8", "distill", Compute(1_000, 32, 32, 1e6, forward_flops_per_token=5e5), side)


def test_the_claims_that_promise_equal_compute_say_where():
    assert {c: a.equal_compute for c, a in CLAIM_ARMS.items() if a.equal_compute} == {
        "P3": "pretrain", "D5": "distill", "D6": "distill"}
