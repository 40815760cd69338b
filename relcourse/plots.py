"""Plots the notebooks share, drawn so that an AUC is always read against chance.

An AUC of 0.5 is a coin toss, so a bar from 0 (or from wherever the smallest value happens to be)
shows nothing a reader can judge by. These helpers put AUCs on a dot plot with a chance line,
and draw a claim's two arms on one row, so the eye reads the gap between them.

>>> import matplotlib; matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> fig, ax = plt.subplots()
>>> arm_pairs(ax, [ArmPair("P2", "SOP", 0.61, "NSP", 0.58), ArmPair("P6", "span", 0.60, "single-token", 0.61,
...                                                                  {"static": 0.59})], reference=0.61)
>>> lo, hi = ax.get_xlim(); bool(lo < CHANCE_AUC < hi)    # chance is always in view
True
>>> [t.get_text() for t in ax.get_yticklabels()]
['P2: SOP ●\\nvs NSP ○', 'P6: span ●\\nvs single-token ○']
>>> plt.close(fig)
"""
from __future__ import annotations

from dataclasses import dataclass, field

CHANCE_AUC = 0.5
ARM_COLOUR, BASELINE_COLOUR, EXTRA_COLOUR = "#1f77b4", "#d62728", "#7f7f7f"


def chance_line(ax, value: float = CHANCE_AUC, axis: str = "x", label: str = "chance") -> None:
    """A grey line at chance across an AUC axis (`axis` 'x' or 'y': the axis the AUC is on)."""
    draw = ax.axvline if axis == "x" else ax.axhline
    draw(value, color="black", lw=1, alpha=0.6, label=f"{label} ({value})")


@dataclass(frozen=True)
class ArmPair:
    """One claim's row: the arm the sources recommend, its baseline, and any extra arms shown beside."""
    claim: str
    arm: str
    arm_value: float
    baseline: str
    baseline_value: float
    extras: dict[str, float] = field(default_factory=dict)


def arm_pairs(ax, rows: list[ArmPair], reference: float | None = None, reference_label: str = "recipe",
              chance: float = CHANCE_AUC, xlabel: str = "test AUC") -> None:
    """A dot plot, one row per claim: the arm filled (●), the baseline open (○), a line between them,
    extra arms as grey diamonds with their names; a chance line, and `reference` (the run several
    rows share, the recipe) as a dashed line, so it is drawn once and recognised in every row."""
    for y, row in enumerate(rows):
        ax.plot([row.arm_value, row.baseline_value], [y, y], color="#999999", lw=2, zorder=1)
        ax.scatter(row.arm_value, y, s=70, color=ARM_COLOUR, zorder=3)
        ax.scatter(row.baseline_value, y, s=70, facecolor="white", edgecolor=BASELINE_COLOUR, lw=2, zorder=3)
        for name, value in row.extras.items():
            ax.scatter(value, y, s=45, marker="D", color=EXTRA_COLOUR, zorder=2)
            ax.annotate(name, (value, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8,
                        color=EXTRA_COLOUR)
    ax.set_yticks(range(len(rows)), [f"{r.claim}: {r.arm} ●\nvs {r.baseline} ○" for r in rows])
    ax.set_ylim(len(rows) - 0.4, -0.6)    # the first claim on top, as in a table
    chance_line(ax, chance)
    if reference is not None:
        ax.axvline(reference, color=ARM_COLOUR, ls="--", lw=1, alpha=0.7, label=f"{reference_label} ({reference:.3f})")
    values = [v for r in rows for v in (r.arm_value, r.baseline_value, *r.extras.values())]
    margin = 0.03
    ax.set_xlim(min(chance, *values) - margin, max(chance, *values) + margin)
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", fontsize=8)
