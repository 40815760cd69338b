"""Claim T4: a teacher that reads the relevance model's own score makes a feedback loop.

The recipe's teacher t(x) turns behaviour into pseudo-labels; the relevance model is trained
on them; the model then ranks what users see, so it shapes the next logs. If the teacher also
read the model's score, the loop would close twice: the model's opinion would come back as its
own training labels. The sources forbid it ("the result cannot be controlled"); `Teacher`
refuses a `model_score` feature unless an experiment asks for it. This module runs that
experiment: two loops side by side, from the same start, for `rounds` rounds.

    round 0 (shared start)   the world's own logs (old production ranker)
                             -> teacher on behaviour -> pseudo-labels -> model 0
    round r = 1 .. R, each loop separately, with its own model of round r - 1:
        1. the logs:   data_gen.resimulate_logs with that model's scores as the ranker's
                       relevance guess (same users, same random stream in both loops)
        2. features:   behaviour features of those logs; the FED-BACK loop adds the model's
                       score of every pair as the feature `model_score`
        3. teacher:    fitted on the human training labels, early-stopped on valid
                       (CLEAN: behaviour only; FED-BACK: behaviour + model_score)
        4. pseudo-labels of the selected pairs of the pool (train + unlabelled queries)
        5. model r:    trained on the pseudo-labels, then fine-tuned on the human training
                       labels, as the recipe does (post-pretrain, then fine-tune)

Measured each round for each loop, against the hidden truth of the test queries (never in
the pool, never labelled): the teacher's AUC / PNR (relcourse.teacher.evaluate_teacher), the
model's AUC / PNR over every candidate pair of the test queries (relcourse.metrics.evaluate),
the Spearman correlation of the pseudo-labels with the true tier and with the previous model's
score (how much of the labels is the model's own opinion), and the share of the teacher's
split gain that goes to `model_score`. The claim is judged on the MODEL's test AUC in the last
round: a loop drifts when the model it produces gets worse, whatever its teacher scores (the
fed-back teacher reads the model's score, so its AUC partly measures the model).

Whose labels the teachers learn from (`teacher_labels`). By default every round's teacher is
fitted and early-stopped on the world's own human labels, drawn once, independently of any
model: a teacher given the model's score then weighs it against labels the model never touched,
and can only use it as far as they support it. In production the labels are not independent of
the model: a team labels what its ranker shows. With `teacher_labels='shown_top'` every round
buys its teacher's labels anew from that round's logs, at the cost of the world's labels, split
by split: each train and valid query's documents in the order the round's ranker (the previous
model) showed them, top first (data_gen.annotation's 'shown_first'), double-judged under the
world's rubric. The model decides what is ever labelled, so a pair it ranks low is judged by the
teacher from behaviour (and, fed back, the model's own score) alone. The relevance model's own
fine-tuning keeps the world's labels: the two designs differ in the teacher's labels only.
With `annotator_anchoring` a > 0 as well, the labelling tool pre-fills each pair with the tier
the round's ranker suggests (its score's place among the round's shown pairs, at the tier mix of
the world's labels; relcourse.labelling.suggested_tiers), and a share a of the judgements move
one tier toward it (data_gen.annotation): model-assisted labelling. The model's errors can then
come back as its teacher's labels, a route by which the sources' drift could happen. Both loops'
annotators lean on their own loop's model; only the fed-back teacher reads that model's score.

Behaviour only, in both loops. The logs record the ranker's score of every impression
(`ranker_score_mean`); once the model is the ranker, that column *is* the model's score, so
a teacher reading it would be fed back through the side door. Both loops' teachers therefore
read BEHAVIOUR (FEATURES without ranker_score_mean) in every round, and the two loops differ in
one column only, `model_score`.

The relevance model inside the loop is by default a stand-in, and says so: a LightGBM regressor
on the lexical query-document features of relcourse.lexical (BM25, coverage, bigrams ...;
nothing behavioural), fitted to the pseudo-labels, then boosted further on the human training
labels. It has what the claim needs of a relevance model: it reads text only, it learns from the
teacher's labels and then from the human ones (so its score on the human-labelled pairs is
in-sample, as a shipped model's is), it ranks the logs, and it is good enough (test AUC about 0.8)
that its score is a tempting feature. It takes a second to train. What it cannot do is learn its
own mistakes: whatever its labels say, it stays a function of fourteen overlap features.

`relevance_model='cross_encoder'` puts the recipe's own model in the loop instead
(`CrossEncoderStudent`): each round, the pretrained BERT is post-pretrained on the round's
pseudo-labels (relcourse.post_pretrain.post_pretrain, the profile's stage-2 settings), then
fine-tuned on the human training labels (relcourse.finetune.finetune), then scores every
candidate pair. That is 2 x rounds + 1 stage-2 runs and fine-tunings a seed: seconds each on
smoke; on laptop, where a stage-2 run is 14,400 steps, 30-50 minutes each on one core, so two
rounds take 3-4 hours a seed (`--set feedback_loop.rounds=2`); on a GPU, minutes. Its
checkpoints live in the stage's work folder until the table is written, so a killed run resumes
from the last one.

>>> "ranker_score_mean" in BEHAVIOUR, len(BEHAVIOUR) == len(FEATURES) - 1
(False, True)
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import data_gen
from data_gen.rng import rng_for

from . import lexical, metrics
from .config import FeedbackLoopConfig, Profile, with_overrides
from .data import UNLABELLED_TEXT_SPLITS, make_pairset
from .features import FEATURES, behaviour_features, features_of_logs, select_pairs
from .finetune import finetune, finetune_settings, labelled_splits, score
from .labelling import LabellingPlan, label_pairs
from .models import load_model
from .post_pretrain import post_pretrain, post_pretrain_settings
from .pretrain import MODEL_DIR, ensure_tokenizer, run_pretrain, tokenizer_of
from .store import cached_stage, ensure_data, run_hash
from .teacher import Teacher, evaluate_teacher, fastest_scorer

BEHAVIOUR = tuple(f for f in FEATURES if f != "ranker_score_mean")
MODEL_SCORE = "model_score"
LOOPS = ("clean", "fed_back")
START = "start"                 # the loop name of round 0, shared by both loops
THREADS = 1                     # small GBDTs: one thread is fast, and safe on a busy 2-core machine
TABLE = "rounds.parquet"
COLUMNS = ("round", "loop", "teacher_auc", "teacher_pnr", "model_auc", "model_pnr", "pseudo_truth_corr",
           "pseudo_model_corr", "model_score_gain_share", "shown_pairs", "pseudo_labelled_pairs")


class LexicalStudent:
    """The stand-in relevance model: LightGBM regression from lexical features to a score in
    about [0, 1], first on pseudo-labels, then boosted further on human tiers / 3 (its
    'fine-tuning'). Small leaves and many rounds: it fits its training pairs closely, as a
    cross-encoder trained for a few epochs does."""

    PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 5,
              "verbose": -1, "deterministic": True, "force_col_wise": True}

    def __init__(self, seed: int = 0, rounds: int = 300, finetune_rounds: int = 100, threads: int = THREADS):
        self.params = {**self.PARAMS, "seed": seed, "num_threads": threads}
        self.rounds, self.finetune_rounds = rounds, finetune_rounds
        self.booster: lgb.Booster | None = None

    def fit(self, x: pd.DataFrame, pseudo_labels, human_x: pd.DataFrame | None = None,
            human_labels=None) -> LexicalStudent:
        booster = lgb.train(self.params, lgb.Dataset(x, np.asarray(pseudo_labels, float)), self.rounds)
        if self.finetune_rounds and human_x is not None:
            target = np.asarray(human_labels, float) / 3
            booster = lgb.train(self.params, lgb.Dataset(human_x, target), self.finetune_rounds, init_model=booster)
        self.booster = booster
        return self

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        if self.booster is None:
            raise ValueError("the student is not trained: call fit() first")
        return self.booster.predict(x, num_threads=self.params["num_threads"])


class CrossEncoderStudent:
    """The recipe's relevance model in the loop: from the profile's pretrained BERT, post-pretrained
    on a round's pseudo-labels, then fine-tuned on the human training labels, with the profile's
    post_pretrain and finetune settings, exactly as stages 2 and 3 train it. Each model's
    checkpoints go to work_dir/<name>, so a killed loop resumes where it stopped. Every candidate
    pair of the world is tokenised once, here, in doc_id order, for every round's model to score."""

    def __init__(self, profile: Profile, seed: int, data_dir: Path, work_dir: Path):
        self.profile, self.seed, self.data_dir, self.work_dir = profile, seed, Path(data_dir), Path(work_dir)
        self.tokenizer = tokenizer_of(profile, seed, progress=False)
        self.start = run_pretrain(profile, seed, progress=False) / MODEL_DIR
        self.human = labelled_splits(data_dir, self.tokenizer, profile)
        every = np.sort(data_gen.read_table(data_dir, "truth", columns=["doc_id"])["doc_id"].to_numpy())
        self.every_pair = make_pairset(data_dir, self.tokenizer, every, np.zeros(len(every)), profile.tokenizer)

    def scores(self, name: str, doc_ids, pseudo_labels) -> np.ndarray:
        """Train a model on (doc_ids, pseudo_labels), then on the human labels; its score of every
        candidate pair, in doc_id order."""
        model = load_model(self.start)
        pairs = make_pairset(self.data_dir, self.tokenizer, doc_ids, pseudo_labels, self.profile.tokenizer)
        post_pretrain(model, pairs, self.tokenizer, self.profile, self.seed, self.work_dir / name / "post_pretrain",
                      progress=False)
        finetune(model, self.human, self.profile.finetune, self.profile, self.seed, self.work_dir / name / "finetune",
                 progress=False)
        return score(model, self.every_pair)


def _spearman(a, b) -> float:
    return float(pd.Series(np.asarray(a, float)).corr(pd.Series(np.asarray(b, float)), method="spearman"))


class _World:
    """What every round reads once: tables, splits, lexical features, the hidden truth."""

    def __init__(self, data_dir: Path, seed: int):
        self.dir, self.seed = data_dir, seed
        self.queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket", "bucket_name"])
        labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "split", "label", "cost", "design",
                                                                  "rubric_version"])
        self.train, self.valid = labels[labels["split"] == "train"], labels[labels["split"] == "valid"]
        self.label_cost = labels.groupby("split")["cost"].sum()
        self.label_design, self.rubric = labels["design"].iloc[0], int(labels["rubric_version"].max())
        self.truth = data_gen.read_table(data_dir, "truth", columns=["query_id", "doc_id", "tier_v2"]) \
            .sort_values("doc_id").set_index("doc_id")
        self.lexical = lexical.pair_features(data_dir).drop(columns="query_id").loc[self.truth.index]
        split = self.queries.set_index("query_id")["split"]
        self.pool_queries = split.index[split.isin(UNLABELLED_TEXT_SPLITS)]
        test = self.truth["query_id"].map(split).eq("test").to_numpy()
        self.test = self.truth[test].assign(bucket_name=lambda t: t["query_id"].map(
            self.queries.set_index("query_id")["bucket_name"]))

    def scores(self, model_scores: np.ndarray, doc_ids) -> np.ndarray:
        """The scores (one per candidate pair, doc_id order) of the given pairs."""
        return pd.Series(model_scores, index=self.truth.index).loc[doc_ids].to_numpy()


def _new_model_scores(world: _World, name: str, doc_ids, pseudo, options: FeedbackLoopConfig,
                      encoder: CrossEncoderStudent | None) -> np.ndarray:
    """Step 5: the round's relevance model, trained on the pseudo-labels then on the human
    labels; its scores of every candidate pair (doc_id order)."""
    if options.relevance_model == "cross_encoder":
        return encoder.scores(name, doc_ids, pseudo)
    student = LexicalStudent(world.seed, options.student_rounds, options.finetune_rounds).fit(
        world.lexical.loc[doc_ids], pseudo, world.lexical.loc[world.train["doc_id"]], world.train["label"])
    return student.predict(world.lexical)


def _teacher_labels(world: _World, x: pd.DataFrame, round_: int,
                    options: FeedbackLoopConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Step 3's train and valid labels: the world's own, or with 'shown_top' bought from the
    round's logs `x` (their ranker_score_mean is the ranker's score), at the world's cost per split.
    The annotators' draw depends on the round only, so both loops' labels differ by the ranker."""
    if options.teacher_labels == "world":
        return world.train, world.valid
    queries = world.queries.set_index("query_id")
    pairs = pd.DataFrame({"query_id": x["query_id"], "doc_id": x.index,
                          "split": x["query_id"].map(queries["split"]).to_numpy(),
                          "bucket_name": x["query_id"].map(queries["bucket_name"]).to_numpy(),
                          "ranker_score": x["ranker_score_mean"]})
    seed = int(rng_for(world.seed, "feedback-labels", round_).integers(2**31))
    train, valid = (label_pairs(LabellingPlan(float(world.label_cost[split]), "shown_first", world.label_design,
                                              world.rubric, queries_split=(split,),
                                              anchoring=options.annotator_anchoring), pairs, world.dir, seed).pairs
                    for split in ("train", "valid"))
    return train, valid


def _round(world: _World, name: str, x: pd.DataFrame, teacher: Teacher, previous: np.ndarray | None,
           options: FeedbackLoopConfig, encoder: CrossEncoderStudent | None, round_: int) -> tuple[np.ndarray, dict]:
    """Steps 3-5 of one round: teacher, pseudo-labels, the new model. Returns its scores of
    every candidate pair (doc_id order) and the round's measurements."""
    train, valid = _teacher_labels(world, x, round_, options)
    teacher.fit(x, train, valid=valid)
    pool = x[x["query_id"].isin(world.pool_queries)]
    chosen = select_pairs(pool, world.queries, max(2, int(len(pool) * options.pairs_share)), options.selection,
                          world.seed)
    pseudo = fastest_scorer(teacher, len(chosen)).predict(chosen)   # compiled where that pays
    scores = _new_model_scores(world, name, chosen.index.to_numpy(), pseudo, options, encoder)
    teacher_table = evaluate_teacher(teacher, x, world.dir).loc["all"]
    model_table = metrics.evaluate(world.test["tier_v2"], world.scores(scores, world.test.index),
                                   world.test["query_id"], world.test["bucket_name"]).loc["all"]
    gain = teacher.feature_importance()
    row = {"teacher_auc": teacher_table["auc"], "teacher_pnr": teacher_table["pnr"],
           "model_auc": model_table["auc"], "model_pnr": model_table["pnr"],
           "pseudo_truth_corr": _spearman(pseudo, world.truth.loc[chosen.index, "tier_v2"]),
           "pseudo_model_corr": (np.nan if previous is None else
                                 _spearman(pseudo, world.scores(previous, chosen.index))),
           "model_score_gain_share": float(gain.get(MODEL_SCORE, 0.0) / gain.sum()) if gain.sum() > 0 else 0.0,
           "shown_pairs": len(x), "pseudo_labelled_pairs": len(chosen)}
    return scores, row


def simulate_loops(data_dir: str | Path, seed: int, options: FeedbackLoopConfig = FeedbackLoopConfig(),
                   progress: bool = False, encoder: CrossEncoderStudent | None = None) -> pd.DataFrame:
    """The experiment itself, uncached: one row per (round, loop) with the COLUMNS.
    Round 0 is the shared start, once per loop (the same numbers), so each loop's line starts
    at the same point. With options.relevance_model 'cross_encoder', `encoder` trains the models."""
    if (options.relevance_model == "cross_encoder") != (encoder is not None):
        raise ValueError(f"relevance_model={options.relevance_model!r} needs "
                         + ("a CrossEncoderStudent as `encoder` (run_feedback_loop builds one from the profile)"
                            if encoder is None else "no `encoder`: the lexical stand-in trains itself"))
    world = _World(Path(data_dir), seed)
    n_searches = max(1, round(data_gen.load_manifest(data_dir)["config"]["n_searches"] * options.searches_share))
    start_scores, start = _round(world, START, behaviour_features(data_dir),
                                 Teacher(BEHAVIOUR, seed=seed, threads=THREADS), None, options, encoder, 0)
    rows = [{"round": 0, "loop": loop, **start} for loop in LOOPS]
    model = {loop: start_scores for loop in LOOPS}
    steps = [(r, loop) for r in range(1, options.rounds + 1) for loop in LOOPS]
    for r, loop in tqdm(steps, desc="feedback rounds", disable=not progress):
        # One fresh stream of users per round, the same for both loops: only the ranker differs.
        logs_seed = int(rng_for(seed, "feedback-round", r).integers(2**31))
        x = features_of_logs(data_gen.resimulate_logs(data_dir, model[loop], logs_seed, n_searches), world.queries)
        if loop == "fed_back":
            x = x.assign(**{MODEL_SCORE: world.scores(model[loop], x.index)})
            teacher = Teacher(BEHAVIOUR + (MODEL_SCORE,), allow_model_score_feature=True, seed=seed, threads=THREADS)
        else:
            teacher = Teacher(BEHAVIOUR, seed=seed, threads=THREADS)
        model[loop], row = _round(world, f"{r}-{loop}", x, teacher, model[loop], options, encoder, r)
        rows.append({"round": r, "loop": loop, **row})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def feedback_loop_settings(profile: Profile) -> dict:
    """The feedback-loop stage's cache key: its settings and the version of the stand-in ranker,
    and with the cross-encoder in the loop, the stage-2 and fine-tuning settings it trains with."""
    settings = {"feedback_loop": "lexical-student-v1", "options": dataclasses.asdict(profile.feedback_loop)}
    if profile.feedback_loop.relevance_model == "cross_encoder":
        # the loop's models log no validation curve, so that setting must not rename the loop's runs
        without_curve = with_overrides(profile, {"post_pretrain.validation_points": 0})
        settings |= {"post_pretrain": post_pretrain_settings(without_curve), "finetune": finetune_settings(profile)}
    return settings


def run_feedback_loop(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The T4 experiment of this profile and seed with `profile.feedback_loop`'s settings (cached
    stage 'feedback_loop'): TABLE holds the rounds; the manifest's metrics hold each loop's
    teacher and model test AUC in the last round."""
    data_dir = ensure_data(profile, seed, progress)
    options = profile.feedback_loop
    upstream = {"data": run_hash(data_dir)}
    cross_encoder = options.relevance_model == "cross_encoder"
    if cross_encoder:
        upstream |= {"tokenizer": run_hash(ensure_tokenizer(profile, seed, progress)),
                     "pretrain": run_hash(run_pretrain(profile, seed, progress))}

    def build(out: Path) -> dict:
        encoder = CrossEncoderStudent(profile, seed, data_dir, out / "models") if cross_encoder else None
        table = simulate_loops(data_dir, seed, options, progress, encoder)
        table.to_parquet(out / TABLE)
        shutil.rmtree(out / "models", ignore_errors=True)   # checkpoints: only needed to resume
        last = table[table["round"] == options.rounds].set_index("loop")
        return {loop: {k: round(float(last.loc[loop, k]), 4) for k in ("teacher_auc", "model_auc", "pseudo_truth_corr")}
                for loop in LOOPS}

    return cached_stage(profile, "feedback_loop", seed, feedback_loop_settings(profile), build,
                        upstream=upstream, resumable=cross_encoder)


def rounds_table(run_dir: Path) -> pd.DataFrame:
    """The rounds of a finished run: one row per (round, loop)."""
    return pd.read_parquet(Path(run_dir) / TABLE)


def feedback_effect(profile: Profile, seed: int, progress: bool = True) -> tuple[float, float, dict]:
    """Claim T4, last round: the relevance model's test AUC in the fed-back loop and in the clean
    loop (the claim's metric: does the model drift from the truth?), and beside it what the
    registry notes average over seeds: each loop's teacher test AUC (the tempting number) and the
    Spearman agreement of each loop's pseudo-labels with its previous model's score (the echo)."""
    table = rounds_table(run_feedback_loop(profile, seed, progress=progress))
    last = table[table["round"] == table["round"].max()].set_index("loop")
    also = {f"{what} {loop}": float(last.loc[loop, column])
            for what, column in (("teacher AUC", "teacher_auc"), ("label-model agreement", "pseudo_model_corr"))
            for loop in ("fed_back", "clean")}
    return float(last.loc["fed_back", "model_auc"]), float(last.loc["clean", "model_auc"]), also
