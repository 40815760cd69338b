"""The GBDT teacher t(x): behaviour features of a pair in, a pseudo-label ŷ in [0, 1] out.

Humans label tens of thousands of pairs; the logs show millions. A small LightGBM fitted on
the labelled pairs, from behaviour statistics only (relcourse.features), scores every shown
pair, and the cross-encoder is post-pretrained on those pseudo-labels (claims T1, T2).

Why regression on label / 3 (squared error), not lambdarank or 4 classes: the pseudo-label
must be an absolute score, comparable across queries, because post-pretraining fits it with a
pointwise loss (MSE / soft cross-entropy on [0, 1]) and AUC pools pairs of all queries. The L2
fit estimates E[tier | x] / 3, which is exactly that; lambdarank only orders documents within a
query, on an arbitrary scale, and 4-class probabilities would need collapsing to a score anyway.

The teacher refuses features derived from the relevance model's own score (columns named
`model_score...`): fed back, they make a loop that drifts from human truth (claim T4). Only
the experiment that shows this constructs a Teacher with `allow_model_score_feature=True`.

>>> import os, tempfile
>>> from relcourse.config import load_profile
>>> from relcourse.store import ensure_data, RUNS_ENV
>>> os.environ[RUNS_ENV] = tempfile.mkdtemp()
>>> d = ensure_data(load_profile("smoke"), seed=0, progress=False)
>>> x = behaviour_features(d)
>>> labels = data_gen.read_table(d, "labels")
>>> teacher = Teacher().fit(x, labels[labels.split == "train"], valid=labels[labels.split == "valid"])
>>> y_hat = teacher.predict(x)
>>> bool(0 <= y_hat.min() and y_hat.max() <= 1)
True
>>> bool(evaluate_teacher(teacher, x, d).loc["all", "auc"] > 0.6)   # vs hidden truth, test queries
True
>>> del os.environ[RUNS_ENV]
"""
from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import data_gen
from relcourse import metrics
from relcourse.features import FEATURE_SCHEMA_VERSION, FEATURES, behaviour_features
from relcourse.store import atomic_dir, write_text_atomic

MODEL_SCORE_PREFIX = "model_score"
FORMAT = "relcourse-teacher"
# Small trees, slow learning, row and column subsampling: a few thousand noisy labels overfit fast.
DEFAULT_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20,
                  "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
                  "verbose": -1}
MAX_ROUNDS = 2_000         # with a validation set: an upper bound, early stopping decides
EARLY_STOPPING_ROUNDS = 50
ROUNDS_WITHOUT_VALID = 200
TIERS = (0, 1, 2, 3)


class Teacher:
    """A LightGBM regressor from behaviour features to ŷ = E[tier | x] / 3 in [0, 1].

    features: the columns it reads, in order (default relcourse.features.FEATURES).
    seed, threads: LightGBM runs with deterministic=True, so one (data, seed, threads) gives one model.
    """

    def __init__(self, features: tuple[str, ...] = FEATURES, allow_model_score_feature: bool = False,
                 seed: int = 0, threads: int = 2):
        features = tuple(features)
        fed_back = [f for f in features if f.startswith(MODEL_SCORE_PREFIX)]
        if fed_back and not allow_model_score_feature:
            raise ValueError(f"features {fed_back} are derived from the relevance model's own score: a teacher fed "
                             "its student's score makes a feedback loop that drifts from human truth (claim T4); "
                             "drop them, or pass allow_model_score_feature=True for that experiment only")
        if not features or len(set(features)) != len(features):
            raise ValueError(f"features must be distinct column names, got {features}")
        self.features, self.allow_model_score_feature = features, allow_model_score_feature
        self.seed, self.threads = seed, threads
        self.schema_version = FEATURE_SCHEMA_VERSION
        self.booster: lgb.Booster | None = None
        self.params: dict = {}

    # --- the feature matrix ---------------------------------------------------------------

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The teacher's columns of `features` as a float64 matrix, after checking the schema."""
        version = features.attrs.get("feature_schema_version", self.schema_version)
        if version != self.schema_version:
            raise ValueError(f"features have schema version {version}, the teacher was trained on version "
                             f"{self.schema_version}; recompute the features with the code the teacher was "
                             "trained with, or train the teacher again")
        missing = [f for f in self.features if f not in features.columns]
        if missing:
            raise ValueError(f"features lack the teacher's columns {missing}; compute them with "
                             "relcourse.features.behaviour_features (schema version "
                             f"{self.schema_version}) and add any extra columns the teacher was built with")
        return np.ascontiguousarray(features[list(self.features)].to_numpy(np.float64))

    def _labelled(self, features: pd.DataFrame, labels: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
        """(X, tier) of the labelled pairs that have features; pairs never shown cannot be scored."""
        if not {"doc_id", "label"} <= set(labels.columns):
            raise ValueError(f"{what} needs columns doc_id and label (the labels table has them), "
                             f"got {list(labels.columns)}")
        bad = np.setdiff1d(labels["label"].unique(), TIERS).tolist()
        if bad:
            raise ValueError(f"{what}: labels {bad[:5]} are not tiers; map them onto 0 (none) .. 3 (high)")
        shown = labels[labels["doc_id"].isin(features.index)]
        if shown.empty:
            raise ValueError(f"none of the {len(labels)} pairs of {what} has behaviour features: "
                             "were features and labels made from the same data directory?")
        return self.matrix(features.loc[shown["doc_id"]]), shown["label"].to_numpy()

    # --- fit, predict ---------------------------------------------------------------------

    def fit(self, features: pd.DataFrame, labels: pd.DataFrame, valid: pd.DataFrame | None = None,
            params: dict | None = None, max_rounds: int = MAX_ROUNDS,
            early_stopping_rounds: int = EARLY_STOPPING_ROUNDS) -> Teacher:
        """Fit on `labels` (doc_id, label 0..3; e.g. the labels table's train split), early-stopped
        on `valid` when given (at most `max_rounds`; else ROUNDS_WITHOUT_VALID rounds). `params`
        override DEFAULT_PARAMS."""
        for f in self.features:
            if f in features.columns and features[f].isna().all():
                raise ValueError(f"feature {f!r} is null in every row: a column the teacher cannot learn from; "
                                 "check how it was computed, or leave it out of Teacher(features=...)")
        X, y = self._labelled(features, labels, "labels")
        if len(np.unique(y)) < 2:
            raise ValueError(f"all {len(y)} labelled pairs with features have tier {y[0]}: a teacher needs "
                             "pairs of at least two tiers to learn what separates them")
        self.params = {**DEFAULT_PARAMS, **(params or {}),
                       "deterministic": True, "force_col_wise": True, "num_threads": self.threads, "seed": self.seed}
        train = lgb.Dataset(X, y / 3, feature_name=list(self.features))
        if valid is None:
            booster = lgb.train(self.params, train, num_boost_round=ROUNDS_WITHOUT_VALID)
        else:
            Xv, yv = self._labelled(features, valid, "valid")
            booster = lgb.train(self.params, train, num_boost_round=max_rounds,
                                valid_sets=[lgb.Dataset(Xv, yv / 3, reference=train)],
                                callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)])
        # Keep only the trees up to the best iteration: what is saved is what predicts.
        self.booster = lgb.Booster(model_str=booster.model_to_string())
        return self

    def _trained(self) -> lgb.Booster:
        if self.booster is None:
            raise ValueError("the teacher is not trained: call fit() or Teacher.load() first")
        return self.booster

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Pseudo-labels ŷ in [0, 1], one per row of `features`."""
        raw = self._trained().predict(self.matrix(features), num_threads=self.threads)
        return np.clip(raw, 0.0, 1.0)  # an L2 fit can overshoot the label range a little

    def feature_importance(self) -> pd.Series:
        """Total gain of the splits on each feature, largest first."""
        gain = self._trained().feature_importance(importance_type="gain")
        return pd.Series(gain, index=list(self.features), name="gain").sort_values(ascending=False)

    # --- save, load -----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """One JSON file: the trees (LightGBM's text format) and what they need to be used again."""
        meta = {"format": FORMAT, "feature_schema_version": self.schema_version, "features": list(self.features),
                "allow_model_score_feature": self.allow_model_score_feature, "seed": self.seed,
                "threads": self.threads, "params": self.params, "booster": self._trained().model_to_string()}
        write_text_atomic(Path(path), json.dumps(meta))

    @classmethod
    def load(cls, path: str | Path) -> Teacher:
        try:
            meta = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read a teacher from {path} ({e}); train and save it again") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved relcourse teacher; train and save it again")
        teacher = cls(meta["features"], meta["allow_model_score_feature"], meta["seed"], meta["threads"])
        teacher.schema_version, teacher.params = meta["feature_schema_version"], meta["params"]
        teacher.booster = lgb.Booster(model_str=meta["booster"])
        return teacher

    def compile(self) -> CompiledTeacher:
        """The same trees compiled to native code (see CompiledTeacher)."""
        return CompiledTeacher(self)


def fit_options(settings) -> dict:
    """Teacher.fit's keyword arguments from a profile's teacher settings (relcourse.config.TeacherConfig),
    so a teacher refitted outside the pipeline (an ablation, an exercise) is fitted as the stage's is.

    >>> from relcourse.config import load_profile
    >>> options = fit_options(load_profile("smoke").teacher)
    >>> options["params"]["num_leaves"], options["max_rounds"], options["early_stopping_rounds"]
    (15, 2000, 50)
    """
    return {"params": {"learning_rate": settings.learning_rate, "num_leaves": settings.num_leaves,
                       "min_data_in_leaf": settings.min_data_in_leaf},
            "max_rounds": settings.max_rounds, "early_stopping_rounds": settings.early_stopping_rounds}


class CompiledTeacher:
    """The teacher's trees compiled to native code by lleaves (LLVM): the same ŷ as
    Teacher.predict, several times faster, for pseudo-labelling at scale. Compiling 200 trees
    takes a few seconds.

    Stock LightGBM walks each tree's node arrays in an interpreter loop; lleaves turns every
    tree into straight-line branches of machine code, inlined into one function per block of
    trees, so a row costs a few hundred well-predicted compares. The scores agree with
    Booster.predict to float rounding (the sum of 200 leaf values in another order).

    lleaves 1.3 needs llvmlite < 0.45 (it uses LLVM's legacy pass manager); pyproject.toml pins it.
    """

    def __init__(self, teacher: Teacher):
        try:
            import lleaves
        except ImportError:
            raise ImportError("compiling the teacher needs lleaves: pip install lleaves 'llvmlite<0.45'") from None
        self.teacher = teacher
        with tempfile.TemporaryDirectory() as tmp:   # lleaves reads LightGBM's text model from a file
            model_file = Path(tmp) / "teacher.txt"
            teacher._trained().save_model(str(model_file))
            self.model = lleaves.Model(model_file=str(model_file))
            self.model.compile()

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        raw = self.model.predict(self.teacher.matrix(features), n_jobs=self.teacher.threads)
        return np.clip(raw, 0.0, 1.0)


# Compiling costs seconds (5-12 s here); stock LightGBM scores a few hundred thousand rows a
# second, so compiling pays from about a million rows: the gpu worlds' pools, not smoke's or laptop's.
COMPILE_FROM_ROWS = 1_000_000


def fastest_scorer(teacher: Teacher, rows: int) -> Teacher | CompiledTeacher:
    """What pseudo-labels `rows` rows fastest: from COMPILE_FROM_ROWS on, the teacher compiled by
    lleaves where lleaves is installed (the same scores within 1e-9, several times faster), else
    the teacher itself, with a warning that says how to get the fast path; below, the teacher.

    >>> type(fastest_scorer(Teacher(), rows=1_000)).__name__   # too few rows to pay for compiling
    'Teacher'
    """
    if rows < COMPILE_FROM_ROWS:
        return teacher
    try:
        import lleaves  # noqa: F401 - only whether it is there
    except ImportError:
        warnings.warn("lleaves is not installed, so the teacher pseudo-labels with stock LightGBM (the same "
                      "scores, several times slower); pip install lleaves 'llvmlite<0.45' for the compiled "
                      "teacher", stacklevel=2)
        return teacher
    return teacher.compile()


# --- evaluation -----------------------------------------------------------------------------

def evaluation_set(features: pd.DataFrame, data_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """The pairs to judge a teacher (or a baseline such as raw CTR) on: the rows of `features`
    with a reference tier in column `label` and the query's `bucket_name`.

    split 'test': the hidden truth (rubric v2, what careful humans would say) of every pair of a
    test query that has features; the labels table has no test split, the test queries are held
    out for evaluation. split 'train' / 'valid': the (noisy) human labels of that split.
    """
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket_name"])
    if split == "test":
        truth = data_gen.read_table(data_dir, "truth", columns=["query_id", "doc_id", "tier_v2"])
        test = truth["query_id"].isin(queries.loc[queries["split"] == "test", "query_id"])
        ref = truth[test].rename(columns={"tier_v2": "label"})
    elif split in ("train", "valid"):
        labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "split", "label"])
        ref = labels[labels["split"] == split]
    else:
        raise ValueError(f"split={split!r} is unknown; use 'test' (hidden truth) or 'train' / 'valid' (human labels)")
    ref = ref[ref["doc_id"].isin(features.index)].set_index("doc_id")["label"]
    if ref.empty:
        raise ValueError(f"no pair of the {split} split has behaviour features; were the features made "
                         f"from {data_dir}?")
    rows = features.loc[ref.index]
    return rows.assign(label=ref.to_numpy(),
                       bucket_name=rows["query_id"].map(queries.set_index("query_id")["bucket_name"]).to_numpy())


def evaluate_teacher(teacher: Teacher, features: pd.DataFrame, data_dir: str | Path,
                     split: str = "test") -> pd.DataFrame:
    """relcourse.metrics.evaluate of ŷ against the reference of `split` (see evaluation_set):
    rows all / head / torso / tail, columns n_queries, n_docs, auc, pnr, ..."""
    pairs = evaluation_set(features, data_dir, split)
    return metrics.evaluate(pairs["label"], teacher.predict(pairs), pairs["query_id"], pairs["bucket_name"])


# --- pseudo-labelling at scale --------------------------------------------------------------

BATCH_ROWS = 1 << 18


def pseudo_label(teacher: Teacher | CompiledTeacher, data_dir: str | Path, out_dir: str | Path,
                 pairs: pd.Index | None = None, batch_rows: int = BATCH_ROWS, workers: int = 1) -> dict:
    """Score every pair of `pairs` (doc ids, e.g. select_pairs(...).index; default every shown
    pair) and write Parquet shards part-00000.parquet, ... of (doc_id, query_id, pseudo_label),
    one per `batch_rows` pairs; the features are aggregated in `workers` processes
    (behaviour_features), the scoring uses the teacher's threads. The shards are written into
    a temporary folder that is renamed to `out_dir` only when all are written, so a failure
    leaves no half-written set (and an existing `out_dir` untouched). `pd.read_parquet(out_dir)`
    reads them back.

    Returns {"rows", "seconds", "rows_per_s"}: the throughput of scoring and writing.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows={batch_rows} must be a positive number of pairs per shard")
    features = behaviour_features(data_dir, workers)
    if pairs is not None:
        unknown = pd.Index(pairs).difference(features.index)
        if len(unknown):
            raise ValueError(f"{len(unknown)} of the pairs (e.g. doc ids {unknown[:5].tolist()}) were never shown, "
                             "so they have no behaviour features to score; select pairs from behaviour_features()")
        features = features.loc[pairs]
    start = time.perf_counter()
    with atomic_dir(Path(out_dir)) as tmp:
        for shard, lo in enumerate(range(0, len(features), batch_rows)):
            batch = features.iloc[lo:lo + batch_rows]
            table = pa.table({"doc_id": batch.index.to_numpy(), "query_id": batch["query_id"].to_numpy(),
                              "pseudo_label": teacher.predict(batch)})
            pq.write_table(table, tmp / f"part-{shard:05d}.parquet")
    seconds = time.perf_counter() - start
    return {"rows": len(features), "seconds": seconds, "rows_per_s": len(features) / seconds}
