"""The fine-tuning losses of a relevance cross-encoder, one per module, and a registry by name.

Every loss reads the model's output for a (query, document) pair as one logit s (except the
4-class baseline), and is called as loss(scores, labels, query_ids):

    name          formula                                             favours   module
    mse           mean (sigmoid(s) - y/3)^2                           AUC       mse.py
    soft_ce       mean BCE(sigmoid(s), y/3)                           AUC       soft_ce.py
    pairwise      mean ln(1 + exp(-γ(s_i - s_j))), y_i > y_j          PNR       pairwise.py
    ce+pairwise   soft_ce + λ · pairwise                              both      combined.py
    multiclass    4-class cross-entropy on tiers (the anti-pattern)   baseline  multiclass.py

Reference: note 001, "微调" (fine-tuning); claims F1 and F2.

Distillation (stage 4) fits a teacher's logits t instead of labels, called as
loss(student_scores, teacher_logits, query_ids):

    name          formula                                             module
    logit_mse     mean (s - t)^2                                      logit_mse.py
    prob_ce       mean BCE(sigmoid(s), sigmoid(t))                    teacher_ce.py
    margin_mse    mean ((s_i - s_j) - (t_i - t_j))^2, same query      margin_mse.py

Layer-wise distillation (claim D8, distill.hidden_weight) adds a term on the models' hidden
states rather than their scores, called as loss(student_states, teacher_states, attention_mask):

    hidden_mse    mean over layers i of MSE(W h^S_i, h^T_g(i)), real tokens    hidden_mse.py

>>> import torch
>>> loss = make_loss("ce+pairwise", pairwise_weight=0.5)
>>> # soft CE (0.1269 + 0.6931) / 2, plus 0.5 * ln(1 + e^-2) = 0.5 * 0.1269 for the one pair
>>> round(loss(torch.tensor([2.0, 0.0]), torch.tensor([3, 1]), torch.tensor([7, 7])).item(), 4)
0.4735
"""
from __future__ import annotations

from torch import nn

from .combined import CombinedLoss
from .hidden_mse import HiddenStateMSELoss, layer_map
from .logit_mse import LogitMSELoss
from .margin_mse import MarginMSELoss
from .mse import MSELoss
from .multiclass import FourClassCrossEntropyLoss, expected_tier
from .pairwise import PairwiseLogisticLoss, pairwise_logistic_loss
from .soft_ce import SoftCrossEntropyLoss
from .teacher_ce import TeacherProbabilityCELoss

LOSSES = {
    "mse": MSELoss,
    "soft_ce": SoftCrossEntropyLoss,
    "pairwise": PairwiseLogisticLoss,
    "ce+pairwise": CombinedLoss,
    "multiclass": FourClassCrossEntropyLoss,
}

DISTILL_LOSSES = {
    "logit_mse": LogitMSELoss,
    "prob_ce": TeacherProbabilityCELoss,
    "margin_mse": MarginMSELoss,
}


def make_loss(name: str, **kwargs) -> nn.Module:
    """The loss registered as `name` (fine-tuning or distillation), built with `kwargs`
    (e.g. make_loss("pairwise", gamma=2.0))."""
    registry = LOSSES | DISTILL_LOSSES
    if name not in registry:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(registry)}")
    return registry[name](**kwargs)


__all__ = ["LOSSES", "DISTILL_LOSSES", "make_loss", "MSELoss", "SoftCrossEntropyLoss", "PairwiseLogisticLoss",
           "pairwise_logistic_loss", "CombinedLoss", "FourClassCrossEntropyLoss", "expected_tier", "LogitMSELoss",
           "TeacherProbabilityCELoss", "MarginMSELoss", "HiddenStateMSELoss", "layer_map"]
