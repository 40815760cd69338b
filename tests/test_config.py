import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import data_gen.config
from relcourse.config import (PROFILES, ConfigError, ModelConfig, config_hash, load_profile,
                              parse_overrides)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_profile_env(monkeypatch):
    monkeypatch.delenv("RELCOURSE_PROFILE", raising=False)


def test_every_profile_takes_its_data_sizes_and_seeds_from_data_gen():
    assert list(PROFILES) == ["smoke", "laptop", "gpu", "gpu-xl"]
    for name in PROFILES:
        p = load_profile(name)
        assert p.name == name
        assert p.data == data_gen.config.PROFILES[name]
        assert p.seeds == tuple(data_gen.config.PROFILES[name].seeds)


def test_profile_sizes_match_their_budgets():
    smoke, laptop, gpu, xl = (load_profile(n) for n in PROFILES)
    assert (smoke.pretrain.model.layers, smoke.pretrain.model.hidden, smoke.tokenizer.max_len) == (2, 64, 32)
    assert (laptop.pretrain.model.layers, laptop.pretrain.model.hidden) == (2, 128)
    assert len(laptop.seeds) >= 3 and laptop.pretrain.steps >= 1_000
    assert (gpu.pretrain.model.layers, gpu.pretrain.model.hidden, gpu.distill.student.layers) == (12, 768, 4)
    assert gpu.tokenizer.max_len == 128 and gpu.device == "cuda"
    assert xl.pretrain.model.layers >= 24
    for p in (smoke, laptop, gpu, xl):
        assert p.distill.student.layers < p.pretrain.model.layers   # the teacher is the model stages 1-3 train


def test_the_gpu_profiles_train_in_bf16_and_the_cpu_ones_in_fp32_without_accumulation():
    """The CPU profiles compute what they always did; gpu-xl's big batches are 4 micro-batches each
    (relcourse.gpu_memory: what an H100 80GB holds)."""
    smoke, laptop, gpu, xl = (load_profile(n) for n in PROFILES)
    assert (smoke.precision, laptop.precision, gpu.precision, xl.precision) == ("fp32", "fp32", "bf16", "bf16")
    accumulation = {p.name: [getattr(p, s).grad_accum for s in ("pretrain", "post_pretrain", "finetune", "distill")]
                    for p in (smoke, laptop, gpu, xl)}
    assert accumulation == {"smoke": [1] * 4, "laptop": [1] * 4, "gpu": [1] * 4, "gpu-xl": [4, 4, 1, 1]}
    assert load_profile("smoke", {"device": "auto", "precision": "fp16"}).precision == "fp16"   # on CUDA, if any


def test_default_profile_is_smoke_or_the_env_var(monkeypatch):
    assert load_profile().name == "smoke"
    monkeypatch.setenv("RELCOURSE_PROFILE", "laptop")
    assert load_profile().name == "laptop"
    assert load_profile("gpu").name == "gpu"  # an explicit name wins


def test_overrides_apply_to_every_level():
    p = load_profile("smoke", {"pretrain.steps": 50, "data.n_queries": 200, "seeds": [0, 1], "threads": 1,
                               "pretrain.model.layers": 3, "distill.student.hidden": 32})
    assert (p.pretrain.steps, p.data.n_queries, p.seeds, p.threads) == (50, 200, (0, 1), 1)
    assert p.pretrain.model.layers == 3
    assert p.distill.student.hidden == 32
    assert load_profile("smoke") == PROFILES["smoke"]  # the registered profile is untouched


def test_string_overrides_are_converted_to_the_field_types():
    p = load_profile("smoke", parse_overrides(["pretrain.steps=50", "pretrain.lr=3e-4", "seeds=0,1,2",
                                               "pretrain.sentence_task=nsp", "finetune.pairwise_weight=2"]))
    assert p.pretrain.steps == 50 and p.pretrain.lr == 3e-4
    assert p.seeds == (0, 1, 2) and p.pretrain.sentence_task == "nsp"
    assert p.finetune.pairwise_weight == 2.0 and type(p.finetune.pairwise_weight) is float


def test_parse_overrides_needs_key_equals_value():
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["pretrain.steps"])


def test_unknown_profile_names_the_valid_choices():
    with pytest.raises(ValueError, match="smoke, laptop, gpu, gpu-xl"):
        load_profile("huge")


@pytest.mark.parametrize("key, listed", [("pretrain.stepz", "pretrain.steps"), ("stepz", "post_pretrain"),
                                          ("pretrain.model.depth", "pretrain.model.layers"),
                                          ("data.n_querys", "data.n_queries"), ("pretrain.steps.x", "pretrain.lr")])
def test_unknown_key_lists_the_valid_keys_of_its_section(key, listed):
    with pytest.raises(ConfigError, match=f"{key} is not a setting") as e:
        load_profile("smoke", {key: 1})
    assert listed in str(e.value)


def test_a_section_cannot_be_set_as_a_value():
    with pytest.raises(ConfigError, match="pretrain.model is a section.*pretrain.model.layers"):
        load_profile("smoke", {"pretrain.model": 3})


@pytest.mark.parametrize("overrides, message", [
    ({"pretrain.steps": 0}, r"pretrain.steps=0 is out of range \[1, 10000000\]: optimizer steps"),
    ({"pretrain.model.layers": 0}, r"pretrain.model.layers=0 is out of range"),
    ({"data.n_queries": 3}, r"data.n_queries=3 is out of range \[50, 10000000\]: distinct queries"),
    ({"pretrain.sentence_task": "mlm"}, r"pretrain.sentence_task='mlm' is not one of sop, nsp"),
    ({"device": "tpu"}, r"device='tpu' is not one of cpu, cuda, auto"),
    ({"pretrain.steps": "many"}, r"pretrain.steps='many' is not a valid int"),
    ({"threads": 2.5}, r"threads=2.5 must be of type int"),
    ({"distill.student.heads": 3}, r"distill.student.hidden=64 must be a multiple of heads=3"),
    ({"tokenizer.max_query_len": 32}, r"tokenizer.max_query_len=32 must be at most max_len - 4=28"),
    ({"distill.batch_size": 30}, r"distill.batch_size=30 must be a multiple of docs_per_query_in_batch=4"),
    ({"precision": "fp16"}, r"precision='fp16' needs CUDA \(CPU autocast has no fp16\): use bf16 or fp32"),
    ({"precision": "fp8"}, r"precision='fp8' is not one of fp32, bf16, fp16"),
    ({"pretrain.grad_accum": 3}, r"pretrain.grad_accum=3 must divide a batch's 32 rows \(batch_size=32\)"),
    ({"post_pretrain.grad_accum": 3}, r"post_pretrain.grad_accum=3 must divide a batch's 8 query groups of "
                                      r"docs_per_query_in_batch=4"),
    ({"finetune.grad_accum": 16}, r"finetune.grad_accum=16 must divide a batch's 8 query groups"),
    ({"distill.grad_accum": 0}, r"distill.grad_accum=0 is out of range \[1, 1024\]: micro-batches per optimizer step"),
    ({"post_pretrain.grad_accum": 8, "post_pretrain.mlm_batch_share": 0.2},
     r"post_pretrain.mlm_batch_share=0.2 masks 6 rows a step, fewer than grad_accum=8"),
])
def test_invalid_values_say_what_is_wrong(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_profile("smoke", overrides)


def test_sections_validate_when_built_directly():
    with pytest.raises(ConfigError, match=r"layers=0 is out of range \[1, 96\]"):
        ModelConfig(layers=0)


def test_to_dict_is_plain_json():
    d = load_profile("laptop").to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["pretrain"]["model"]["hidden"] == 128 and d["data"]["seeds"] == [0, 1, 2]


def test_config_hash_is_sha256_of_canonical_json():
    assert config_hash({"b": 1, "a": (1, 2)}) == hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()[:12]


def test_config_hash_changes_with_any_field():
    base = load_profile("smoke")
    hashes = {config_hash(base), config_hash(load_profile("smoke", {"pretrain.lr": 2e-3})),
              config_hash(load_profile("smoke", {"data.n_queries": 601})),
              config_hash(dataclasses.replace(base, name="other"))}
    assert len(hashes) == 4
    assert config_hash(base) == config_hash(load_profile("smoke"))


def test_config_hash_is_stable_across_processes():
    code = "from relcourse.config import config_hash, load_profile; print(config_hash(load_profile('laptop')))"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == config_hash(load_profile("laptop"))


def test_finetune_loss_choices_are_the_registered_losses():
    from relcourse.losses import LOSSES
    from relcourse.config import FinetuneConfig
    import dataclasses
    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(FinetuneConfig)}["loss"]
    assert set(choices) == set(LOSSES)
