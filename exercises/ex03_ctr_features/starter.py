"""Exercise 3: smoothed and position-aware click-through rates. The task is in README.md.

Fill in the three functions below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex03

Use pandas / numpy; not relcourse.features (that is the answer key).

Every function takes `impressions`, a pandas DataFrame with one row per document shown in a search:

    search_id  query_id  doc_id  position  click
    0          7         70      1         True      position: the rank it was shown at, 1 = top
    0          7         71      2         False     click: bool (or 0/1)
    ...

A doc_id belongs to exactly one query, so doc_id identifies the (query, document) pair.
Do not modify `impressions`.
"""
from __future__ import annotations

import pandas as pd


def position_ctr(impressions: pd.DataFrame) -> pd.Series:
    """Click prior of each rank: clicks at rank k / impressions at rank k, over the whole log.

    Returns a float Series indexed by position (each rank that occurs in the log).
    """
    raise NotImplementedError("position_ctr: group by position")


def smoothed_ctr(impressions: pd.DataFrame, prior_weight: float = 20.0) -> pd.Series:
    """CTR of each document, shrunk towards the log-wide CTR:

        (clicks + prior_weight * p0) / (impressions + prior_weight)

    where clicks and impressions are the document's, and p0 = all clicks / all impressions of
    the log. Returns a float Series indexed by doc_id.
    """
    raise NotImplementedError("smoothed_ctr: count each document's clicks and impressions")


def coec(impressions: pd.DataFrame, prior: float = 2.0) -> pd.Series:
    """Clicks over expected clicks, position-aware:

        expected_clicks(d) = sum over d's impressions of position_ctr[the position of that impression]
        coec(d)            = (clicks(d) + prior) / (expected_clicks(d) + prior)

    Above 1: clicked more than an average document shown at the same ranks. Returns a float
    Series indexed by doc_id.
    """
    raise NotImplementedError("coec: expected clicks from the click prior of each rank")
