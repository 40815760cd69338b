"""Stage 2: post-pretraining on behaviour logs — the stage the sources call decisive.

Human labels are few (thousands); the logs hold every pair ever shown. The recipe:
1. `ensure_teacher`: a LightGBM teacher t(x) fitted on the human-labelled pairs from behaviour
   features only (relcourse.teacher); its test quality by bucket is claim T1.
2. `pseudo_labelled_pairs`: pairs selected from the logs of the training and unlabelled queries
   (never the valid or test queries: their behaviour must not leak into the model), covering
   buckets and score bands (or, for claim T5, the most shown pairs), scored by the teacher.
3. `run_post_pretrain`: the pretrained BERT trained on (q, d, ŷ) with
       loss = soft CE(s, ŷ) + pairwise_weight · pairwise(s, ŷ within a query) + mlm_weight · MLM
   on query-grouped batches, so the pairwise term has pairs. The inputs are masked for MLM in
   every arm (the MLM-free arm of claim T3 keeps the masking and drops the loss), so the arms
   differ in the loss only.
The probe (relcourse.finetune) then fine-tunes the result on human labels (claims T2, T3, T5).

>>> PostPretrainOptions(selection="naive").changes()
{'selection': 'naive'}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import data_gen

from .config import Profile
from .data import make_pairset, query_grouped_batch
from .features import behaviour_features, select_pairs
from .losses import CombinedLoss, SoftCrossEntropyLoss
from .models import load_model, save_model
from .pretrain import MODEL_DIR, PretrainOptions, masked, run_pretrain, tokenizer_of
from .store import cached_stage, ensure_data, run_hash
from .teacher import Teacher, evaluate_teacher
from .train import TrainConfig, train

POOL_SPLITS = ("train", "unlabelled")   # whose logged pairs may be pseudo-labelled


@dataclass(frozen=True)
class PostPretrainOptions:
    """One arm of the post-pretraining experiments; the defaults are the recipe."""
    selection: str = "covering"        # T5: "covering" (buckets x score bands) or "naive" (most shown)
    pairs_share: float = 0.5           # share of the eligible logged pairs that get pseudo-labels
    mlm_weight: float | None = None    # T3: None = the profile's post_pretrain.mlm_weight; 0 drops MLM

    def __post_init__(self):
        if not 0 < self.pairs_share <= 1:
            raise ValueError(f"pairs_share={self.pairs_share} must be in (0, 1]")

    def changes(self) -> dict:
        default = PostPretrainOptions()
        return {k: v for k, v in dataclasses.asdict(self).items() if getattr(default, k) != v}


def ensure_teacher(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The GBDT teacher of this world, fitted on the training labels, early-stopped on valid."""
    data_dir = ensure_data(profile, seed, progress)

    def build(out: Path) -> dict:
        features = behaviour_features(data_dir)
        labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "split", "label"])
        teacher = Teacher(seed=seed, threads=profile.threads).fit(
            features, labels[labels["split"] == "train"], valid=labels[labels["split"] == "valid"])
        teacher.save(out / "teacher.json")
        table = evaluate_teacher(teacher, features, data_dir)
        raw_ctr = _raw_ctr_table(features, data_dir)
        return {"test": _records(table), "raw_ctr_test": _records(raw_ctr),
                "importance": teacher.feature_importance().round(2).to_dict()}

    return cached_stage(profile, "teacher", seed, {"teacher": "lightgbm-v1"}, build,
                        upstream={"data": run_hash(data_dir)})


def _raw_ctr_table(features: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """The baseline of claim T1: rank test pairs by their smoothed click-through rate alone."""
    from . import metrics
    from .teacher import evaluation_set
    pairs = evaluation_set(features, data_dir)
    return metrics.evaluate(pairs["label"], pairs["ctr"], pairs["query_id"], pairs["bucket_name"])


def _records(table: pd.DataFrame) -> dict:
    return {row: {k: (None if pd.isna(v) else round(float(v), 4)) for k, v in values.items()}
            for row, values in table.to_dict(orient="index").items()}


def pseudo_labelled_pairs(data_dir: Path, teacher: Teacher, options: PostPretrainOptions, seed: int) -> pd.DataFrame:
    """(doc_id, query_id, pseudo_label) of the selected logged pairs of the pool's queries."""
    features = behaviour_features(data_dir)
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket_name"])
    pool = features[features["query_id"].isin(queries.loc[queries["split"].isin(POOL_SPLITS), "query_id"])]
    chosen = select_pairs(pool, queries, max(2, int(len(pool) * options.pairs_share)), options.selection, seed)
    return pd.DataFrame({"doc_id": chosen.index.to_numpy(), "query_id": chosen["query_id"].to_numpy(),
                         "pseudo_label": teacher.predict(chosen)})


def run_post_pretrain(profile: Profile, seed: int, options: PostPretrainOptions = PostPretrainOptions(),
                      pretrain_options: PretrainOptions = PretrainOptions(), progress: bool = True) -> Path:
    """The post-pretrained model of this profile, seed and arm: built once, then reused."""
    data_dir = ensure_data(profile, seed, progress)
    teacher_dir = ensure_teacher(profile, seed, progress)
    pretrain_dir = run_pretrain(profile, seed, pretrain_options, progress)
    cfg = profile.post_pretrain
    mlm_weight = cfg.mlm_weight if options.mlm_weight is None else options.mlm_weight

    def build(out: Path) -> dict:
        tokenizer = tokenizer_of(profile, seed, progress)
        labelled = pseudo_labelled_pairs(data_dir, Teacher.load(teacher_dir / "teacher.json"), options, seed)
        labelled.to_parquet(out / "pseudo_labels.parquet")
        pairs = make_pairset(data_dir, tokenizer, labelled["doc_id"].to_numpy(), labelled["pseudo_label"].to_numpy(),
                             profile.tokenizer.max_query_len, profile.tokenizer.max_len)
        model = load_model(pretrain_dir / MODEL_DIR)
        relevance = CombinedLoss(SoftCrossEntropyLoss(target="soft"), pairwise_weight=cfg.pairwise_weight)
        mask_options = PretrainOptions()   # the recipe's masking: 15% single tokens, 80/10/10

        def batch_at(step: int) -> dict:
            batch = query_grouped_batch(pairs, step, cfg.batch_size, cfg.docs_per_query_in_batch, seed)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
            batch["input_ids"], batch["mlm_labels"] = masked(batch, tokenizer, profile, mask_options, generator)
            return batch

        def loss_fn(m, batch: dict) -> dict:
            out = m(batch, mlm_labels=batch["mlm_labels"])
            rel = relevance(out["relevance"], batch["targets"], batch["query_ids"])
            return {"loss": rel + mlm_weight * out["mlm"], "relevance": rel, "mlm": out["mlm"]}

        tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.steps // 10, device=profile.device,
                           threads=profile.threads, seed=seed, checkpoint_every=max(cfg.steps // 5, 1))
        train(model, batch_at, loss_fn, tcfg, out / "train", progress=progress)
        save_model(model, out / MODEL_DIR)
        return {"pairs": len(pairs), "queries": int(labelled["query_id"].nunique()),
                "pseudo_label_mean": round(float(labelled["pseudo_label"].mean()), 4)}

    config = {"post_pretrain": dataclasses.asdict(cfg), "tokenizer": dataclasses.asdict(profile.tokenizer),
              "options": dataclasses.asdict(dataclasses.replace(options, mlm_weight=mlm_weight))}
    return cached_stage(profile, "post_pretrain", seed, config, build,
                        upstream={"data": run_hash(data_dir), "teacher": run_hash(teacher_dir),
                                  "pretrain": run_hash(pretrain_dir)}, resumable=True)
