"""Every setting lives in the profile and in the cache key of each stage it changes: change one
setting, and the key of every stage that depends on it changes, so no run is silently reused."""
import dataclasses

import pytest

from relcourse.config import PROFILES, with_overrides
from relcourse.finetune import finetune_settings
from relcourse.post_pretrain import teacher_settings
from relcourse.pretrain import pretrain_settings, tokenizer_settings
from relcourse.stage_keys import STAGE_SETTINGS, changed_stages, fingerprint, own_key
from relcourse.store import data_settings

# Which stage's key each section's settings must change (a stage also sees its upstream runs'
# hashes, so a pretraining setting reaches fine-tuning through the pretraining run's hash).
SECTION_STAGE = {"data": "data", "teacher": "teacher", "pretrain": "pretrain", "post_pretrain": "post_pretrain",
                 "finetune": "finetune", "tokenizer": "pretrain", "feedback_loop": "feedback_loop",
                 "distill": "distill"}
# Profile-level settings that change what several stages compute.
PROFILE_STAGES = {"precision": ("pretrain", "post_pretrain", "finetune", "distill"),
                  "fused_adamw": ("pretrain", "post_pretrain", "finetune", "distill")}
# Settings that change where or how a run is watched, not what it computes (threads: up to float
# rounding, relcourse.config.Profile).
NOT_COMPUTATION = {"name", "device", "threads", "data_workers", "notebook_claims", "data.seeds"}
TOKENIZER_VOCABULARY = {"tokenizer.vocab_size"}
# Settings that only vary together with another: changed from a profile that has that one set.
NEEDS = {"finetune.label_design": {"finetune.labels": "stratified"},
         "finetune.stale_share": {"finetune.labels": "stratified"},
         "finetune.stale_rubric": {"finetune.labels": "stratified", "finetune.stale_share": 0.5},
         "finetune.label_budget_share": {"finetune.labels": "stratified"},
         "feedback_loop.annotator_anchoring": {"feedback_loop.teacher_labels": "shown_top"},
         "distill.via_layers": {"pretrain.model.layers": 4},   # a mid student between a 4-layer teacher and 1
         "pretrain.nsp_negatives": {"pretrain.sentence_task": "nsp"}}   # SOP draws no negatives


def leaf_settings(section, prefix=""):
    """(dotted key, field, value) of every leaf setting of a config section."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from leaf_settings(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def another_valid_value(profile, key, f, value):
    """A different value the profile accepts for this setting."""
    choices, (lo, hi) = f.metadata.get("choices"), f.metadata.get("range", (None, None))
    if isinstance(value, bool):
        candidates = [not value]
    elif choices:
        candidates = [c for c in choices if c != value]
    elif isinstance(value, int):
        candidates = [value + 1, value + 2, value * 2, value - 1]
    elif isinstance(value, float):
        candidates = [value * 0.9, value * 1.1, (lo + value) / 2 if lo is not None else value / 2,
                      value + 0.05, 0.5]
    else:
        pytest.fail(f"{key}: no rule for a value of type {type(value).__name__}")
    for candidate in candidates:
        if candidate == value or (lo is not None and not lo <= candidate <= hi):
            continue
        try:
            return with_overrides(profile, {key: candidate})
        except ValueError:   # breaks a rule between fields; try another value
            continue
    pytest.fail(f"{key}: no other valid value found; add the settings it needs to NEEDS")


@pytest.mark.parametrize("profile_name", ["smoke", "laptop"])
def test_every_setting_changes_its_stage_key(profile_name):
    checked = 0
    for key, f, value in leaf_settings(PROFILES[profile_name]):
        if key in NOT_COMPUTATION:
            continue
        profile = with_overrides(PROFILES[profile_name], NEEDS.get(key, {}))
        keys = {stage: own_key(stage, profile) for stage in STAGE_SETTINGS}
        changed = another_valid_value(profile, key, f, value)
        for stage in PROFILE_STAGES.get(key) or [SECTION_STAGE[key.split(".")[0]]]:
            assert own_key(stage, changed) != keys[stage], f"{key} is not in the {stage} stage's cache key"
        if key in TOKENIZER_VOCABULARY:
            assert tokenizer_settings(changed) != keys["tokenizer"]
        checked += 1
    assert checked >= 50




def test_a_fingerprint_names_the_stages_whose_settings_changed_and_only_those():
    laptop = PROFILES["laptop"]
    everything = fingerprint(laptop, STAGE_SETTINGS)
    assert list(everything) == list(STAGE_SETTINGS) and changed_stages(everything, laptop) == []
    for key, value, stages in (("post_pretrain.steps", 9600, ["post_pretrain"]),
                               ("teacher.max_rounds", 7, ["teacher"]),
                               ("tokenizer.max_len", 48, ["pretrain", "post_pretrain", "finetune", "distill_data",
                                                          "distill"]),
                               ("data.n_queries", 2_500, ["data"])):
        assert changed_stages(everything, with_overrides(laptop, {key: value})) == stages, key
    with pytest.raises(ValueError, match="stage 'postpretrain' is unknown"):
        own_key("postpretrain", laptop)


def test_settings_added_later_keep_the_keys_of_runs_cached_before_them():
    """precision=fp32, grad_accum=1, distill.hidden_weight=0, distill.via_layers=0 and
    finetune.stale_rubric=1 compute what
    runs did before these settings existed: their runs keep their names, so the CPU profiles'
    cached runs (hours on laptop) stay valid."""
    before = {"smoke": ["288798f27d24", "b4313be4c49a", "cc6b0b40aff8", "a9d952834efa"],
              "laptop": ["03b9e9fe1709", "6e5f50c61df9", "80d715335dfb", "7df54def8a92"]}
    # laptop's budgets grew since (pretraining 8,000 steps, post-pretraining 14,400): its old runs
    # are those of the old budgets
    profiles = {"smoke": PROFILES["smoke"],
                "laptop": with_overrides(PROFILES["laptop"], {"pretrain.steps": 4000, "pretrain.warmup_steps": 400,
                                                              "post_pretrain.steps": 9600})}
    for name, hashes in before.items():
        assert [own_key(s, profiles[name]) for s in ("pretrain", "post_pretrain", "finetune", "distill")] == hashes
    assert own_key("pretrain", with_overrides(PROFILES["smoke"], {"pretrain.grad_accum": 2})) != before["smoke"][0]
    # P2's NSP arm as banked on laptop before pretrain.nsp_negatives existed (seeds 2-10)
    nsp = with_overrides(PROFILES["laptop"], {"pretrain.sentence_task": "nsp"})
    assert own_key("pretrain", nsp) == "828301c48856"
    assert own_key("pretrain", with_overrides(nsp, {"pretrain.nsp_negatives": "same_product"})) != "828301c48856"
    for later in ({"distill.hidden_weight": 1.0}, {"pretrain.model.layers": 4, "distill.via_layers": 2}):
        assert own_key("distill", with_overrides(PROFILES["smoke"], later)) != before["smoke"][3], later


def test_fine_tuning_key_sees_the_input_encoding_and_the_scratch_model_size():
    smoke = PROFILES["smoke"]
    for key, value in {"tokenizer.exact_match": True, "tokenizer.max_len": 48, "pretrain.model.hidden": 128,
                       "finetune.start": "scratch"}.items():
        assert finetune_settings(with_overrides(smoke, {key: value})) != finetune_settings(smoke), key


def test_settings_that_do_not_change_a_stage_leave_its_key_alone():
    smoke = PROFILES["smoke"]
    fast = with_overrides(smoke, {"threads": 1, "seeds": "0,1,2", "finetune.steps": 7})
    assert pretrain_settings(fast) == pretrain_settings(smoke)
    # SOP draws no negatives, so where NSP would draw them from leaves an SOP run what it is.
    assert pretrain_settings(with_overrides(smoke, {"pretrain.nsp_negatives": "same_product"})) == pretrain_settings(smoke)
    assert data_settings(fast) == data_settings(smoke) and teacher_settings(fast) == teacher_settings(smoke)


def test_the_students_arithmetic_is_in_the_distill_key_only():
    """distill.train_precision and distill.serve_precision (claim D11) name their own runs at every
    value but their defaults, and leave every earlier stage's key alone (the teacher is shared)."""
    smoke = PROFILES["smoke"]
    for key, value in [("distill.train_precision", "bf16"), ("distill.train_precision", "fp32"),
                       ("distill.serve_precision", "bf16"), ("distill.serve_precision", "int8")]:
        arm = with_overrides(smoke, {key: value})
        assert own_key("distill", arm) != own_key("distill", smoke), (key, value)
        assert all(own_key(s, arm) == own_key(s, smoke) for s in STAGE_SETTINGS if s != "distill"), (key, value)


def test_the_stage_2_curve_renames_stage_2_runs_only():
    """post_pretrain.validation_points logs a validation curve during stage 2 (same weights): the
    stage-2 run that logs it is another run, but the feedback loop, whose models log no curve,
    keeps its key."""
    from relcourse.feedback_loop import feedback_loop_settings
    loop = with_overrides(PROFILES["smoke"], {"feedback_loop.relevance_model": "cross_encoder"})
    curve = with_overrides(loop, {"post_pretrain.validation_points": 12})
    assert own_key("post_pretrain", curve) != own_key("post_pretrain", loop)
    assert feedback_loop_settings(curve) == feedback_loop_settings(loop)
    assert feedback_loop_settings(with_overrides(loop, {"post_pretrain.steps": 7})) != feedback_loop_settings(loop)
