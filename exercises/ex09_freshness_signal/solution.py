"""Exercise 9, instructor solution of the optional code part: the engaged-click rate.

Of a pair's clicks, the share that either kept the user 30 s or more or led to a like, collect,
comment or share, shrunk towards the log-wide share with 5 pseudo-clicks. It is a per-click rate,
so the ranks the pair was shown at and the title's pull (which decide whether there is a click)
cancel out; what is left is what the page did once opened: quality, and relevance.

Measured on the smoke world: alone, AUC 0.596 against the human labels; added to exercise 8's
baseline teacher, held-out AUC +0.0095 (valid +0.0074). Interactions alone per click: AUC 0.486
alone but +0.003 in the teacher — quality is not relevance, yet it helps the teacher tell them apart.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LONG_CLICK_S = 30.0
PRIOR_CLICKS = 5.0


def feature(logs: dict, pairs: pd.DataFrame) -> list[float]:
    clicks = logs["clicks"]
    acted = clicks[["like", "collect", "comment", "share"]].any(axis=1)
    engaged = ((clicks["dwell_s"] >= LONG_CLICK_S) | acted).astype(np.float64)
    p0 = float(engaged.mean()) if len(clicks) else 0.0
    per_doc = engaged.groupby(clicks["doc_id"]).agg(["sum", "size"])
    k = pairs["doc_id"].map(per_doc["sum"]).fillna(0.0).to_numpy(np.float64)
    n = pairs["doc_id"].map(per_doc["size"]).fillna(0.0).to_numpy(np.float64)
    return ((k + PRIOR_CLICKS * p0) / (n + PRIOR_CLICKS)).tolist()
