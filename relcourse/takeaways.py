"""A notebook's conclusions, written from the committed report so that text and numbers cannot drift.

A chapter ends with what the sources claim and what this kit measured. Typing the measured numbers
into Markdown would let them go stale the next time a claim is re-run, so a notebook calls
`takeaway("T1")` instead: the sentence is built from `reports/<profile>/results.json` (written by
`python -m relcourse report --profile P` and committed), the same document REPORT.md is rendered
from. What a claim has not been measured on yet is said as plainly as what it has.

>>> print(takeaway("D1", results={"profile": "laptop", "claims": [{
...     "id": "D1", "statement": "A bigger cross-encoder is more accurate", "source_figure": "+2% AUC, 48 vs 12 layers",
...     "metric": "test AUC", "arm": "teacher-size model", "baseline": "student-size model", "status": "holds",
...     "mean": 0.0553, "interval": [0.0086, 0.1020], "seeds": [0, 1, 2], "world": 2}]}).text)
**D1**: the sources claim *a bigger cross-encoder is more accurate* (their figure: +2% AUC, 48 vs 12 layers). We measured on `laptop` (world v2, seeds 0, 1, 2): (teacher-size model) minus (student-size model), effect on test AUC: **+0.055**, 95% interval [+0.009, +0.102]: **holds**.

A claim not measured yet says so, and says how to measure it (an acronym keeps its capitals):

>>> print(takeaway("P2", results={"profile": "laptop", "claims": [{
...     "id": "P2", "statement": "SOP is a harder task than NSP", "status": "not run", "mean": None}]}).text)
**P2**: the sources claim *SOP is a harder task than NSP*. Not yet measured on `laptop` with the current world and recipe: `python -m relcourse run claims --claim P2 --profile laptop` measures it, `python -m relcourse report --profile laptop` reports it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from relcourse.claims import design_text, entry_key, set_options, short_metric

DEFAULT_PROFILE = "laptop"   # the profile whose committed report the course quotes
RECIPE_RANKER = "cross-encoder"   # the recipe's fine-tuned model among a ladder's rankers


@dataclass(frozen=True)
class Takeaway:
    """Markdown a notebook displays (Jupyter calls `_repr_markdown_`); `text` is the same string."""
    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def report_path(profile: str) -> Path:
    """Where the committed report of `profile` lives ($RELCOURSE_REPORTS moves the folder, for tests)."""
    from relcourse.report import reports_root
    return reports_root() / profile / "results.json"


def committed_report(profile: str = DEFAULT_PROFILE) -> dict:
    """The committed report document of `profile`, read once per path."""
    return _read(str(report_path(profile)), profile)


@lru_cache(maxsize=None)
def _read(path: str, profile: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing; regenerate it with `python -m relcourse report --profile {profile}`")
    return json.loads(Path(path).read_text())


def _row(results: dict, claim_id: str, design: dict | None = None) -> dict:
    """A claim's row, or with `design` its variant's (a 'not run' copy of the claim's row when the
    report has none)."""
    rows = {r["id"]: r for r in results["claims"]}
    if claim_id not in rows:
        raise KeyError(f"no claim {claim_id!r} in the {results['profile']} report; claims: {', '.join(rows)}")
    if not design:
        return rows[claim_id]
    variants = {r["key"]: r for r in results.get("variants", [])}
    return variants.get(entry_key(claim_id, design), {**rows[claim_id], "status": "not run", "mean": None})


def _sentence_case(statement: str) -> str:
    """'A bigger model' -> 'a bigger model', but 'SOP is' stays 'SOP is'."""
    if len(statement) > 1 and statement[1].isupper():
        return statement
    return statement[:1].lower() + statement[1:]


def takeaway(claim_id: str, profile: str = DEFAULT_PROFILE, results: dict | None = None,
             design: dict | None = None) -> Takeaway:
    """'The sources claim X; we measured Y' for one claim, from the committed report of `profile`
    (or from `results`, a report document, for tests); with `design`, for the variant of the claim
    run with those settings changed (relcourse.claims.entry_key)."""
    results = results if results is not None else committed_report(profile)
    row = _row(results, claim_id, design)
    figure = f" (their figure: {row['source_figure']})" if row.get("source_figure") else ""
    said = f"**{claim_id}**: the sources claim *{_sentence_case(row['statement'])}*{figure}."
    where = f"`{results['profile']}`" + (f" with `{design_text(design)}`" if design else "")
    if row["status"] == "not run" or row.get("mean") is None:
        from relcourse.experiments import CLAIM_ARMS, MEASURED_CLAIMS   # heavy (torch): only when needed
        if claim_id not in CLAIM_ARMS and claim_id not in MEASURED_CLAIMS:
            return Takeaway(f"{said} Not measured: the kit has no experiment for it yet.")
        return Takeaway(f"{said} Not yet measured on {where} with the current world and recipe: "
                        f"`python -m relcourse run claims --claim {claim_id} --profile {results['profile']}{set_options(design or {})}` "
                        f"measures it, `python -m relcourse report --profile {results['profile']}` reports it.")
    earlier = (f" That was an earlier design of the claim; its current arms are not yet measured on {where}."
               if row.get("earlier_design") else "")
    older = (f" That was on an earlier recipe: the {', '.join(row['recipe_changed'])} settings have changed since, "
             "so it is due to be re-run." if row.get("recipe_changed") else "")
    return Takeaway(f"{said} We measured on {where} ({_measured_on(row)}): ({row['arm']}) minus ({row['baseline']}), "
                    f"effect on {short_metric(row['metric'])}: {_result(row)}." + earlier + older)


def _measured_on(row: dict) -> str:
    """'world v3, seeds 0, 1, 2'."""
    world = f"world v{row['world']}, " if row.get("world") else ""
    return f"{world}seeds {', '.join(str(s) for s in row['seeds'])}"


def _result(row: dict) -> str:
    """'**+0.055**, 95% interval [+0.009, +0.102]: **holds**'."""
    low, high = row["interval"]
    interval = f", 95% interval [{low:+.3f}, {high:+.3f}]" if low is not None else " (one seed: no interval)"
    return f"**{_effect(row['mean'])}**{interval}: **{row['status']}**"


def variant_takeaways(claim_id: str, profile: str = DEFAULT_PROFILE, results: dict | None = None) -> Takeaway:
    """Every variant of a claim's design the report holds (runs with settings changed beyond the
    claim's arms): a line naming the claim's arms and metric, then each variant's settings and
    result as a Markdown list; says so when there is none."""
    results = results if results is not None else committed_report(profile)
    claim = _row(results, claim_id)   # a clear error for an unknown claim
    variants = [r for r in results.get("variants", []) if r["id"] == claim_id]
    if not variants:
        return Takeaway(f"The `{results['profile']}` report holds no variant of {claim_id}'s design.")
    lines = [f"**{claim_id}** on `{results['profile']}`, ({claim['arm']}) minus ({claim['baseline']}), effect on "
             f"{short_metric(claim['metric'])}, in variants of its design:"]
    lines += [f"- with `{design_text(r['design'])}` ({_measured_on(r)}): {_result(r)}" for r in variants]
    return Takeaway("\n".join(lines))


def _effect(mean: float) -> str:
    """'+0.119'; an effect too small for three decimals keeps its sign and size: '-0.0002', not '-0.000'.

    >>> _effect(0.1191), _effect(-0.0002), _effect(0.0)
    ('+0.119', '-0.0002', '+0.000')
    """
    return f"{mean:+.4f}" if 0 < abs(mean) < 0.0005 else f"{mean:+.3f}"


def takeaways(*claim_ids: str, profile: str = DEFAULT_PROFILE, results: dict | None = None) -> Takeaway:
    """Several claims as one Markdown list (a chapter's conclusion)."""
    results = results if results is not None else committed_report(profile)
    return Takeaway("\n".join(f"- {takeaway(c, profile, results).text}" for c in claim_ids))


def effects_plot(*claim_ids: str, profile: str = DEFAULT_PROFILE, results: dict | None = None, ax=None):
    """The same claims (or probes) as `takeaways`, as a picture: the report's forest plot of just
    these rows (relcourse.forest_plot.draw_claims: the mean and its 95% interval coloured by the
    verdict, each seed's effect as a small dot). They must share a unit (AUC, PNR or log docs/s).

    >>> import matplotlib; matplotlib.use("Agg")
    >>> row = {"id": "D7", "metric": "student test AUC", "effects": [0.2, 0.22], "mean": 0.21,
    ...        "interval": [0.08, 0.34], "status": "holds", "direction": 1}
    >>> effects_plot("D7", results={"profile": "laptop", "claims": [row], "probes": []}).get_xlabel()
    'AUC: arm − baseline, 95% interval over seeds (laptop)'
    """
    import matplotlib.pyplot as plt
    from relcourse.forest_plot import LEGEND, draw_claims, unit

    results = results if results is not None else committed_report(profile)
    rows = {r["id"]: r for r in results["claims"] + results.get("probes", [])}
    missing = [c for c in claim_ids if c not in rows]
    if missing:
        raise KeyError(f"no claim or probe {', '.join(missing)} in the {results['profile']} report; "
                       f"regenerate it with `python -m relcourse report --profile {results['profile']}`")
    chosen = [rows[c] for c in claim_ids if rows[c]["mean"] is not None]
    units = sorted({unit(r["metric"]) for r in chosen})
    if len(units) != 1:
        what = f"effects in different units ({', '.join(units)})" if units else "no result"
        raise ValueError(f"{', '.join(claim_ids)} have {what} to draw on one axis; "
                         "draw each unit's measured claims in a plot of their own")
    ax = ax or plt.subplots(figsize=(8, 0.45 * len(chosen) + 1.3))[1]
    draw_claims(ax, chosen)
    ax.set_xlabel(f"{units[0]}: arm − baseline, 95% interval over seeds ({results['profile']})")
    ax.set_title(LEGEND, fontsize=7, color="#444444")
    return ax


def status_table(profile: str = DEFAULT_PROFILE, results: dict | None = None) -> Takeaway:
    """How many claims the report finds holding, not holding, inconclusive or not run, with the
    claims' ids by stage and status (the table REPORT.md opens with).

    >>> print(status_table(results={"profile": "laptop", "claims": [
    ...     {"id": "D1", "stage": "distill", "status": "holds"},
    ...     {"id": "D3", "stage": "distill", "status": "not run"}]}).text.splitlines()[0])
    The `laptop` report: **2 claims**: 1 holds, 0 does not hold, 0 inconclusive, 1 not run.
    """
    from relcourse.claims import STATUSES
    from relcourse.report_markdown import summary_table
    results = results if results is not None else committed_report(profile)
    rows = results["claims"]
    counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in STATUSES)
    return Takeaway(f"The `{results['profile']}` report: **{len(rows)} claims**: {counts}.\n\n{summary_table(results)}")


def _last_ladder(results: dict) -> dict | None:
    return results["ladders"][-1] if results.get("ladders") else None


def _ladder_where(results: dict, ladder: dict) -> str:
    """'`laptop` (world v3, seeds 0, 1, 2)': the world version from the report input the ladder came from."""
    world = next((i.get("ladder_world") for i in results.get("inputs", []) if i.get("label") == ladder.get("from")), None)
    seeds = ", ".join(str(s) for s in ladder["seeds"])
    return f"`{results['profile']}` ({f'world v{world}, ' if world else ''}seeds {seeds})"


def _no_ladder(profile: str) -> Takeaway:
    return Takeaway(f"No learning ladder in the `{profile}` report yet: "
                    f"`python -m relcourse run ladder --profile {profile} --out results/{profile}.json`.")


def ladder_takeaway(profile: str = DEFAULT_PROFILE, results: dict | None = None) -> Takeaway:
    """The recipe's model against the course's targets, from the last learning ladder of the report."""
    results = results if results is not None else committed_report(profile)
    if (ladder := _last_ladder(results)) is None:
        return _no_ladder(results["profile"])
    lines = [f"On {_ladder_where(results, ladder)}, the recipe's fine-tuned cross-encoder against the course's targets:"]
    for t in ladder["targets"]:
        per_seed = " / ".join(f"{v:.3f}" for v in t["per_seed"])
        lines.append(f"- {t['what']}: **{t['mean']:.3f}** (per seed {per_seed}); target {t['op']} {t['threshold']}: "
                     f"**{'met' if t['met'] else 'not met'}**")
    return Takeaway("\n".join(lines))


def phenomenon_takeaway(phenomenon: str, ranker: str = RECIPE_RANKER, profile: str = DEFAULT_PROFILE,
                        results: dict | None = None) -> Takeaway:
    """One ranker's test AUC on one phenomenon group of queries, from the last learning ladder.

    >>> ladder = {"seeds": [0, 1], "summary": {"auc_by_phenomenon": {"cross-encoder": {
    ...     "route direction": {"mean": 0.62, "per_seed": [0.52, 0.72]}}}}}
    >>> print(phenomenon_takeaway("route direction", results={"profile": "laptop", "ladders": [ladder]}).text)
    On `laptop` (seeds 0, 1), the cross-encoder's test AUC on *route direction*: **0.620** (per seed 0.520 / 0.720); 0.5 is chance.
    """
    results = results if results is not None else committed_report(profile)
    if (ladder := _last_ladder(results)) is None:
        return _no_ladder(results["profile"])
    table = ladder["summary"]["auc_by_phenomenon"]
    if ranker not in table or phenomenon not in table[ranker]:
        known = sorted({p for r in table.values() for p in r})
        raise KeyError(f"no {ranker!r} result for phenomenon {phenomenon!r} in the {results['profile']} ladder; "
                       f"rankers: {', '.join(table)}; phenomena: {', '.join(known)}")
    cell = table[ranker][phenomenon]
    per_seed = " / ".join(f"{v:.3f}" for v in cell["per_seed"])
    return Takeaway(f"On {_ladder_where(results, ladder)}, the {ranker}'s test AUC on *{phenomenon}*: "
                    f"**{cell['mean']:.3f}** (per seed {per_seed}); 0.5 is chance.")
