"""The claims report: one Markdown row per claim, with what the experiments measured.

>>> print(claims_table("never-run").splitlines()[2])
| P1 | pretrain | Masking 80/10/10 ([MASK]/random/unchanged) fine-tunes better than all-[MASK] | test AUC after fine-tuning | — | — | 0 | — | — | — | not run |  |
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from relcourse.claims import (CLAIMS, Claim, ClaimResult, load_results, minimum_detectable_effect,
                             seeds_for_half_width)
from relcourse.store import write_text_atomic

# The last column holds the experiment's own words: both arms' mean metrics and the seeds,
# so a reader sees the levels, not only their difference.
# Power: the per-seed SD of the effect, and how many seeds would bring the 95% interval to ±0.02.
HEADER = ("| id | stage | claim | metric | effect | 95% CI | seeds | per-seed SD | smallest effect found 80% of the "
          "time | seeds for ±0.02 | status | arm vs baseline |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def claims_table(profile: str) -> str:
    """A Markdown table of every claim and its result on `profile`."""
    results = load_results(profile)
    rows = [_row(claim, results[claim.id]) for claim in CLAIMS]
    return "\n".join([HEADER, *rows])


def write_report(profile: str, path: Path) -> Path:
    """Write the report for `profile` to `path` (atomically: never a half-written file)."""
    text = (f"# RelCourse claims: profile `{profile}`\n\n"
            "Effect = arm - baseline, averaged over seeds; the 95% interval is Student-t over seeds. "
            "A claim holds when the interval excludes 0 in the expected direction.\n\n"
            f"{claims_table(profile)}\n")
    write_text_atomic(Path(path), text)
    return Path(path)


def _row(claim: Claim, result: ClaimResult) -> str:
    lo, hi = result.interval
    interval = "—" if math.isnan(lo) else f"[{lo:+.4f}, {hi:+.4f}]"
    effect = "—" if math.isnan(result.mean) else f"{result.mean:+.4f}"
    sd = statistics.stdev(result.effects) if len(result.effects) > 1 else math.nan
    needed = seeds_for_half_width(sd)
    detectable = minimum_detectable_effect(sd, len(result.effects))
    cells = [claim.id, claim.stage, claim.statement, claim.metric, effect, interval, str(len(result.seeds)),
             "—" if math.isnan(sd) else f"{sd:.4f}", "—" if math.isnan(detectable) else f"{detectable:.4f}",
             "—" if needed is None else str(needed), result.status, result.notes.replace("|", "/")]
    return "| " + " | ".join(cells) + " |"


LADDER_METRICS = (("auc", "test AUC"), ("pnr", "PNR"), ("ndcg@10", "NDCG@10"),
                  ("swapped_query_auc", "AUC, swapped queries"),
                  ("swapped_query_score_correlation", "score corr., real vs swapped"))


def ladder_table(results: dict) -> str:
    """Markdown tables of a `relcourse run ladder` results file: every rung and reference as
    mean ± 95% half-width over seeds (with the per-seed values), then AUC by phenomenon.

    >>> one = {"mean": 0.8, "sd": 0.01, "ci95_half_width": 0.02, "per_seed": [0.79, 0.81]}
    >>> print(ladder_table({"seeds": [0, 1], "summary": {"models": {"recipe": {"auc": one}}}}).splitlines()[2])
    | recipe | 0.800 ± 0.020 (0.790, 0.810) | — | — | — | — |
    """
    def cell(entry: dict | None) -> str:
        if not entry:
            return "—"
        seeds = ", ".join(f"{v:.3f}" for v in entry["per_seed"])
        half = entry["ci95_half_width"]
        spread = f" ± {half:.3f}" if half is not None and half == half else ""
        return f"{entry['mean']:.3f}{spread} ({seeds})"

    summary = results["summary"]
    lines = ["| model | " + " | ".join(name for _, name in LADDER_METRICS) + " |",
             "|---" * (len(LADDER_METRICS) + 1) + "|"]
    for section in ("models", "references"):
        for name, metrics in summary.get(section, {}).items():
            lines.append(f"| {name} | " + " | ".join(cell(metrics.get(key)) for key, _ in LADDER_METRICS) + " |")
    phenomena = summary.get("auc_by_phenomenon", {})
    if phenomena:
        subsets = list(next(iter(phenomena.values())))
        lines += ["", "Test AUC by phenomenon (mean over seeds):", "",
                  "| ranker | " + " | ".join(subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
        for name, by_subset in phenomena.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{by_subset[s]['mean']:.3f}" if s in by_subset else "—" for s in subsets) + " |")
    return "\n".join(lines)
