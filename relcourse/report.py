"""The claims report: one Markdown row per claim, with what the experiments measured.

>>> print(claims_table("never-run").splitlines()[2])
| P1 | pretrain | Masking 80/10/10 ([MASK]/random/unchanged) fine-tunes better than all-[MASK] | test AUC after fine-tuning | — | — | 0 | — | — | not run |  |
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from relcourse.claims import CLAIMS, Claim, ClaimResult, load_results, seeds_for_half_width
from relcourse.store import write_text_atomic

# The last column holds the experiment's own words: both arms' mean metrics and the seeds,
# so a reader sees the levels, not only their difference.
# Power: the per-seed SD of the effect, and how many seeds would bring the 95% interval to ±0.02.
HEADER = ("| id | stage | claim | metric | effect | 95% CI | seeds | per-seed SD | seeds for ±0.02 | status "
          "| arm vs baseline |\n|---|---|---|---|---|---|---|---|---|---|---|")


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
    cells = [claim.id, claim.stage, claim.statement, claim.metric, effect, interval, str(len(result.seeds)),
             "—" if math.isnan(sd) else f"{sd:.4f}", "—" if needed is None else str(needed), result.status,
             result.notes.replace("|", "/")]
    return "| " + " | ".join(cells) + " |"
