"""The claims of the source notes as data (the registry, CLAIMS), and what our experiments say about them.

Each claim compares an *arm* (what the sources recommend) with a *baseline* on one metric.
An experiment measures the effect (arm - baseline) once per seed; the seeds give a 95% Student-t
interval, and the interval decides the status, so no result is forced:

    interval above 0 (in the expected direction)  -> 'holds'
    interval below 0 (the opposite direction)      -> 'does not hold'
    interval crosses 0, or a single seed           -> 'inconclusive'

>>> r = summarise("P2", "smoke", {0: 0.02, 1: 0.03, 2: 0.025})
>>> round(r.mean, 4), [round(x, 4) for x in r.interval], r.status
(0.025, [0.0126, 0.0374], 'holds')
>>> summarise("P2", "smoke", {0: 0.02}).status   # one seed has no spread to judge by
'inconclusive'
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from relcourse.store import StoreError, file_lock, runs_root, write_json_atomic

STAGES = ("pretrain", "post_pretrain", "finetune", "distill")
STATUSES = ("holds", "does not hold", "inconclusive", "not run")


@dataclass(frozen=True)
class Claim:
    id: str
    stage: str
    statement: str
    sources: tuple[str, ...]  # which of the four industry source notes (001-004) make the claim
    metric: str
    arm: str
    baseline: str
    direction: int = +1  # +1: the claim expects the arm to score higher than the baseline
    source_figure: str = ""  # what the sources themselves measured, where they give a number
    explains: str = ""  # a probe's (PROBES): the claim whose outcome it tests an explanation of

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"claim {self.id}: stage {self.stage!r} is not one of {', '.join(STAGES)}")
        if bool(self.sources) == bool(self.explains):
            raise ValueError(f"claim {self.id}: a claim names the source notes that make it, a probe the claim it "
                             "explains (explains=...): one of the two, not both")
        if self.direction not in (+1, -1):
            raise ValueError(f"claim {self.id}: direction must be +1 or -1, not {self.direction!r}")


_FT_AUC = "test AUC after fine-tuning"
_STUDENT_AUC = "student test AUC"

CLAIMS: tuple[Claim, ...] = (
    # --- stage 1: pretraining ---------------------------------------------------------------
    Claim("P1", "pretrain", "Masking 80/10/10 ([MASK]/random/unchanged) fine-tunes better than all-[MASK]",
          ("002",), _FT_AUC, "80/10/10 masking", "all [MASK]"),
    Claim("P2", "pretrain", "SOP is a harder task than NSP and gives a better relevance model",
          ("001", "003", "004"), _FT_AUC, "SOP", "NSP"),
    Claim("P3", "pretrain", "At equal compute, one epoch over more distinct samples beats several epochs over fewer",
          ("001", "004"), _FT_AUC, "1 epoch over k x N samples", "k epochs over N samples"),
    Claim("P4", "pretrain", "A cleaned corpus (deduplicated, symbol spam removed) pretrains better",
          ("001",), _FT_AUC, "cleaned corpus", "raw corpus, cut to the cleaned volume"),
    Claim("P5", "pretrain", "In-domain text helps, and continuing on domain then task text (DAPT, TAPT) helps more",
          ("001", "003"), _FT_AUC, "general + domain text, then DAPT and TAPT", "general text only"),
    Claim("P6", "pretrain", "Span masking beats single-token masking; dynamic masking is no worse than static",
          ("003",), _FT_AUC, "span masking", "single-token masking"),
    # --- stage 2: post-pretraining on behaviour logs -------------------------------------------
    Claim("T1", "post_pretrain", "A small GBDT on behaviour statistics gives noisy but informative pseudo-labels",
          ("000", "001", "004"), "teacher test AUC vs hidden truth", "GBDT teacher", "raw CTR"),
    Claim("T2", "post_pretrain", "Post-pretraining on pseudo-labels before fine-tuning beats fine-tuning alone",
          ("001", "004"), "test AUC", "pretrain, post-pretrain, fine-tune", "pretrain, fine-tune"),
    Claim("T3", "post_pretrain", "Keeping a small MLM loss during post-pretraining beats dropping it",
          ("001", "004"), _FT_AUC, "MLM weight > 0", "MLM weight 0"),
    Claim("T4", "post_pretrain", "Feeding the model's score back as a teacher feature drifts away from human truth",
          ("001", "004"), "the relevance model's test AUC vs hidden truth, last feedback round",
          "model score fed back", "behaviour features only", direction=-1),
    Claim("T5", "post_pretrain", "Pairs sampled across query buckets and score bands beat the logs' most frequent pairs",
          ("004",), _FT_AUC, "stratified pairs", "most frequent pairs"),
    # --- stage 3: fine-tuning on human labels ----------------------------------------------------
    Claim("F1", "finetune", "Regression favours AUC, pairwise loss favours PNR; CE + pairwise gets both",
          ("004",), "test PNR", "CE + pairwise", "CE only"),
    Claim("F2", "finetune", "Relevance as 4-class classification is worse than regression or ranking",
          ("004",), "test PNR", "CE + pairwise", "4-class classification"),
    Claim("F3", "finetune", "For one labelling budget, sampling the hard middle band beats head queries, extreme ranks",
          ("001",), "test AUC", "hard middle band", "head queries, extreme ranks"),
    Claim("F4", "finetune", "Double labels with arbitration and gold questions beat single labels of the same cost",
          ("001",), "test AUC", "double + arbitration + gold", "single labels, same cost"),
    Claim("F5", "finetune", "Mixing labels of two rubric versions hurts; versioned labels avoid it",
          ("001",), "test AUC under the new rubric", "new-rubric labels only",
          "half the labels from the first rubric (11% of pairs judged otherwise)"),
    # --- stage 4: distillation and serving cost --------------------------------------------------
    Claim("D1", "distill", "A bigger cross-encoder is more accurate",
          ("004",), "test AUC", "teacher-size model", "student-size model, same training",
          source_figure="+2% AUC, 48 vs 12 layers"),
    Claim("D2", "distill", "Distilling a big teacher beats training the small model directly",
          ("001", "004"), _STUDENT_AUC, "distilled student", "student trained on labels"),
    Claim("D3", "distill", "Distilling into a mid-size student is nearly lossless; a very small one loses a little",
          ("004",), _STUDENT_AUC, "the recipe's student (half the teacher's depth)",
          "a very small student (half the recipe student's width too)",
          source_figure="48 → 12 layers ≈ 0; 48 → 4 layers ≈ −0.5% AUC"),
    Claim("D4", "distill", "A bigger teacher gives a better student",
          ("004",), _STUDENT_AUC, "student of a teacher twice as deep", "student of the recipe's teacher"),
    Claim("D5", "distill", "More distillation data helps, with diminishing returns",
          ("004",), _STUDENT_AUC, "4N distillation pairs", "N distillation pairs",
          source_figure="< 1e8 pairs loses a lot; > 1e9 pairs gains little"),
    Claim("D6", "distill", "One epoch on 2N pairs beats two epochs on N pairs",
          ("004",), _STUDENT_AUC, "1 epoch on 2N pairs", "2 epochs on N pairs"),
    Claim("D7", "distill", "Warming the student up like the teacher before distilling beats a cold student",
          ("004",), _STUDENT_AUC, "warmed-up student", "cold student"),
    Claim("D8", "distill", "At equal compute, fitting the teacher's output beats layer-wise distillation",
          ("001", "004"), _STUDENT_AUC, "fit teacher outputs",
          "fit outputs and hidden states layer by layer (same steps and data, plus a teacher pass a step)"),
    Claim("D9", "distill", "Single-stage distillation is at least as good as big -> mid -> small (contested)",
          ("004",), _STUDENT_AUC, "big -> small (4 -> 1 layers on laptop)", "big -> mid -> small (4 -> 2 -> 1)"),
    Claim("D10", "distill", "Fitting the teacher's logits with MSE beats fitting its probabilities with CE",
          ("001",), _STUDENT_AUC, "MSE on logits", "CE on probabilities"),
    Claim("D11", "distill", "Training the student in half precision from the start beats fp32 then quantising",
          ("001",), "student test AUC, scored as served",
          "trained in bf16, served in bf16", "trained in fp32, served as dynamic int8"),
    Claim("D12", "distill", "A small half-precision student on shorter documents serves many times faster",
          ("001",), "log(docs/s) on this CPU (4,096 test pairs, each batch's fastest of 3 passes, the two sides "
                    "timed in turn); test AUC beside it",
          "student, half length, bf16 autocast (int8 dynamic without native bf16)", "teacher, full length, fp32"),
)
CLAIMS_BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}

# Probes: our own tests of *why* a claim came out as it did, measured and recorded like a claim
# (arms, seeds, interval, power; `relcourse run claims --claim P2-why`) but not the sources'
# advice, so the claims' counts and tables leave them out and the report lists them apart.
PROBES: tuple[Claim, ...] = (
    # P2 does not hold on laptop: NSP pretrains the better relevance model. The explanation tested:
    # an NSP negative there is a paragraph about another product of the same shop, so telling it
    # apart takes checking that the names on both sides of [SEP] agree, the matching a relevance
    # model needs. Negatives about the same product take that cue away (pretrain.nsp_negatives).
    Claim("P2-why", "pretrain", "NSP pretrains the better relevance model because its negatives name another "
          "product: negatives about the same product lose its lead", (), _FT_AUC,
          "NSP, negatives about other products (P2's baseline)", "NSP, negatives about the same product",
          explains="P2"),
    # P1 does not hold on laptop: all-[MASK] fine-tunes better than 80/10/10. 80/10/10 differs from
    # it twice: a tenth of the selected tokens become random words, a tenth stay as they are. The
    # explanation tested: the random words hurt, noise in an input of 32 tokens that a small model
    # cannot tell from a real word. 90/0/10 keeps the unchanged tenth and drops the random one.
    Claim("P1-why", "pretrain", "All-[MASK] beats 80/10/10 because of the random replacements: without them "
          "(90/0/10) the masking fine-tunes better than 80/10/10", (), _FT_AUC,
          "90% [MASK], 10% unchanged", "80/10/10 masking (P1's arm)", explains="P1"),
    # D10 does not hold on laptop: CE on the teacher's probabilities beats MSE on its logits. The
    # sources' reason for logits is a confident teacher: where sigmoid(t) is near 0 or 1, CE barely
    # tells t = 4 from t = 8, MSE does. This teacher is not confident (seed 0: 98% of its logits
    # within ±3.3). The explanation tested: with the same teacher made confident (logits x 3, as a
    # lower temperature would), the sources' ordering returns.
    Claim("D10-why", "distill", "CE on probabilities wins only because this teacher is not confident: with its "
          "logits x 3, MSE on logits beats CE on probabilities", (), _STUDENT_AUC,
          "MSE on logits x 3", "CE on probabilities of logits x 3", explains="D10"),
)
PROBES_BY_ID: dict[str, Claim] = {p.id: p for p in PROBES}


def short_metric(metric: str) -> str:
    """A claim's metric up to its first detail, for labels and sentences.

    >>> short_metric("log(docs/s) on this CPU (4,096 test pairs); test AUC beside it"), short_metric("test PNR")
    ('log(docs/s) on this CPU', 'test PNR')
    """
    return metric.split(" (")[0].split(";")[0]


def get_claim(claim_id: str) -> Claim:
    """A claim or a probe by its id, or a ValueError that lists them.

    >>> get_claim("P2-why").explains
    'P2'
    """
    found = CLAIMS_BY_ID.get(claim_id) or PROBES_BY_ID.get(claim_id)
    if found is None:
        raise ValueError(f"unknown claim {claim_id!r}; the claims are: {', '.join(CLAIMS_BY_ID)}; "
                         f"the probes: {', '.join(PROBES_BY_ID)}")
    return found


@dataclass(frozen=True)
class ClaimResult:
    claim_id: str
    profile: str
    seeds: tuple[int, ...] = ()
    effects: tuple[float, ...] = ()  # arm - baseline, one per seed, in the order of `seeds`
    mean: float = math.nan
    interval: tuple[float, float] = (math.nan, math.nan)  # 95% Student-t interval of the mean
    status: str = "not run"
    notes: str = ""
    # the claim's metric on each side, one per seed in the order of `seeds` (empty in entries
    # recorded before they were kept, and for claims given as effects only)
    arm_values: tuple[float, ...] = ()
    baseline_values: tuple[float, ...] = ()
    # settings the arms ran with beyond the profile's own (config.design_overrides), e.g.
    # {"feedback_loop.relevance_model": "cross_encoder"}: {} for the claim as the course designs it
    design: dict = field(default_factory=dict)
    # the recipe it was measured on: {stage: own key} of each stage its arms passed through
    # (relcourse.stage_keys.fingerprint), so a report can tell which stages changed since; {} in
    # entries recorded before fingerprints were kept
    recipe: dict = field(default_factory=dict)
    # the machine that measured it (relcourse.experiments.measured_on: device, CPU or GPU model,
    # and on a CPU the threads a run had): runs built on other CPUs or with other threads differ
    # in float rounding, and speeds (D12) are the machine's own; "" in entries recorded before
    # it was kept (those of before 2026-12-06, session 15, name no threads)
    machine: str = ""
    # what a claim measures beside its effect, by name, one value per seed in the order of `seeds`
    # (D2: the small model fine-tuned on labels for the distilled student's steps); {} for claims
    # without any, and in entries recorded before they were kept (their notes give the means)
    extra_values: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return entry_key(self.claim_id, self.design)


def entry_key(claim_id: str, design: dict) -> str:
    """A result's name in the registry: the claim id, or for a variant of the claim's design the id
    and the settings it changed, so that a variant never overwrites the claim's own result.

    >>> entry_key("T4", {}), entry_key("T4", {"feedback_loop.rounds": 2, "feedback_loop.pairs_share": 0.25})
    ('T4', 'T4 [feedback_loop.pairs_share=0.25, feedback_loop.rounds=2]')
    """
    return f"{claim_id} [{design_text(design)}]" if design else claim_id


def design_text(design: dict) -> str:
    """'k=v, k2=v2', keys sorted: a variant's settings as its key and the notebooks name them."""
    return ", ".join(f"{k}={design[k]}" for k in sorted(design))


def set_options(design: dict) -> str:
    """' --set k=v --set k2=v2': the command-line options that run a variant (`relcourse run claims`)."""
    return "".join(f" --set {k}={design[k]}" for k in sorted(design))


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (12.706 for df=1, 1.96 as df grows)."""
    return t_quantile(0.975, df)


def t_quantile(q: float, df: int) -> float:
    """The q quantile of Student's t with `df` degrees of freedom, from scipy.stats.

    >>> round(t_quantile(0.975, 2), 4), round(t_quantile(0.8, 2), 4)
    (4.3027, 1.0607)
    """
    from scipy import stats   # imported on first use: scipy.stats takes most of a second to load

    return float(stats.t.ppf(q, df))


def minimum_detectable_effect(sd: float, seeds: int, power: float = 0.8) -> float:
    """The smallest true effect that `seeds` seeds find (its 95% interval excludes 0) with
    probability `power`, when the effect varies from seed to seed with standard deviation `sd`:
    (t_0.975 + t_power) * sd / sqrt(seeds), both with seeds - 1 degrees of freedom.

    >>> round(minimum_detectable_effect(0.01, 3), 4), round(minimum_detectable_effect(0.01, 10), 4)
    (0.031, 0.0099)
    """
    if seeds < 2 or not math.isfinite(sd):
        return math.nan
    return (t_quantile(0.975, seeds - 1) + t_quantile(power, seeds - 1)) * sd / math.sqrt(seeds)


def seeds_for_half_width(sd: float, half_width: float = 0.02, most: int = 1_000) -> int | None:
    """The fewest seeds whose 95% interval of the mean effect is at most ±half_width, when the
    effect varies from seed to seed with standard deviation `sd`: the power a claim needs.
    None when even `most` seeds would not do, or sd is unknown (NaN).

    >>> seeds_for_half_width(0.01), seeds_for_half_width(0.03), seeds_for_half_width(0.0)
    (4, 12, 2)
    """
    if not (math.isfinite(sd) and math.isfinite(half_width)):
        return None
    for n in range(2, most + 1):
        if t_quantile_975(n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return None


MIXED = "mixed: "   # how a result built from runs of several machines or thread layouts names them (experiments.measured_on)

AUC_PRECISION = 0.02   # the half-width the course asks of an AUC claim's 95% interval
SPEED_PRECISION = 0.1  # of a log speed ratio: ±10%; a timing here moves by up to a fifth between runs


def precision_target(claim: Claim, baseline_mean: float | None = None) -> float:
    """The half-width a claim's 95% interval should reach, in its own metric's units: ±0.02 for an
    AUC (or NDCG); for PNR, the change that ±0.02 of pairwise accuracy p makes at the baseline's
    level (PNR = p / (1 − p), so dPNR = dp / (1 − p)² = dp · (1 + PNR)²; NaN without a baseline);
    for a log speed ratio, SPEED_PRECISION.

    >>> by_id = {c.id: c for c in CLAIMS}
    >>> precision_target(by_id["F3"]), round(precision_target(by_id["F1"], 7.0), 2), precision_target(by_id["D12"])
    (0.02, 1.28, 0.1)
    """
    if claim.metric.startswith("log("):
        return SPEED_PRECISION
    if "PNR" in claim.metric:
        return AUC_PRECISION * (1 + baseline_mean) ** 2 if baseline_mean is not None else math.nan
    return AUC_PRECISION


def within_target(interval: tuple[float, float], target: float) -> bool:
    """Whether a 95% interval lies wholly inside ±target. For an inconclusive claim this is a
    finding, not an unknown: whatever the effect is, it is smaller than the precision the course
    asks a claim to resolve (the report calls such a claim *level*). The target was fixed before
    any claim was run, so the label cannot be fitted to a result.

    >>> within_target((-0.012, 0.018), 0.02), within_target((-0.015, 0.021), 0.02)
    (True, False)
    >>> within_target((math.nan, math.nan), 0.02)   # one seed: no interval, so nothing is level
    False
    """
    lo, hi = interval
    return -target <= lo and hi <= target   # False for NaN: one seed, or a PNR claim without its baseline


def summarise(claim_id: str, profile: str, effects_by_seed: dict[int, float], notes: str = "",
              sides_by_seed: dict[int, tuple[float, float]] | None = None, design: dict | None = None,
              recipe: dict | None = None, machine: str = "",
              extras_by_seed: dict[int, dict[str, float]] | None = None) -> ClaimResult:
    """Mean effect, its 95% interval over seeds, and the status that interval implies; with
    `sides_by_seed` ({seed: (arm, baseline)}) each side's metric per seed is kept too, with
    `design` the settings that make the result a variant of the claim's design, with `recipe`
    the fingerprint of the stages it was measured through, with `machine` what measured it, and
    with `extras_by_seed` ({seed: {name: value}}) what else it measured on each seed."""
    if not effects_by_seed:
        raise ValueError(f"no effects given for {claim_id}; pass {{seed: arm - baseline}} for at least one seed")
    seeds = tuple(sorted(effects_by_seed))
    effects = tuple(float(effects_by_seed[s]) for s in seeds)
    if not all(math.isfinite(e) for e in effects):
        raise ValueError(f"{claim_id}: effects must be finite numbers, got {dict(zip(seeds, effects))}")
    mean, interval, status = _verdict(get_claim(claim_id), effects)
    sides = [tuple(float(v) for v in sides_by_seed[s]) for s in seeds] if sides_by_seed else []
    extras = {name: tuple(float(extras_by_seed[s][name]) for s in seeds)
              for name in (extras_by_seed[seeds[0]] if extras_by_seed else {})}
    return ClaimResult(claim_id, profile, seeds, effects, mean, interval, status, notes,
                       tuple(a for a, _ in sides), tuple(b for _, b in sides), dict(design or {}), dict(recipe or {}),
                       machine, extras)


def _verdict(claim: Claim, effects: tuple[float, ...]) -> tuple[float, tuple[float, float], str]:
    """The mean effect, its 95% interval over seeds (Student's t) and the status that implies."""
    mean = statistics.fmean(effects)
    if len(effects) < 2:
        return mean, (math.nan, math.nan), "inconclusive"
    half = t_quantile_975(len(effects) - 1) * statistics.stdev(effects) / math.sqrt(len(effects))
    lo, hi = mean - half, mean + half
    status = "inconclusive"
    if lo > 0 or hi < 0:
        status = "holds" if (lo > 0) == (claim.direction > 0) else "does not hold"
    return mean, (lo, hi), status


def restated(result: ClaimResult) -> ClaimResult:
    """The result with its mean, interval and status recomputed from its per-seed effects, so an
    entry recorded by older code (another t table) reads as today's code would have written it.

    >>> old = dataclasses.replace(summarise("P2", "smoke", {0: 0.02, 1: 0.03, 2: 0.025}), status="inconclusive")
    >>> restated(old).status
    'holds'
    """
    return dataclasses.replace(result, **dict(zip(("mean", "interval", "status"),
                                                  _verdict(get_claim(result.claim_id), result.effects))))


def measured_arm_by_arm(claim_id: str, profile: str, sides_by_seed: dict[int, tuple[float, float]],
                        extras_by_seed: dict[int, dict[str, float]] | None = None, **kwargs) -> ClaimResult:
    """A result measured arm by arm ({seed: (arm, baseline)}): effect = arm − baseline on each
    seed, each side's values and each extra's kept per seed, and notes that give their means
    (sides_note); `kwargs` are summarise's design, recipe and machine.

    >>> measured_arm_by_arm("P2", "laptop", {0: (0.61, 0.60), 1: (0.63, 0.60)}).notes
    'arm 0.6200, baseline 0.6000 (mean over seeds [0, 1])'
    """
    result = summarise(claim_id, profile, {s: a - b for s, (a, b) in sides_by_seed.items()},
                       sides_by_seed=sides_by_seed, extras_by_seed=extras_by_seed, **kwargs)
    return dataclasses.replace(result, notes=sides_note(result.seeds, result.arm_values, result.baseline_values,
                                                        result.extra_values))


def sides_note(seeds, arm_values, baseline_values, extra_values: dict | None = None) -> str:
    """The registry's note on a result measured arm by arm: each side's mean, and each extra's.

    >>> sides_note((0, 1), (0.61, 0.63), (0.60, 0.60), {"teacher AUC": (0.9, 0.92)})
    'arm 0.6200, baseline 0.6000 (mean over seeds [0, 1]); teacher AUC 0.9100'
    """
    note = (f"arm {statistics.fmean(arm_values):.4f}, baseline {statistics.fmean(baseline_values):.4f} "
            f"(mean over seeds {list(seeds)})")
    return note + "".join(f"; {name} {statistics.fmean(values):.4f}" for name, values in (extra_values or {}).items())


def pool(banked: ClaimResult, new: ClaimResult, tolerance: float = 1e-9) -> ClaimResult:
    """One result over the seeds of both: how seeds measured in separate sittings add up, since
    runs/ dies with the machine and a claim may need more seeds than one sitting can train (the
    committed results file banks each seed's values). Both must be the same claim and design,
    measured through the same recipe (its stages' keys), arm by arm (with each side's values, and
    the same extras per seed, and notes that say no more than those). A seed measured in both
    must agree within `tolerance`: on one CPU model with the same threads a run rebuilds bit for
    bit, so a difference means the code or the layout now computes something else, and the seeds
    do not belong together. Where the two name different machines or thread layouts, or one names
    none (entries recorded before they were kept), such a seed is required: it is the evidence
    that both sittings compute alike. Raises ValueError saying which condition fails.

    >>> a = summarise("P2", "laptop", {0: 0.01, 1: 0.03}, sides_by_seed={0: (0.61, 0.60), 1: (0.63, 0.60)},
    ...               recipe={"pretrain": "4b62fec72434"})
    >>> b = summarise("P2", "laptop", {1: 0.03, 2: 0.02}, sides_by_seed={1: (0.63, 0.60), 2: (0.62, 0.60)},
    ...               recipe={"pretrain": "4b62fec72434"})
    >>> both = pool(a, b)
    >>> both.seeds, round(both.mean, 4), both.notes
    ((0, 1, 2), 0.02, 'arm 0.6200, baseline 0.6000 (mean over seeds [0, 1, 2])')
    """
    what = f"{new.key} on {new.profile}"
    problems = []
    if (banked.key, banked.profile) != (new.key, new.profile):
        problems.append(f"they are different results ({banked.key} on {banked.profile})")
    if not banked.recipe or banked.recipe != new.recipe:
        problems.append(f"they were measured through different recipes (stage keys {banked.recipe or 'not recorded'} "
                        f"and {new.recipe or 'not recorded'})")
    if set(banked.extra_values) != set(new.extra_values):
        problems.append(f"they measured different extras ({sorted(banked.extra_values)}, {sorted(new.extra_values)})")
    for result in (banked, new):
        if len(result.arm_values) != len(result.seeds):
            problems.append("one of them does not keep each side's values per seed")
        elif result.notes not in ("", sides_note(result.seeds, result.arm_values, result.baseline_values,
                                                 result.extra_values)):
            # what the notes say beyond the values (extras kept as means only) would be lost
            problems.append(f"the notes of one say more than its per-seed values ({result.notes!r})")
    overlap = set(banked.seeds) & set(new.seeds)
    if not (banked.machine and banked.machine == new.machine and not new.machine.startswith(MIXED)) and not overlap:
        problems.append(f"they name different machines or thread layouts ({banked.machine or 'not recorded'}; "
                        f"{new.machine or 'not recorded'}) and share no seed that would show they compute alike: "
                        f"rerun one banked seed with the new ones")
    if problems:
        raise ValueError(f"cannot pool the seeds of {what}: {'; '.join(problems)}. Record it from one sitting "
                         f"instead (`relcourse report --keep` without --pool-seeds replaces the banked result)")
    per_seed = {}
    for result in (banked, new):
        for i, seed in enumerate(result.seeds):
            values = (result.arm_values[i], result.baseline_values[i], *(v[i] for v in result.extra_values.values()))
            if seed in per_seed and max(abs(x - y) for x, y in zip(per_seed[seed], values)) > tolerance:
                raise ValueError(f"cannot pool the seeds of {what}: seed {seed} measured {per_seed[seed]} before and "
                                 f"{values} now (arm, baseline, extras); the code, the machine or the threads a run "
                                 f"had changed what it computes, so re-run every seed with one layout and record that")
            per_seed[seed] = values
    names = list(new.extra_values)
    return measured_arm_by_arm(new.claim_id, new.profile, {s: v[:2] for s, v in per_seed.items()},
                               {s: dict(zip(names, v[2:])) for s, v in per_seed.items()} if names else None,
                               design=new.design, recipe=new.recipe, machine=new.machine or banked.machine)


# --- results on disk: runs/<profile>/claims/results.json, one entry per claim and design ----------

def results_path(profile: str) -> Path:
    return runs_root() / profile / "claims" / "results.json"


def record(result: ClaimResult) -> Path:
    """Add or replace this result's entry (its `key`: the claim, or a variant of its design) in the
    profile's results file, written atomically under a lock, so processes recording other claims
    at the same time lose nothing."""
    path = results_path(result.profile)
    with file_lock(path):
        entries = _read_entries(path)
        entries[result.key] = to_json(result)
        write_json_atomic(path, entries)
    return path


def load_results(profile: str, design: dict | None = None) -> dict[str, ClaimResult]:
    """Every claim's result for the profile, in CLAIMS order, as designed or, with `design`, the
    variant run with those settings (config.design_overrides); claims without one are 'not run'."""
    entries, design = _load(profile), dict(design or {})
    return {c.id: entries.get(entry_key(c.id, design), ClaimResult(c.id, profile, design=design)) for c in CLAIMS}


def entry_kind(key: str, claim_id: str) -> str:
    """What a registry entry is: 'claim' (a claim as designed), 'variant' (a claim run with a
    changed design), 'probe' (a probe, as designed or not), or 'unknown' (an id neither registry
    has, e.g. of a claim since removed): the live registry and the report sort entries by it.

    >>> entry_kind("T4", "T4"), entry_kind("T4 [feedback_loop.rounds=2]", "T4"), entry_kind("P2-why", "P2-why")
    ('claim', 'variant', 'probe')
    """
    if claim_id in PROBES_BY_ID:
        return "probe"
    if claim_id not in CLAIMS_BY_ID:
        return "unknown"
    return "claim" if key == claim_id else "variant"


def load_variants(profile: str) -> dict[str, ClaimResult]:
    """The profile's results of claims run with a changed design, by registry key."""
    return {key: r for key, r in _load(profile).items() if entry_kind(key, r.claim_id) == "variant"}


def load_probes(profile: str) -> dict[str, ClaimResult]:
    """The profile's results of probes (PROBES), as designed or with a changed design, by registry key."""
    return {key: r for key, r in _load(profile).items() if entry_kind(key, r.claim_id) == "probe"}


def _load(profile: str) -> dict[str, ClaimResult]:
    """Every entry of the profile's results file, parsed, by registry key."""
    path = results_path(profile)
    try:
        return {key: from_json(entry) for key, entry in _read_entries(path).items()}
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{path} has a malformed entry ({e!r}); delete it and re-run the experiments") from None


def _read_entries(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path} is corrupt ({e}); delete it and re-run the claims' experiments") from None
    if not isinstance(entries, dict):
        raise StoreError(f"{path} should hold a JSON object keyed by claim id; delete it and re-run the experiments")
    return entries


def to_json(result: ClaimResult) -> dict:
    entry = dataclasses.asdict(result)
    entry["mean"] = _nan_to_none(result.mean)
    entry["interval"] = [_nan_to_none(x) for x in result.interval]
    for optional in ("design", "recipe", "machine", "extra_values"):   # absent when empty: entries read as before these were kept
        if not entry[optional]:
            del entry[optional]
    return entry


def from_json(entry: dict) -> ClaimResult:
    return ClaimResult(entry["claim_id"], entry["profile"], tuple(entry["seeds"]), tuple(entry["effects"]),
                       _none_to_nan(entry["mean"]), tuple(_none_to_nan(x) for x in entry["interval"]),
                       entry["status"], entry.get("notes", ""), tuple(entry.get("arm_values", ())),
                       tuple(entry.get("baseline_values", ())), dict(entry.get("design", {})),
                       dict(entry.get("recipe", {})), entry.get("machine", ""),
                       {name: tuple(values) for name, values in entry.get("extra_values", {}).items()})


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x  # JSON has no NaN: an undefined mean or bound is stored as null


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
