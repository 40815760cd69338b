"""Public checks of exercise 12 (count the compute): the settings and the docstrings' examples.

Shipped to students with the starter. The other checks, and their answer keys (transformers'
BertLayer for the weights, relcourse.compute and torch's FLOP counter for the FLOPs), are in
tests_grade.py, which stays with the instructor.
"""
from __future__ import annotations

from exercises._checks import call_text, check, expect_close

TITLE = "Count the compute of a training run"
STUDENT_FILE = "starter.py"
SOLUTION_FILE = "solution.py"
FORBIDDEN_IMPORTS = ("relcourse",)
POINTS = 10

LAPTOP_TEACHER = {"layers": 2, "hidden": 128, "intermediate": 512}


def expect_flops(sub, layers, hidden, intermediate, length, training, want, hint=""):
    args = (layers, hidden, intermediate, length, training)
    expect_close(sub.flops_per_token(*args), want, call_text("flops_per_token", *args), hint=hint)


@check(2)
def check_docstring_examples(sub):
    """The docstrings' examples: the laptop teacher's layer, its FLOPs per token, one run."""
    expect_close(sub.layer_weights(128, 512), 198_272, call_text("layer_weights", 128, 512),
                 hint="4 x (128 x 128 + 128) for attention, 128 x 512 + 512 + 512 x 128 + 128 for the "
                      "feed-forward block, 2 x 2 x 128 for the two LayerNorms")
    expect_flops(sub, 2, 128, 512, 32, False, 825_856, hint="2 x 2 x 198,272 + 4 x 2 x 128 x 32")
    expect_flops(sub, 2, 128, 512, 32, True, 2_477_568, hint="3 times the forward pass")
    args = (8000, 64, 32, LAPTOP_TEACHER)
    expect_close(sub.run_flops(*args), 40_592_474_112_000, call_text("run_flops", *args),
                 hint="8,000 steps x 64 rows x 32 tokens x 2,477,568 FLOPs per token")
