"""Exercise 12: count the compute of a training run. Instructor's solution."""
from __future__ import annotations


def layer_weights(hidden, intermediate):
    attention = 4 * (hidden * hidden + hidden)              # query, key, value, output: weight + bias
    feed_forward = hidden * intermediate + intermediate + intermediate * hidden + hidden
    layer_norms = 2 * 2 * hidden                            # after attention, after the feed-forward
    return attention + feed_forward + layer_norms


def flops_per_token(layers, hidden, intermediate, length, training):
    forward = 2 * layers * layer_weights(hidden, intermediate) + 4 * layers * hidden * length
    return 3 * forward if training else forward


def run_flops(steps, rows, length, trained, alongside=None):
    per_token = flops_per_token(trained["layers"], trained["hidden"], trained["intermediate"], length, True)
    if alongside is not None:
        per_token += flops_per_token(alongside["layers"], alongside["hidden"], alongside["intermediate"], length, False)
    return steps * rows * length * per_token
