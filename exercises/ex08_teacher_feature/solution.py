"""Exercise 8, instructor solution: satisfied clicks over expected clicks (a "satisfaction COEC").

A click says the title attracted; a long dwell after it, in a search the user did not have to
reformulate, says the page served the need. Counting those satisfied clicks per impression would
reward rank 1 for being rank 1, so they are compared with what an average result would have got
at the same ranks: the expected clicks of COEC, scaled by the log-wide share of clicks that
satisfy. Both sides get the same prior (one satisfied click), so a pair seen a few times stays
near 1, the neutral value.

Measured on the smoke world (the harness, 10 teacher seeds): held-out AUC 0.8938 -> 0.9029 (+0.0092),
valid 0.9063 -> 0.9092; the feature alone ranks the labelled pairs with AUC 0.658.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LONG_CLICK_S = 30.0
PRIOR = 1.0        # pseudo satisfied clicks on both sides of the ratio


def feature(logs: dict, pairs: pd.DataFrame) -> list[float]:
    searches, impressions, clicks = logs["searches"], logs["impressions"], logs["clicks"]

    # expected clicks: the click prior of each rank, summed over the pair's impressions
    rank_ctr = impressions.groupby("position")["click"].mean()
    expected = impressions["position"].map(rank_ctr).groupby(impressions["doc_id"]).sum()

    # satisfied clicks: long dwell, and the search was not reformulated
    reformulated = clicks["search_id"].map(searches.set_index("search_id")["reformulated"]).astype(bool)
    satisfied = (clicks["dwell_s"] >= LONG_CLICK_S) & ~reformulated
    n_satisfied = satisfied.groupby(clicks["doc_id"]).sum()
    share = satisfied.sum() / max(len(clicks), 1)        # of all clicks, the share that satisfies

    doc = pairs["doc_id"]
    sat = doc.map(n_satisfied).fillna(0.0).to_numpy(np.float64)
    exp = doc.map(expected).fillna(0.0).to_numpy(np.float64)
    return ((sat + PRIOR) / (exp * share + PRIOR)).tolist()
