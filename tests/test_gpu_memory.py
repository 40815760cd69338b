"""relcourse.gpu_memory beyond the dry run: distillation's frozen teacher and layer-wise terms,
and whether every run a GPU-sized claim arm trains fits its profile's GPU."""
import dataclasses

import pytest
import torch

from relcourse import experiments, gpu_memory
from relcourse.config import ModelConfig, load_profile, with_overrides
from relcourse.distill import LayerwiseStudent, mid_profile, student_profile
from relcourse.models import RelevanceBert


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("student, teacher", [((1, 64), (2, 128)), ((2, 64), (4, 128)), ((1, 128), (3, 256))])
def test_layerwise_saved_bytes_are_what_autograd_saves(precision, student, teacher):
    torch.manual_seed(0)
    small, big = (ModelConfig(layers=l, hidden=h, heads=2, intermediate=4 * h) for l, h in (student, teacher))
    net = RelevanceBert(small, 300, 16)
    pair = LayerwiseStudent(net, RelevanceBert(big, 300, 16))
    ids = torch.randint(5, 300, (3, 16))
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        alone = gpu_memory.saved_bytes(lambda: net.relevance(batch))
        both = gpu_memory.saved_bytes(lambda: pair(batch))
    saved, _ = gpu_memory.layerwise_bytes(small, big, tokens=3 * 16, precision=precision)
    assert both - alone == saved


def test_distillation_counts_its_teacher_and_d8s_states():
    gpu = load_profile("gpu")
    plain = gpu_memory.training_steps(gpu)[-1]
    layerwise = gpu_memory.training_steps(with_overrides(gpu, {"distill.hidden_weight": 1.0}))[-1]
    assert plain.frozen == (gpu.pretrain.model,) and plain.layerwise is None
    assert layerwise.layerwise == gpu.pretrain.model
    teacher = gpu_memory.parameter_count(gpu.pretrain.model, gpu.tokenizer.vocab_size, gpu.tokenizer.max_len)
    alone = gpu_memory.estimate(dataclasses.replace(plain, frozen=()))
    assert gpu_memory.estimate(plain).weights - alone.weights == 4 * teacher
    extra = gpu_memory.estimate(layerwise).activations - gpu_memory.estimate(plain).activations
    assert extra == sum(gpu_memory.layerwise_bytes(plain.model, gpu.pretrain.model, plain.rows * plain.seq_len, "bf16"))
    # in a chain with layer-wise terms the student fits the mid student's states, both are held
    chain = gpu_memory.training_steps(with_overrides(gpu, {"distill.hidden_weight": 1.0, "distill.via_layers": 6}))[-1]
    assert chain.layerwise.layers == 6 and len(chain.frozen) == 2


def _runs_trained(profile):
    """The profiles whose stages an arm trains: its own (teacher and student), its warm
    student's recipe, and in a chain the mid student and its warm start."""
    runs = {"teacher": profile, "warm student": student_profile(profile)}
    if profile.distill.via_layers:
        runs |= {"mid student": mid_profile(profile), "mid's warm start": student_profile(mid_profile(profile))}
    return runs


@pytest.mark.parametrize("profile_name", sorted(experiments.GPU_ARMS))
def test_every_run_of_the_gpu_sized_arms_fits_the_profiles_gpu(profile_name):
    gpu = gpu_memory.GPUS[gpu_memory.TARGET_GPU[profile_name]]
    misfits = []
    for claim_id, spec in experiments.GPU_ARMS[profile_name].items():
        for side in ("arm", "baseline"):
            for run, profile in _runs_trained(with_overrides(load_profile(profile_name), getattr(spec, side))).items():
                # a warm start is fine-tuned, never distilled: its distill step is not trained
                steps = gpu_memory.training_steps(profile)[:3 if "warm" in run else 4]
                misfits += [f"{claim_id} {side} {run} {s.stage}: {gpu_memory.estimate(s).total / gpu_memory.GIB:.0f} GiB"
                            for s in steps if not gpu_memory.estimate(s).fits(gpu_memory.TARGET_GPU[profile_name])]
    assert not misfits, f"over {gpu_memory.HEADROOM:.0%} of {gpu / gpu_memory.GIB:.0f} GiB: {misfits}"
