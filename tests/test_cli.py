import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import data_gen
from relcourse import course
from relcourse.claims import CLAIMS
from relcourse.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RELCOURSE_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("RELCOURSE_PROFILE", raising=False)
    return tmp_path / "runs"


def fails(argv, capsys) -> str:
    """Run the CLI expecting a user error: exit status 2 and one line on stderr, no traceback."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("relcourse: error: ") and "Traceback" not in err
    return err


def test_unknown_profile_exits_2_naming_the_choices(capsys):
    err = fails(["profile", "--profile", "huge"], capsys)
    assert "smoke, laptop, gpu, gpu-xl" in err and len(err.strip().splitlines()) == 1


def test_bad_overrides_exit_2(capsys):
    assert "pretrain.steps" in fails(["profile", "--set", "pretrain.stepz=5"], capsys)
    assert "out of range" in fails(["profile", "--set", "pretrain.steps=0"], capsys)
    assert "KEY=VALUE" in fails(["profile", "--set", "pretrain.steps"], capsys)


def test_profile_prints_the_resolved_profile(capsys):
    assert main(["profile", "--profile", "laptop", "--set", "pretrain.steps=7", "--set", "seeds=4,5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "laptop" and printed["pretrain"]["steps"] == 7 and printed["data"]["seeds"] == [4, 5]


def test_profile_defaults_to_the_env_var(capsys, monkeypatch):
    monkeypatch.setenv("RELCOURSE_PROFILE", "gpu")
    main(["profile"])
    assert json.loads(capsys.readouterr().out)["name"] == "gpu"


def test_report_writes_the_report_folder_or_the_claims_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RELCOURSE_REPORTS", str(tmp_path / "reports"))
    main(["report", "--profile", "smoke"])
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "reports" / "smoke" / "REPORT.md")
    text = (tmp_path / "reports" / "smoke" / "REPORT.md").read_text()
    assert all(f"| {c.id} |" in text for c in CLAIMS)
    main(["report", "--profile", "smoke", "--out", str(tmp_path / "r.md")])
    assert "| D12 |" in (tmp_path / "r.md").read_text()


def test_data_builds_each_requested_seed(capsys, monkeypatch, runs):
    seen = []

    def generate(cfg, seed, out, profile="custom", progress=True, workers=1):
        seen.append((seed, cfg.n_queries))
        return {"tables": {"queries": {"rows": cfg.n_queries}}}

    monkeypatch.setattr(data_gen, "generate", generate)
    main(["data", "--profile", "smoke", "--seed", "0", "--seed", "2", "--set", "data.n_queries=100"])
    printed = capsys.readouterr().out.split()
    assert seen == [(0, 100), (2, 100)]
    assert [Path(p).parent for p in printed] == [runs / "smoke" / "data"] * 2
    assert [Path(p).name.split("-")[0] for p in printed] == ["0", "2"]


def test_run_claims_delegates_and_names_bad_requests(monkeypatch, capsys):
    from relcourse import claims, experiments

    calls, real_run_claims = [], experiments.run_claims

    def run_claims(profile, stage, claim_ids, workers):
        calls.append((profile.name, profile.threads, stage, claim_ids, workers))
        return [claims.summarise("P1", profile.name, {0: 0.01, 1: 0.02})]

    monkeypatch.setattr(experiments, "run_claims", run_claims)
    main(["run", "claims", "--profile", "laptop", "--claim", "P1", "--workers", "2", "--set", "threads=2"])
    assert calls == [("laptop", 2, None, ["P1"], 2)] and capsys.readouterr().out.startswith("P1: ")
    monkeypatch.setattr(experiments, "run_claims", real_run_claims)   # the checks below fail before any work
    assert "--stage pretrain" in fails(["run", "claims"], capsys)
    assert "'Z9' has no experiment" in fails(["run", "claims", "--claim", "Z9"], capsys)
    assert "--set seeds=" in fails(["run", "claims", "--stage", "pretrain", "--seed", "1"], capsys)
    assert "for 'run claims'" in fails(["run", "pretrain", "--workers", "2"], capsys)
    assert "at least 1" in fails(["run", "claims", "--claim", "T1", "--workers", "0"], capsys)


def test_course_delegates_to_run_course(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(course, "run_course", lambda *args, **kwargs: calls.append((*args, kwargs)) or [])
    main(["course", "--profile", "laptop", "--only", "00", "03_finetune"])
    main(["course", "--seed", "2", "--out", str(tmp_path), "--set", "pretrain.steps=50"])
    assert calls == [("laptop", 0, None, ["00", "03_finetune"], {"overrides": {}, "log_output": False}),
                     ("smoke", 2, tmp_path, None, {"overrides": {"pretrain.steps": "50"}, "log_output": False})]
    assert "not a setting" in fails(["course", "--set", "pretrain.stepz=50"], capsys)


def test_course_refresh_delegates_and_refuses_other_profiles(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(course, "refresh_notebooks", lambda only, log_output: calls.append(only) or [])
    main(["course", "--refresh", "--only", "03"])
    assert calls == [["03"]] and "refreshed" in capsys.readouterr().out
    assert "on smoke as committed" in fails(["course", "--refresh", "--profile", "laptop"], capsys)
    assert "on smoke as committed" in fails(["course", "--refresh", "--set", "pretrain.steps=5"], capsys)
    assert calls == [["03"]]


def test_course_publish_delegates_for_a_bigger_profile_only(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(course, "publish_notebooks", lambda *args, **kwargs: calls.append((*args, kwargs)) or [])
    main(["course", "--profile", "laptop", "--publish", "--set", "threads=1"])
    assert calls == [("laptop", 0, None, {"overrides": {"threads": "1"}, "log_output": False})]
    assert "for a bigger profile" in fails(["course", "--publish"], capsys)
    assert "and no --out" in fails(["course", "--profile", "laptop", "--publish", "--out", "x"], capsys)
    assert "no --profile, --set, --out or --publish" in fails(["course", "--refresh", "--publish"], capsys)
    assert len(calls) == 1


def test_course_failure_exits_2(monkeypatch, capsys):
    def run_course(*args, **kwargs):
        raise course.CourseError("notebook 01_data.ipynb failed at cell 3")

    monkeypatch.setattr(course, "run_course", run_course)
    assert "01_data.ipynb failed" in fails(["course"], capsys)


def test_python_dash_m_relcourse():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "relcourse", "report", "--profile", "huge"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("relcourse: error: profile 'huge' is unknown") and "Traceback" not in out.stderr


def test_report_renders_a_ladder_file_and_names_a_missing_one(capsys, tmp_path):
    entry = {"mean": 0.81, "sd": 0.01, "ci95_half_width": 0.025, "per_seed": [0.80, 0.82]}
    path = tmp_path / "ladder.json"
    path.write_text(json.dumps({"seeds": [0, 1], "summary": {"models": {"recipe": {"auc": entry}},
                                                             "references": {"BM25": {"auc": entry}}}}))
    assert main(["report", "--ladder", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| recipe | 0.810 ± 0.025 (0.800, 0.820) |" in out and "| BM25 |" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--ladder", str(tmp_path / "missing.json")])
    assert exit_info.value.code == 2 and "run ladder --out" in capsys.readouterr().err


def test_the_noise_probe_refuses_a_repeated_draw_before_training(capsys, runs):
    assert "repeats a draw" in fails(["noise", "--stage-2-draws", "0", "0"], capsys)
    assert not runs.exists()   # nothing was built
