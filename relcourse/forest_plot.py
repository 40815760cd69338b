"""Forest plots of the claims: one PNG per stage, drawn from the rows of a report's results.json.

Each claim is a row: a dot at its mean effect (arm - baseline), a bar over its 95% interval, a
vertical line at 0, and a light band from 0 towards the side the claim expects (right for
direction +1, left for -1), so "holds" reads as "the bar lies inside the band". A claim measured
on one seed has no interval: an open dot, and "1 seed" in its label.

The PNG is deterministic: Agg renders the same pixels from the same numbers, and the file
carries no 'Software' (matplotlib version) or date metadata, so regenerating a report gives
identical bytes on the same matplotlib and FreeType versions (another version may move a
pixel of anti-aliasing, which is why tests compare two renders here, not a committed file).

>>> row = {"id": "D5", "metric": "student test AUC", "mean": 0.024, "interval": [0.021, 0.027],
...        "seeds": [0, 1, 2], "direction": 1, "status": "holds"}
>>> forest_png([row])[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""
from __future__ import annotations

import io

COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#6e7781"}


def forest_png(rows: list[dict], title: str = "") -> bytes:
    """The forest plot of these claim rows (those with a mean), as PNG bytes."""
    # A bare Figure, not pyplot: it draws with Agg (reproducible bytes) without switching the
    # backend of the process, so a notebook's later inline figures still appear.
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["mean"] is not None]
    if not rows:
        raise ValueError("no claim in these rows has a result to plot")
    fig = Figure(figsize=(7, 0.45 * len(rows) + 1.2), dpi=100)
    ax = fig.add_subplot()
    ends = [abs(x) for r in rows for x in [r["mean"], *(r["interval"] if r["interval"][0] is not None else [])]]
    reach = 1.15 * max(ends + [1e-3])
    for y, r in enumerate(reversed(rows)):
        ax.axhspan(y - 0.4, y + 0.4, xmin=0.5 if r["direction"] > 0 else 0, xmax=1 if r["direction"] > 0 else 0.5,
                   color="#dafbe1", zorder=0)
        colour = COLOURS.get(r["status"], "black")
        lo, hi = r["interval"]
        if lo is not None:
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2, zorder=2)
        ax.plot([r["mean"]], [y], "o", color=colour, markerfacecolor=colour if lo is not None else "white", zorder=3)
    ax.set_yticks(range(len(rows)), [_label(r) for r in reversed(rows)], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8, zorder=1)
    ax.set_xlim(-reach, reach)   # symmetric: the bands above end at the axes' middle, x = 0
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("effect: arm − baseline, 95% interval over seeds; shaded: the side the claim expects\n"
                  "green: holds · grey: inconclusive · red: does not hold · open dot: one seed", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _label(row: dict) -> str:
    """'D5 · student test AUC', then the world it was measured on when known."""
    world = f" (world {row['world']})" if row.get("world") is not None else ""
    return f"{row['id']} · {row['metric']}{world}"
