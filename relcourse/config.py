"""Profiles: every size of every stage, in one place.

A profile is a typed, validated tree of small frozen dataclasses, one per stage. The data
sizes come from `data_gen.config.PROFILES` (the generator owns them); this module adds the
tokenizer, model and training sizes, so a learner reads one file to know what a profile does.

Overrides use dotted keys, from Python or from the command line (`--set key=value`):

>>> p = load_profile("smoke", {"pretrain.steps": 50, "data.n_queries": 200})
>>> p.pretrain.steps, p.pretrain.model.layers, p.data.n_queries, p.seeds
(50, 2, 200, (0,))
>>> load_profile("smoke", parse_overrides(["pretrain.lr=3e-4", "seeds=0,1"])).seeds
(0, 1)
>>> load_profile("smoke", {"pretrain.sentence_task": "mlm"})
Traceback (most recent call last):
...
relcourse.config.ConfigError: pretrain.sentence_task='mlm' is not one of sop, nsp: the second pretraining task: sop (swapped segment order) or nsp (random next segment)
>>> len(config_hash(p))
12
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from typing import ClassVar

from data_gen.config import PROFILES as WORLDS
from data_gen.config import WorldConfig

PROFILE_ENV = "RELCOURSE_PROFILE"
DEFAULT_PROFILE = "smoke"


class ConfigError(ValueError):
    """A setting is unknown or invalid. `key` is kept apart from the problem so that a nested
    section's error can be re-rooted at its full dotted name ('layers' -> 'pretrain.model.layers')."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}{problem}")


def setting(default, help: str, lo=None, hi=None, choices: tuple | None = None):
    """A field with help text and either an inclusive valid range or a tuple of valid choices."""
    return field(default=default, metadata={"help": help, "range": (lo, hi), "choices": choices})


def section(factory, help: str):
    """A field holding a nested section, e.g. the model inside the pretraining settings."""
    return field(default_factory=factory, metadata={"help": help})


@dataclass(frozen=True)
class Section:
    """Base of every config section: checks each field's range or choices, then `check()`."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, help = getattr(self, f.name), f.metadata.get("help", "")
            lo, hi = f.metadata.get("range", (None, None))
            choices = f.metadata.get("choices")
            if lo is not None and not lo <= value <= hi:
                raise ConfigError(f.name, f"={value!r} is out of range [{lo}, {hi}]: {help}")
            if choices is not None and value not in choices:
                raise ConfigError(f.name, f"={value!r} is not one of {', '.join(map(str, choices))}: {help}")
        self.check()

    def check(self) -> None:
        """Rules that involve several fields; a section overrides this when it has any."""


def grad_accum_setting():
    """Gradient accumulation, the same setting in every training stage."""
    return setting(1, "micro-batches per optimizer step, whole query groups each, whose gradients add up: "
                      "batch_size stays the rows of a step (the global batch), a micro-batch holds "
                      "1/grad_accum of them, and activation memory shrinks with it", 1, 1_024)


def training_draw_setting():
    """Which draw of a stage's training randomness a run takes, the same setting in stages 2 and 3."""
    return setting(0, "the stage's training randomness (new weights, batch order, masks, dropout): 0 draws it from "
                      "the run's seed, k > 0 a k-th other draw with the world, labels and test set kept; to "
                      "measure how much of a result is the stage's own noise (relcourse.train.training_seed)",
                   0, 1_000)


def check_micro_batches(section, rows_per_group: int = 1) -> None:
    """A step's query groups (rows, without grouping) must split evenly into grad_accum micro-batches,
    so that each micro-batch weighs the same in the step's mean gradient."""
    groups = section.batch_size // rows_per_group
    if groups % section.grad_accum:
        what = f"{groups} query groups of docs_per_query_in_batch={rows_per_group}" if rows_per_group > 1 else \
            f"{groups} rows"
        raise ConfigError("grad_accum", f"={section.grad_accum} must divide a batch's {what} (batch_size="
                                        f"{section.batch_size}): every micro-batch gets as many")


# --- one dataclass per stage; the defaults are the 'smoke' profile --------------------------

@dataclass(frozen=True)
class TokenizerConfig(Section):
    vocab_size: int = setting(1_000, "WordPiece vocabulary size, special tokens included", 100, 250_000)
    max_query_len: int = setting(8, "tokens kept of a query; the document gets the rest of max_len", 4, 128)
    max_len: int = setting(32, "tokens of one [CLS] query [SEP] document [SEP] input", 16, 1_024)
    exact_match: bool = setting(False, "give document tokens that also occur in the query their own token "
                                       "type (2): the exact-match input, an arm that hands the model matching")

    def check(self):
        if self.max_query_len + 3 >= self.max_len:
            raise ConfigError("max_query_len", f"={self.max_query_len} must be at most max_len - 4="
                                               f"{self.max_len - 4}: [CLS], two [SEP] and one document token must fit")


@dataclass(frozen=True)
class ModelConfig(Section):
    layers: int = setting(2, "transformer layers", 1, 96)
    hidden: int = setting(64, "hidden size (width of every token vector)", 16, 8_192)
    heads: int = setting(2, "attention heads per layer; must divide hidden", 1, 128)
    intermediate: int = setting(256, "width of each layer's feed-forward block (usually 4 x hidden)", 16, 32_768)

    def check(self):
        if self.hidden % self.heads:
            raise ConfigError("hidden", f"={self.hidden} must be a multiple of heads={self.heads}: "
                                        "each head gets hidden / heads dimensions")


@dataclass(frozen=True)
class PretrainConfig(Section):
    model: ModelConfig = section(ModelConfig, "the BERT that every later stage starts from (the teacher)")
    steps: int = setting(150, "optimizer steps", 1, 10**7)
    batch_size: int = setting(32, "text pairs per step", 1, 65_536)
    grad_accum: int = grad_accum_setting()
    lr: float = setting(1e-3, "peak learning rate (AdamW)", 1e-6, 1.0)
    warmup_steps: int = setting(15, "steps of linear learning-rate warm-up", 0, 10**7)
    mask_prob: float = setting(0.15, "share of tokens selected for masked-language-model prediction", 0.01, 0.8)
    sentence_task: str = setting("sop", "the second pretraining task: sop (swapped segment order) "
                                        "or nsp (random next segment)", choices=("sop", "nsp"))
    nsp_negatives: str = setting("any_paragraph", "where NSP's negative second segment comes from: any other "
                                 "paragraph, or (for a paragraph that names a product) another paragraph about the "
                                 "same product, so that the names agree on both sides (a test of P2's mechanism; "
                                 "SOP draws no negatives, so it ignores this)", choices=("any_paragraph", "same_product"))
    mlm_weight: float = setting(1.0, "weight of the MLM loss against the sentence-task loss", 0.0, 10.0)
    replacement: str = setting("80/10/10", "what a selected token becomes (claim P1): 80% [MASK] / 10% random / "
                                           "10% unchanged, all [MASK], or 90% [MASK] / 10% unchanged (no random "
                                           "tokens; probe P1-why)", choices=("80/10/10", "all_mask", "90/0/10"))
    span: bool = setting(False, "mask whole spans of words instead of single tokens (claim P6)")
    static: bool = setting(False, "draw each sample's mask once instead of at every step (claim P6)")
    data_share: float = setting(1.0, "share of the corpus's segment pairs used, at the same steps (claim P3)", 0.001, 1.0)
    epochs: float = setting(0.0, "0: train pretrain.steps steps. Above 0: the corpus phase makes exactly this many "
                                 "passes over its segment pairs, which sets the steps (TAPT keeps its share of "
                                 "them): claim P3's 'one epoch' against 'k epochs over 1/k of the data'", 0.0, 1_000.0)
    cleaned: bool = setting(True, "deduplicate the corpus and strip symbol spam (claim P4)")
    cleaned_volume: bool = setting(False, "keep only as many paragraphs as cleaning would: claim P4 at equal "
                                          "volume, so the raw arm is not simply fed more text")
    corpus: str = setting("general+domain", "the text pretraining reads (claim P5)",
                          choices=("general", "general+domain", "domain"))
    tapt_share: float = setting(0.3, "last share of the steps spent on the task's own (query, document) pairs, "
                                     "unlabelled, MLM only (TAPT, claim P5)", 0.0, 0.95)
    tapt_match_mask: float = setting(0.5, "share of TAPT's masked tokens chosen among the words the query and the "
                                          "document share, so that filling them rewards reading across [SEP]",
                                     0.0, 1.0)

    def check(self):
        check_micro_batches(self)


@dataclass(frozen=True)
class TeacherConfig(Section):
    learning_rate: float = setting(0.05, "LightGBM shrinkage per tree", 1e-4, 1.0)
    num_leaves: int = setting(15, "leaves per tree: small, since a few thousand noisy labels overfit fast", 2, 4_096)
    min_data_in_leaf: int = setting(20, "fewest labelled pairs in a leaf", 1, 100_000)
    max_rounds: int = setting(2_000, "most boosting rounds; early stopping on the validation labels decides", 1, 100_000)
    early_stopping_rounds: int = setting(50, "rounds without validation improvement before stopping", 1, 10_000)


@dataclass(frozen=True)
class PostPretrainConfig(Section):
    steps: int = setting(600, "optimizer steps on the teacher's pseudo-labels", 1, 10**7)
    batch_size: int = setting(32, "(query, document) pairs per step", 2, 65_536)
    docs_per_query_in_batch: int = setting(4, "documents of the same query in a batch, so the pairwise "
                                              "loss has pairs to compare", 2, 64)
    grad_accum: int = grad_accum_setting()
    lr: float = setting(5e-4, "peak learning rate (AdamW)", 1e-6, 1.0)
    mlm_weight: float = setting(0.1, "weight of the MLM loss kept alongside relevance (claim T3: small, not 0)",
                                0.0, 10.0)
    mlm_batch_share: float = setting(0.25, "share of each batch whose masked copy feeds the MLM loss: MLM's "
                                          "second pass through the encoder costs this share of a step", 0.05, 1.0)
    pairwise_weight: float = setting(1.0, "weight of the pairwise ranking loss", 0.0, 10.0)
    training_draw: int = training_draw_setting()
    selection: str = setting("covering", "which logged pairs get pseudo-labels (claim T5): covering buckets x "
                                         "score bands, or naive (the most shown)", choices=("covering", "naive"))
    pairs_share: float = setting(1.0, "share of the pool's logged pairs that get pseudo-labels", 0.001, 1.0)
    validation_points: int = setting(0, "times the relevance head is scored on the validation labels during the "
                                        "run, logged as a learning curve; they select nothing and change no "
                                        "weight (0 = none, the recipe: a curve costs a run of its own)", 0, 1_000)

    def check(self):
        if self.batch_size % self.docs_per_query_in_batch:
            raise ConfigError("batch_size", f"={self.batch_size} must be a multiple of docs_per_query_in_batch="
                                            f"{self.docs_per_query_in_batch}: a batch is whole query groups")
        check_micro_batches(self, self.docs_per_query_in_batch)
        if self.mlm_weight and self.mlm_rows < self.grad_accum:
            raise ConfigError("mlm_batch_share", f"={self.mlm_batch_share} masks {self.mlm_rows} rows a step, fewer "
                                                 f"than grad_accum={self.grad_accum}: each micro-batch needs one")

    @property
    def mlm_rows(self) -> int:
        """Rows of each batch whose masked copy feeds the MLM loss (its second encoder pass).

        >>> PostPretrainConfig(batch_size=256, docs_per_query_in_batch=8).mlm_rows
        64
        """
        return max(1, round(self.batch_size * self.mlm_batch_share))


@dataclass(frozen=True)
class FeedbackLoopConfig(Section):
    """Claim T4's experiment (relcourse.feedback_loop): the ranker's own score fed back as a
    teacher feature, round after round, against a loop that never sees it."""
    rounds: int = setting(4, "feedback rounds after the shared start", 1, 100)
    searches_share: float = setting(1.0, "searches logged per round, as a share of the world's own logs", 0.01, 10.0)
    pairs_share: float = setting(0.5, "share of the pool's shown pairs that get pseudo-labels", 0.001, 1.0)
    selection: str = setting("covering", "which shown pairs get pseudo-labels (as post_pretrain.selection)",
                             choices=("covering", "naive"))
    student_rounds: int = setting(300, "boosting rounds of the stand-in ranker on the pseudo-labels", 1, 100_000)
    finetune_rounds: int = setting(100, "further boosting rounds of the stand-in on the human labels", 0, 100_000)
    relevance_model: str = setting("lexical", "the relevance model in the loop: 'lexical', the LightGBM stand-in on "
                                              "overlap features (seconds a round), or 'cross_encoder', the recipe's "
                                              "own (post_pretrain's and finetune's settings: one stage-2 run and one "
                                              "fine-tuning a round and loop)", choices=("lexical", "cross_encoder"))
    teacher_labels: str = setting("world", "the human labels each round's teacher learns from: 'world', the world's own, "
                                           "independent of every model; or 'shown_top', bought anew each round, at the "
                                           "same cost, from the documents the round's ranker (the previous model) "
                                           "showed first: labels the model chooses", choices=("world", "shown_top"))
    annotator_anchoring: float = setting(0.0, "with teacher_labels='shown_top': the labelling tool pre-fills each pair "
                                              "with the tier the round's ranker (the previous model) suggests, and this "
                                              "share of judgements moves one tier toward it: model-assisted labelling, "
                                              "whose annotators lean on the model (data_gen.annotation)", 0.0, 1.0)

    def check(self):
        if self.annotator_anchoring and self.teacher_labels != "shown_top":
            raise ConfigError("annotator_anchoring", f"={self.annotator_anchoring} anchors the labels a round buys "
                                                     "on its ranker's suggestions, but teacher_labels="
                                                     f"{self.teacher_labels!r} are the world's own, drawn once with "
                                                     "no ranker to lean on; set teacher_labels=shown_top as well")


@dataclass(frozen=True)
class FinetuneConfig(Section):
    steps: int = setting(300, "optimizer steps on human labels", 1, 10**7)
    batch_size: int = setting(32, "labelled (query, document) pairs per step", 1, 65_536)
    lr: float = setting(3e-4, "peak learning rate (AdamW)", 1e-6, 1.0)
    loss: str = setting("ce+pairwise", "training loss (claims F1, F2)",
                        choices=("mse", "soft_ce", "pairwise", "ce+pairwise", "multiclass"))
    pairwise_weight: float = setting(1.0, "weight of the pairwise term when the loss has one", 0.0, 10.0)
    start: str = setting("post_pretrain", "the checkpoint fine-tuning starts from: the recipe's post-pretrained "
                                          "model, the pretrained one (no stage 2), or random weights (scratch)",
                         choices=("post_pretrain", "pretrain", "scratch"))
    docs_per_query_in_batch: int = setting(4, "documents of one query in a batch: pairs for the pairwise term", 2, 64)
    grad_accum: int = grad_accum_setting()
    training_draw: int = training_draw_setting()
    warmup_share: float = setting(0.1, "share of the steps spent warming the learning rate up", 0.0, 0.5)
    evaluations: int = setting(10, "validation AUC checks per run (the best weights are kept)", 1, 10_000)
    patience: int = setting(3, "stop after this many checks without improvement; 0 = never", 0, 10_000)
    labels: str = setting("world", "the human labels: the world's own, or a labelling plan bought at the same "
                                   "cost: stratified, head_only or extremes (claim F3)",
                          choices=("world", "stratified", "head_only", "extremes"))
    label_design: str = setting("double+gold", "how a plan's pairs are labelled (claim F4)",
                                choices=("single", "double", "double+gold"))
    stale_share: float = setting(0.0, "share of a plan's labels left over from an older rubric (claim F5)", 0.0, 1.0)
    stale_rubric: int = setting(1, "the rubric the stale labels were made under: 1 (two rules revised, about 1% of "
                                   "pairs change) or 0 (the first guideline, which judged the subject, not the "
                                   "need: about 11% change; data_gen.rubric)", choices=(0, 1))
    label_budget_share: float = setting(1.0, "share of the world's training-label cost a plan spends: small enough, "
                                             "every strategy and design spends all of it (claims F3-F5 at equal "
                                             "cost; head_only runs out of pairs at the whole budget)", 0.01, 1.0)

    def check(self):
        if self.batch_size < self.docs_per_query_in_batch:
            raise ConfigError("batch_size", f"={self.batch_size} must hold at least one query group of "
                                            f"docs_per_query_in_batch={self.docs_per_query_in_batch} documents")
        check_micro_batches(self, self.docs_per_query_in_batch)
        if self.labels == "world" and (self.label_design != "double+gold" or self.stale_share
                                       or self.label_budget_share != 1.0):
            raise ConfigError("labels", "='world' are the world's own labels (double+gold, rubric v2, the whole "
                                        "budget); choose a plan (e.g. labels=stratified) to change label_design, "
                                        "stale_share or label_budget_share")
        if self.stale_rubric != 1 and not self.stale_share:
            raise ConfigError("stale_rubric", f"={self.stale_rubric} names the rubric of stale labels, but "
                                              "stale_share=0 keeps none; set stale_share (e.g. 0.5) as well")


@dataclass(frozen=True)
class DistillConfig(Section):
    """Stage 4 (relcourse.distill). The teacher is the model stages 1-3 train, of size
    pretrain.model; a bigger or smaller teacher is an arm that overrides pretrain.model."""
    student: ModelConfig = section(lambda: ModelConfig(layers=1), "the small model served in production")
    start: str = setting("warm", "the student's first weights: warm (trained through stages 1-3 like the teacher, "
                                 "at the student's size) or cold (random) (claim D7)", choices=("warm", "cold"))
    loss: str = setting("logit_mse", "what the student fits: the teacher's logits (logit_mse), its probabilities "
                                     "(prob_ce, claim D10) or its score margins within a query (margin_mse)",
                        choices=("logit_mse", "prob_ce", "margin_mse"))
    teacher_scale: float = setting(1.0, "factor on the teacher's logits before the student fits them: above 1 a "
                                        "more confident teacher, whose probabilities saturate where its logits "
                                        "still rank (probe D10-why); 1 = the logits as scored", 0.1, 10.0)
    pairs_share: float = setting(1.0, "share of the distillation pool (every candidate pair of the training and "
                                      "unlabelled queries, scored by the teacher) the student reads (D5, D6)", 0.001, 1.0)
    epochs: float = setting(0.0, "0: train distill.steps steps. Above 0: as many steps as this many passes over "
                                 "the pairs read (claim D6: one pass over 2N pairs against two over N)", 0.0, 1_000.0)
    steps: int = setting(200, "optimizer steps fitting the teacher's scores (when epochs is 0)", 1, 10**7)
    batch_size: int = setting(32, "(query, document) pairs per step", 2, 65_536)
    docs_per_query_in_batch: int = setting(4, "documents of one query in a batch: pairs for margin_mse", 2, 64)
    grad_accum: int = grad_accum_setting()
    lr: float = setting(5e-4, "peak learning rate (AdamW)", 1e-6, 1.0)
    warmup_share: float = setting(0.1, "share of the steps spent warming the learning rate up", 0.0, 0.5)
    evaluations: int = setting(10, "validation AUC checks per run (the best weights are kept)", 1, 10_000)
    hidden_weight: float = setting(0.0, "weight of a layer-wise term (claim D8): the student's hidden states "
                                        "(embeddings and each layer) fit the teacher's mapped layers (student layer "
                                        "i <-> teacher layer round(i*T/S), TinyBERT's uniform mapping) through a "
                                        "learned linear projection; the teacher then runs on every batch. "
                                        "0 = the output only", 0.0, 100.0)
    via_layers: int = setting(0, "0: the student fits the teacher directly. N > 0: first distil a mid-size "
                                 "student of N layers (the teacher's width and heads) from the teacher, then the "
                                 "student fits the mid student's scores: a two-stage chain (claim D9)", 0, 96)
    # Named train_/serve_precision, not precision: LATER_DEFAULTS matches a key by its name alone,
    # and the profile's own `precision` is there already with another value.
    train_precision: str = setting("profile", "the student's training arithmetic (claim D11): 'profile' (the "
                                              "profile's precision, like every other stage), or fp32, bf16 or fp16 "
                                              "autocast (fp16 needs CUDA)", choices=("profile", "fp32", "bf16", "fp16"))
    serve_precision: str = setting("fp32", "the arithmetic the student is served in, so validated (early stopping "
                                           "keeps what serves best) and tested in (claim D11): fp32; bf16 autocast; "
                                           "or int8, PyTorch's dynamic quantisation of the Linear layers, on the CPU",
                                   choices=("fp32", "bf16", "int8"))

    def check(self):
        if self.batch_size % self.docs_per_query_in_batch:
            raise ConfigError("batch_size", f"={self.batch_size} must be a multiple of docs_per_query_in_batch="
                                            f"{self.docs_per_query_in_batch}: a batch is whole query groups")
        check_micro_batches(self, self.docs_per_query_in_batch)
        if self.via_layers and self.via_layers <= self.student.layers:
            raise ConfigError("via_layers", f"={self.via_layers} must be more than the student's "
                                            f"{self.student.layers} layers: the chain's mid student sits between "
                                            "teacher and student; set via_layers=0 for a single stage")


@dataclass(frozen=True)
class Profile(Section):
    name: str = setting("smoke", "the profile's name; names its folder under runs/")
    data: WorldConfig = section(WorldConfig, "the synthetic world and its logs (data_gen.config)")
    tokenizer: TokenizerConfig = section(TokenizerConfig, "the WordPiece tokenizer")
    pretrain: PretrainConfig = section(PretrainConfig, "stage 1: MLM + sentence task on the corpora")
    teacher: TeacherConfig = section(TeacherConfig, "the GBDT that turns behaviour statistics into pseudo-labels")
    post_pretrain: PostPretrainConfig = section(PostPretrainConfig, "stage 2: pseudo-labels from behaviour logs")
    feedback_loop: FeedbackLoopConfig = section(FeedbackLoopConfig, "claim T4: a ranker's score fed back into its teacher")
    finetune: FinetuneConfig = section(FinetuneConfig, "stage 3: human labels")
    distill: DistillConfig = section(DistillConfig, "stage 4: teacher -> student")
    device: str = setting("cpu", "where tensors live; auto picks cuda when available", choices=("cpu", "cuda", "auto"))
    # In no cache key: a run built with any thread count is reused by every other. The count does
    # change float rounding (smoke's recipe: swapped-query AUC differs in the 6th decimal between 1 and
    # 2 threads), which long training amplifies, so a run reproduces bit for bit only with the same
    # threads on the same kind of CPU; across them it is another draw of the seed-to-seed noise.
    threads: int = setting(2, "CPU threads for torch and the data loaders", 1, 256)
    fused_adamw: bool = setting(False, "AdamW as one fused kernel per step (torch's fused=True, transformers.Trainer's "
                                       "default): the same update up to float rounding, a few % faster steps "
                                       "(benchmarks/trainer_compare.py); off on the CPU profiles, whose committed "
                                       "results were trained without it")
    data_workers: int = setting(1, "processes that simulate the logs and count their behaviour features, shard by "
                                   "shard (the same bytes for any number; data_gen --workers)", 1, 256)
    precision: str = setting("fp32", "arithmetic of every training stage: fp32, or bf16 / fp16 autocast (mixed "
                                     "precision: fp32 weights, half-precision matrix products). bf16 runs on CUDA "
                                     "and on CPUs, fast only with AVX512-BF16 or AMX; fp16 needs CUDA (and a loss "
                                     "scaler, which accelerate adds)", choices=("fp32", "bf16", "fp16"))
    notebook_claims: str = setting("run", "'run': the notebooks run every claim's arms on every seed (minutes on "
                                          "smoke); 'read': they show the claims registry, filled by `relcourse run "
                                          "claims` (hours on the bigger profiles)", choices=("run", "read"))

    # The seeds belong to the data profile (data_gen owns them); `seeds=0,1` is a shortcut.
    aliases: ClassVar[dict[str, str]] = {"seeds": "data.seeds"}

    def check(self):
        if self.precision == "fp16" and self.device == "cpu":
            raise ConfigError("precision", "='fp16' needs CUDA (CPU autocast has no fp16): use bf16 or fp32 on "
                                           "device='cpu'")
        via, teacher = self.distill.via_layers, self.pretrain.model.layers
        if via and via >= teacher:
            raise ConfigError("distill.via_layers", f"={via} must be fewer than the teacher's {teacher} layers "
                                                    "(pretrain.model.layers): the mid student sits between teacher "
                                                    "and student; set via_layers=0 for a single stage")
        if self.distill.train_precision == "fp16" and self.device == "cpu":
            raise ConfigError("distill.train_precision", "='fp16' needs CUDA (CPU autocast has no fp16): use bf16 "
                                                         "or fp32 on device='cpu'")

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.data.seeds)

    def to_dict(self) -> dict:
        """The whole profile as plain JSON types (tuples become lists)."""
        return json.loads(canonical_json(self))


def _gpu_teacher(layers: int, hidden: int) -> ModelConfig:
    """A BERT of the usual shape: 64-dim heads, feed-forward 4 x hidden."""
    return ModelConfig(layers=layers, hidden=hidden, heads=hidden // 64, intermediate=4 * hidden)


_LAPTOP_TEACHER = ModelConfig(layers=2, hidden=128, heads=4, intermediate=512)
_GPU_TEACHER = _gpu_teacher(12, 768)
_XL_TEACHER = _gpu_teacher(24, 1024)

PROFILES: dict[str, Profile] = {
    # CI on 2 CPU cores: every notebook in <= 3 minutes; proves the machinery, not the claims.
    "smoke": Profile(name="smoke", data=WORLDS["smoke"]),
    # 2 CPU cores, the course on one seed in 59.5-61.5 minutes from empty (README, "Profiles"); claims in the background.
    "laptop": Profile(
        name="laptop", data=WORLDS["laptop"], notebook_claims="read", data_workers=2,
        tokenizer=TokenizerConfig(vocab_size=4_000, max_query_len=8, max_len=32),
        # 8,000 steps (3.3 epochs of the pretraining pairs, 14 min on one core), not 4,000: the last
        # quarter, MLM on the task's (query, document) pairs, is still falling at the end even at
        # 8,000 (mean loss 1.39, 1.32, 1.28 over its last three 500-step windows, seed 0), and the
        # learning ladder of results/laptop.md shows what the longer budget moved.
        pretrain=PretrainConfig(model=_LAPTOP_TEACHER, steps=8_000, batch_size=64, lr=5e-4, warmup_steps=800,
                                tapt_share=0.25, tapt_match_mask=0.5),
        # 14,400 steps, not 9,600: at 9,600 the relevance loss is still falling, and the seeds that
        # learn matching late (1, 4, 5, 6) end stage 2 where the others stood 2,400 steps earlier and
        # fine-tune 0.06 lower. Half as many steps again raises the best validation AUC on all seven
        # seeds and the test AUC by +0.031 [+0.011, +0.052] (results/laptop.md, "A longer stage 2"),
        # for at most 10 more minutes of the laptop course (4,800 steps at 8.7 a second, one thread).
        post_pretrain=PostPretrainConfig(steps=14_400, batch_size=64, docs_per_query_in_batch=8, lr=5e-4),
        finetune=FinetuneConfig(steps=2_000, batch_size=64, lr=1e-4),
        distill=DistillConfig(student=dataclasses.replace(_LAPTOP_TEACHER, layers=1), steps=3_000, batch_size=64,
                              docs_per_query_in_batch=8, lr=5e-4)),
    # One H100, the whole pipeline in <= 20 minutes: BERT-base teacher, 4-layer student.
    "gpu": Profile(
        name="gpu", data=WORLDS["gpu"], device="cuda", threads=8, data_workers=8, notebook_claims="read", precision="bf16",
        fused_adamw=True,
        tokenizer=TokenizerConfig(vocab_size=16_000, max_query_len=16, max_len=128),
        pretrain=PretrainConfig(model=_GPU_TEACHER, steps=2_000, batch_size=256, lr=3e-4, warmup_steps=200),
        post_pretrain=PostPretrainConfig(steps=1_500, batch_size=256, docs_per_query_in_batch=8, lr=1e-4),
        finetune=FinetuneConfig(steps=600, batch_size=128, lr=3e-5),
        distill=DistillConfig(student=dataclasses.replace(_GPU_TEACHER, layers=4), steps=1_500, batch_size=256,
                              docs_per_query_in_batch=8, lr=2e-4)),
    # Hours on a GPU: BERT-large teacher, closer to the sources' scale.
    "gpu-xl": Profile(
        name="gpu-xl", data=WORLDS["gpu-xl"], device="cuda", threads=16, data_workers=16, notebook_claims="read",
        precision="bf16", fused_adamw=True,
        tokenizer=TokenizerConfig(vocab_size=32_000, max_query_len=24, max_len=256),
        # 512 x 256 tokens through BERT-large need 161 GiB (pretrain) and 196 GiB (post_pretrain, with its MLM
        # copy) in bf16: 4 micro-batches of 128 rows fit an H100 80GB (relcourse.gpu_memory; `relcourse dry-run`).
        pretrain=PretrainConfig(model=_XL_TEACHER, steps=50_000, batch_size=512, grad_accum=4, lr=2e-4,
                                warmup_steps=2_000),
        post_pretrain=PostPretrainConfig(steps=20_000, batch_size=512, docs_per_query_in_batch=8, grad_accum=4,
                                         lr=5e-5),
        finetune=FinetuneConfig(steps=5_000, batch_size=128, lr=2e-5),
        distill=DistillConfig(student=dataclasses.replace(_XL_TEACHER, layers=4), steps=20_000, batch_size=512,
                              docs_per_query_in_batch=8, lr=1e-4)),
}


def load_profile(name: str | None = None, overrides: dict | None = None) -> Profile:
    """The named profile (default: $RELCOURSE_PROFILE, else 'smoke') with dotted-key overrides applied.

    Values may be typed ({"pretrain.steps": 50}) or strings from the command line ({"pretrain.steps": "50"}).
    """
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ConfigError("profile", f" {name!r} is unknown; choose one of: {', '.join(PROFILES)}")
    return with_overrides(PROFILES[name], overrides or {})


def with_overrides(profile: Profile, overrides: dict) -> Profile:
    """`profile` with dotted-key overrides applied: how an experiment's arm changes the recipe.

    >>> with_overrides(load_profile("smoke"), {"pretrain.span": True}).pretrain.span
    True
    """
    return _apply(profile, dict(overrides), prefix="")


def parse_overrides(assignments: list[str]) -> dict[str, str]:
    """['pretrain.steps=50', 'seeds=0,1'] -> {'pretrain.steps': '50', 'seeds': '0,1'}; load_profile types them."""
    overrides = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f" {text!r} is not KEY=VALUE; write e.g. --set pretrain.steps=50")
        overrides[key.strip()] = value.strip()
    return overrides


# Settings that change how fast or where a run goes, not what an experiment is (seeds say which
# runs a claim averages, and a claim's entry lists them): left out of `design_overrides`.
NOT_DESIGN = ("name", "threads", "data_workers", "notebook_claims", "device", "data.seeds")


def design_overrides(profile: Profile) -> dict:
    """The settings of `profile` that differ from those of the named profile it was made from,
    as dotted keys: what an experiment changed beyond the recipe. A claim run with any is a
    variant of the claim's design, and the registry keeps it apart (relcourse.claims.entry_key).

    >>> design_overrides(load_profile("smoke", {"feedback_loop.rounds": 2, "threads": 1, "seeds": "0,1"}))
    {'feedback_loop.rounds': 2}
    """
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in d.items():
            out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return out

    base, now = flat(PROFILES[profile.name].to_dict()), flat(profile.to_dict())
    return {k: v for k, v in now.items() if v != base.get(k) and k not in NOT_DESIGN}


def _apply(obj, overrides: dict, prefix: str):
    """A copy of the dataclass `obj` with dotted-key overrides applied; each section is rebuilt once,
    with all its changes, so cross-field rules see the final values."""
    aliases = getattr(obj, "aliases", {})
    hints = typing.get_type_hints(type(obj))
    hints = {f.name: hints[f.name] for f in dataclasses.fields(obj)}  # drops ClassVars such as `aliases`
    changes, nested = {}, {}
    for key, value in overrides.items():
        head, _, rest = aliases.get(key, key).partition(".")
        is_section = head in hints and dataclasses.is_dataclass(hints[head])
        if head not in hints or (rest and not is_section):
            valid = [f"{prefix}{k}" for k in [*hints, *aliases]]
            raise ConfigError(f"{prefix}{key}", f" is not a setting; valid keys here: {', '.join(valid)}")
        if is_section and not rest:
            keys = ", ".join(f"{prefix}{head}.{f.name}" for f in dataclasses.fields(hints[head]))
            raise ConfigError(f"{prefix}{head}", f" is a section, not a value; set one of: {keys}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            changes[head] = _coerce(value, hints[head], f"{prefix}{head}")
    for head, sub in nested.items():
        changes[head] = _apply(getattr(obj, head), sub, prefix=f"{prefix}{head}.")
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError as e:
        raise ConfigError(prefix + e.key, e.problem) from None


def _coerce(value, kind: type, key: str):
    """Convert an override to the field's type: strings from the CLI, lists from JSON, ints for floats."""
    try:
        if kind is tuple:  # the only tuple setting is a list of seeds
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(item) for item in items)
        if isinstance(value, str) and kind is bool:
            return {"true": True, "false": False}[value.lower()]
        if isinstance(value, str) and kind in (int, float):
            return kind(value)
    except (TypeError, ValueError, KeyError):
        raise ConfigError(key, f"={value!r} is not a valid {kind.__name__}") from None
    if kind is float and type(value) is int:
        return float(value)
    if type(value) is not kind:
        raise ConfigError(key, f"={value!r} must be of type {kind.__name__}, not {type(value).__name__}")
    return value


def canonical_json(obj) -> str:
    """One JSON text per value: sorted keys, no spaces, dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


# Settings added after runs were cached, with the value that computes what those runs computed:
# a stage's key leaves them out at that value (`without_later_defaults`), so the runs keep their names.
LATER_DEFAULTS = {"precision": "fp32", "grad_accum": 1, "hidden_weight": 0.0, "via_layers": 0,
                  "train_precision": "profile", "serve_precision": "fp32", "fused_adamw": False, "stale_rubric": 1,
                  "relevance_model": "lexical", "teacher_labels": "world", "annotator_anchoring": 0.0,
                  "validation_points": 0, "nsp_negatives": "any_paragraph", "teacher_scale": 1.0,
                  "training_draw": 0}


def without_later_defaults(settings):
    """`settings` (a stage's key: nested dicts) without the LATER_DEFAULTS entries at their defaults.

    >>> without_later_defaults({"pretrain": {"steps": 5, "grad_accum": 1}, "precision": "bf16"})
    {'pretrain': {'steps': 5}, 'precision': 'bf16'}
    """
    if not isinstance(settings, dict):
        return settings
    return {k: without_later_defaults(v) for k, v in settings.items()
            if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def config_hash(obj) -> str:
    """First 12 hex chars of the sha256 of `canonical_json(obj)`: a short name that changes with any field.

    >>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": (1, 2), "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:12]
