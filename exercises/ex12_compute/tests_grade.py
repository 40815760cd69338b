"""Hidden checks of exercise 12 (count the compute): the instructor's copy only.

Answer keys, worked out once and written below so that a check costs nothing but the student's
call: transformers' own BertLayer (its parameters, counted: WEIGHTS), relcourse.compute (the
course's count, used by `run claims` and notebooks 02 and 05: COURSE_FLOPS) and
torch.utils.flop_counter (what a real forward and backward pass of a BERT encoder multiplies and
adds: COUNTED). tests/test_exercises.py recomputes each table from its source. The public worked
examples are in tests_public.py.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from exercises._checks import call_text, check, expect_close
from exercises.ex12_compute.tests_public import LAPTOP_TEACHER, expect_flops

SHAPES = [(1, 64, 256), (2, 128, 512), (3, 96, 200), (12, 768, 3072)]   # (layers, hidden, intermediate)
LENGTHS = (32, 48, 16, 128)                                              # one per shape
WEIGHTS = {(64, 256): 49_984, (128, 512): 198_272, (96, 200): 76_328, (768, 3072): 7_087_872}
COURSE_FLOPS = {   # (layers, hidden, intermediate, length, training): FLOPs per token
    (1, 64, 256, 32, False): 108_160, (1, 64, 256, 32, True): 324_480,
    (2, 128, 512, 48, False): 842_240, (2, 128, 512, 48, True): 2_526_720,
    (3, 96, 200, 16, False): 476_400, (3, 96, 200, 16, True): 1_429_200,
    (12, 768, 3072, 128, False): 174_827_520, (12, 768, 3072, 128, True): 524_482_560,
    (1, 128, 512, 32, True): 1_238_784, (2, 128, 512, 32, False): 825_856}
COUNTED = {(2, 64, 256, 32): (212_992, 638_976), (2, 128, 512, 64): (851_968, 2_555_904)}   # (forward, step)


# --- the answer keys' sources (tests/test_exercises.py recomputes the tables with them) ----------

def bert_layer_weights(hidden: int, intermediate: int) -> int:
    """The parameters of transformers' BertLayer of this shape."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer
    heads = 4 if hidden % 4 == 0 else 1
    with torch.device("meta"):
        layer = BertLayer(BertConfig(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads))
    return sum(p.numel() for p in layer.parameters())


def course_flops(layers: int, hidden: int, intermediate: int, length: int, training: bool) -> float:
    from relcourse.compute import shape_flops_per_token
    from relcourse.config import ModelConfig
    heads = 4 if hidden % 4 == 0 else 1
    return shape_flops_per_token(ModelConfig(layers, hidden, heads, intermediate), 1_000, length, training)


def counted_flops(layers: int, hidden: int, intermediate: int, length: int, rows: int = 2) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per token that torch counts in a BERT encoder."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                 intermediate_size=intermediate, max_position_embeddings=length),
                      add_pooling_layer=False)
    ids = torch.randint(0, 100, (rows, length))
    with FlopCounterMode(display=False) as forward:
        model(ids).last_hidden_state
    with FlopCounterMode(display=False) as step:
        model(ids).last_hidden_state.sum().backward()
    tokens = rows * length
    return forward.get_total_flops() / tokens, step.get_total_flops() / tokens


@check(2)
def check_weights_of_a_bert_layer(sub):
    """layer_weights equals the parameters of transformers' BertLayer, biases and LayerNorms included."""
    for _, hidden, intermediate in SHAPES:
        expect_close(sub.layer_weights(hidden, intermediate), WEIGHTS[hidden, intermediate],
                     call_text("layer_weights", hidden, intermediate),
                     hint="count every linear map's weight matrix and bias, and both LayerNorms' scale and shift")


@check(2)
def check_flops_against_the_course(sub):
    """flops_per_token equals relcourse.compute's count, forward and training, at several shapes and lengths."""
    for (layers, hidden, intermediate), length in zip(SHAPES, LENGTHS):
        for training in (False, True):
            expect_flops(sub, layers, hidden, intermediate, length, training,
                         COURSE_FLOPS[layers, hidden, intermediate, length, training],
                         hint="2 per weight of the layers + 4 x layers x hidden x length; 3 times that to train")


@check(2)
def check_flops_against_torchs_counter(sub):
    """Within 3% of the FLOPs torch counts in a real pass (it counts matrix products only)."""
    for (layers, hidden, intermediate, length), (forward, step) in COUNTED.items():
        for training, want in ((False, forward), (True, step)):
            args = (layers, hidden, intermediate, length, training)
            expect_close(sub.flops_per_token(*args), want, call_text("flops_per_token", *args), rel=0.03,
                         hint=f"torch counted {want:,.0f} FLOPs per token in a {'training' if training else 'forward'} "
                              "pass of a BERT encoder of this shape")


@check(2)
def check_run_with_a_model_alongside(sub):
    """A run's total, and what a teacher run beside the student adds (claim D8's layer-wise side)."""
    student = {**LAPTOP_TEACHER, "layers": 1}
    plain = 3000 * 64 * 32 * COURSE_FLOPS[1, 128, 512, 32, True]
    teacher = 3000 * 64 * 32 * COURSE_FLOPS[2, 128, 512, 32, False]
    expect_close(sub.run_flops(3000, 64, 32, student), plain, call_text("run_flops", 3000, 64, 32, student))
    args = (3000, 64, 32, student)
    expect_close(sub.run_flops(*args, alongside=LAPTOP_TEACHER), plain + teacher,
                 call_text("run_flops", *args, alongside=LAPTOP_TEACHER),
                 hint="the teacher runs forward only (not 3x) on the same rows and tokens, on top of the student's step")
