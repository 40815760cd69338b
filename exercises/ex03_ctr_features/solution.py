"""Exercise 3, instructor solution: three groupbys.

The course computes the same features at log scale in relcourse.features (summing counts shard
by shard with numpy bincounts, so memory stays bounded); the formulas are the same.
"""
from __future__ import annotations

import pandas as pd


def position_ctr(impressions: pd.DataFrame) -> pd.Series:
    """clicks at rank k / impressions at rank k, indexed by position."""
    clicks = impressions["click"].astype(float)
    return clicks.groupby(impressions["position"]).mean()


def smoothed_ctr(impressions: pd.DataFrame, prior_weight: float = 20.0) -> pd.Series:
    """(clicks + m p0) / (impressions + m) per doc_id, p0 the log-wide CTR."""
    clicks = impressions["click"].astype(float)
    p0 = clicks.mean()
    per_doc = clicks.groupby(impressions["doc_id"]).agg(["sum", "size"])
    return (per_doc["sum"] + prior_weight * p0) / (per_doc["size"] + prior_weight)


def coec(impressions: pd.DataFrame, prior: float = 2.0) -> pd.Series:
    """(clicks + prior) / (expected clicks + prior) per doc_id."""
    expected = impressions["position"].map(position_ctr(impressions))   # each impression's expected click
    per_doc = pd.DataFrame({"clicks": impressions["click"].astype(float), "expected": expected}) \
        .groupby(impressions["doc_id"]).sum()
    return (per_doc["clicks"] + prior) / (per_doc["expected"] + prior)
