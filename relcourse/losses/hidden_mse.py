"""Layer-wise distillation: the student's hidden states fit the teacher's, layer by mapped layer.

    loss = mean over i = 0..S of  mean over real tokens t and dimensions d of  (W h^S_{i,t} - h^T_{g(i),t})_d^2
    g(i) = round(i · T / S)

h^S_0 and h^T_0 are the embeddings' outputs, h_i the output of layer i; S and T are the
student's and the teacher's layers; W (with a bias) is a learned linear projection from the
student's width to the teacher's, even when the widths are equal: a student trained on its own
(a warm start) has its own basis, and fitting the teacher's coordinates as they are would make
it rotate all of its representation first. The mapping g is TinyBERT's uniform one:
embeddings to embeddings, last layer to last layer, and the layers between spread evenly
(halves round up, so 1 of 2 student layers reads layer 2 of 3).

Reference: Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding",
the hidden-states loss L_hidn = MSE(H^S W_h, H^T) with the uniform mapping n = g(m) = m · N / M.
Three simplifications: one projection serves every layer (the paper gives the embeddings their
own W_e), padding tokens are left out (attention_mask), and the layers' terms are averaged,
not summed, so distill.hidden_weight means the same at every depth. The attention-matrix term
of the paper is left out: the claim (D8) is about fitting layers against fitting outputs.

Shapes: student_states, S + 1 tensors (B, L, H_s); teacher_states, T + 1 tensors (B, L, H_t)
(relcourse.models.RelevanceBert.layer_states gives both); attention_mask (B, L), 1 for real
tokens. Returns a scalar. The projection's weights are the module's parameters: train them with
the student (relcourse.distill.LayerwiseStudent does).

>>> import torch
>>> loss = HiddenStateMSELoss(student_layers=1, teacher_layers=2, student_hidden=2, teacher_hidden=2)
>>> loss.mapping                                # student embeddings <- teacher's, layer 1 <- layer 2
[0, 2]
>>> with torch.no_grad():                       # W = I, no bias: compare the states as they are
...     _ = loss.projection.weight.copy_(torch.eye(2)), loss.projection.bias.zero_()
>>> student = (torch.zeros(1, 2, 2), torch.ones(1, 2, 2))
>>> teacher = (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), torch.full((1, 2, 2), 3.0))
>>> # embeddings: error 0; layer 1 against teacher layer 2: (1 - 3)^2 = 4 on the one real token
>>> loss(student, teacher, torch.tensor([[1, 0]])).item()
2.0
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """g(i) = round(i · T / S), halves up, for i = 0..S: which of the teacher's hidden states (0 =
    embeddings) each of the student's fits.

    >>> layer_map(1, 2), layer_map(2, 4), layer_map(4, 6), layer_map(3, 3)
    ([0, 2], [0, 2, 4], [0, 2, 3, 5, 6], [0, 1, 2, 3])
    """
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(f"layer counts must be at least 1, got student {student_layers}, teacher {teacher_layers}")
    return [(2 * i * teacher_layers + student_layers) // (2 * student_layers) for i in range(student_layers + 1)]


class HiddenStateMSELoss(nn.Module):
    """Mean squared error between the (projected) student's hidden states and the teacher's
    mapped ones, over real tokens, averaged over the student's S + 1 states."""

    def __init__(self, student_layers: int, teacher_layers: int, student_hidden: int, teacher_hidden: int):
        super().__init__()
        self.mapping = layer_map(student_layers, teacher_layers)
        self.teacher_layers = teacher_layers
        self.projection = nn.Linear(student_hidden, teacher_hidden)

    def forward(self, student_states: Sequence[torch.Tensor], teacher_states: Sequence[torch.Tensor],
                attention_mask: torch.Tensor) -> torch.Tensor:
        if (len(student_states), len(teacher_states)) != (len(self.mapping), self.teacher_layers + 1):
            raise ValueError(f"expected {len(self.mapping)} student and {self.teacher_layers + 1} teacher hidden "
                             f"states (embeddings + each layer), got {len(student_states)} and "
                             f"{len(teacher_states)}: pass model.layer_states(batch) of the models this loss "
                             "was built for")
        real = attention_mask.bool()
        if not real.any():
            raise ValueError("attention_mask marks no real token: a batch needs at least one token to compare")
        errors = [(self.projection(student_states[i][real]) - teacher_states[j][real].to(student_states[i].dtype))
                  .pow(2).mean() for i, j in enumerate(self.mapping)]
        return torch.stack(errors).mean()
