"""Where a result's seed-to-seed spread comes from: the world, or the training's own randomness.

A seed draws a whole world (documents, logs, labels, test set) *and* every stage's training
randomness (initial weights, batch order, masks, dropout). A claim pairs its arms on the same
seed, so the world's main effect cancels, but whatever noise the training adds to each arm does
not, and it sets how many seeds a claim needs. `training_draw` (stages 2 and 3) redraws one
stage's training randomness and keeps everything else, so a nested design splits the spread:

    one world, one pretraining  ->  stage-2 draws a = 0, 1, ...  ->  fine-tune draws b = 0, 1, ...

The fine-tune draws within one stage-2 run spread only by fine-tuning's noise; the stage-2 runs'
means spread by stage 2's noise plus a share of fine-tuning's (`nested_components`). What is left
of the seed-to-seed spread is the world and pretraining.

    relcourse noise --profile laptop --seed 0 --stage-2-draws 0 1 2 --finetune-draws 0 1 2 \\
        --out results/laptop-noise.json
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Profile, with_overrides
from .experiments import RECIPE, arm_table, run_arm
from .store import load_manifest, write_text_atomic


def nested_components(values: dict[int, list[float]]) -> dict[str, float]:
    """Variance components of a balanced nested design, by the method of moments: `values` maps
    each outer draw (a stage-2 run) to its inner draws' results (fine-tunes of it), n each.
    Within: the pooled SD of the inner draws. Between: sqrt(var(outer means) - within² / n),
    floored at 0 (what the outer draw adds). One run: sqrt(between² + within²), the SD of a
    single result with both draws free. Degrees of freedom go with each.

    >>> c = nested_components({0: [0.90, 0.92, 0.91], 1: [0.86, 0.88, 0.87]})
    >>> {k: round(v, 4) for k, v in c.items()}
    {'within_sd': 0.01, 'within_df': 4, 'between_sd': 0.0277, 'between_df': 1, 'one_run_sd': 0.0294}
    """
    sizes = {len(v) for v in values.values()}
    if len(sizes) != 1 or len(values) < 2 or min(sizes) < 2:
        raise ValueError(f"a nested design needs >= 2 outer draws of the same >= 2 inner draws each; got sizes "
                         f"{ {k: len(v) for k, v in values.items()} }")
    n = sizes.pop()
    rows = np.array(list(values.values()), dtype=float)
    within_var = float(rows.var(axis=1, ddof=1).mean())
    between_var = max(float(rows.mean(axis=1).var(ddof=1)) - within_var / n, 0.0)
    return {"within_sd": math.sqrt(within_var), "within_df": len(rows) * (n - 1),
            "between_sd": math.sqrt(between_var), "between_df": len(rows) - 1,
            "one_run_sd": math.sqrt(between_var + within_var)}


def draw_profile(profile: Profile, stage_2_draw: int, finetune_draw: int) -> Profile:
    return with_overrides(profile, {"post_pretrain.training_draw": stage_2_draw,
                                    "finetune.training_draw": finetune_draw})


def measure(profile: Profile, seed: int, stage_2_draws: list[int], finetune_draws: list[int],
            progress: bool = True) -> pd.DataFrame:
    """The recipe's test AUC, PNR, NDCG@10 and swapped-query AUC for every (stage-2 draw,
    fine-tune draw) of one world and one pretraining; built, or read from the store."""
    rows = []
    for a in stage_2_draws:
        for b in finetune_draws:
            run = run_arm(draw_profile(profile, a, b), seed, RECIPE, progress)
            test = arm_table(run).loc["all"]
            rows.append({"stage_2_draw": a, "finetune_draw": b, "auc": float(test["auc"]),
                         "pnr": float(test["pnr"]), "ndcg@10": float(test["ndcg@10"]),
                         "swapped_auc": load_manifest(run)["metrics"]["query_swap"]["auc"]})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> dict:
    """The test AUC's mean and SD over all runs, and its `nested_components` where there are two
    stage-2 draws or more with two fine-tune draws or more each. Otherwise the SD over runs is one
    stage's noise: stage 2's (plus one fine-tuning's) over stage-2 draws, fine-tuning's over
    fine-tune draws; one run has no SD."""
    spread = {"mean": round(float(table["auc"].mean()), 4)}
    if len(table) > 1:
        spread["all_runs_sd"] = round(float(table["auc"].std(ddof=1)), 4)
    if table["finetune_draw"].nunique() < 2 or table["stage_2_draw"].nunique() < 2:
        return spread
    by_stage_2 = table.groupby("stage_2_draw")["auc"].apply(list).to_dict()
    return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in nested_components(by_stage_2).items()},
            **spread}


def probe(profile: Profile, seed: int, stage_2_draws: list[int], finetune_draws: list[int],
          overrides: dict[str, str], out: Path | None = None) -> None:
    """`relcourse noise`: build (or read) the grid, print its runs and components, and write them
    with the profile and overrides that made them to `out` as JSON."""
    for name, draws in (("--stage-2-draws", stage_2_draws), ("--finetune-draws", finetune_draws)):
        if len(set(draws)) != len(draws):
            raise ValueError(f"{name} {' '.join(map(str, draws))} repeats a draw: a draw is one run, name it once")
    table = measure(profile, seed, stage_2_draws, finetune_draws)
    print(table.round(4).to_string(index=False))
    components = summary(table)
    print(json.dumps(components, indent=1))
    if out:
        write_text_atomic(out, json.dumps({"profile": profile.name, "overrides": overrides, "seed": seed,
                                           "runs": table.round(4).to_dict("records"),
                                           "auc_components": components}, indent=1) + "\n")
