"""The learning ladder: the course's models on one test set, beside what a model must beat.

A relevance model's AUC means little alone. This module puts a fine-tuned cross-encoder beside
three references, all trained on the same human labels and judged on the same test pairs:

- **BM25** of the query against title + body (no training at all);
- **LexicalRanker**: LightGBM LambdaRank over 14 overlap features (relcourse.lexical), and the
  same ranker with the cross-encoder's score as one more feature (**stacked**): how relevance
  models are used in production ranking;
- **the text ceiling**: a logistic regression on hashed query words, document words, every
  (query word, document word) cross and the words they share. It reads exactly the text the
  cross-encoder reads, and can represent "this query word goes with that document word" for
  every pair it has seen, so it estimates how much of relevance the labels and the text decide.
  A cross-encoder below it has not learned what the labels teach; the gap is the figure that
  matters, not the AUC alone.

>>> frame = text_features(["red kettle"], ["a red lamp"])
>>> sorted(frame[0])
['d:a', 'd:lamp', 'd:red', 'm:red', 'n:1', 'q:kettle', 'q:red', 'x:kettle|a', 'x:kettle|lamp', 'x:kettle|red', 'x:red|a', 'x:red|lamp', 'x:red|red']
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression

from .data import pair_texts
from .finetune import human_labels, labelled_splits, score
from .lexical import LexicalRanker, pair_features, tokenise, with_model_score
from .metrics import RELEVANT_TIER
from .models import load_model
from .pretrain import MODEL_DIR, tokenizer_of
from .store import ensure_data

HASH_FEATURES = 2 ** 20
CEILING_C = 1.0          # inverse L2 strength of the text ceiling's logistic regression


def text_features(queries: list[str], documents: list[str]) -> list[list[str]]:
    """Per pair, the string features of the text ceiling: q:word, d:word, x:query word|document
    word, m:shared word, and n:number of shared query words."""
    rows = []
    for query, document in zip(queries, documents):
        q, d = sorted(set(tokenise(query))), sorted(set(tokenise(document)))
        shared = [w for w in q if w in set(d)]
        rows.append([f"q:{w}" for w in q] + [f"d:{w}" for w in d] + [f"x:{a}|{b}" for a in q for b in d]
                    + [f"m:{w}" for w in shared] + [f"n:{len(shared)}"])
    return rows


def text_ceiling_scores(data_dir: str | Path, train_labels: pd.DataFrame, doc_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fit the text ceiling on `train_labels` (doc_id, label; relevant = tier >= 2) and score `doc_ids`."""
    hasher = FeatureHasher(HASH_FEATURES, input_type="string", alternate_sign=False)

    def matrix(ids):
        texts = pair_texts(data_dir, np.asarray(ids))
        return hasher.transform(text_features(texts["query"].tolist(), texts["document"].tolist()))

    model = LogisticRegression(C=CEILING_C, max_iter=2_000, random_state=seed)
    model.fit(matrix(train_labels["doc_id"]), (train_labels["label"] >= RELEVANT_TIER).to_numpy())
    return model.predict_proba(matrix(doc_ids))[:, 1]


def reference_scores(run_dir: str | Path, profile, seed: int) -> pd.DataFrame:
    """Scores of the test pairs of a fine-tuned arm's run (its test_scores.parquet) by BM25, the
    LexicalRanker, the text ceiling, the cross-encoder itself and the LexicalRanker with the
    cross-encoder's score stacked; one column each, plus doc_id, query_id, label, bucket_name.

    The stacked ranker learns how far to trust the model's score from the training pairs, where
    the model has seen the labels; a production system would fit it on labels the model never
    saw, so read its gain as an upper estimate."""
    run_dir = Path(run_dir)
    data_dir = ensure_data(profile, seed, progress=False)
    test = pd.read_parquet(run_dir / "test_scores.parquet")
    train, valid = human_labels(data_dir, "train"), human_labels(data_dir, "valid")
    features = pair_features(data_dir).drop(columns="query_id")

    model = load_model(run_dir / MODEL_DIR)
    splits = labelled_splits(data_dir, tokenizer_of(profile, seed, progress=False), profile)
    model_score = pd.concat([pd.Series(score(model, s), index=s.doc_ids) for s in (splits.train, splits.valid)]
                            + [test.set_index("doc_id")["score"]])

    def ranker(x: pd.DataFrame) -> np.ndarray:
        fitted = LexicalRanker(num_threads=1, seed=seed).fit(
            x.loc[train.doc_id], train.label, train.query_id, valid=(x.loc[valid.doc_id], valid.label, valid.query_id))
        return fitted.predict(x.loc[test.doc_id])

    labelled = features.loc[model_score.index]
    test_x = features.loc[test.doc_id]
    return test.assign(**{
        "BM25": (test_x.bm25_title + test_x.bm25_body).to_numpy(),
        "LexicalRanker": ranker(features),
        "text ceiling": text_ceiling_scores(data_dir, train, test.doc_id.to_numpy(), seed),
        "cross-encoder": test.score.to_numpy(),
        "LexicalRanker + cross-encoder": ranker(with_model_score(labelled, model_score.loc[labelled.index]))})
