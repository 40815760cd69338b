"""Stage 3: fine-tune a cross-encoder on human labels, and measure it on the test queries.

Every later comparison of the course ends here. The pretraining claims (P1–P6) and the post-
pretraining claims (T2, T3, T5) are decided by fine-tuning each candidate checkpoint the same
way on the same labelled pairs and comparing the test metrics: that is the "probe". The
fine-tuning claims (F1–F5) change one thing at a time: the loss, or which labels come in.

- The batches are query-grouped for every loss (`relcourse.data.query_grouped_batch`), so the
  pairwise term has pairs and a comparison of losses changes the loss only, not the data.
- Early stopping watches the validation queries' AUC (their human labels) and keeps the best
  weights; the test queries are judged against the hidden truth (rubric v2), which a real team
  approximates with a carefully labelled test set.
- The query-swap check (`query_swap`): score every test document again with another test
  query's text in place of its own. A model that reads the query falls towards AUC 0.5 and its
  scores change; a document classifier keeps its AUC and its scores.

>>> # see notebooks/04_fine_tune.ipynb and tests/test_pipeline.py for a run end to end
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import data_gen

from . import metrics
from .config import FinetuneConfig, Profile
from .data import PairSet, make_pairset, pair_texts, query_grouped_batch
from .labelling import LabellingPlan, mix_rubric_versions, run_plan
from .losses import expected_tier, make_loss
from .models import RelevanceBert, load_model, save_model
from .post_pretrain import run_post_pretrain
from .pretrain import MODEL_DIR, ensure_tokenizer, new_model, run_pretrain, tokenizer_of
from .store import cached_stage, ensure_data, run_hash
from .tokenizer import encode_pairs
from .train import TrainConfig, arithmetic_settings, profile_settings, train, training_seed

SCORE_BATCH = 512


@dataclass(frozen=True)
class LabelledSplits:
    """The pairs a fine-tuning run reads: train and valid carry human labels, test the truth."""
    train: PairSet
    valid: PairSet
    test: PairSet
    test_buckets: np.ndarray     # frequency bucket of each test pair's query


def human_labels(data_dir: str | Path, split: str) -> pd.DataFrame:
    """The world's default labels of one split (doc_id, query_id, label)."""
    labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "query_id", "split", "label"])
    return labels[labels["split"] == split]


def test_truth(data_dir: str | Path) -> pd.DataFrame:
    """Every candidate document of the test queries with its true tier under rubric v2."""
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket_name"])
    truth = data_gen.read_table(data_dir, "truth", columns=["query_id", "doc_id", "tier_v2"])
    test = truth.merge(queries[queries["split"] == "test"], on="query_id")
    return test.rename(columns={"tier_v2": "label"})


def training_labels(cfg: FinetuneConfig, data_dir: str | Path, seed: int) -> pd.DataFrame:
    """(doc_id, label) that fine-tuning learns from: the world's own training labels, or a
    labelling plan (cfg.labels, cfg.label_design) bought with cfg.label_budget_share of what the
    world's labels cost, so every plan is an equal-cost alternative (claims F3, F4); with
    cfg.stale_share, that share of the plan's labels is left over from rubric cfg.stale_rubric (claim F5)."""
    if cfg.labels == "world":
        return human_labels(data_dir, "train")[["doc_id", "label"]]
    world = data_gen.read_table(data_dir, "labels", columns=["split", "cost"])
    budget = float(world.loc[world["split"] == "train", "cost"].sum()) * cfg.label_budget_share
    plan = LabellingPlan(budget, cfg.labels, cfg.label_design, rubric_version=2)
    labels = run_plan(plan, data_dir, seed)
    if cfg.stale_share:
        old = run_plan(dataclasses.replace(plan, rubric_version=cfg.stale_rubric), data_dir, seed)
        labels = mix_rubric_versions(old, labels, cfg.stale_share, seed)
    return labels.pairs[["doc_id", "label"]]


def labelled_splits(data_dir: str | Path, tokenizer, profile: Profile, train_labels: pd.DataFrame | None = None,
                    ) -> LabelledSplits:
    """Tokenised train / valid / test pairs. `train_labels` (doc_id, label) replaces the world's
    default training labels, e.g. `training_labels` of another labelling plan (F3, F4, F5)."""
    train_labels = human_labels(data_dir, "train") if train_labels is None else train_labels
    missing = {"doc_id", "label"} - set(train_labels.columns)
    if missing:
        raise ValueError(f"train_labels lacks columns {sorted(missing)}: give one row per pair with doc_id and label")
    bad = train_labels.loc[~train_labels["label"].isin([0, 1, 2, 3]), "label"]
    if len(bad):
        raise ValueError(f"labels must be tiers 0..3, found {sorted(set(bad.tolist()))[:5]}")
    valid, test = human_labels(data_dir, "valid"), test_truth(data_dir)

    def pairset(frame):
        return make_pairset(data_dir, tokenizer, frame["doc_id"].to_numpy(), frame["label"].to_numpy(),
                            profile.tokenizer)

    return LabelledSplits(pairset(train_labels), pairset(valid), pairset(test), test["bucket_name"].to_numpy())


@torch.no_grad()
def score(model: RelevanceBert, pairs: PairSet, batch_size: int = SCORE_BATCH) -> np.ndarray:
    """One relevance score per pair (the expected tier for a 4-class model), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(pairs), batch_size):
        batch = {k: v.to(device) for k, v in pairs.rows(np.arange(lo, min(lo + batch_size, len(pairs)))).items()}
        logits = model.relevance(batch).float()
        out.append((expected_tier(logits) if model.num_outputs == 4 else logits).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_model(model: RelevanceBert, pairs: PairSet, buckets=None) -> pd.DataFrame:
    """relcourse.metrics.evaluate of the model's scores on `pairs`: rows all (+ head/torso/tail)."""
    return metrics.evaluate(pairs.targets, score(model, pairs), pairs.query_ids, buckets)


def swapped_queries(query_ids: np.ndarray, seed: int) -> dict[int, int]:
    """A derangement of the test queries: each query id -> another query whose text replaces its own."""
    ids = np.unique(query_ids)
    rng = np.random.default_rng([seed, 7])
    shift = rng.permutation(len(ids))          # a random cycle: no query keeps its own text
    return {int(ids[shift[i]]): int(ids[shift[(i + 1) % len(ids)]]) for i in range(len(ids))}


def query_swap(model: RelevanceBert, data_dir: str | Path, tokenizer, profile: Profile, test: PairSet,
               real_scores: np.ndarray, seed: int) -> dict:
    """The query-sensitivity check: AUC with each test query's text replaced by another test
    query's, and how the scores with the real and the swapped query correlate (Pearson).

    A model that matches query and document drops towards 0.5 with swapped queries and its
    scores decorrelate; one that judges documents alone (a document classifier) keeps both."""
    swap = swapped_queries(test.query_ids, seed)
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "text"]).set_index("query_id")["text"]
    texts = queries.loc[[swap[int(q)] for q in test.query_ids]].tolist()
    documents = pair_texts(data_dir, test.doc_ids)["document"].tolist()
    inputs = encode_pairs(tokenizer, texts, documents, profile.tokenizer.max_query_len, profile.tokenizer.max_len,
                          profile.tokenizer.exact_match)
    swapped = score(model, PairSet(test.query_ids, test.doc_ids, test.targets, inputs))
    spread = real_scores.std() * swapped.std()
    return {"auc": metrics.auc(test.targets, swapped),
            "score_correlation": float(np.corrcoef(real_scores, swapped)[0, 1]) if spread > 0 else float("nan")}


def finetune_settings(profile: Profile) -> dict:
    """The fine-tuning stage's cache key (the model it starts from is in its upstream hashes;
    from scratch, the model's size is here)."""
    return {"finetune": dataclasses.asdict(profile.finetune), "tokenizer": dataclasses.asdict(profile.tokenizer),
            "model": dataclasses.asdict(profile.pretrain.model), **arithmetic_settings(profile)}


def train_config(cfg: FinetuneConfig, profile: Profile, seed: int) -> TrainConfig:
    return TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=int(cfg.steps * cfg.warmup_share),
                       grad_accum=cfg.grad_accum, checkpoint_every=max(cfg.steps // 4, 1),
                       eval_every=max(cfg.steps // cfg.evaluations, 1), patience=cfg.patience,
                       **profile_settings(profile, seed))


def batch_rows(cfg: FinetuneConfig) -> int:
    """Pairs per step: batch_size rounded down to whole query groups.

    >>> batch_rows(FinetuneConfig(batch_size=30, docs_per_query_in_batch=4))
    28
    """
    return cfg.batch_size - cfg.batch_size % cfg.docs_per_query_in_batch


def finetune(model: RelevanceBert, splits: LabelledSplits, cfg: FinetuneConfig, profile: Profile, seed: int,
             run_dir: str | Path, progress: bool = True) -> dict:
    """Fine-tune `model` in place with `cfg.loss`; returns the training result and the test table.
    Batch order and dropout follow `seed`'s draw cfg.training_draw (relcourse.train.training_seed)."""
    if (cfg.loss == "multiclass") != (model.num_outputs == 4):
        raise ValueError(f"loss {cfg.loss!r} needs a model with {4 if cfg.loss == 'multiclass' else 1} output(s), "
                         f"this one has {model.num_outputs}: load it with num_outputs=4 for 'multiclass' only")
    kwargs = {"pairwise_weight": cfg.pairwise_weight} if cfg.loss == "ce+pairwise" else {}
    loss = make_loss(cfg.loss, **kwargs)
    group, batch_size = cfg.docs_per_query_in_batch, batch_rows(cfg)
    draw_seed = training_seed(seed, cfg.training_draw)

    def batch_at(step):
        return query_grouped_batch(splits.train, step, batch_size, group, draw_seed)

    def loss_fn(m, batch):
        return {"loss": loss(m(batch)["relevance"], batch["targets"], batch["query_ids"])}

    def validate(m):
        return {"auc": metrics.auc(splits.valid.targets, score(m, splits.valid))}

    result = train(model, batch_at, loss_fn, train_config(cfg, profile, draw_seed), Path(run_dir),
                   evaluate=validate, metric="auc", progress=progress)
    table = evaluate_model(model, splits.test, splits.test_buckets)
    return {"train": result, "test": table}


def start_model(profile: Profile, seed: int, progress: bool = True) -> Path | None:
    """The run folder of the model fine-tuning starts from (finetune.start), None for scratch."""
    start = profile.finetune.start
    if start == "scratch":
        return None
    return run_pretrain(profile, seed, progress) if start == "pretrain" else run_post_pretrain(profile, seed, progress)


def run_finetune(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The fine-tuned model of this profile and seed (cached stage 'finetune'): model, test
    scores, metrics, and the query-swap check. An experiment's arm is this with overrides
    (relcourse.experiments.run_arm)."""
    data_dir = ensure_data(profile, seed, progress)
    start = start_model(profile, seed, progress)
    cfg = profile.finetune
    outputs = 4 if cfg.loss == "multiclass" else 1

    def build(out: Path) -> dict:
        tokenizer = tokenizer_of(profile, seed, progress)
        train_labels = None if cfg.labels == "world" else training_labels(cfg, data_dir, seed)
        splits = labelled_splits(data_dir, tokenizer, profile, train_labels)
        # A fresh head (4-class, or a whole model from scratch) is drawn from the global RNG: seed
        # it, or the arm would depend on what the process ran before instead of on (profile, seed).
        torch.manual_seed(training_seed(seed, cfg.training_draw))
        if start is None:
            model = new_model(profile, len(tokenizer), outputs)
        else:
            model = load_model(start / MODEL_DIR, num_outputs=outputs)
        result = finetune(model, splits, cfg, profile, seed, out / "train", progress)
        save_model(model, out / MODEL_DIR)
        scores = score(model, splits.test)
        pd.DataFrame({"doc_id": splits.test.doc_ids, "query_id": splits.test.query_ids,
                      "label": splits.test.targets, "bucket_name": splits.test_buckets,
                      "score": scores}).to_parquet(out / "test_scores.parquet")
        return {"test": metrics.records(result["test"]),
                "query_swap": query_swap(model, data_dir, tokenizer, profile, splits.test, scores, seed),
                "train_pairs": len(splits.train), "steps": result["train"].steps_done,
                "stopped_early": result["train"].stopped_early}

    upstream = {"data": run_hash(data_dir), "tokenizer": run_hash(ensure_tokenizer(profile, seed, progress))}
    if start is not None:
        upstream["model"] = run_hash(start)
    return cached_stage(profile, "finetune", seed, finetune_settings(profile), build, upstream=upstream, resumable=True)
