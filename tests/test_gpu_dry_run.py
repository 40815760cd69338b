"""The GPU profiles on CPU (relcourse.dry_run): every stage at the profile's widths, input length,
batch layout and gradient accumulation, one layer deep, two steps, in the profile's bf16 where the
CPU has it, killed after step 1 and resumed to the same weights; and the memory of their
full-size steps.

About 3 minutes on 2 cores for both profiles. Nothing here needs CUDA; what does (fused attention
kernels, a full-size step) is what the GPU's first minutes check."""
import pytest
import torch

from relcourse import distill, gpu_memory
from relcourse.config import load_profile
from relcourse.dry_run import DRY_ACCUM, failures, render, run_dry
from relcourse.serving import bf16_supported


@pytest.fixture(scope="module", params=["gpu", "gpu-xl"])
def report(request, tmp_path_factory):
    placed = []
    real = distill.scoring_device

    def spy(profile):
        placed.append(profile.device)
        return real(profile)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill, "scoring_device", spy)
        result = run_dry(request.param, steps=2, interrupt_at=1, layers=1,
                         root=tmp_path_factory.mktemp(f"runs-{request.param}"))
    print(render(result))
    result.teacher_placed = placed
    return result


def test_every_stage_trains_in_bf16_and_resumes_to_the_same_weights(report):
    assert not failures(report), render(report)
    assert [c.stage for c in report.checks] == ["pretrain", "post_pretrain", "finetune", "distill"]
    assert all(c.resumed_from == 1 and c.steps == 2 and c.max_weight_diff == 0 for c in report.checks)
    if torch.cpu._is_avx512_bf16_supported():
        assert report.precision == "bf16" and {c.autocast for c in report.checks} == {"bfloat16"}
    assert bf16_supported() == (report.precision == "bf16")


def test_the_profile_shapes_and_batch_layout_are_kept(report):
    full = load_profile(report.profile)
    checks = {c.stage: c for c in report.checks}
    assert {c.seq_len for c in report.checks} == {full.tokenizer.max_len}
    assert {c.model for c in report.checks} == {f"1x{full.pretrain.model.hidden}"}
    assert checks["post_pretrain"].batch_rows == full.post_pretrain.docs_per_query_in_batch
    assert checks["distill"].batch_rows == full.distill.docs_per_query_in_batch
    assert checks["finetune"].batch_rows == full.finetune.docs_per_query_in_batch
    assert checks["post_pretrain"].queries_per_batch == 1     # one whole query group a micro-batch
    for c in report.checks:                                   # the stage's accumulation, at most DRY_ACCUM
        assert c.grad_accum == c.micro_batches == min(getattr(full, c.stage).grad_accum, DRY_ACCUM)
    assert 1_000 < report.vocab[1] <= report.vocab[0]        # as large as the tiny world's text allows


def test_the_teacher_scores_on_the_profiles_device(report):
    """The pool and the serving timing both move the teacher to the profile's device."""
    assert report.teacher_placed == ["cpu", "cpu"]


def test_the_memory_estimate_matches_what_autograd_saves_and_the_resident_set(report):
    for e in report.estimates:
        formula = gpu_memory.activation_bytes(e.step, "bf16" if report.precision == "bf16" else "fp32", "math")
        assert formula == pytest.approx(report.measured_activations[e.step.stage], rel=0.05)
    if report.peak_rss is not None:
        grown, estimated = report.peak_rss
        assert 0.7 < grown / estimated < 1.6


def test_every_stage_fits_an_h100_in_bf16_gpu_xl_with_gradient_accumulation(report):
    """Findings, pinned: gpu fits one H100 in bf16 and in fp32; gpu-xl's pretraining and
    post-pretraining steps (512 x 256 tokens through BERT-large) fit neither an H100 nor an H200
    in one pass, and an H100 in 4 micro-batches."""
    assert all(e.fits("H100 80GB") for e in report.estimates)
    whole = {e.step.stage: e.fits("H200 141GB") for e in report.whole_estimates}
    if report.profile == "gpu":
        assert all(whole.values()) and all(e.fits("H100 80GB") for e in report.fp32_estimates)
    else:
        assert whole == {"pretrain": False, "post_pretrain": False, "finetune": True, "distill": True}
