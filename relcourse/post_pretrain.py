"""Stage 2: post-pretraining on behaviour logs — the stage the sources call decisive.

Human labels are few (thousands); the logs hold every pair ever shown. The recipe:
1. `ensure_teacher`: a LightGBM teacher t(x) fitted on the human-labelled pairs from behaviour
   features only (relcourse.teacher); its test quality by bucket is claim T1.
2. `pseudo_labelled_pairs`: pairs selected from the logs of the training and unlabelled queries
   (never the valid or test queries: their behaviour must not leak into the model), covering
   buckets and score bands (or, for claim T5, the most shown pairs), scored by the teacher.
   The unlabelled queries include tail products that no human label names: the logs reach
   what labels do not.
3. `run_post_pretrain`: the pretrained BERT trained on (q, d, ŷ) with
       loss = soft CE(s, ŷ) + pairwise_weight · pairwise(s, ŷ within a query) + mlm_weight · MLM
   on query-grouped batches, so the pairwise term has pairs. The relevance loss reads the pairs
   as they are; MLM reads its own masked copy of them (a second pass through the encoder).
   Scoring a masked copy would hide ~15% of the words, query names included, from the very
   judgement the stage teaches. The copy may be of a share of the batch only
   (`mlm_batch_share`): MLM is a small regulariser here, and its pass then costs that share
   of a step instead of a whole one. Claim T3 drops the MLM term (mlm_weight=0), and its pass.
The probe (relcourse.finetune) then fine-tunes the result on human labels (claims T2, T3, T5).

>>> from relcourse.config import load_profile
>>> load_profile("smoke", {"post_pretrain.selection": "naive"}).post_pretrain.selection   # claim T5's baseline
'naive'
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

import data_gen

from . import metrics
from .config import Profile
from .data import UNLABELLED_TEXT_SPLITS, make_pairset, query_grouped_batch
from .features import FEATURE_SCHEMA_VERSION, behaviour_features, select_pairs
from .losses import CombinedLoss, SoftCrossEntropyLoss
from .models import load_model, save_model
from .pretrain import MODEL_DIR, masked, run_pretrain, tokenizer_of
from .store import cached_stage, ensure_data, run_hash
from .teacher import Teacher, evaluate_teacher, fastest_scorer, fit_options
from .train import TrainConfig, arithmetic_settings, profile_settings, train, training_seed


def teacher_settings(profile: Profile) -> dict:
    """The teacher stage's cache key: its LightGBM settings and the features' schema version."""
    return {"teacher": dataclasses.asdict(profile.teacher), "features": FEATURE_SCHEMA_VERSION}


def ensure_teacher(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The GBDT teacher of this world, fitted on the training labels, early-stopped on valid."""
    data_dir = ensure_data(profile, seed, progress)
    cfg = profile.teacher

    def build(out: Path) -> dict:
        features = behaviour_features(data_dir, profile.data_workers)
        labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "split", "label"])
        teacher = Teacher(seed=seed, threads=profile.threads).fit(
            features, labels[labels["split"] == "train"], valid=labels[labels["split"] == "valid"],
            **fit_options(cfg))
        teacher.save(out / "teacher.json")
        table = evaluate_teacher(teacher, features, data_dir)
        raw_ctr = _raw_ctr_table(features, data_dir)
        return {"test": metrics.records(table, 4), "raw_ctr_test": metrics.records(raw_ctr, 4),
                "importance": teacher.feature_importance().round(2).to_dict()}

    return cached_stage(profile, "teacher", seed, teacher_settings(profile), build, upstream={"data": run_hash(data_dir)})


def _raw_ctr_table(features: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """The baseline of claim T1: rank test pairs by their smoothed click-through rate alone."""
    from .teacher import evaluation_set
    pairs = evaluation_set(features, data_dir)
    return metrics.evaluate(pairs["label"], pairs["ctr"], pairs["query_id"], pairs["bucket_name"])


def pseudo_labelled_pairs(data_dir: Path, teacher: Teacher, profile: Profile, seed: int) -> pd.DataFrame:
    """(doc_id, query_id, pseudo_label) of the selected logged pairs of the pool's queries,
    scored by the compiled teacher where that pays and lleaves is installed (teacher.fastest_scorer:
    the same scores within 1e-9, so the stage's cache key does not say which)."""
    cfg = profile.post_pretrain
    features = behaviour_features(data_dir, profile.data_workers)
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket_name"])
    pool = features[features["query_id"].isin(queries.loc[queries["split"].isin(UNLABELLED_TEXT_SPLITS), "query_id"])]
    chosen = select_pairs(pool, queries, max(2, int(len(pool) * cfg.pairs_share)), cfg.selection, seed)
    return pd.DataFrame({"doc_id": chosen.index.to_numpy(), "query_id": chosen["query_id"].to_numpy(),
                         "pseudo_label": fastest_scorer(teacher, len(chosen)).predict(chosen)})


def post_pretrain_settings(profile: Profile) -> dict:
    """The post-pretraining stage's cache key (the pretraining and teacher runs it reads are in
    its upstream hashes)."""
    return {"post_pretrain": dataclasses.asdict(profile.post_pretrain), "tokenizer": dataclasses.asdict(profile.tokenizer),
            "mask_prob": profile.pretrain.mask_prob, "replacement": profile.pretrain.replacement,
            "span": profile.pretrain.span, **arithmetic_settings(profile)}


def post_pretrain(model, pairs, tokenizer, profile: Profile, seed: int, run_dir: Path, progress: bool = True,
                  validate: Callable[[torch.nn.Module], dict] | None = None):
    """Train `model` in place on `pairs` (a PairSet whose targets are pseudo-labels in [0, 1]) with
    profile.post_pretrain's loss and budget: the recipe's stage 2, and the feedback loop's (claim
    T4) model in each round. Returns relcourse.train's TrainResult; checkpoints go to `run_dir`.
    With `validate` (model -> {"auc": ...}), it is logged post_pretrain.validation_points times."""
    cfg = profile.post_pretrain
    draw_seed = training_seed(seed, cfg.training_draw)  # batch order, masks, dropout; the pairs are chosen already
    relevance = CombinedLoss(SoftCrossEntropyLoss(target="soft"), pairwise_weight=cfg.pairwise_weight)

    def batch_at(step: int) -> dict:
        batch = query_grouped_batch(pairs, step, cfg.batch_size, cfg.docs_per_query_in_batch, draw_seed)
        if cfg.mlm_weight:   # MLM's own masked copy of the first rows; relevance reads the pairs unmasked
            generator = torch.Generator().manual_seed(draw_seed * 1_000_003 + step)
            copy = _first_rows(batch, cfg.mlm_rows)
            copy["input_ids"], batch["mlm_labels"] = masked(copy, tokenizer, profile, generator)
            # flat keys: the training loop cuts them into micro-batches like the rows (relcourse.train)
            batch |= {f"masked_{k}": v for k, v in copy.items()}
        return batch

    def loss_fn(m, batch: dict) -> dict:
        rel = relevance(m(batch)["relevance"], batch["targets"], batch["query_ids"])
        if not cfg.mlm_weight:
            return {"loss": rel, "relevance": rel}
        mlm_batch = {k: batch[f"masked_{k}"] for k in MODEL_INPUTS}
        mlm = m(mlm_batch, mlm_labels=batch["mlm_labels"], relevance=False)["mlm"]
        return {"loss": rel + cfg.mlm_weight * mlm, "relevance": rel, "mlm": mlm}

    curve = validate is not None and cfg.validation_points > 0
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.steps // 10, grad_accum=cfg.grad_accum,
                       checkpoint_every=max(cfg.steps // 5, 1), **profile_settings(profile, draw_seed),
                       eval_every=max(cfg.steps // cfg.validation_points, 1) if curve else 0)
    # no metric: the curve is logged and selects nothing, so stage 2 never sees a human label
    return train(model, batch_at, loss_fn, tcfg, Path(run_dir), evaluate=validate if curve else None,
                 progress=progress)


def run_post_pretrain(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The post-pretrained model of this profile and seed: built once, then reused."""
    data_dir = ensure_data(profile, seed, progress)
    teacher_dir = ensure_teacher(profile, seed, progress)
    pretrain_dir = run_pretrain(profile, seed, progress)

    def build(out: Path) -> dict:
        tokenizer = tokenizer_of(profile, seed, progress)
        labelled = pseudo_labelled_pairs(data_dir, Teacher.load(teacher_dir / "teacher.json"), profile, seed)
        labelled.to_parquet(out / "pseudo_labels.parquet")
        pairs = make_pairset(data_dir, tokenizer, labelled["doc_id"].to_numpy(), labelled["pseudo_label"].to_numpy(),
                             profile.tokenizer)
        model = load_model(pretrain_dir / MODEL_DIR)
        post_pretrain(model, pairs, tokenizer, profile, seed, out / "train", progress,
                      validate=validation_auc(data_dir, tokenizer, profile) if profile.post_pretrain.validation_points
                      else None)
        save_model(model, out / MODEL_DIR)
        return {"pairs": len(pairs), "queries": int(labelled["query_id"].nunique()),
                "pseudo_label_mean": round(float(labelled["pseudo_label"].mean()), 4)}

    return cached_stage(profile, "post_pretrain", seed, post_pretrain_settings(profile), build,
                        upstream={"data": run_hash(data_dir), "teacher": run_hash(teacher_dir),
                                  "pretrain": run_hash(pretrain_dir)}, resumable=True)


def validation_auc(data_dir: Path, tokenizer, profile: Profile) -> Callable[[torch.nn.Module], dict]:
    """model -> {"auc": its relevance head's AUC on the validation labels}: stage 2's learning curve."""
    from .finetune import human_labels, score   # here: relcourse.finetune imports this module
    valid = human_labels(data_dir, "valid")
    pairs = make_pairset(data_dir, tokenizer, valid["doc_id"].to_numpy(), valid["label"].to_numpy(), profile.tokenizer)
    return lambda model: {"auc": metrics.auc(pairs.targets, score(model, pairs))}


MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def _first_rows(batch: dict, rows: int) -> dict:
    """The model inputs of a batch's first `rows` rows."""
    return {k: batch[k][:rows] for k in MODEL_INPUTS}
