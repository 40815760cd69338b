"""Human labelling as a plan you can change: which pairs, how many judges per pair, which rubric,
what budget. Claims F3 (what to label), F4 (how to label) and F5 (under which rubric) compare
plans at equal cost; the world's default `labels` table is just one plan (stratified,
double+gold, rubric v2; data_gen.pipeline).

`run_plan` does what a labelling team does, with data_gen.annotation's simulated annotators:
1. candidate pairs: every document of the plan's queries that the logs ever showed, with its
   query's frequency bucket and the production ranker's logged score. Pairs never shown are
   dropped: a team picks from what the logs hold, and two strategies sort by the logged score;
2. `sample_pairs` puts them in the strategy's priority order;
3. `annotate` labels them in that order until the budget is spent (or the pairs run out); with
   the plan's `anchoring`, the tool pre-fills the tier the logged score suggests
   (`suggested_tiers`) and that share of judgements lean one tier toward it (claim T4).

The annotator pool (its size and careless share) is read from the data folder's manifest, so
a data folder is all `run_plan` needs: the world vouches for its own annotators.

A `LabelSet` is the labels plus their provenance, one row per pair, with the columns of the
world's `labels` table (so anything that trains on that table trains on a LabelSet) and the
sampling strategy. It also keeps the true tiers of its pairs, out of `pairs`: its `accuracy`
compares labels with the truth, which only a simulation can know. In real life you estimate
it from gold questions and agreement (`kappa`). Never train on `truth`.

>>> import tempfile, data_gen
>>> d = tempfile.mkdtemp() + "/world"
>>> cfg = data_gen.world_config("smoke", n_queries=200, n_searches=4_000, general_corpus_lines=10,
...                             domain_corpus_lines=10)
>>> _ = data_gen.generate(cfg, seed=0, out=d, progress=False)
>>> single = run_plan(LabellingPlan(300, "stratified", "single", rubric_version=2), d, seed=0)
>>> double = run_plan(LabellingPlan(300, "stratified", "double+gold", rubric_version=2), d, seed=0)
>>> single.cost <= 300 and double.cost <= 300         # the same budget ...
True
>>> double.n_pairs < single.n_pairs                   # ... buys fewer pairs with two judges ...
True
>>> double.accuracy() > single.accuracy()             # ... that are more often right
True
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import data_gen
from data_gen.annotation import DESIGNS, LABEL_COST, STRATEGIES, annotate, cohen_kappa, make_pool, sample_pairs
from data_gen.rubric import VERSIONS, first_guideline

SPLITS = ("train", "valid", "test", "unlabelled")
# Share of each annotator's work spent on gold questions under 'double+gold' (paid work too).
GOLD_SHARE = 0.1
# The cheapest a pair can be under each design (arbitration adds to it), from annotate's costs.
PAIR_COST = {"single": LABEL_COST, "double": 2 * LABEL_COST, "double+gold": 2 * LABEL_COST / (1 - GOLD_SHARE)}
TRUTH_COLUMNS = tuple(f"tier_v{v}" for v in VERSIONS)


@dataclass(frozen=True)
class LabellingPlan:
    """What to label and how, for `budget` cost units (1 unit = 1 label)."""
    budget: float
    strategy: str                 # one of data_gen.annotation.STRATEGIES
    design: str                   # one of data_gen.annotation.DESIGNS
    rubric_version: int           # one of data_gen.rubric.VERSIONS
    middle_share: float = 0.4     # 'stratified' only: share of the draw from the middle score band
    queries_split: tuple = ("train",)
    anchoring: float = 0.0        # share of judgements pulled one tier toward the model's suggested tier

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy={self.strategy!r} is unknown; choose one of {', '.join(STRATEGIES)}")
        if self.design not in DESIGNS:
            raise ValueError(f"design={self.design!r} is unknown; choose one of {', '.join(DESIGNS)}")
        if self.rubric_version not in VERSIONS or isinstance(self.rubric_version, (bool, str)):
            raise ValueError(f"rubric_version={self.rubric_version!r} is unknown; choose one of {VERSIONS}")
        is_number = isinstance(self.budget, numbers.Real) and not isinstance(self.budget, bool)
        if not is_number or not math.isfinite(self.budget) or self.budget <= 0:
            raise ValueError(f"budget={self.budget!r} must be a positive number of cost units (1 unit = 1 label)")
        if self.budget < PAIR_COST[self.design]:
            raise ValueError(f"budget={self.budget} is too small for one label: under design {self.design!r} a "
                             f"pair costs at least {PAIR_COST[self.design]:.3g}; raise the budget")
        # 0 or 1 would give some score bands no chance at all, and sample_pairs could not fill the budget.
        if not 0 < self.middle_share < 1:
            raise ValueError(f"middle_share={self.middle_share!r} must lie strictly between 0 and 1")
        if not 0 <= self.anchoring <= 1:
            raise ValueError(f"anchoring={self.anchoring!r} must lie in [0, 1]: the share of judgements pulled "
                             "toward the model's suggested tier (0: annotators judge the pair alone)")
        if isinstance(self.queries_split, str):
            raise ValueError(f"queries_split={self.queries_split!r} must be a tuple of split names, "
                             f"e.g. ({self.queries_split!r},)")
        splits = tuple(self.queries_split)
        unknown = sorted(set(splits) - set(SPLITS))
        if not splits or unknown:
            raise ValueError(f"queries_split={splits!r} must name one or more of {', '.join(SPLITS)}"
                             + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
        object.__setattr__(self, "queries_split", splits)  # a list given is stored as a tuple: plans stay hashable


@dataclass(frozen=True, eq=False)
class LabelSet:
    """Labels with provenance (`pairs`) and, for the simulation's eyes only, the true tiers of the
    same rows under every rubric version (`truth`, columns TRUTH_COLUMNS: tier_v0 ... tier_v2)."""
    pairs: pd.DataFrame
    truth: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        made = ", ".join(f"{design}/{strategy}/v{version}: {n}" for (design, strategy, version), n
                         in self.pairs.groupby(["design", "strategy", "rubric_version"]).size().items())
        return f"LabelSet({self.n_pairs} pairs, cost {self.cost:.1f}; {made})"

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def cost(self) -> float:
        """Cost units spent, gold questions and arbitration included."""
        return float(self.pairs.cost.sum())

    def accuracy(self, version: int | None = None) -> float:
        """Share of labels equal to the true tier: under each label's own rubric version by default
        (how well the annotators worked), or under `version` (how well the labels serve that
        rubric: stale labels of an older rubric are wrong under the new one, claim F5).
        Knowable only in a simulation."""
        if version is not None and version not in VERSIONS:
            raise ValueError(f"version={version!r} is unknown; choose one of {VERSIONS}")
        versions = self.pairs.rubric_version.to_numpy() if version is None else np.full(len(self), version)
        true_tier = np.select([versions == v for v in VERSIONS], [self.truth[c] for c in TRUTH_COLUMNS])
        return float((self.pairs.label.to_numpy() == true_tier).mean())

    @property
    def kappa(self) -> float:
        """Cohen's kappa of the two annotators over the double-labelled pairs; NaN if there are none."""
        double = self.pairs[self.pairs.label_b >= 0]
        return cohen_kappa(double.label_a, double.label_b) if len(double) else float("nan")

    def only_version(self, version: int) -> LabelSet:
        """The labels made under one rubric version: what versioned labels let you keep (claim F5)."""
        keep = (self.pairs.rubric_version == version).to_numpy()
        return LabelSet(self.pairs[keep].reset_index(drop=True), self.truth[keep].reset_index(drop=True))


def candidate_pairs(data_dir: str | Path, splits=("train",)) -> pd.DataFrame:
    """Every shown (query, document) pair of the queries in `splits`: query_id, doc_id, split,
    bucket_name, and ranker_score, the production ranker's score averaged over the pair's
    impressions. Pairs the logs never showed have no logged score and are left out."""
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "split", "bucket_name"])
    docs = data_gen.read_table(data_dir, "docs", columns=["doc_id", "query_id"])
    # Sums and counts per shard, added up: memory stays bounded by one shard at any log size.
    shards = data_gen.iter_shards(data_dir, "impressions", columns=["doc_id", "ranker_score"])
    logged = pd.concat([s.groupby("doc_id").ranker_score.agg(["sum", "count"]) for s in shards])
    logged = logged.groupby(level=0).sum()
    pairs = docs.merge(queries[queries.split.isin(splits)], on="query_id").merge(
        (logged["sum"] / logged["count"]).rename("ranker_score"), left_on="doc_id", right_index=True)
    return pairs.sort_values("doc_id", ignore_index=True)


def run_plan(plan: LabellingPlan, data_dir: str | Path, seed: int) -> LabelSet:
    """Label the pairs `plan` picks from the world in `data_dir`, until its budget is spent.
    `seed` draws the annotator pool, the sample and every annotator's judgement; plans that
    differ only in rubric_version get the same pairs and the same annotator slips."""
    if not isinstance(plan, LabellingPlan):
        raise ValueError(f"plan must be a LabellingPlan, got {type(plan).__name__}")
    return label_pairs(plan, candidate_pairs(data_dir, plan.queries_split), data_dir, seed)


def label_pairs(plan: LabellingPlan, pairs: pd.DataFrame, data_dir: str | Path, seed: int) -> LabelSet:
    """`run_plan` on candidate pairs given (columns as `candidate_pairs` returns them), e.g. the
    pairs of other logs than the world's own, with the ranker score those logs recorded: what a
    team labels after another ranker has been shown to users (relcourse.feedback_loop)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    missing = {"query_id", "doc_id", "split", "bucket_name", "ranker_score"} - set(pairs.columns)
    if missing:
        raise ValueError(f"candidate pairs lack the columns {sorted(missing)}; build them as candidate_pairs does")
    config = data_gen.load_manifest(data_dir)["config"]
    pairs = pairs[pairs.split.isin(plan.queries_split)]
    # No design pays less than LABEL_COST a pair: there is no point ordering more pairs than that.
    n = min(len(pairs), int(plan.budget // LABEL_COST))
    chosen = sample_pairs(pairs.rename(columns={"bucket_name": "bucket"}), n, plan.strategy, seed, plan.middle_share)
    if chosen.empty:
        raise ValueError(f"strategy {plan.strategy!r} finds no shown pair among the {plan.queries_split} queries "
                         f"of {data_dir}; choose other splits or another strategy")
    truth = true_tiers(data_dir, chosen.doc_id)
    pool = make_pool(config["n_annotators"], config["careless_share"], seed)
    # With anchoring, the tool shows each pair's tier as the logged ranker's score suggests it.
    suggested = (suggested_tiers(pairs.ranker_score, _tier_shares(data_dir)).loc[chosen.index].to_numpy()
                 if plan.anchoring else None)
    labels = annotate(truth[f"tier_v{plan.rubric_version}"].to_numpy(), plan.design, pool, seed,
                      budget=plan.budget, gold_share=GOLD_SHARE, suggested=suggested, anchoring=plan.anchoring)
    if labels.empty:  # the first pair needed an arbitration the budget could not pay
        raise ValueError(f"budget={plan.budget} does not pay for the first pair under design {plan.design!r}; "
                         "raise the budget")
    n = len(labels)
    chosen = chosen.iloc[:n].rename(columns={"bucket": "bucket_name"}).reset_index(drop=True)
    frame = pd.concat([chosen[["query_id", "doc_id", "split", "bucket_name", "ranker_score"]],
                       labels.reset_index(drop=True)], axis=1)
    frame = frame.assign(rubric_version=np.int8(plan.rubric_version), design=plan.design, strategy=plan.strategy)
    return LabelSet(frame, truth.iloc[:n])


def suggested_tiers(scores: pd.Series, shares) -> pd.Series:
    """The tier a labelling tool pre-fills from the model's scores: the lowest shares[0] of the
    scores get tier 0, the next shares[1] tier 1, and so on, so the suggestions have the tier mix
    of the team's past labels. Anchored annotators (LabellingPlan.anchoring) lean on them.

    >>> suggested_tiers(pd.Series([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6]), [0.25, 0.25, 0.25, 0.25]).tolist()
    [3, 0, 1, 2, 1, 0, 3, 2]
    """
    edges = np.cumsum(shares)[:-1] / np.sum(shares)
    quantile = (scores.rank(method="first") - 0.5) / len(scores)
    return pd.Series(np.searchsorted(edges, quantile.to_numpy(), side="right"), index=scores.index)


def _tier_shares(data_dir: str | Path) -> np.ndarray:
    """Each tier's share of the world's own training labels: the team's past labels."""
    labels = data_gen.read_table(data_dir, "labels", columns=["split", "label"])
    return labels[labels.split == "train"].label.value_counts(normalize=True).reindex(range(4), fill_value=0).to_numpy()


def true_tiers(data_dir: str | Path, doc_ids) -> pd.DataFrame:
    """The true tier of each pair (in the order of `doc_ids`) under every rubric version, columns
    TRUTH_COLUMNS: v1 and v2 from the world's truth table, v0 from the v1 judgement
    (data_gen.rubric.first_guideline). For the simulation's eyes only."""
    truth = data_gen.read_table(data_dir, "truth", columns=["doc_id", "tier_v1", "tier_v2", "reason_v1"])
    truth = truth.set_index("doc_id").loc[doc_ids].reset_index(drop=True)
    v0 = [first_guideline(tier, reason)[0] for tier, reason in zip(truth.tier_v1, truth.reason_v1)]
    return truth.assign(tier_v0=np.asarray(v0, truth.tier_v1.dtype))[list(TRUTH_COLUMNS)]


def mix_rubric_versions(old_labels: LabelSet, new_labels: LabelSet, share_old: float, seed: int = 0) -> LabelSet:
    """The pairs of `new_labels`, a random `share_old` of those also in `old_labels` carrying their
    label of the older rubric instead: a label pool where old labels were kept after the rubric
    changed (claim F5). With one budget the two sets may differ by a pair or two at the end
    (arbitration costs depend on the labels); pairs only `new_labels` has keep their new label.

    Same pairs, same size, same annotator slips (when both sets come from `run_plan` with one
    seed): only the rubric differs, so a model trained on the mix against one trained on
    `new_labels` measures the cost of stale labels alone. Each row keeps its rubric_version,
    which is what versioned labels buy: `mixed.only_version(2)` drops the stale ones."""
    versions = {}
    for name, labels in (("old_labels", old_labels), ("new_labels", new_labels)):
        if not isinstance(labels, LabelSet):
            raise ValueError(f"{name} must be a LabelSet (from run_plan), got {type(labels).__name__}")
        made_under = set(labels.pairs.rubric_version.unique())
        if len(made_under) != 1:
            raise ValueError(f"{name} must hold the labels of one rubric version, not of {sorted(made_under)}; "
                             "make each with run_plan(..., rubric_version=...)")
        versions[name] = made_under.pop()
    if versions["old_labels"] >= versions["new_labels"]:
        raise ValueError(f"old_labels (rubric v{versions['old_labels']}) must be of an older rubric than "
                         f"new_labels (rubric v{versions['new_labels']})")
    if not 0 <= share_old <= 1:
        raise ValueError(f"share_old={share_old!r} must lie in [0, 1]")
    old = old_labels.pairs.set_index("doc_id")
    pairs = new_labels.pairs.reset_index(drop=True)
    both = np.flatnonzero(pairs.doc_id.isin(old.index).to_numpy())
    if share_old > 0 and not len(both):
        raise ValueError("old_labels and new_labels share no pair; label the same pairs under both rubrics "
                         "(run_plan with the same plan and seed, two rubric versions)")
    stale = np.sort(np.random.default_rng(seed).choice(both, round(share_old * len(both)), replace=False))
    kept = old.loc[pairs.doc_id.iloc[stale]].reset_index()[pairs.columns].set_axis(stale)
    return LabelSet(pd.concat([pairs.drop(index=stale), kept]).sort_index(), new_labels.truth)
