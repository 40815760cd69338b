"""Which settings name each stage's runs, and a claim's *recipe fingerprint* built from them.

A run is named by the hash of its stage's settings and of the runs it was built from
(relcourse.store.stage_hash). Leave the upstream runs out and each stage has its *own key*, a
function of the profile alone: two profiles build the same run of a stage exactly when they agree
on the own keys of that stage and of every stage upstream of it.

A claim records the own keys of the stages its result passed through (its fingerprint). A report
compares them with the profile's keys today and says which stages changed since the claim was
measured — no run on disk needed, so a committed result is checked as well as a live one. A budget
raised in config.py then marks every claim it invalidates, and only those: the pretraining claims
go through the probe (pretrain, then fine-tune), so a longer stage 2 leaves them current.

>>> from relcourse.config import PROFILES, with_overrides
>>> laptop = PROFILES["laptop"]
>>> measured = fingerprint(with_overrides(laptop, {"post_pretrain.steps": 9600}), finetune_path(laptop))
>>> list(measured)
['data', 'tokenizer', 'pretrain', 'teacher', 'post_pretrain', 'finetune']
>>> changed_stages(measured, laptop)
['post_pretrain']
>>> changed_stages(fingerprint(laptop, finetune_path(with_overrides(laptop, {"finetune.start": "pretrain"}))), laptop)
[]
"""
from __future__ import annotations

from relcourse.config import Profile
from relcourse.distill import distill_data_settings, distill_settings
from relcourse.feedback_loop import feedback_loop_settings
from relcourse.finetune import finetune_settings
from relcourse.post_pretrain import post_pretrain_settings, teacher_settings
from relcourse.pretrain import pretrain_settings, tokenizer_settings
from relcourse.store import data_settings, stage_hash

# Each stage's settings, in pipeline order (the upstream of a stage comes before it).
STAGE_SETTINGS = {"data": data_settings, "tokenizer": tokenizer_settings, "pretrain": pretrain_settings,
                  "teacher": teacher_settings, "post_pretrain": post_pretrain_settings, "finetune": finetune_settings,
                  "feedback_loop": feedback_loop_settings, "distill_data": distill_data_settings,
                  "distill": distill_settings}

# The stages behind a fine-tuned model, by where fine-tuning starts (finetune.start).
FINETUNE_PATHS = {"scratch": ("data", "tokenizer", "finetune"),
                  "pretrain": ("data", "tokenizer", "pretrain", "finetune"),
                  "post_pretrain": ("data", "tokenizer", "pretrain", "teacher", "post_pretrain", "finetune")}
# A student: the recipe's teacher (fine-tuned after stage 2), the pairs it scores, and distillation.
DISTILL_PATH = (*FINETUNE_PATHS["post_pretrain"], "distill_data", "distill")


def own_key(stage: str, profile: Profile) -> str:
    """The hash of the stage's settings alone, its upstream runs left out."""
    if stage not in STAGE_SETTINGS:
        raise ValueError(f"stage {stage!r} is unknown; the stages are {', '.join(STAGE_SETTINGS)}")
    return stage_hash(STAGE_SETTINGS[stage](profile), {})


def finetune_path(profile: Profile) -> tuple[str, ...]:
    """The stages a fine-tuned model of this profile passes through."""
    return FINETUNE_PATHS[profile.finetune.start]


def feedback_loop_path(profile: Profile) -> tuple[str, ...]:
    """The stages behind the feedback loop (claim T4); with the cross-encoder in the loop it starts
    from the pretrained model (its stage-2 and fine-tuning settings are in the loop's own key)."""
    if profile.feedback_loop.relevance_model == "cross_encoder":
        return ("data", "tokenizer", "pretrain", "teacher", "feedback_loop")
    return ("data", "teacher", "feedback_loop")


def in_pipeline_order(stages) -> tuple[str, ...]:
    """The union of stage lists, each once, in pipeline order."""
    wanted = set(stages)
    return tuple(s for s in STAGE_SETTINGS if s in wanted)


def fingerprint(profile: Profile, stages) -> dict[str, str]:
    """{stage: own key} of these stages under this profile: what a claim result records."""
    return {stage: own_key(stage, profile) for stage in in_pipeline_order(stages)}


def changed_stages(recorded: dict[str, str], profile: Profile) -> list[str]:
    """The stages of a recorded fingerprint whose settings differ in `profile` today, in pipeline order."""
    return [stage for stage in in_pipeline_order(recorded) if own_key(stage, profile) != recorded[stage]]
