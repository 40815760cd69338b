"""The hidden structured world: topics, the kinds under them, named products with aliases and
attributes, and places for route queries. Queries and documents are drawn from this structure,
the rubric judges relevance on it, and only the corpus states it in words.

>>> import numpy as np
>>> from data_gen.config import world_config
>>> w = build_world(world_config("smoke"), seed=0)
>>> len(w.topics), len(w.entities) == w.cfg.n_topics * w.cfg.entities_per_topic
(6, True)
>>> e = w.entities[0]
>>> w.hyponyms[e.hyponym].topic == e.topic
True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import words
from .config import WorldConfig
from .rng import rng_for


@dataclass(frozen=True)
class Topic:
    id: int
    noun: str           # the hypernym, e.g. "vacuum"
    feature: str        # what a query can negate: "vacuum without a bag"
    unit: str           # numeric attribute: "1200 watt"
    lo: int
    hi: int
    important: str      # the qualifier kind that matters for this topic's need: "size" or "price"


@dataclass(frozen=True)
class Hyponym:
    id: int
    topic: int
    name: str           # an invented kind: "a plaiden is a kind of vacuum"


@dataclass(frozen=True)
class Entity:
    id: int
    topic: int
    hyponym: int
    name: str           # "Zorvex K2"
    alias: str          # "Kestrel": what fans call it; documents rarely use it
    size: int           # 0 small, 1 large
    price: int          # 0 cheap, 1 premium
    has_feature: bool   # e.g. the vacuum has a bag
    number: int         # the numeric attribute, in the topic's unit
    corpus_only: bool   # no labelled query names it: only corpus, logs and test know it


@dataclass(frozen=True)
class World:
    cfg: WorldConfig
    topics: list[Topic]
    hyponyms: list[Hyponym]
    entities: list[Entity]
    places: list[str]

    def entities_of(self, topic: int) -> list[Entity]:
        return [e for e in self.entities if e.topic == topic]

    def hyponyms_of(self, topic: int) -> list[Hyponym]:
        return [h for h in self.hyponyms if h.topic == topic]


def invent_name(rng: np.random.Generator, taken: set[str], syllables: int) -> str:
    """A pronounceable new word, unique within `taken` (which it updates)."""
    while True:
        name = "".join(rng.choice(words.SYLLABLES, size=syllables))
        if name not in taken and len(name) >= 4:
            taken.add(name)
            return name


def build_world(cfg: WorldConfig, seed: int) -> World:
    rng = rng_for(seed, "world")
    taken: set[str] = set(t[0] for t in words.TOPICS)
    chosen = rng.choice(len(words.TOPICS), size=min(cfg.n_topics, len(words.TOPICS)), replace=False)
    topics = []
    for i in range(cfg.n_topics):
        noun, feature, unit, lo, hi, important = words.TOPICS[chosen[i % len(chosen)]]
        if i >= len(chosen):  # more topics than shipped nouns: an invented kind of a shipped noun
            noun = f"{invent_name(rng, taken, 2)} {noun}"
        topics.append(Topic(i, noun, feature, unit, lo, hi, important))

    hyponyms = [Hyponym(t.id * cfg.hyponyms_per_topic + j, t.id, invent_name(rng, taken, 3))
                for t in topics for j in range(cfg.hyponyms_per_topic)]

    entities = []
    for t in topics:
        kinds = [h.id for h in hyponyms if h.topic == t.id]
        for j in range(cfg.entities_per_topic):
            brand = invent_name(rng, taken, 2).capitalize()
            model = f"{rng.choice(list(words.MODEL_LETTERS))}{rng.integers(1, 99)}"
            entities.append(Entity(
                id=len(entities), topic=t.id, hyponym=int(kinds[j % len(kinds)]),
                name=f"{brand} {model}", alias=invent_name(rng, taken, 2).capitalize(),
                size=int(rng.integers(2)), price=int(rng.integers(2)), has_feature=bool(rng.integers(2)),
                number=int(rng.integers(t.lo, t.hi + 1)),
                # The last entities of each topic are the tail that no labelled query names.
                corpus_only=j >= cfg.entities_per_topic - cfg.corpus_only_entities))
    places = [invent_name(rng, taken, 2).capitalize() for _ in range(cfg.n_places)]
    return World(cfg, topics, hyponyms, entities, places)
