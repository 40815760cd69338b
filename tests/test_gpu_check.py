"""benchmarks/gpu_check.py, the GPU's first minutes, run here on CPU at the smoke profile's shapes:
every part must run and report, so that a bug in the script does not cost the GPU hour it exists
to save. Its figures on a real GPU are in results/gpu.md."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from relcourse import gpu_memory
from relcourse.compute import flops_per_token
from relcourse.config import load_profile
from relcourse.dry_run import dry_run_overrides
from relcourse.models import RelevanceBert

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))   # the scripts import each other as the script's own folder allows
import gpu_check  # noqa: E402


def run_check(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "gpu_check.py", *args], cwd=BENCHMARKS, capture_output=True, text=True,
                          env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}, timeout=600, **kw)


def test_every_part_runs_on_cpu_and_writes_its_figures(tmp_path):
    done = run_check("--device", "cpu", "--profiles", "smoke", "--threads", "1", "--parts", "steps", "dry-run",
                     "pipeline", "--pipeline-steps", "10", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "parts failed: none" in done.stdout
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["machine"]["bf16_tflops"] > 0
    steps = results["steps"]
    assert [s["stage"] for s in steps] == ["pretrain", "post_pretrain", "finetune", "distill"]
    profile = load_profile("smoke")
    for s in steps:
        assert s["s_per_step"] > 0 and s["mfu"] > 0
        assert s["profile_steps"] == getattr(profile, s["stage"]).steps
    assert results["dry-run"][0]["problems"] == []
    pipeline = {r["stage"]: r for r in results["pipeline"]}
    assert list(pipeline) == ["data", "tokenizer", "pretrain", "teacher", "post_pretrain", "finetune",
                              "distill_data", "distill"]
    step_time = {s["stage"]: s["s_per_step"] for s in steps}
    for stage in ("pretrain", "post_pretrain", "finetune", "distill"):     # the rest of the steps at part 2's pace
        expected = pipeline[stage]["wall_s"] + (getattr(profile, stage).steps - 10) * step_time[stage]
        assert pipeline[stage]["steps"] == 10 and pipeline[stage]["projected_s"] == pytest.approx(expected)
    assert pipeline["data"]["projected_s"] == pipeline["data"]["wall_s"] > 0


def test_without_a_gpu_it_says_so():
    done = run_check("--parts", "steps")
    assert done.returncode != 0
    assert "sees no CUDA GPU" in done.stderr and "dry-run" in done.stderr


@pytest.mark.parametrize("stage, overrides", [("pretrain", {}), ("post_pretrain", {}), ("finetune", {}),
                                               ("distill", {}), ("distill", {"distill.hidden_weight": 1.0})])
def test_step_flops_is_the_usual_per_token_count(stage, overrides):
    """A relevance-only step is rows x length tokens at 6N + 12LHT each; the MLM rows add their
    head's projection for the masked share; layer-wise distillation's teacher its forward, 2N + 4LHT
    (without it the teacher's scores come with the data: held on the device, never run)."""
    step = {s.stage: s for s in gpu_memory.training_steps(load_profile("laptop", overrides))}[stage]
    model = RelevanceBert(step.model, step.vocab, step.seq_len)
    tokens = step.seq_len * step.micro_batches
    expected = (step.rows + step.mlm_rows) * tokens * flops_per_token(model, step.seq_len, training=True)
    expected += 6 * step.model.hidden * step.vocab * step.mask_prob * step.mlm_rows * tokens
    assert bool(step.frozen) == (stage == "distill") and bool(step.layerwise) == bool(overrides)
    if step.layerwise:
        teacher = RelevanceBert(step.layerwise, step.vocab, step.seq_len)
        expected += step.rows * tokens * flops_per_token(teacher, step.seq_len, training=False)
    assert gpu_check.step_flops(step) == pytest.approx(expected, rel=1e-12)


def test_the_dry_run_on_cuda_keeps_the_profiles_precision():
    overrides = dry_run_overrides("gpu", device="cuda")
    assert overrides["device"] == "cuda" and overrides["precision"] == "bf16"
