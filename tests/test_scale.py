"""Data at scale: the documents, corpora and logs written in worker processes, or the logs shard by
shard as separate commands, give the same bytes as one process; bad steps are refused with the
command that fixes them."""
import math

import pytest

import data_gen
from data_gen.__main__ import main
from data_gen.io import process_map
from data_gen.pipeline import finish, prepare, write_log_shards

TINY = dict(n_queries=120, n_searches=3_000, searches_per_shard=1_000, general_corpus_lines=300,
            domain_corpus_lines=300, label_budget=500.0)   # 3 log shards (a float budget, as --set writes it)


def _bytes(root):
    """Every file of a data directory, manifest included."""
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "w"
    data_gen.generate(data_gen.world_config("smoke", **TINY), 0, out, profile="smoke", progress=False)
    return _bytes(out)


def test_two_workers_write_the_same_bytes_as_one(one_process, tmp_path):
    manifest = data_gen.generate(data_gen.world_config("smoke", **TINY), 0, tmp_path / "w", profile="smoke",
                                 progress=False, workers=2)
    assert len(manifest["tables"]["impressions"]["files"]) == 3
    assert _bytes(tmp_path / "w") == one_process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]     # no temp folder left


def test_documents_and_corpora_in_several_shards_and_workers_give_the_same_bytes(tmp_path, monkeypatch):
    """TINY holds one shard of documents and of each corpus; smaller shards give 3 and 3 here."""
    from data_gen import pipeline
    monkeypatch.setattr(pipeline, "QUERIES_PER_DOC_SHARD", 50)
    monkeypatch.setattr(pipeline, "CORPUS_LINES_PER_SHARD", 100)
    written = {}
    for workers in (1, 2):
        manifest = data_gen.generate(data_gen.world_config("smoke", **TINY), 0, tmp_path / f"w{workers}",
                                     profile="smoke", progress=False, workers=workers)
        written[workers] = _bytes(tmp_path / f"w{workers}")
    assert len(manifest["tables"]["docs"]["files"]) == 3 and len(manifest["tables"]["corpus_domain"]["files"]) == 3
    assert written[1] == written[2]


def test_shards_as_separate_commands_in_any_order_give_the_same_bytes(one_process, tmp_path, capsys):
    d = tmp_path / "w"
    sets = [f"{k}={v}" for k, v in TINY.items()]
    assert main(["prepare", "--out", str(d), "--quiet", "--set", *sets]) == 0
    assert "log shards 0..2" in capsys.readouterr().out
    with pytest.raises(data_gen.DataError, match="prepared but not finished.*python -m data_gen shard"):
        data_gen.read_table(d, "queries")
    assert main(["shard", "--data", str(d), "--shards", "2", "--quiet"]) == 0
    assert main(["finish", "--data", str(d)]) == 2
    assert "2 of 3 log shards" in capsys.readouterr().err
    with pytest.raises(data_gen.DataError, match=r"2 of 3 log shards .* \(0\.\.1\).*--shards 0\.\.1`"):
        finish(d)
    assert main(["shard", "--data", str(d), "--shards", "0..1", "--workers", "2", "--quiet"]) == 0
    assert main(["finish", "--data", str(d)]) == 0
    assert _bytes(d) == one_process


def test_bad_shard_steps_are_refused_with_the_fix(tmp_path, capsys):
    d = tmp_path / "w"
    with pytest.raises(data_gen.DataError, match="not prepared.*python -m data_gen prepare"):
        write_log_shards(d)
    assert prepare(data_gen.world_config("smoke", **TINY), 0, d, progress=False) == 3
    with pytest.raises(data_gen.DataError, match="not empty"):
        prepare(data_gen.world_config("smoke", **TINY), 0, d, progress=False)
    with pytest.raises(data_gen.DataError, match="has log shards 0..2; there is no shard 3"):
        write_log_shards(d, [3])
    assert main(["shard", "--data", str(d), "--shards", "1-2"]) == 2
    assert "ranges K..M" in capsys.readouterr().err
    write_log_shards(d)
    finish(d)
    with pytest.raises(data_gen.DataError, match="already finished"):
        write_log_shards(d, [0])
    with pytest.raises(ValueError, match="workers=0 must be"):
        data_gen.generate(data_gen.world_config("smoke", **TINY), 0, tmp_path / "other", workers=0)
    assert not (tmp_path / "other").exists()


def test_process_map_keeps_order_and_raises_a_workers_error():
    assert list(process_map(math.sqrt, [16.0, 1.0, 9.0, 4.0, 0.0], workers=2)) == [4.0, 1.0, 3.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="math domain error"):
        list(process_map(math.sqrt, [4.0, -1.0, 9.0], workers=2))


def test_the_pipeline_generates_and_counts_in_the_profiles_data_workers(one_process, tmp_path, monkeypatch):
    """ensure_data and the teacher's stage pass profile.data_workers on; the data are the bytes of
    one process, so the setting is in no cache key (tests/test_cache_keys.py)."""
    from relcourse import features, post_pretrain, store
    from relcourse.config import load_profile

    monkeypatch.setenv(store.RUNS_ENV, str(tmp_path / "runs"))
    counted = []
    real_counts = features.behaviour_features
    monkeypatch.setattr(post_pretrain, "behaviour_features",
                        lambda data_dir, workers=1: counted.append(workers) or real_counts(data_dir, workers))
    profile = load_profile("smoke", {**{f"data.{k}": v for k, v in TINY.items()}, "data_workers": 2})
    data_dir = store.ensure_data(profile, 0, progress=False)
    assert {p: b for p, b in _bytes(data_dir).items() if p.parts[0] != "run.json"} == one_process
    post_pretrain.ensure_teacher(profile, 0, progress=False)
    assert counted == [2]
