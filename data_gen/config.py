"""Sizes and behaviour parameters of the synthetic search world, one set per profile.

`data_gen` owns the sizes of the data it writes; `relcourse.config` composes these with
the model sizes of every stage, so a learner finds every number of a profile there.

>>> cfg = world_config("smoke")
>>> cfg.n_queries, cfg.impressions_per_search
(600, 10)
>>> world_config("smoke", n_queries=100).n_queries
100
>>> world_config("huge")
Traceback (most recent call last):
...
ValueError: unknown profile 'huge'; choose one of: smoke, laptop, gpu, gpu-xl
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

SCHEMA_VERSION = 1  # bump when a column is added, removed or changes meaning
WORLD_VERSION = 3   # bump when what one (config, seed) generates changes; data_gen/CHANGES.md says what and why


def _f(default, help: str, lo=None, hi=None):
    """A dataclass field with help text and an inclusive valid range, checked in __post_init__."""
    return field(default=default, metadata={"help": help, "range": (lo, hi)})


@dataclass(frozen=True)
class WorldConfig:
    # --- the hidden structure -------------------------------------------------------------
    n_topics: int = _f(6, "product topics (each a hypernym such as 'vacuum')", 2, 60)
    hyponyms_per_topic: int = _f(3, "invented kinds of each topic ('a plaiden is a kind of vacuum')", 1, 6)
    entities_per_topic: int = _f(6, "named products per topic, each with one alias", 2, 80)
    corpus_only_entities: int = _f(2, "entities per topic that no labelled query mentions: only the corpus, "
                                      "the logs and the test set know them (the tail)", 0, 20)
    n_places: int = _f(12, "invented places for route queries ('flights from A to B')", 4, 200)
    # --- queries, documents and the logs --------------------------------------------------
    n_queries: int = _f(600, "distinct queries", 50, 10_000_000)
    docs_per_query: int = _f(12, "candidate documents the production ranker can show for a query", 10, 64)
    impressions_per_search: int = _f(10, "results shown on a page", 1, 20)
    n_searches: int = _f(60_000, "logged searches (impressions = searches x results per page)", 100, 10**10)
    searches_per_shard: int = _f(20_000, "searches per Parquet shard of the logs: bounds memory", 100, 10**7)
    zipf_exponent: float = _f(1.0, "query popularity ~ 1 / rank^s", 0.3, 2.0)
    position_bias_eta: float = _f(0.8, "P(examine rank r) = (1/r)^eta", 0.0, 2.0)
    # --- pretraining corpora --------------------------------------------------------------
    general_corpus_lines: int = _f(4_000, "lines of general (not in-domain) text", 0, 10**9)
    domain_corpus_lines: int = _f(6_000, "lines of in-domain site text (reviews, guides, taxonomy)", 0, 10**9)
    dirt_share: float = _f(0.15, "share of corpus lines that are duplicates or symbol/emoji spam", 0.0, 0.9)
    # --- human annotation -----------------------------------------------------------------
    n_annotators: int = _f(30, "annotators in the pool", 3, 10_000)
    careless_share: float = _f(0.1, "share of careless annotators (near-random labels)", 0.0, 0.5)
    labelled_queries_share: float = _f(0.5, "share of queries humans label at all (the rest only have logs)", 0.05, 1.0)
    valid_share: float = _f(0.15, "share of labelled queries held out for validation", 0.05, 0.4)
    test_share: float = _f(0.25, "share of labelled queries held out for the test set", 0.05, 0.5)
    label_budget: float = _f(6_000.0, "cost units spent on the default human labels (1 unit = 1 label)", 10, 10**9)
    seeds: tuple = _f((0,), "seeds the profile's experiments use")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            lo, hi = f.metadata.get("range", (None, None))
            value = getattr(self, f.name)
            if lo is not None and not (lo <= value <= hi):
                raise ValueError(f"data.{f.name}={value!r} is out of range [{lo}, {hi}]: "
                                 f"{f.metadata['help']}")
        if self.corpus_only_entities >= self.entities_per_topic:
            raise ValueError(f"data.corpus_only_entities={self.corpus_only_entities} must be smaller than "
                             f"data.entities_per_topic={self.entities_per_topic}")
        if self.impressions_per_search > self.docs_per_query:
            raise ValueError(f"data.impressions_per_search={self.impressions_per_search} cannot exceed "
                             f"data.docs_per_query={self.docs_per_query}")
        if self.valid_share + self.test_share >= 0.9:
            raise ValueError("data.valid_share + data.test_share must leave at least 10% for training")


PROFILES: dict[str, WorldConfig] = {
    # CI on 2 cores: proves the machinery in seconds.
    "smoke": WorldConfig(),
    # 2 CPU cores, the whole course in <= 2 hours: few entities, each seen often.
    "laptop": WorldConfig(n_topics=10, entities_per_topic=8, n_places=16, n_queries=4_000, docs_per_query=16,
                          n_searches=1_000_000, searches_per_shard=100_000, general_corpus_lines=60_000,
                          domain_corpus_lines=90_000, label_budget=30_000.0, seeds=(0, 1, 2)),
    # One H100, the whole pipeline <= 20 minutes.
    "gpu": WorldConfig(n_topics=30, entities_per_topic=20, corpus_only_entities=4, n_places=40, n_queries=40_000,
                       docs_per_query=20, n_searches=5_000_000, searches_per_shard=250_000,
                       general_corpus_lines=1_000_000, domain_corpus_lines=1_500_000, n_annotators=200,
                       label_budget=150_000.0, seeds=(0, 1, 2)),
    # Hours on a GPU: 10^8 logged impressions.
    "gpu-xl": WorldConfig(n_topics=60, entities_per_topic=40, corpus_only_entities=8, n_places=80,
                          n_queries=400_000, docs_per_query=24, n_searches=10_000_000, searches_per_shard=500_000,
                          general_corpus_lines=10_000_000, domain_corpus_lines=15_000_000, n_annotators=1_000,
                          label_budget=1_000_000.0, seeds=(0, 1, 2, 3, 4)),
}


def world_config(profile: str, **overrides) -> WorldConfig:
    """The profile's world, with any field overridden (validated like the defaults)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(WorldConfig)}
    if unknown:
        raise ValueError(f"unknown data setting(s) {sorted(unknown)}; valid ones: "
                         f"{', '.join(f.name for f in dataclasses.fields(WorldConfig))}")
    return dataclasses.replace(PROFILES[profile], **overrides)
