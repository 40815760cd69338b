"""The claims report: one Markdown row per claim, with what the experiments measured.

>>> print(claims_table("never-run").splitlines()[2])
| P1 | pretrain | Masking 80/10/10 ([MASK]/random/unchanged) fine-tunes better than all-[MASK] | test AUC after fine-tuning | — | — | 0 | not run |  |
"""
from __future__ import annotations

import math
from pathlib import Path

from relcourse.claims import CLAIMS, Claim, ClaimResult, load_results
from relcourse.store import write_text_atomic

# The last column holds the experiment's own words: both arms' mean metrics and the seeds,
# so a reader sees the levels, not only their difference.
HEADER = ("| id | stage | claim | metric | effect | 95% CI | seeds | status | arm vs baseline |\n"
          "|---|---|---|---|---|---|---|---|---|")


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
    cells = [claim.id, claim.stage, claim.statement, claim.metric, effect, interval, str(len(result.seeds)), result.status,
             result.notes.replace("|", "/")]
    return "| " + " | ".join(cells) + " |"
