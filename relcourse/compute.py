"""Training compute: what "at equal compute" means in a claim, counted in FLOPs.

Training a transformer costs about 6 FLOPs per weight of its layers per token (2 in the
forward pass, 4 in the backward) plus 12 x layers x hidden x length for attention's scores and
their weighted sum; a forward pass alone costs a third of that (Kaplan et al. 2020, "Scaling
laws for neural language models", table 1). Embedding lookups are left out: they are reads, not
products. A run's compute is then

    steps x rows per step x tokens per row x FLOPs per token

plus, where a run also calls a model it does not train on every batch (layer-wise
distillation reads the teacher's hidden states), that model's forward FLOPs on the same tokens.
Rows are padded to the profile's max_len (relcourse.data), so tokens per row is max_len. Both
sides of a comparison are counted the same way, so what is left out (the MLM output layer on
the masked tokens, the optimizer's update) cancels in their ratio.

Claims that promise equal compute (ClaimArms.equal_compute: P3, D5, D6) are checked when they
are recorded: their arms' compute must agree within EQUAL_WITHIN, or within two steps on a
short run (an epoch's steps are rounded, and a share of the data keeps whole queries).

>>> cost = Compute(steps=100, rows=32, tokens=32, train_flops_per_token=1e6)
>>> f"{cost.total:.3g} FLOPs"
'1.02e+11 FLOPs'
>>> f"{Compute(100, 32, 32, 1e6, forward_flops_per_token=5e5).total / cost.total:.2f}"
'1.50'
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .config import ModelConfig, Profile, with_overrides
from .models import RelevanceBert
from .store import load_manifest

EQUAL_WITHIN = 0.01     # arms of an equal-compute claim may differ by a rounded step, not more


def flops_per_token(model: RelevanceBert, length: int, training: bool) -> float:
    """FLOPs per token of one training step (training=True) or one forward pass of `model`
    on rows of `length` tokens.

    >>> from relcourse.config import ModelConfig
    >>> tiny = RelevanceBert(ModelConfig(layers=2, hidden=64, heads=2, intermediate=256), vocab_size=1_000, max_len=32)
    >>> round(flops_per_token(tiny, 32, training=True) / flops_per_token(tiny, 32, training=False), 2)
    3.0
    """
    cfg = model.cfg
    weights = sum(p.numel() for p in model.encoder.encoder.parameters())   # the layers; heads read one row each
    attention = 4 * cfg.layers * cfg.hidden * length
    return 3 * (2 * weights + attention) if training else 2 * weights + attention


@dataclass(frozen=True)
class Compute:
    steps: int                      # optimizer steps taken
    rows: int                       # rows per optimizer step (all its micro-batches)
    tokens: int                     # tokens per row
    train_flops_per_token: float    # of the model being trained
    forward_flops_per_token: float = 0.0   # of a model only run alongside (a teacher read layer by layer)

    @property
    def total(self) -> float:
        return self.steps * self.rows * self.tokens * (self.train_flops_per_token + self.forward_flops_per_token)


def shape_flops_per_token(model: ModelConfig, vocab: int, length: int, training: bool) -> float:
    """flops_per_token of a model of this shape, built on the meta device: shapes only, no
    memory, even for a BERT-large."""
    with torch.device("meta"):
        return flops_per_token(RelevanceBert(model, vocab, length), length, training)


def _flops(model: ModelConfig, profile: Profile, training: bool) -> float:
    return shape_flops_per_token(model, profile.tokenizer.vocab_size, profile.tokenizer.max_len, training)


def run_compute(profile: Profile, seed: int, stage: str) -> Compute:
    """The compute of this profile's run of `stage` ('pretrain' or 'distill') on `seed`: its
    steps as the run recorded them (built first if it is not cached)."""
    from .distill import mid_profile, run_distill
    from .pretrain import run_pretrain
    if stage == "pretrain":
        steps = load_manifest(run_pretrain(profile, seed, progress=False))["metrics"]["steps"]
        cfg = profile.pretrain
        return Compute(steps, cfg.batch_size, profile.tokenizer.max_len, _flops(cfg.model, profile, True))
    if stage == "distill":
        steps = load_manifest(run_distill(profile, seed, progress=False))["metrics"]["steps"]
        cfg = profile.distill
        # the layer-wise term runs the model whose scores the student fits: the teacher, or a chain's mid student
        read = mid_profile(profile).distill.student if cfg.via_layers else profile.pretrain.model
        forward = _flops(read, profile, False) if cfg.hidden_weight else 0.0
        return Compute(steps, cfg.batch_size, profile.tokenizer.max_len, _flops(cfg.student, profile, True), forward)
    raise ValueError(f"stage {stage!r} has no compute count; choose 'pretrain' or 'distill'")


def claims_compute(profile: Profile, seed: int, claim_ids: list[str], stage: str) -> pd.DataFrame:
    """For each claim, what its arm's and its baseline's runs of `stage` trained on `seed`, and
    each side's compute as a multiple of the baseline's (1.00 on both rows: equal compute)."""
    from .experiments import claim_arms   # (experiments imports this module)
    rows = {}
    for claim_id in claim_ids:
        spec = claim_arms(claim_id, profile.name)
        sides = {side: run_compute(with_overrides(profile, getattr(spec, side)), seed, stage)
                 for side in ("arm", "baseline")}
        for side, c in sides.items():
            rows[claim_id, side] = {"steps": c.steps, "rows per step": c.rows, "tokens per row": c.tokens,
                                    "MFLOPs per token, trained": c.train_flops_per_token / 1e6,
                                    "MFLOPs per token, run alongside": c.forward_flops_per_token / 1e6,
                                    "total FLOPs": c.total, "x baseline": c.total / sides["baseline"].total}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["claim", "side"])


def check_equal_compute(claim_id: str, stage: str, arm: Compute, baseline: Compute) -> None:
    """Raise if the two sides of a claim that promises equal compute in `stage` trained unequal amounts."""
    ratio = arm.total / baseline.total
    if abs(ratio - 1) > max(EQUAL_WITHIN, 2 / min(arm.steps, baseline.steps)):
        raise ValueError(
            f"claim {claim_id} promises equal compute in {stage}, but its arm trained {arm.total:.4g} FLOPs "
            f"({arm.steps} steps x {arm.rows} rows x {arm.tokens} tokens) and its baseline {baseline.total:.4g} "
            f"({baseline.steps} x {baseline.rows} x {baseline.tokens}), {ratio:.3f} times as much: change the arms "
            "in relcourse.experiments.CLAIM_ARMS so that steps x rows x tokens x model size match")

