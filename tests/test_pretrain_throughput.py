"""benchmarks/pretrain_throughput.py: one pretraining step timed in fp32 and in bf16 autocast on the
smoke model (seconds), so that its table, the bf16 / fp32 ratio and the FLOP count stay runnable."""
import sys

import pytest
import torch

from benchmarks import pretrain_throughput


@pytest.fixture(autouse=True)
def keep_threads():
    """main() sets torch's thread count for the whole process: give the later tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_both_precisions_train_and_print_their_ratio(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pretrain_throughput.py", "--profiles", "smoke", "--threads", "1",
                                      "--steps", "2", "--precisions", "fp32", "bf16", "--rounds", "2"])
    monkeypatch.setattr(pretrain_throughput, "matmul_flops", lambda *a, **k: 1e9)   # no 2048^3 product in a test
    pretrain_throughput.main()
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.startswith("smoke ")]
    assert [row[1] for row in rows] == ["fp32", "bf16", "fp32", "bf16"]          # in turns, every round
    assert all(float(row[-3]) > 0 for row in rows)                                # tokens/s
    assert lines[-1].startswith("smoke: bf16 / fp32 tokens/s (best of 2): ") and lines[-1].endswith("x")


def test_bf16_runs_every_linear_layer_under_autocast(monkeypatch):
    """As under the profile's precision='bf16': the forward autocast, not a model cast to bf16."""
    seen = []
    original = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, w, b=None: seen.append(
        torch.is_autocast_enabled("cpu")) or original(x, w, b))
    result = pretrain_throughput.training_tokens_per_s("smoke", "cpu", steps=1, precision="bf16")
    assert result["precision"] == "bf16" and seen and all(seen)
    assert not torch.is_autocast_enabled("cpu")                                   # and nothing is left on
