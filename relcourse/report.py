"""The reproduction report: reports/<profile>/results.json, and REPORT.md and forest plots drawn from it.

`runs/` dies with the machine, so what a profile measured lives in committed results files
(`relcourse run ladder --out results/<profile>.json` writes the ladder, per seed, with a copy of
the claims registry). `build` reads those files and this checkout's live registry
(runs/<profile>/claims/results.json, when present) into one JSON document: every claim with its
effects per seed, the 95% Student-t interval, the per-seed SD, the smallest effect its seeds
would find 80% of the time, the seeds its precision target needs (claims.precision_target), and
which input it came from; the learning ladder against the course's targets; the inputs' commits,
settings and hardware. `render` (relcourse.report_markdown) turns that document, and nothing else,
into Markdown, so REPORT.md can always be regenerated from results.json (`regenerate`) and any
number checked against it.

Which result a claim shows: the inputs are read in order (the profile's committed files, or
--results FILE ... as given), the live registry last; the last input with a result for the claim
wins (a live result is what this checkout ran most recently). The row names it, and the inputs
that agree with it or were superseded.

>>> import tempfile
>>> os.environ["RELCOURSE_RUNS"] = tempfile.mkdtemp()   # an empty registry
>>> print(claims_table("smoke").splitlines()[2])
| P1 | pretrain | Masking 80/10/10 ([MASK]/random/unchanged) fine-tunes better than all-[MASK] | 002 |  | test AUC after fine-tuning |  | — | — (not run) | 0 | — | — | — (±0.02) | not run |  |
>>> del os.environ["RELCOURSE_RUNS"]
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
from pathlib import Path

from relcourse import claims, results_files
from relcourse.claims import CLAIMS, CLAIMS_BY_ID, PROBES, PROBES_BY_ID, STAGES, Claim, ClaimResult
from relcourse.config import config_hash, load_profile, with_overrides
from relcourse.forest_plot import forest_png
from relcourse.report_markdown import LIVE, STAGE_TITLES, claims_table as _claims_table, ladder_table, render, summary_table
from relcourse.store import REPO_ROOT, git_commit, runs_root, write_bytes_atomic, write_json_atomic, write_text_atomic

FORMAT = 1
REPORTS_ENV = "RELCOURSE_REPORTS"

# What a reader of a profile's report must know that no results file says: numbers that live in the
# hand-written notes only. (Which recipe a claim was measured on, each entry now says itself.)
NOT_IN_FILES: dict[str, str] = {
    "laptop": "`results/laptop.md` also reports, in prose only, T1 and T2 on world version 2 (T1 +0.138, T2 "
              "+0.190, both hold) and the claims table of world version 1; without per-seed effects in a results "
              "file they are not in this report.",
}
# The course's targets for the recipe's model (the issue "the cross-encoder must read the query"):
# (what, comparison, threshold, value path, minus path); paths index one seed of `run ladder`'s per_seed.
RECIPE = "recipe: post-pretrained, fine-tuned"
TARGETS = (
    ("recipe's test AUC", ">=", 0.85, ("models", RECIPE, "auc"), None),
    ("lead over the LexicalRanker, test AUC", ">=", 0.02, ("models", RECIPE, "auc"),
     ("references", "LexicalRanker", "auc")),
    ("gain when stacked into the LexicalRanker", ">=", 0.03, ("references", "LexicalRanker + cross-encoder", "auc"),
     ("references", "LexicalRanker", "auc")),
    ("AUC drop when each query is swapped", ">=", 0.25, ("models", RECIPE, "auc"),
     ("models", RECIPE, "swapped_query_auc")),
    ("score correlation, real vs swapped query", "<=", 0.3, ("models", RECIPE, "swapped_query_score_correlation"),
     None),
)


def reports_root() -> Path:
    return Path(os.environ.get(REPORTS_ENV) or REPO_ROOT / "reports")


# --- build: inputs -> results.json ---------------------------------------------------------------

def build(profile: str, files: list[Path | str] | None = None, live: bool = True) -> dict:
    """The report's document: claims, ladders, inputs. The results `files` default to the profile's
    committed files (results_files.DEFAULT_INPUTS); `live` adds runs/<profile>/claims/results.json
    when present."""
    name = load_profile(profile).name   # a clear error for an unknown profile
    committed = files is None
    files = list(results_files.DEFAULT_INPUTS.get(name, ())) if committed else list(files)
    inputs, registries, ladders = [], [], []
    for i, file in enumerate(files):
        label, data = chr(ord("A") + i), results_files.read(Path(file))
        if data.get("profile", name) != name:
            raise ValueError(f"{file} holds results of profile {data['profile']!r}, not {name!r}")
        inputs.append(_describe_input(label, Path(file), data))
        if "claims" in data:
            registries.append((label, results_files.registry(data["claims"], file)))
        if "summary" in data:
            ladders.append(_ladder(label, data))
    live_path = claims.results_path(name)
    if live and live_path.exists():
        inputs.append({"label": LIVE, "path": _rel(live_path), "kind": "live claims registry of this checkout",
                       "sha256": _sha256(live_path), "runs": _live_runs(name)})
        registries.append((LIVE, _live_results(name)))
    entries = {key: result.claim_id for _, results in registries for key, result in results.items()}
    variants = {key: c for key, c in entries.items() if claims.entry_kind(key, c) == "variant"}
    probes = {key: c for key, c in entries.items() if claims.entry_kind(key, c) == "probe"}
    return {"format": FORMAT, "profile": name, "inputs": inputs, "ladders": ladders,
            "claims": [_claim_row(c, name, registries, inputs) for c in CLAIMS],
            "variants": [_claim_row(CLAIMS_BY_ID[variants[key]], name, registries, inputs, key)
                         for key in _in_order(variants, CLAIMS)],
            "probes": [_claim_row(PROBES_BY_ID[probes[key]], name, registries, inputs, key)
                       for key in _in_order(probes, PROBES)],
            "not_in_files": NOT_IN_FILES.get(name, "") if committed else ""}


def keep_registry(profile: str, path: Path | str, pool_seeds: bool = False, replace: tuple[str, ...] = ()) -> list[str]:
    """Copy the live registry's claims (runs/<profile>/claims/results.json) into the results file
    `path`, created or its claims replaced claim by claim, atomically; the claims it then holds.
    runs/ dies with the machine: this is how claims run after the last `run ladder --out` are
    committed (name the file in results_files.DEFAULT_INPUTS so the report reads it). With
    `pool_seeds`, a claim the file already holds gets the live seeds added to its own (claims.pool:
    same recipe, and a seed in both must agree), so a claim that needs more seeds than one sitting
    can train is banked sitting by sitting; a condition pool refuses raises, and the file is left
    as it was. The keys in `replace` are kept as the live registry has them even then: a claim
    re-run through a changed recipe starts its seeds afresh, since seeds of two recipes do not
    pool."""
    live = _live_results(profile)
    if not live:
        raise ValueError(f"the live registry {claims.results_path(profile)} holds no claim result for {profile!r}; "
                         f"run some first (`python -m relcourse run claims --profile {profile} --claim ID`)")
    unknown = sorted(set(replace) - set(live))
    if unknown:
        raise ValueError(f"the live registry holds no result for {', '.join(unknown)} to replace the banked one with; "
                         f"it holds {', '.join(sorted(live))}")
    path = Path(path)
    data = results_files.read(path) if path.exists() else {"profile": profile, "claims": {}}
    if data.get("profile", profile) != profile:
        raise ValueError(f"{path} holds results of profile {data['profile']!r}, not {profile!r}")
    banked = results_files.registry(data.get("claims", {}), path)
    if pool_seeds:
        live = {key: claims.pool(banked[key], result) if key in banked and key not in replace else result
                for key, result in live.items()}
    data["claims"] = {**data.get("claims", {}), **{c: claims.to_json(r) for c, r in live.items()}}
    data["git_commit"] = git_commit()
    write_json_atomic(path, data)
    return list(data["claims"])


def _live_results(profile: str) -> dict[str, ClaimResult]:
    """The results this checkout's live registry holds, by registry key: claims, variants, probes."""
    return {**{c: r for c, r in claims.load_results(profile).items() if r.status != "not run"},
            **claims.load_variants(profile), **claims.load_probes(profile)}


def _in_order(keys: dict[str, str], registered: tuple[Claim, ...]) -> list[str]:
    """Registry keys ({key: claim id}) in the order of `registered` (CLAIMS or PROBES), then by key."""
    order = {c.id: i for i, c in enumerate(registered)}
    return sorted(keys, key=lambda key: (order[keys[key]], key))


def _describe_input(label: str, path: Path, data: dict) -> dict:
    known = results_files.KNOWN_INPUTS.get(_rel(path), {})
    world = data.get("world_version")
    settings = data.get("settings")
    return {"label": label, "path": _rel(path), "sha256": _sha256(path), "git_commit": data.get("git_commit"),
            "kind": " + ".join(k for k, present in (("learning ladder", "summary" in data),
                                                     ("claims registry", "claims" in data)) if present),
            "ladder_world": world or known.get("ladder_world") if "summary" in data else None,
            "claims_world": world or known.get("claims_world") if "claims" in data else None,
            "seeds": data.get("seeds"), "measured": data.get("measured"),
            "settings_hash": config_hash(settings) if settings else None, "settings": settings}


def _ladder(label: str, data: dict) -> dict:
    per_seed = data.get("per_seed", {})
    seeds = [str(s) for s in data.get("seeds", per_seed)]
    queries = {}
    for seed in seeds:
        for phenomenon, n in per_seed.get(seed, {}).get("queries_by_phenomenon", {}).items():
            queries.setdefault(phenomenon, []).append(n)
    return {"from": label, "seeds": data.get("seeds"), "summary": data["summary"], "queries_by_phenomenon": queries,
            "targets": [_target(t, [per_seed[s] for s in seeds if s in per_seed]) for t in TARGETS]}


def _target(target, seeds: list[dict]) -> dict:
    what, op, threshold, path, minus = target

    def at(seed: dict, keys) -> float | None:
        for key in keys:
            seed = seed.get(key) if isinstance(seed, dict) else None
        return seed

    values = []
    for seed in seeds:
        a, b = at(seed, path), at(seed, minus) if minus else 0.0
        if a is not None and b is not None:
            values.append(a - b)
    mean = statistics.fmean(values) if values else None
    met = None if mean is None else (mean >= threshold if op == ">=" else mean <= threshold)
    return {"what": what, "op": op, "threshold": threshold, "per_seed": values, "mean": mean, "met": met}


def _claim_row(claim: Claim, profile: str, registries: list[tuple[str, dict]], inputs: list[dict],
               key: str | None = None) -> dict:
    """One claim (or, with `key`, a variant of its design): its result from the last input that
    has one, recomputed with scipy's t, plus power."""
    key = key or claim.id
    found = [(label, entries[key]) for label, entries in registries if key in entries]
    label, result = found[-1] if found else (None, ClaimResult(claim.id, profile))
    if found:
        result = claims.restated(result)
    n = len(result.effects)
    sd = statistics.stdev(result.effects) if n > 1 else math.nan
    baseline = statistics.fmean(result.baseline_values) if result.baseline_values else None
    target = claims.precision_target(claim, baseline)
    source = next((i for i in inputs if i["label"] == label), {})
    world = source.get("claims_world")
    earlier = results_files.KNOWN_INPUTS.get(source.get("path"), {}).get("earlier_designs", {}).get(key, {})
    return {**{f.name: getattr(claim, f.name) for f in dataclasses.fields(claim)}, **earlier,
            "key": key, "design": result.design,
            "sides_changed": _sides_changed(claim, profile, result.design) if key != claim.id else None,
            "earlier_design": bool(earlier), "from": label, "world": world,
            "agrees": [l for l, r in found[:-1] if r.effects == result.effects],
            "superseded": [l for l, r in found[:-1] if r.effects != result.effects],
            "seeds": list(result.seeds), "effects": list(result.effects),
            "arm_values": list(result.arm_values), "baseline_values": list(result.baseline_values),
            "mean": _num(result.mean),
            "interval": [_num(x) for x in result.interval], "sd": _num(sd),
            "mde80": _num(claims.minimum_detectable_effect(sd, n)),
            "precision_target": _num(target), "seeds_for_half_width": claims.seeds_for_half_width(sd, target),
            "status": result.status, "notes": result.notes, "machine": result.machine or None,
            "level": result.status == "inconclusive" and claims.within_target(result.interval, target),
            "recipe_changed": _recipe_changes(result, profile),
            "no_interval": "not run" if n == 0 else "1 seed: no spread to judge by" if n == 1 else ""}


def _sides_changed(claim: Claim, profile: str, design: dict) -> list[str] | None:
    """Which sides of a claim ("arm", "baseline") a variant's settings change, judged by the stage
    keys that name each side's runs with and without them (a setting one side ignores leaves its
    runs the claim's own); None for a claim measured without arms (T1, T4, D1, ...)."""
    from relcourse import experiments   # imports the stages (torch): only when needed
    from relcourse.stage_keys import fingerprint
    if claim.id not in experiments.CLAIM_ARMS:
        return None
    base = load_profile(profile)
    spec, stages = experiments.claim_arms(claim.id, profile), experiments.claim_stages(claim.id, base)
    return [name for name, side in (("arm", spec.arm), ("baseline", spec.baseline))
            if fingerprint(with_overrides(base, side), stages)
            != fingerprint(with_overrides(with_overrides(base, design), side), stages)]


def _recipe_changes(result: ClaimResult, profile: str) -> list[str] | None:
    """The stages whose settings the profile has changed since the result was measured ([] when
    none: it is the current recipe's), from the fingerprint it recorded; None when it recorded none."""
    if not result.recipe:
        return None
    from relcourse.stage_keys import changed_stages   # imports the stages (torch): only when needed
    return changed_stages(result.recipe, with_overrides(load_profile(profile), result.design))


def _live_runs(profile: str) -> dict:
    """Per stage of this checkout's runs: how many, on which machines, at which commits, and the
    training wall time their logs recorded (train/log.jsonl's last elapsed_s)."""
    out = {}
    for manifest_path in sorted((runs_root() / profile).glob("*/*/run.json")):
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue   # an unfinished or damaged run tells nothing
        stage = out.setdefault(manifest.get("stage", manifest_path.parent.parent.name),
                               {"runs": 0, "machines": [], "git_commits": [], "config_hashes": [], "seconds": []})
        stage["runs"] += 1
        for key, value in (("machines", manifest.get("machine")), ("git_commits", manifest.get("git_commit")),
                           ("config_hashes", manifest.get("config_hash"))):
            if value is not None and value not in stage[key]:
                stage[key].append(value)
        seconds = _elapsed(manifest_path.parent / "train" / "log.jsonl")
        if seconds is not None:
            stage["seconds"].append(seconds)
    return out


def _elapsed(log: Path) -> float | None:
    """The last elapsed_s of a training log (relcourse.train writes one line per logged step)."""
    if not log.is_file():
        return None
    last = None
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            last = json.loads(line).get("elapsed_s", last)
        except json.JSONDecodeError:
            break   # a killed run's half-written last line
    return last


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x   # JSON has no NaN


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- write and regenerate ---------------------------------------------------------------------------

def write(profile: str, files: list[Path | str] | None = None, live: bool = True,
          out_dir: Path | None = None) -> Path:
    """Build the report and write results.json, the forest plots and REPORT.md; the REPORT.md path."""
    out_dir = Path(out_dir) if out_dir else reports_root() / load_profile(profile).name
    write_json_atomic(out_dir / "results.json", build(profile, files, live))
    return regenerate(out_dir)


def regenerate(out_dir: Path) -> Path:
    """REPORT.md and the forest plots again, from out_dir/results.json alone."""
    results = json.loads((Path(out_dir) / "results.json").read_text(encoding="utf-8"))
    for stage in STAGES:
        rows, png = [r for r in results["claims"] if r["stage"] == stage], Path(out_dir) / f"forest-{stage}.png"
        if any(r["mean"] is not None for r in rows):
            write_bytes_atomic(png, forest_png(rows, f"{STAGE_TITLES[stage]}: {results['profile']}"))
        else:
            png.unlink(missing_ok=True)
    write_text_atomic(Path(out_dir) / "REPORT.md", render(results))
    return Path(out_dir) / "REPORT.md"


# --- the claims table alone (relcourse report --out) ------------------

def claims_table(profile: str) -> str:
    """A Markdown table of every claim and its result in the live registry of `profile`."""
    return _claims_table(build(profile, files=[], live=True)["claims"])


def write_report(profile: str, path: Path) -> Path:
    """Write the live registry's claims table for `profile` to `path` (atomically)."""
    text = (f"# RelCourse claims: profile `{profile}`\n\n"
            "Effect = arm - baseline, averaged over seeds; the 95% interval is Student-t over seeds. "
            "A claim holds when the interval excludes 0 in the expected direction.\n\n"
            f"{claims_table(profile)}\n")
    write_text_atomic(Path(path), text)
    return Path(path)


__all__ = ["build", "write", "regenerate", "render", "summary_table", "ladder_table", "claims_table",
           "write_report", "reports_root", "LIVE"]
