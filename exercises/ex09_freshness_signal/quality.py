"""Exercise 9, optional part (3 points): the content-quality signal your answer proposes, as code.

Same interface and rules as exercise 8 (read its starter's docstring for the three log tables):
one finite number per row of `pairs`, computed from the logged behaviour only, the same numbers
when the ids are renamed and the rows shuffled. Check it with

    .venv/bin/python -m exercises.ex09_freshness_signal.autocheck

which reports its AUC alone against the human labels and what it adds to exercise 8's teacher.
Use pandas / numpy and the standard library; not relcourse or data_gen.
"""
from __future__ import annotations

import pandas as pd


def feature(logs: dict, pairs: pd.DataFrame) -> list[float]:
    """Your quality signal of each pair, one number per row of `pairs`, in the same order."""
    raise NotImplementedError("feature: the quality signal of section 1 of your answer, from the logs")
