"""relcourse.losses: hand-computed values, gradients, a brute-force pairwise oracle, bad inputs."""
import doctest
import importlib
import itertools
import math

import pytest
import torch

from relcourse.losses import (DISTILL_LOSSES, LOSSES, CombinedLoss, FourClassCrossEntropyLoss, HiddenStateMSELoss,
                              LogitMSELoss, MarginMSELoss, MSELoss, PairwiseLogisticLoss, SoftCrossEntropyLoss,
                              TeacherProbabilityCELoss, expected_tier, layer_map, make_loss, pairwise_logistic_loss)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def softplus(x):
    return math.log(1 + math.exp(x))


SCORES = torch.tensor([2.0, 0.0, 1.0, 5.0])
LABELS = torch.tensor([3, 1, 0, 2])
QUERY_IDS = torch.tensor([0, 0, 0, 1])   # query 1 has a single document


# --- values by hand --------------------------------------------------------------------------

def test_mse_by_hand():
    # targets y/3 = 1, 1/3, 0, 2/3 against sigmoid(2), sigmoid(0) = 0.5, sigmoid(1), sigmoid(5)
    expected = ((sigmoid(2) - 1) ** 2 + (0.5 - 1 / 3) ** 2 + sigmoid(1) ** 2 + (sigmoid(5) - 2 / 3) ** 2) / 4
    assert MSELoss()(SCORES, LABELS).item() == pytest.approx(expected)
    # soft targets are used as they are: (0.5 - 0.25)^2 and (sigmoid(2) - 1)^2
    soft = MSELoss(target="soft")(torch.tensor([0.0, 2.0]), torch.tensor([0.25, 1.0]))
    assert soft.item() == pytest.approx((0.25 ** 2 + (sigmoid(2) - 1) ** 2) / 2)


def test_soft_ce_by_hand():
    # -t ln p - (1 - t) ln(1 - p), with -ln sigmoid(s) = softplus(-s) and -ln(1 - sigmoid(s)) = softplus(s):
    # t=1, s=2: softplus(-2);  t=1/3, s=0: ln 2;  t=0, s=1: softplus(1);  t=2/3, s=5: 2/3 softplus(-5) + 1/3 softplus(5)
    expected = (softplus(-2) + math.log(2) + softplus(1) + 2 / 3 * softplus(-5) + 1 / 3 * softplus(5)) / 4
    assert SoftCrossEntropyLoss()(SCORES, LABELS).item() == pytest.approx(expected)
    soft = SoftCrossEntropyLoss(target="soft")(torch.tensor([0.0, 100.0]), torch.tensor([0.25, 1.0]))
    assert soft.item() == pytest.approx(math.log(2) / 2, rel=1e-6)   # s = 100 is certain and right: 0, not nan


def test_pairwise_by_hand():
    # query 0 pairs (better, worse): (0,1) margin 2, (0,2) margin 1, (1,2) margin -1; query 1 has none
    expected = (softplus(-2) + softplus(-1) + softplus(1)) / 3
    loss = PairwiseLogisticLoss()
    assert loss(SCORES, LABELS, QUERY_IDS).item() == pytest.approx(expected)
    assert loss.last_num_pairs == 3
    # gamma scales the margins: margins 2, 1, -1 become 1, 0.5, -0.5
    half = pairwise_logistic_loss(SCORES, LABELS, QUERY_IDS, gamma=0.5)[0]
    assert half.item() == pytest.approx((softplus(-1) + softplus(-0.5) + softplus(0.5)) / 3)


def test_combined_by_hand():
    loss = CombinedLoss(pairwise_weight=0.5)
    expected = SoftCrossEntropyLoss()(SCORES, LABELS) + 0.5 * PairwiseLogisticLoss()(SCORES, LABELS, QUERY_IDS)
    assert loss(SCORES, LABELS, QUERY_IDS).item() == pytest.approx(expected.item())
    mse_only = CombinedLoss(MSELoss(), pairwise_weight=0.0)(SCORES, LABELS, QUERY_IDS)
    assert mse_only.item() == pytest.approx(MSELoss()(SCORES, LABELS).item())


def test_multiclass_by_hand_and_its_ranking_score():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    # -ln softmax: row 0 tier 0: ln(e^2 + 3) - 2; row 1 tier 3: ln 4; row 2 tier 2: ln(1 + e + e^2 + e^3) - 2
    expected = (math.log(math.exp(2) + 3) - 2 + math.log(4)
                + math.log(1 + math.e + math.e ** 2 + math.e ** 3) - 2) / 3
    assert FourClassCrossEntropyLoss()(logits, torch.tensor([0, 3, 2])).item() == pytest.approx(expected)
    # expected tier: uniform -> 1.5; row 0: (0 * e^2 + 1 + 2 + 3) / (e^2 + 3)
    scores = FourClassCrossEntropyLoss.expected_tier(logits)
    assert scores[:2].tolist() == pytest.approx([6 / (math.exp(2) + 3), 1.5])


def test_multiclass_ignores_how_wrong_a_wrong_tier_is():
    near, far = torch.tensor([[0.0, 0.0, 3.0, 1.0]]), torch.tensor([[3.0, 0.0, 0.0, 1.0]])
    loss = FourClassCrossEntropyLoss()
    assert loss(near, torch.tensor([3])).item() == pytest.approx(loss(far, torch.tensor([3])).item())
    assert expected_tier(near).item() > expected_tier(far).item()


# --- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [MSELoss(), SoftCrossEntropyLoss(), PairwiseLogisticLoss(gamma=2.0),
                                  CombinedLoss(pairwise_weight=0.3)], ids=lambda l: type(l).__name__)
def test_gradcheck(loss):
    scores = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([3, 1, 0, 2, 2, 0, 1, 3])
    query_ids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3])
    assert torch.autograd.gradcheck(lambda s: loss(s, labels, query_ids), (scores,))


def test_gradcheck_multiclass():
    logits = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([3, 1, 0, 2, 2])
    assert torch.autograd.gradcheck(lambda z: FourClassCrossEntropyLoss()(z, labels), (logits,))
    assert torch.autograd.gradcheck(expected_tier, (logits,))


# --- pairwise against a brute-force double loop ----------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("soft", [False, True])
def test_pairwise_matches_double_loop(seed, soft):
    g = torch.Generator().manual_seed(seed)
    n = 40
    scores = torch.randn(n, dtype=torch.float64, generator=g) * 3
    labels = torch.rand(n, dtype=torch.float64, generator=g) if soft else torch.randint(0, 4, (n,), generator=g)
    query_ids = torch.randint(0, 6, (n,), generator=g)
    gamma = 0.7
    terms = [softplus(-gamma * (scores[i] - scores[j]).item())
             for i, j in itertools.permutations(range(n), 2)
             if query_ids[i] == query_ids[j] and labels[i] > labels[j]]
    loss, num_pairs = pairwise_logistic_loss(scores, labels, query_ids, gamma=gamma)
    assert num_pairs == len(terms) > 0
    assert loss.item() == pytest.approx(sum(terms) / len(terms))


def test_single_document_queries_contribute_no_pairs():
    with_single = PairwiseLogisticLoss()(SCORES, LABELS, QUERY_IDS)
    without = PairwiseLogisticLoss()(SCORES[:3], LABELS[:3], QUERY_IDS[:3])
    assert with_single.item() == without.item()


@pytest.mark.parametrize("labels, query_ids", [
    ([3, 1, 0], [0, 1, 2]),      # one document per query
    ([2, 2, 2], [0, 0, 0]),      # one query, one tier
])
def test_batch_without_pairs_gives_a_zero_that_backpropagates(labels, query_ids):
    scores = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    loss = PairwiseLogisticLoss()
    value = loss(scores, torch.tensor(labels), torch.tensor(query_ids))
    assert value.item() == 0 and loss.last_num_pairs == 0
    value.backward()  # a training step on such a batch runs and moves nothing
    assert scores.grad.tolist() == [0, 0, 0]


def test_every_registered_loss_builds_and_is_called_the_same_way():
    for name in LOSSES:
        loss = make_loss(name)
        scores = torch.zeros(4, 4) if name == "multiclass" else SCORES
        assert torch.isfinite(loss(scores, LABELS, QUERY_IDS))
    assert make_loss("pairwise", gamma=2.0).gamma == 2.0


# --- bad inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [MSELoss(), SoftCrossEntropyLoss(), PairwiseLogisticLoss(), CombinedLoss()],
                         ids=lambda l: type(l).__name__)
@pytest.mark.parametrize("scores, labels, message", [
    (torch.zeros(3), torch.tensor([0, 1]), r"labels must have the shape of scores \(3,\), got \(2,\)"),
    (torch.zeros(2, 1), torch.tensor([0, 1]), "squeeze the model's last dimension"),
    (torch.tensor([0, 1]), torch.tensor([0, 1]), "float tensor"),
    (torch.zeros(3), torch.tensor([0, 4, -1]), r"tiers 0..3.*found \[-1(\.0)?, 4(\.0)?\]"),
])
def test_bad_inputs(loss, scores, labels, message):
    with pytest.raises(ValueError, match=message):
        loss(scores, labels, torch.zeros(len(labels), dtype=torch.long))


def test_bad_inputs_specific_to_each_loss():
    with pytest.raises(ValueError, match=r"found \[0.5\]; for a teacher's pseudo-labels.*target='soft'"):
        MSELoss()(torch.zeros(2), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"soft targets must lie in \[0, 1\], found \[2.0\]"):
        SoftCrossEntropyLoss(target="soft")(torch.zeros(2), torch.tensor([2.0, 1.0]))
    with pytest.raises(ValueError, match="target must be 'tier'"):
        MSELoss(target="tiers")
    with pytest.raises(ValueError, match=r"query_ids must have the shape of scores \(3,\)"):
        PairwiseLogisticLoss()(torch.zeros(3), torch.tensor([0, 1, 2]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="gamma must be positive"):
        PairwiseLogisticLoss(gamma=0)
    with pytest.raises(ValueError, match="pairwise_weight must be >= 0"):
        CombinedLoss(pairwise_weight=-1)
    with pytest.raises(ValueError, match=r"shape \(B, 4\).*got torch.float32 of shape \(2, 3\)"):
        FourClassCrossEntropyLoss()(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        FourClassCrossEntropyLoss()(torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="tiers 0..3"):
        FourClassCrossEntropyLoss()(torch.zeros(2, 4), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="unknown loss 'ranknet'; choose one of mse, soft_ce, pairwise, "
                                         r"ce\+pairwise, multiclass, logit_mse, prob_ce, margin_mse"):
        make_loss("ranknet")


# --- distillation losses: against the teacher's logits -----------------------------------------

TEACHER = torch.tensor([1.5, -0.5, 3.0, -2.0])


def test_logit_mse_and_teacher_ce_by_hand():
    expected_mse = sum((s - t) ** 2 for s, t in zip(SCORES.tolist(), TEACHER.tolist())) / 4
    assert LogitMSELoss()(SCORES, TEACHER, QUERY_IDS).item() == pytest.approx(expected_mse)
    # BCE with target sigmoid(t): -p ln sigmoid(s) - (1 - p) ln(1 - sigmoid(s)) = p softplus(-s) + (1 - p) softplus(s)
    expected_ce = sum(sigmoid(t) * softplus(-s) + (1 - sigmoid(t)) * softplus(s)
                      for s, t in zip(SCORES.tolist(), TEACHER.tolist())) / 4
    assert TeacherProbabilityCELoss()(SCORES, TEACHER, QUERY_IDS).item() == pytest.approx(expected_ce, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_margin_mse_matches_double_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n = 30
    scores, teacher = torch.randn(n, dtype=torch.float64, generator=g), torch.randn(n, dtype=torch.float64, generator=g) * 3
    query_ids = torch.randint(0, 5, (n,), generator=g)
    terms = [((scores[i] - scores[j]) - (teacher[i] - teacher[j])).item() ** 2
             for i, j in itertools.combinations(range(n), 2) if query_ids[i] == query_ids[j]]
    assert MarginMSELoss()(scores, teacher, query_ids).item() == pytest.approx(sum(terms) / len(terms))


def test_margin_mse_ignores_a_shift_of_a_whole_query_and_logit_mse_does_not():
    shifted = TEACHER + torch.tensor([5.0, 5.0, 5.0, -7.0])     # each query's teacher scores moved together
    assert MarginMSELoss()(TEACHER, shifted, QUERY_IDS).item() == pytest.approx(0.0)
    assert LogitMSELoss()(TEACHER, shifted, QUERY_IDS).item() > 1


def test_a_perfect_copy_of_the_teacher_is_a_minimum():
    scores = TEACHER.clone().requires_grad_(True)
    for loss in DISTILL_LOSSES.values():
        scores.grad = None
        loss()(scores, TEACHER, QUERY_IDS).backward()
        assert scores.grad.abs().max().item() < 1e-6, loss


@pytest.mark.parametrize("loss", [LogitMSELoss(), TeacherProbabilityCELoss(), MarginMSELoss()],
                         ids=lambda l: type(l).__name__)
def test_gradcheck_distillation(loss):
    scores = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    teacher = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    query_ids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3])
    assert torch.autograd.gradcheck(lambda s: loss(s, teacher, query_ids), (scores,))


def test_distillation_bad_inputs():
    with pytest.raises(ValueError, match="teacher logits must be finite"):
        LogitMSELoss()(torch.zeros(2), torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"teacher must have the shape of scores \(3,\)"):
        MarginMSELoss()(torch.zeros(3), torch.zeros(2), torch.zeros(3, dtype=torch.long))
    value = MarginMSELoss()(torch.zeros(2, requires_grad=True), torch.ones(2), torch.tensor([0, 1]))
    assert value.item() == 0 and value.requires_grad      # no same-query pair: a zero on the graph


# --- layer-wise distillation: hidden states against a brute-force loop ---------------------------

def random_states(layers, batch, length, width, generator, requires_grad=False):
    return tuple(torch.randn(batch, length, width, dtype=torch.float64, generator=generator,
                             requires_grad=requires_grad) for _ in range(layers + 1))


@pytest.mark.parametrize("student_layers, teacher_layers, student_width, teacher_width",
                         [(2, 5, 3, 4), (1, 2, 4, 4), (3, 3, 2, 5)])
def test_hidden_mse_matches_a_loop_over_layers_tokens_and_dimensions(student_layers, teacher_layers, student_width,
                                                                     teacher_width):
    g = torch.Generator().manual_seed(student_layers * 10 + teacher_layers)
    loss = HiddenStateMSELoss(student_layers, teacher_layers, student_width, teacher_width).double()
    student = random_states(student_layers, 3, 6, student_width, g)
    teacher = random_states(teacher_layers, 3, 6, teacher_width, g)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[0, 4:], mask[2, 1:] = 0, 0                       # padding: never compared
    weight, bias = loss.projection.weight.detach(), loss.projection.bias.detach()
    project = lambda h: [sum(weight[o, k].item() * h[k].item() for k in range(student_width)) + bias[o].item()
                         for o in range(teacher_width)]
    per_layer = []
    for i in range(student_layers + 1):
        j = math.floor(i * teacher_layers / student_layers + 0.5)     # round(i T / S), halves up
        errors = [(p - teacher[j][b, t, d].item()) ** 2
                  for b in range(3) for t in range(6) if mask[b, t]
                  for d, p in enumerate(project(student[i][b, t]))]
        per_layer.append(sum(errors) / len(errors))
    assert loss.mapping == layer_map(student_layers, teacher_layers)
    assert loss(student, teacher, mask).item() == pytest.approx(sum(per_layer) / len(per_layer))


def test_layer_map_ties_the_ends_and_spreads_the_middle():
    for s, t in itertools.product(range(1, 7), range(1, 13)):
        mapping = layer_map(s, t)
        assert mapping[0] == 0 and mapping[-1] == t and len(mapping) == s + 1
        assert mapping == sorted(mapping) and all(abs(j - i * t / s) <= 0.5 for i, j in enumerate(mapping))
    assert layer_map(4, 4) == [0, 1, 2, 3, 4]


def test_gradcheck_hidden_mse_through_the_states_and_the_projection():
    g = torch.Generator().manual_seed(0)
    loss = HiddenStateMSELoss(2, 4, 3, 5).double()
    student = random_states(2, 2, 4, 3, g, requires_grad=True)
    teacher = random_states(4, 2, 4, 5, g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    weight, bias = (p.detach().clone().requires_grad_(True) for p in (loss.projection.weight, loss.projection.bias))

    def through(*inputs):   # the projection's weights as inputs too
        projection = {"projection.weight": inputs[-2], "projection.bias": inputs[-1]}
        return torch.func.functional_call(loss, projection, (inputs[:-2], teacher, mask))
    assert torch.autograd.gradcheck(through, (*student, weight, bias))


def test_hidden_mse_bad_inputs():
    loss = HiddenStateMSELoss(1, 2, 4, 4)
    states = tuple(torch.zeros(1, 3, 4) for _ in range(3))
    with pytest.raises(ValueError, match=r"expected 2 student and 3 teacher hidden states.*got 3 and 3"):
        loss(states, states, torch.ones(1, 3))
    with pytest.raises(ValueError, match="attention_mask marks no real token"):
        loss(states[:2], states, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="layer counts must be at least 1"):
        layer_map(0, 2)


@pytest.mark.parametrize("module", ["__init__", "mse", "soft_ce", "pairwise", "combined", "multiclass", "logit_mse",
                                    "teacher_ce", "margin_mse", "hidden_mse"])
def test_docstring_examples(module):
    name = "relcourse.losses" if module == "__init__" else f"relcourse.losses.{module}"
    assert doctest.testmod(importlib.import_module(name)).failed == 0
