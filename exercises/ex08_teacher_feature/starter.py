"""Exercise 8: a behaviour feature for the GBDT teacher. The task is in README.md.

Write `feature` below, then check yourself with

    .venv/bin/python -m exercises.grade --exercise ex08                 # validity (the public check)
    .venv/bin/python -m exercises.ex08_teacher_feature.harness          # the teacher's AUC with your feature

Use pandas / numpy and the standard library; not relcourse or data_gen (the grader's side).

`logs` is a dict of three pandas DataFrames, the smoke world's search logs:

    logs["searches"]      one row per search
        search_id  query_id  resorted_by_newest  reformulated
        0          21        True                False          resorted: the user re-sorted by date;
        1          7         False               True           reformulated: searched again with other words
    logs["impressions"]   one row per result shown
        search_id  doc_id  position  click                      position: 1 = top; click: bool
        0          259     1         False
    logs["clicks"]        one row per clicked result
        search_id  doc_id  dwell_s  like  collect  comment  share    dwell_s: seconds on the page

`pairs` is a DataFrame with columns query_id and doc_id: every (query, document) pair shown at
least once. A doc_id belongs to one query, so doc_id identifies the pair. search_id grows with
time; the rows may come in any order. Do not rely on the values of the ids: the grader renames them.
"""
from __future__ import annotations

import pandas as pd


def feature(logs: dict, pairs: pd.DataFrame) -> list[float]:
    """One number per row of `pairs`, in the same order: your behaviour feature of that pair.

    Every value must be finite (a rate over zero events needs a prior). Computed from the logs
    only; the same logs with renamed ids and shuffled rows must give the same numbers.
    """
    raise NotImplementedError("feature: compute one behaviour statistic per pair from the logs")
