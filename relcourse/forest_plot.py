"""Forest plots of the claims: one PNG per stage, drawn from the rows of a report's results.json.

Each claim is a row: a dot at its mean effect (arm - baseline), a bar over its 95% interval, a
vertical line at 0, and a light band from 0 towards the side the claim expects (right for
direction +1, left for -1), so "holds" reads as "the bar lies inside the band", and each seed's
own effect as a small grey dot below the bar. A claim measured on one seed has no interval: an
open dot. Effects in different units (AUC, PNR, log docs/s) get panels of their own, each with
its own scale: on one axis a PNR effect of 0.7 or a speed-up of 2 would shrink every AUC
interval to a dot. The notebooks draw a chapter's rows with the same `draw_claims`
(relcourse.takeaways.effects_plot).

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

from .claims import short_metric

COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#6e7781"}
LEGEND = ("shaded: the side the claim expects · green: holds · grey: inconclusive · red: does not hold · "
          "open dot: one seed · small dots: each seed")


def forest_png(rows: list[dict], title: str = "") -> bytes:
    """The forest plot of these claim rows (those with a mean), as PNG bytes: one panel per unit."""
    # A bare Figure, not pyplot: it draws with Agg (reproducible bytes) without switching the
    # backend of the process, so a notebook's later inline figures still appear.
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["mean"] is not None]
    if not rows:
        raise ValueError("no claim in these rows has a result to plot")
    panels: dict[str, list[dict]] = {}
    for r in rows:
        panels.setdefault(unit(r["metric"]), []).append(r)
    fig = Figure(figsize=(9, 0.4 * len(rows) + 0.8 * len(panels) + 1.0), dpi=100)
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(p) + 1.2 for p in panels.values()]})[:, 0]
    for ax, (name, panel) in zip(axes, panels.items()):
        draw_claims(ax, panel)
        ax.set_xlabel(f"{name}: arm − baseline, 95% interval over seeds", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.005, LEGEND, fontsize=7, color="#444444")
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def unit(metric: str) -> str:
    """The unit a claim's effect is in, read from its metric's description.

    >>> unit("student test AUC"), unit("test PNR"), unit("log(docs/s) on this CPU; test AUC beside it")
    ('AUC', 'PNR', 'log(docs/s)')
    """
    return "log(docs/s)" if metric.startswith("log(docs/s)") else "PNR" if "PNR" in metric else "AUC"


def draw_claims(ax, rows: list[dict]) -> None:
    """One panel: the rows (report rows with a mean, of one unit) top to bottom, on a symmetric
    scale around 0."""
    ends = [abs(x) for r in rows for x in [r["mean"], *(r["interval"] if r["interval"][0] is not None else []),
                                           *(r.get("effects") or [])]]
    reach = 1.15 * max(ends + [1e-3])
    for y, r in enumerate(reversed(rows)):
        ax.axhspan(y - 0.4, y + 0.4, xmin=0.5 if r["direction"] > 0 else 0, xmax=1 if r["direction"] > 0 else 0.5,
                   color="#dafbe1", zorder=0)
        colour = COLOURS.get(r["status"], "black")
        lo, hi = r["interval"]
        if lo is not None:
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2, zorder=2)
        ax.plot([r["mean"]], [y], "o", color=colour, markerfacecolor=colour if lo is not None else "white", zorder=3)
        seeds = r.get("effects") or []
        ax.plot(seeds, [y - 0.25] * len(seeds), ".", color="#8c959f", markersize=4, zorder=2)
    ax.set_yticks(range(len(rows)), [_label(r) for r in reversed(rows)], fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8, zorder=1)
    ax.set_xlim(-reach, reach)   # symmetric: the bands above end at the axes' middle, x = 0
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.tick_params(axis="x", labelsize=8)


def _label(row: dict) -> str:
    """'D5 · student test AUC', the metric up to its first detail, then the world it was
    measured on when known.

    >>> _label({"id": "D12", "metric": "log(docs/s) on this CPU (4,096 test pairs); test AUC beside it", "world": 3})
    'D12 · log(docs/s) on this CPU (world 3)'
    """
    world = f" (world {row['world']})" if row.get("world") is not None else ""
    return f"{row['id']} · {short_metric(row['metric'])}{world}"
