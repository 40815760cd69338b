"""The committed results files: what a profile measured, kept in git because runs/ dies with the machine.

`relcourse run ladder --out results/<profile>.json` writes a profile's learning ladder with a copy
of its claims registry; `relcourse report --keep FILE` banks the claims run since. This module
knows which files a profile has and what they do not say about themselves, and reads them: the
report (relcourse.report) draws from them, and the notebooks of the profiles that read their
claims (relcourse.experiments) show their results before this checkout has run anything.

>>> committed_results("smoke")     # smoke commits no results: a fresh checkout runs its claims
{}
"""
from __future__ import annotations

import json
from pathlib import Path

from data_gen.config import WORLD_VERSION
from relcourse import claims
from relcourse.claims import CLAIMS, ClaimResult
from relcourse.store import REPO_ROOT

# What each profile's report reads by default: its committed results files, in order.
# Oldest first: the last input with a result for a claim wins. results/laptop-distill.json holds the
# distillation claims of world version 2, superseded by those of results/laptop-postpretrain9600.json
# (world 3). The last ladder is the one notebooks and takeaways quote.
DEFAULT_INPUTS: dict[str, tuple[str, ...]] = {
    "laptop": ("results/laptop-distill.json", "results/laptop-postpretrain9600.json", "results/laptop.json",
               "results/laptop-claims.json")}
# What a committed file does not say about itself: the world version it was measured on (a file's
# own "world_version" key, which later files may carry, wins). results/laptop-postpretrain9600.json
# is the ladder of the recipe with 9,600 post-pretraining steps (seeds 0-2) and the registry `run
# ladder` found then: every claim re-run on world version 3 with 8,000 pretraining steps.
# results/laptop.json is the ladder of the recipe with 14,400 (seeds 0-6); its registry copy holds
# the claims this machine's registry still had, measured with 9,600. results/laptop-claims.json
# holds claims run after the first ladder (`relcourse report --keep`), with 9,600 as well. The
# entries of these three files were recorded before claims kept their recipe's fingerprint; theirs
# was stamped afterwards from those settings (laptop with post_pretrain.steps=9600).
# results/laptop-pretrain4000.json is the ladder of the recipe with 4,000 pretraining steps.
# "earlier_designs": claims a file measured with arms the registry has since changed, and what
# those arms were (the row shows them, marked, instead of the current ones).
KNOWN_INPUTS: dict[str, dict] = {
    "results/laptop-postpretrain9600.json": {"ladder_world": 3, "claims_world": 3, "earlier_designs": {
        "F5": {"baseline": "half the labels from rubric v1 (1.2% of pairs judged otherwise)"}}},
    "results/laptop.json": {"ladder_world": 3, "claims_world": 3},
    "results/laptop-claims.json": {"claims_world": 3},
    "results/laptop-pretrain4000.json": {"ladder_world": 3, "claims_world": 2},
    "results/laptop-world2.json": {"ladder_world": 2, "claims_world": 2},
    "results/laptop-distill.json": {"claims_world": 2},
}


def committed_results(profile: str, design: dict | None = None) -> dict[str, ClaimResult]:
    """The claims' results the profile's committed files hold for the current world version, by
    claim id (the last file with one wins, as in the report), for the claims as designed or, with
    `design`, that variant: what a fresh checkout knows before it has run anything."""
    keys = {c.id: claims.entry_key(c.id, design or {}) for c in CLAIMS}
    found = {}
    for file in DEFAULT_INPUTS.get(profile, ()):
        path = REPO_ROOT / file
        data = read(path) if path.is_file() else {}
        world = data.get("world_version") or KNOWN_INPUTS.get(file, {}).get("claims_world")
        if "claims" in data and world == WORLD_VERSION:
            entries = registry(data["claims"], file)
            found |= {c: entries[key] for c, key in keys.items() if key in entries}
    return found


def read(path: Path) -> dict:
    """A results file's JSON, or a ValueError saying what is wrong with it and how to restore it."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist; write it with `python -m relcourse run ladder --profile P --out {path}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it from git or re-run `relcourse run ladder`") from None
    if not isinstance(data, dict) or not ({"claims", "summary"} & data.keys()):
        raise ValueError(f"{path} is not a results file: expected a JSON object with 'claims' and/or 'summary'")
    return data


def registry(entries, where) -> dict[str, ClaimResult]:
    """The results in a file's copy of the registry, by key: a claim's or a probe's id, or a
    variant's (claims.entry_key: the id and the settings it changed)."""
    if not isinstance(entries, dict):
        raise ValueError(f"{where}: 'claims' should map claim ids to results")
    out = {}
    for key, entry in entries.items():
        claim_id = str(key).split(" [")[0]
        try:
            claims.get_claim(claim_id)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        try:
            result = claims.from_json(entry)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: the entry of claim {key} is malformed ({e!r})") from None
        if key != result.key:
            raise ValueError(f"{where}: the entry {key!r} holds the result {result.key!r} (its claim id and "
                             "design name it); restore the file from git or re-run the claim")
        if result.status != "not run":
            out[key] = result
    return out
