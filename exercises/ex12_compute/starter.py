"""Exercise 12: count the compute of a training run. The task is in README.md.

Fill in the three functions below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex12

Plain Python is enough. Not relcourse (relcourse.compute is the answer key).

A model here is a dict of three ints, the shape of a BERT encoder:
    {"layers": 2, "hidden": 128, "intermediate": 512}     # the laptop profile's teacher
"""
from __future__ import annotations


def layer_weights(hidden, intermediate):
    """The number of weights (parameters, biases included) of ONE BERT encoder layer.

    A layer is: self-attention (query, key and value projections, hidden -> hidden each, and an
    output projection hidden -> hidden), a LayerNorm, a feed-forward block (hidden ->
    intermediate -> hidden) and a second LayerNorm. Every linear map has a bias; a LayerNorm has
    a scale and a shift per feature. The number of attention heads does not change the count.

    >>> layer_weights(128, 512)
    198272
    """
    raise NotImplementedError("layer_weights: count the weights of one encoder layer")


def flops_per_token(layers, hidden, intermediate, length, training):
    """FLOPs per token of one forward pass (training=False) or one training step (training=True)
    of an encoder of `layers` layers on rows of `length` tokens.

    Forward: 2 FLOPs per weight of the layers (a multiply and an add), plus attention's scores
    and weighted sum, which grow with the row's length: 4 * layers * hidden * length.
    Training: the backward pass costs twice the forward, so a step is 3 times the forward.
    Embeddings (a table lookup) and the heads (one row each, not one token) are left out.

    >>> flops_per_token(2, 128, 512, 32, training=False)
    825856
    >>> flops_per_token(2, 128, 512, 32, training=True)
    2477568
    """
    raise NotImplementedError("flops_per_token: 2 per weight plus attention, 3x for training")


def run_flops(steps, rows, length, trained, alongside=None):
    """The training compute of a run: steps x rows per step x tokens per row x FLOPs per token
    of the `trained` model's training step, plus, when given, the forward pass of a model run
    `alongside` on every batch without being trained (a teacher whose hidden states a student
    copies, in layer-wise distillation).

    >>> teacher = {"layers": 2, "hidden": 128, "intermediate": 512}
    >>> run_flops(8000, 64, 32, teacher)
    40592474112000
    """
    raise NotImplementedError("run_flops: steps x rows x length x FLOPs per token")
