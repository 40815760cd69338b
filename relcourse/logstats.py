"""Summary statistics of search logs, the way an analyst first looks at them.

>>> import pandas as pd
>>> imp = pd.DataFrame({"search_id": [0, 0, 1, 1], "position": [1, 2, 1, 2],
...                     "click": [True, False, False, False], "dwell_s": [40.0, 0, 0, 0]})
>>> s = log_summary(imp)
>>> s["ctr"], s["clicks_per_search"], s["no_click_share"], s["long_click_share"]
(0.25, 0.5, 0.5, 1.0)
"""
from __future__ import annotations

import pandas as pd

LONG_CLICK_S = 30.0
# data_gen/README.md §3: what a real engine's logs look like; the generator is checked against these.
REALISM_RANGES = {"ctr": (0.05, 0.12), "clicks_per_search": (0.5, 1.0), "no_click_share": (0.4, 0.65)}


def log_summary(impressions: pd.DataFrame) -> dict[str, float]:
    """Per-impression CTR, clicks per search, share of searches without a click, and the share
    of clicks that are long (dwell >= 30 s)."""
    clicks_per_search = impressions.groupby("search_id").click.sum()
    clicked = impressions[impressions.click]
    return {"ctr": float(impressions.click.mean()),
            "clicks_per_search": float(clicks_per_search.mean()),
            "no_click_share": float((clicks_per_search == 0).mean()),
            "long_click_share": float((clicked.dwell_s >= LONG_CLICK_S).mean()) if len(clicked) else float("nan")}


def ctr_by_position(impressions: pd.DataFrame) -> pd.Series:
    """Click-through rate at each rank: position bias and relevance together (not bias alone)."""
    return impressions.groupby("position").click.mean()
