import datetime
import json
import os

import pytest

import data_gen
from relcourse import store
from relcourse.config import load_profile
from relcourse.store import (StoreError, atomic_dir, cached_stage, cpu_model, ensure_data, load_manifest, require_stage,
                             stage_dir, write_json_atomic)

SMOKE = load_profile("smoke")


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RELCOURSE_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


class Builder:
    """A stage build that counts its calls and writes one file."""

    def __init__(self, fail=False):
        self.calls, self.fail = 0, fail

    def __call__(self, d):
        self.calls += 1
        (d / "weights.txt").write_text("w")
        if self.fail:
            raise RuntimeError("training diverged")
        return {"auc": 0.5 + self.calls / 10}


def test_stage_dir_layout(runs):
    assert stage_dir("smoke", "pretrain", 2, "abc123") == runs / "smoke" / "pretrain" / "2-abc123"


def test_write_json_atomic_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_dir_renames_into_place_only_on_success(tmp_path):
    final = tmp_path / "stage" / "0-abc"
    with atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and not final.exists()
        (tmp / "a.txt").write_text("new")
    assert (final / "a.txt").read_text() == "new"

    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "new"
    assert [p.name for p in final.parent.iterdir()] == ["0-abc"]  # no temp folder left


def test_atomic_dir_replaces_an_existing_folder(tmp_path):
    final = tmp_path / "0-abc"
    final.mkdir()
    (final / "stale.txt").write_text("old")
    with atomic_dir(final) as tmp:
        (tmp / "fresh.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["fresh.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["0-abc"]


def test_cached_stage_writes_a_complete_manifest():
    d = cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, Builder(), upstream={"data": "0123456789ab"})
    m = load_manifest(d)
    assert (m["stage"], m["profile"], m["seed"], m["status"]) == ("pretrain", "smoke", 0, "complete")
    assert m["config"] == {"steps": 5} and m["upstream"] == {"data": "0123456789ab"}
    assert d.name == f"0-{m['config_hash']}" and len(m["config_hash"]) == 12
    assert m["metrics"] == {"auc": 0.6}
    assert "python" in m["versions"] and "torch" in m["versions"] and "git_commit" in m
    assert m["machine"]["threads"] == SMOKE.threads and m["machine"]["device"] == SMOKE.device
    import torch
    assert m["machine"]["cpu"] == cpu_model() and cpu_model().endswith(", " + torch.backends.cpu.get_cpu_capability())
    assert datetime.datetime.fromisoformat(m["created"]).tzinfo is not None
    assert (d / "weights.txt").exists()


def test_cached_stage_reuses_a_matching_run():
    build = Builder()
    first = cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, build)
    again = cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, build)
    assert first == again and build.calls == 1


def test_machines_read_names_what_built_the_runs_returned_inside_it():
    one, two = (load_profile("smoke", {"threads": n}) for n in (1, 2))
    cached_stage(one, "pretrain", 0, {"steps": 5}, Builder())             # built by a 1-thread process
    with store.machines_read() as outer:
        cached_stage(two, "data", 0, {"rows": 1}, Builder())              # thread-free: not counted
        with store.machines_read() as inner:
            cached_stage(two, "pretrain", 0, {"steps": 5}, Builder())     # read back: its builder counts
        cached_stage(two, "finetune", 0, {"steps": 5}, Builder())         # built here, with 2 threads
    assert [store.layout(m) for m in inner] == [f"cpu: {cpu_model()}, 1 thread a run"]
    assert [m["threads"] for m in outer] == [1, 2]                         # the inner block's runs count outside too
    cached_stage(two, "finetune", 0, {"steps": 5}, Builder())              # outside any block: nothing collected
    assert len(outer) == 2


def test_cached_stage_rebuilds_when_config_upstream_or_seed_change():
    build = Builder()
    runs = {cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, build),
            cached_stage(SMOKE, "pretrain", 0, {"steps": 6}, build),
            cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, build, upstream={"data": "other"}),
            cached_stage(SMOKE, "pretrain", 1, {"steps": 5}, build)}
    assert len(runs) == 4 and build.calls == 4


def test_a_failing_build_leaves_nothing_behind_and_keeps_other_runs(runs):
    good = cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, Builder())
    with pytest.raises(RuntimeError, match="diverged"):
        cached_stage(SMOKE, "pretrain", 0, {"steps": 6}, Builder(fail=True))
    visible = [p for p in (runs / "smoke" / "pretrain").iterdir() if not p.name.startswith(".")]
    assert visible == [good]
    assert not list((runs / "smoke" / "pretrain").glob("*.building-*"))   # (hidden lock files stay)
    assert load_manifest(good)["metrics"] == {"auc": 0.6}


def test_a_resumable_stage_finds_what_a_failed_attempt_left():
    """A training stage killed half-way resumes from its checkpoint: its work folder survives."""
    def crash(out):
        (out / "checkpoint.txt").write_text("step 10")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cached_stage(SMOKE, "pretrain", 0, {"steps": 20}, crash, resumable=True)
    seen = []

    def resume(out):
        seen.append((out / "checkpoint.txt").read_text())
        return {}

    d = cached_stage(SMOKE, "pretrain", 0, {"steps": 20}, resume, resumable=True)
    assert seen == ["step 10"] and load_manifest(d)["status"] == "complete"
    assert not (d.parent / f".{d.name}.partial").exists()


def test_two_builders_of_one_stage_build_it_once():
    import threading
    import time
    calls = []

    def slow(out):
        calls.append(1)
        time.sleep(0.3)
        return {}

    threads = [threading.Thread(target=cached_stage, args=(SMOKE, "pretrain", 0, {"steps": 7}, slow))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1


def test_an_unfinished_run_is_rebuilt_and_a_failed_rebuild_does_not_disturb_it():
    d = cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, Builder())
    (d / "run.json").write_text("{ truncated")
    with pytest.raises(RuntimeError):
        cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, Builder(fail=True))
    assert (d / "run.json").read_text() == "{ truncated"
    build = Builder()
    assert cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, build) == d and build.calls == 1
    assert load_manifest(d)["status"] == "complete"


def test_load_manifest_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(StoreError, match="has no run.json.*build the stage again"):
        load_manifest(tmp_path)
    (tmp_path / "run.json").write_text("{ not json")
    with pytest.raises(StoreError, match="is corrupt"):
        load_manifest(tmp_path)
    (tmp_path / "run.json").write_text('{"status": "building"}')
    with pytest.raises(StoreError, match="not describe a complete run"):
        load_manifest(tmp_path)


def test_require_stage_names_the_command_that_builds_a_missing_stage():
    with pytest.raises(StoreError, match="python -m relcourse data --profile smoke --seed 3"):
        require_stage(SMOKE, "data", 3)
    with pytest.raises(StoreError, match="python -m relcourse run pretrain --profile laptop"):
        require_stage("laptop", "pretrain", 0)


def test_require_stage_returns_the_newest_complete_run():
    old = cached_stage(SMOKE, "pretrain", 0, {"steps": 5}, Builder())
    new = cached_stage(SMOKE, "pretrain", 0, {"steps": 6}, Builder())
    cached_stage(SMOKE, "pretrain", 1, {"steps": 7}, Builder())  # another seed does not count
    manifest = load_manifest(old)
    manifest["created"] = "1999-01-01T00:00:00+00:00"
    write_json_atomic(old / "run.json", manifest)
    assert require_stage(SMOKE, "pretrain", 0) == new
    (new / "run.json").unlink()  # unfinished: skipped
    assert require_stage(SMOKE, "pretrain", 0) == old


@pytest.fixture
def fake_generate(monkeypatch):
    calls = []

    def generate(cfg, seed, out, profile="custom", progress=True, workers=1):
        calls.append((cfg, seed, profile, progress))
        (out / "queries").mkdir()
        return {"tables": {"queries": {"rows": cfg.n_queries, "files": []}, "labels": {"rows": 7, "files": []}}}

    monkeypatch.setattr(data_gen, "generate", generate)
    return calls


def test_ensure_data_generates_once_per_world_and_seed(fake_generate):
    d = ensure_data(SMOKE, 0, progress=False)
    assert fake_generate == [(SMOKE.data, 0, "smoke", False)]
    assert load_manifest(d)["metrics"] == {"queries": 600, "labels": 7}
    assert require_stage(SMOKE, "data", 0) == d
    # The list of seeds a profile runs does not change what seed 0 generates.
    assert ensure_data(load_profile("smoke", {"seeds": [0, 1]}), 0) == d and len(fake_generate) == 1
    assert ensure_data(SMOKE, 1) != d
    assert ensure_data(load_profile("smoke", {"data.n_queries": 100}), 0) != d
    assert len(fake_generate) == 3


def test_ensure_data_runs_the_real_generator():
    tiny = load_profile("smoke", {"data.n_queries": 60, "data.n_searches": 2_000, "data.general_corpus_lines": 50,
                                  "data.domain_corpus_lines": 50, "data.label_budget": 200})
    d = ensure_data(tiny, 0, progress=False)
    assert data_gen.read_table(d, "queries").shape[0] == 60  # data_gen's own manifest survives beside run.json
    assert load_manifest(d)["metrics"]["queries"] == 60
    assert store.git_commit() is None or len(store.git_commit()) == 40


def test_runs_in_points_the_stages_at_a_folder_and_restores_the_setting(tmp_path, monkeypatch):
    from relcourse.store import RUNS_ENV, runs_in, runs_root
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "mine"))
    with runs_in(tmp_path / "scratch"):
        assert runs_root() == tmp_path / "scratch"
    assert os.environ[RUNS_ENV] == str(tmp_path / "mine")
    monkeypatch.delenv(RUNS_ENV)
    with pytest.raises(RuntimeError), runs_in(tmp_path / "scratch"):
        raise RuntimeError("a failed stage")
    assert RUNS_ENV not in os.environ
