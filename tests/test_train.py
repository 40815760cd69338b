"""The training loop on a tiny MLP regression: learning, exact resume, reruns, config checks, early stopping,
gradient accumulation and mixed precision."""
import doctest
import json

import numpy as np
import pytest
import torch
from torch import nn

import relcourse.train
from relcourse.config import ConfigError
from relcourse.losses import CombinedLoss
from relcourse.train import CheckpointError, TrainConfig, micro_batches, read_log, train

TRUE_WEIGHTS = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def make_model(dropout: float = 0.1) -> nn.Module:
    """The same initial weights on every call; dropout makes resuming depend on the RNG state too."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def batch_at(step: int, rows: int = 16) -> dict:
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(rows, 4, generator=generator)
    return {"x": x, "y": x @ TRUE_WEIGHTS + 0.01 * torch.randn(rows, 1, generator=generator)}


def loss_fn(model: nn.Module, batch: dict) -> dict:
    error = model(batch["x"]) - batch["y"]
    return {"loss": error.pow(2).mean(), "mae": error.abs().mean()}


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"steps": 20, "lr": 0.01, "warmup_steps": 2, "checkpoint_every": 5, "log_every": 1,
                          "threads": 1, **changes})


def run(model, run_dir, cfg=None, batches=batch_at, **kwargs):
    return train(model, batches, loss_fn, cfg or config(), run_dir, progress=False, **kwargs)


def held_out_score(model: nn.Module) -> dict:
    """Minus the loss on a fixed batch: higher is better."""
    return {"neg_loss": -loss_fn(model, batch_at(10**6))["loss"].item()}


def train_lines(run_dir) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "elapsed_s"} for line in read_log(run_dir)]


def test_loss_decreases_and_is_logged(tmp_path):
    result = run(make_model(), tmp_path, config(steps=60, lr=0.03, log_every=10))
    assert [line["step"] for line in result.history] == [1, 10, 20, 30, 40, 50, 60]
    assert set(result.history[0]) == {"step", "lr", "loss", "mae", "elapsed_s"}
    assert result.history[-1]["loss"] < 0.2 * result.history[0]["loss"]
    assert result.history[0]["lr"] == 0.0                      # the warm-up starts from 0
    assert (result.steps_done, result.best, result.stopped_early) == (60, None, False)


class Killed(Exception):
    pass


def killed_at(kill_step: int):
    def batches(step):
        if step == kill_step:
            raise Killed(f"killed at step {step}")
        return batch_at(step)
    return batches


def closeness_to_the_start(model: nn.Module) -> dict:
    """Falls as training moves the weights: the best evaluation is the first, long before the kill."""
    start = make_model().state_dict()
    return {"closeness": -sum((v - start[k]).abs().sum().item() for k, v in model.state_dict().items())}


@pytest.mark.parametrize("with_evaluation", [False, True])
def test_a_killed_run_resumes_exactly(tmp_path, with_evaluation):
    # With evaluation: the best weights (step 4) and the evaluations since (step 8) come from the
    # checkpoint of step 10, and the run stops early at step 16, after 3 evaluations without progress.
    kwargs = {"evaluate": closeness_to_the_start, "metric": "closeness"} if with_evaluation else {}
    cfg = config(eval_every=4, patience=3) if with_evaluation else config()
    uninterrupted = make_model()
    result_a = run(uninterrupted, tmp_path / "a", cfg, **kwargs)

    with pytest.raises(Killed):
        run(make_model(), tmp_path / "b", cfg, batches=killed_at(12), **kwargs)
    assert json.loads((tmp_path / "b" / "checkpoint" / "run.json").read_text())["step"] == 10
    assert max(line["step"] for line in read_log(tmp_path / "b")) == 12   # logged past the checkpoint
    resumed = make_model()
    result_b = run(resumed, tmp_path / "b", cfg, **kwargs)

    a, b = uninterrupted.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert train_lines(tmp_path / "a") == train_lines(tmp_path / "b")   # no duplicates, same numbers
    assert (result_b.steps_done, result_b.best) == (result_a.steps_done, result_a.best)
    if with_evaluation:
        assert (result_b.steps_done, result_b.best["step"], result_b.stopped_early) == (16, 4, True)


@pytest.mark.parametrize("minutes, checkpointed_step", [(1e-9, 9), (0.0, None)])
def test_checkpoints_also_come_by_the_clock(tmp_path, minutes, checkpointed_step):
    # No step-based checkpoints: with a (tiny) time limit every logged step (3, 6, 9) is late enough
    # to checkpoint, and the run killed at step 11 resumes from step 9 to the same weights.
    cfg = config(checkpoint_every=0, checkpoint_minutes=minutes, log_every=3)
    with pytest.raises(Killed):
        run(make_model(), tmp_path / "b", cfg, batches=killed_at(11))
    saved = tmp_path / "b" / "checkpoint" / "run.json"
    assert (json.loads(saved.read_text())["step"] if saved.exists() else None) == checkpointed_step
    resumed, uninterrupted = make_model(), make_model()
    run(resumed, tmp_path / "b", cfg)
    run(uninterrupted, tmp_path / "a", cfg)
    a, b = uninterrupted.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_finished_run_returns_without_training(tmp_path):
    trained = make_model()
    first = run(trained, tmp_path)

    def no_batches(step):
        raise AssertionError("a finished run must not train again")
    reloaded = make_model()
    again = run(reloaded, tmp_path, batches=no_batches)
    assert again == first
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in reloaded.state_dict().items())


def test_a_checkpoint_from_another_config_is_refused(tmp_path):
    with pytest.raises(Killed):
        run(make_model(), tmp_path, batches=killed_at(7))
    with pytest.raises(CheckpointError, match=r"lr: 0.01 in the checkpoint, 0.02 now.*delete"):
        run(make_model(), tmp_path, config(lr=0.02))
    with pytest.raises(CheckpointError, match=r"model parameters 0.bias, 0.weight, 1.bias, ... differ"):
        run(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 1)), tmp_path)
    # How often it logs, checkpoints or where it runs does not change the run: it resumes.
    assert run(make_model(), tmp_path, config(log_every=3, checkpoint_every=0, threads=2)).steps_done == 20


def test_gradient_accumulation_cuts_each_batch_into_micro_batches(tmp_path):
    """Two halves of each batch per step give the gradient of the whole batch: the same weights, up to rounding."""
    asked = []
    accumulated = make_model(dropout=0.0)
    run(accumulated, tmp_path / "halves", config(steps=6, grad_accum=2),
        batches=lambda i: asked.append(i) or batch_at(i))
    assert asked == list(range(6))               # one batch a step, whatever grad_accum
    whole = make_model(dropout=0.0)
    run(whole, tmp_path / "whole", config(steps=6))
    for name, value in whole.state_dict().items():
        torch.testing.assert_close(accumulated.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_fused_adamw_makes_the_update_of_the_loop_up_to_rounding(tmp_path, monkeypatch):
    made = []
    real = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda *args, **kwargs: made.append(kwargs.get("fused")) or real(*args, **kwargs))
    fused, loop = make_model(dropout=0.0), make_model(dropout=0.0)
    run(fused, tmp_path / "fused", config(steps=6, fused_adamw=True))
    run(loop, tmp_path / "loop", config(steps=6))
    assert made == [True, None]        # None: torch's default implementation
    for name, value in loop.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[name], value, rtol=1e-5, atol=1e-6)


class TinyScorer(nn.Module):
    """A relevance model without dropout: a score per row of features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, batch):
        return self.net(batch["x"]).squeeze(-1)


def query_groups(step: int, groups: int = 4, docs: int = 4) -> dict:
    """`groups` queries of `docs` documents, one of each tier 0..3 in a random order: every group
    has the same 6 pairs, so the pairwise mean of the batch is the mean of its micro-batches'."""
    generator = torch.Generator().manual_seed(step)
    tiers = torch.cat([torch.randperm(docs, generator=generator) for _ in range(groups)]).float()
    return {"x": torch.randn(groups * docs, 4, generator=generator) + tiers[:, None],
            "targets": tiers, "query_ids": torch.arange(groups).repeat_interleave(docs) + 10 * step}


@pytest.mark.parametrize("k", [2, 4])
def test_k_micro_batches_of_whole_query_groups_make_the_update_of_the_whole_batch(tmp_path, k):
    loss = CombinedLoss(pairwise_weight=1.0)     # soft CE + pairwise, both means, the pairs within each query
    cut = []

    def loss_fn(m, batch):
        cut.append(batch["query_ids"].tolist())
        return {"loss": loss(m(batch), batch["targets"], batch["query_ids"])}
    weights = {}
    for accum in (1, k):
        model = TinyScorer()
        train(model, query_groups, loss_fn, config(steps=5, grad_accum=accum), tmp_path / str(accum), progress=False)
        weights[accum] = model.state_dict()
    for name, value in weights[1].items():
        torch.testing.assert_close(weights[k][name], value, rtol=1e-5, atol=1e-6)
    micro = cut[5:5 + k]                           # the first step's micro-batches: whole queries, none split
    assert sum(micro, []) == cut[0] and all(len(set(m)) == 4 // k and len(m) == 16 // k for m in micro)


def test_micro_batches_keep_query_groups_whole_and_say_when_they_cannot():
    batch = {"input_ids": torch.arange(7), "query_ids": torch.tensor([1, 1, 1, 2, 2, 3, 3]),
             "masked_input_ids": torch.arange(4), "flag": True}
    halves = micro_batches(batch, 2)
    assert [b["query_ids"].tolist() for b in halves] == [[1, 1, 1, 2, 2], [3, 3]]
    assert [b["masked_input_ids"].tolist() for b in halves] == [[0, 1], [2, 3]] and halves[1]["flag"]
    with pytest.raises(ValueError, match="3 query groups .* cannot be cut into grad_accum=4"):
        micro_batches(batch, 4)


def autocast_seen(precision: str, run_dir) -> tuple[set, list]:
    """The autocast dtypes loss_fn ran under, and the logged losses, of a few steps at `precision`."""
    seen = set()

    def watched(m, batch):
        seen.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return loss_fn(m, batch)
    result = train(make_model(), batch_at, watched, config(steps=4, precision=precision), run_dir, progress=False)
    return seen, [line["loss"] for line in result.history]


def test_bf16_trains_on_cpu_and_precisions_switch_in_one_process(tmp_path):
    """A notebook trains arms at several precisions, one after another, in one process."""
    for i, precision in enumerate(["fp32", "bf16", "fp32", "bf16"]):
        seen, losses = autocast_seen(precision, tmp_path / str(i))
        assert seen == {torch.bfloat16 if precision == "bf16" else torch.float32}
        assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_fp16_needs_cuda(tmp_path, device):
    if device == "auto" and torch.cuda.is_available():
        pytest.skip("auto trains on CUDA here")
    with pytest.raises(ValueError, match=f"fp16' needs CUDA, and this run trains on the CPU \\(device='{device}'\\)"):
        run(make_model(), tmp_path, config(precision="fp16", device=device))


def test_early_stopping_keeps_the_best_weights(tmp_path):
    scores, snapshots = iter([1.0, 2.0, 1.5, 1.9, 1.2, 5.0]), []

    def worse_after_the_second(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"score": next(scores), "other": 0.0}
    model = make_model()
    result = run(model, tmp_path, config(eval_every=3, patience=3), evaluate=worse_after_the_second, metric="score")
    assert (result.steps_done, result.stopped_early) == (15, True)   # evaluations at steps 3, 6 (the best), 9, 12, 15
    assert result.best == {"step": 6, "score": 2.0, "other": 0.0}
    assert [line["eval"]["score"] for line in result.history if "eval" in line] == [1.0, 2.0, 1.5, 1.9, 1.2]
    assert all(torch.equal(snapshots[1][k], v) for k, v in model.state_dict().items())
    assert model.training


def test_a_learning_curve_is_logged_and_changes_nothing(tmp_path):
    # evaluations without a metric select nothing: the same weights, bit for bit, as no evaluation
    plain, curve = make_model(), make_model()
    run(plain, tmp_path / "plain", config())
    result = run(curve, tmp_path / "curve", config(eval_every=4), evaluate=held_out_score)
    assert [line["step"] for line in result.history if "eval" in line] == [4, 8, 12, 16, 20]
    assert result.best is None and not result.stopped_early
    assert all(torch.equal(v, curve.state_dict()[k]) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("lr", 0.0), ("warmup_steps", -1), ("weight_decay", 2.0), ("grad_accum", 0),
    ("max_grad_norm", -1.0), ("checkpoint_every", -5), ("log_every", 0), ("precision", "fp8"),
    ("device", "tpu"), ("threads", 0), ("eval_every", -1), ("patience", -1)])
def test_invalid_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}={value!r} is (out of range|not one of)"):
        config(**{field: value})


def test_invalid_settings_say_what_is_valid():
    with pytest.raises(ConfigError, match=r"^steps=0 is out of range \[1, 1000000000\]: optimizer steps"):
        config(steps=0)
    with pytest.raises(ConfigError, match="patience=2 needs evaluations: set eval_every > 0"):
        config(patience=2)


def test_misuse_of_train_is_explained(tmp_path):
    with pytest.raises(ValueError, match="evaluation needs an `evaluate` function and cfg.eval_every > 0 "
                                         r"\(and a `metric` to maximise for early stopping\).*patience=2"):
        run(make_model(), tmp_path, config(eval_every=5, patience=2), evaluate=held_out_score)
    with pytest.raises(ValueError, match="evaluation needs an `evaluate` function"):
        run(make_model(), tmp_path, config(), metric="auc")
    with pytest.raises(ValueError, match=r"metric 'auc' is not among the evaluation's results \['neg_loss'\]"):
        run(make_model(), tmp_path / "auc", config(eval_every=5), evaluate=held_out_score, metric="auc")
    with pytest.raises(ValueError, match=r"must return a dict with a 'loss' entry.*\['mse'\]"):
        train(make_model(), batch_at, lambda m, b: {"mse": m(b["x"]).mean()}, config(), tmp_path / "x", progress=False)


def test_docstring_example():
    assert doctest.testmod(relcourse.train).failed == 0
