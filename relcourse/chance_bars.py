"""Bar charts of a metric measured from chance, with the sample size in every label.

A bar drawn from 0 makes an AUC of 0.55 look like most of a good model, and a bar of a
below-chance AUC look like a small success. Drawn from chance (AUC 0.5, PNR 1) instead, a bar's
length is what the scorer adds over a coin toss: better is longer, and worse than chance points
the other way. Groups of a few queries are noise; `with_counts` puts their size in the label so
a reader sees that before reading the bar.

>>> import matplotlib; matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> import pandas as pd
>>> table = pd.DataFrame({"model": [0.80, 0.45], "baseline": [0.70, 0.55]}, index=["plain", "taxonomy"])
>>> fig, ax = plt.subplots()
>>> bars_from_chance(ax, table, labels=with_counts(table.index, [25, 2]))
>>> [(float(p.get_y()), round(float(p.get_height()), 2)) for p in ax.patches[:2]]   # model: plain, taxonomy
[(0.5, 0.3), (0.5, -0.05)]
>>> [t.get_text() for t in ax.get_xticklabels()]
['plain\\n25 queries', 'taxonomy\\n2 queries']
>>> plt.close(fig)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from relcourse.plots import chance_line

CHANCE = {"auc": 0.5, "pnr": 1.0}   # a random order's AUC and PNR (NDCG's depends on the lists)


def with_counts(names, counts, unit: str = "queries") -> list[str]:
    """Labels that carry their group's size, e.g. 'taxonomy\\n2 queries'.

    >>> with_counts(["alias", "taxonomy"], [21.0, 1])
    ['alias\\n21 queries', 'taxonomy\\n1 query']
    """
    singular = unit[:-3] + "y" if unit.endswith("ies") else unit.rstrip("s")
    return [f"{name}\n{int(n)} {singular if int(n) == 1 else unit}" for name, n in zip(names, counts)]


def bars_from_chance(ax, table: pd.DataFrame | pd.Series, chance: float = CHANCE["auc"], horizontal: bool = False,
                     colors=None, labels: list[str] | None = None) -> None:
    """Grouped bars of `table` (rows: groups on the axis; columns: one bar each, in the legend)
    that start at `chance`, with a line there. `labels` replace the row names on the axis."""
    table = table.to_frame() if isinstance(table, pd.Series) else table
    width = 0.8 / len(table.columns)
    where = np.arange(len(table))
    colors = colors or [None] * len(table.columns)
    for j, (column, color) in enumerate(zip(table.columns, colors)):
        at = where - 0.4 + width * (j + 0.5)
        lengths = table[column].to_numpy(float) - chance
        if horizontal:
            ax.barh(at, lengths, height=width, left=chance, color=color, label=str(column))
        else:
            ax.bar(at, lengths, width=width, bottom=chance, color=color, label=str(column))
    names = labels if labels is not None else [str(i) for i in table.index]
    if horizontal:
        ax.set_yticks(where, names)
    else:
        ax.set_xticks(where, names)
    chance_line(ax, chance, axis="x" if horizontal else "y")
