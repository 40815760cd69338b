"""Queries: a need drawn from the world (what is sought + qualifiers) and an intent, rendered in
words. Each query belongs to one phenomenon group, the reason it is hard (or easy) to judge.

>>> from data_gen.config import world_config
>>> from data_gen.world import build_world
>>> qs = make_queries(build_world(world_config("smoke", n_queries=50), 0), seed=0)
>>> len(qs), qs[0].text == qs[0].text.strip()
(50, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import words
from .rng import rng_for
from .rubric import Need
from .text import pick, qualifier_word, route_phrase, thing_name
from .world import World

# Share of queries per phenomenon group (routes, negation, aliases ...: data_gen/README.md §2), and of intents.
GROUPS = {"plain": 0.28, "alias": 0.12, "taxonomy": 0.12, "synonym": 0.10, "route": 0.14,
          "negation": 0.10, "numeric": 0.06, "stuffing": 0.08}
INTENTS = {"informational": 0.3, "navigational": 0.25, "transactional": 0.2, "comparison": 0.1, "freshness": 0.15}


@dataclass(frozen=True)
class Query:
    id: int
    text: str
    need: Need
    group: str
    intent: str


def _product_need(world: World, group: str, rng: np.random.Generator) -> Need:
    topic = int(rng.integers(len(world.topics)))
    t = world.topics[topic]
    if group in ("plain", "alias", "stuffing") and (group == "alias" or rng.random() < 0.5):
        e = pick(rng, world.entities_of(topic))
        return Need("product", topic=topic, hyponym=-1, entity=e.id)
    hyponym = -1 if group == "taxonomy" or rng.random() < 0.4 else pick(rng, world.hyponyms_of(topic)).id
    need = Need("product", topic=topic, hyponym=hyponym)
    if group == "synonym":
        kind = t.important if rng.random() < 0.6 else ("price" if t.important == "size" else "size")
        return Need("product", topic=topic, hyponym=hyponym, qualifier=kind, qual_value=int(rng.integers(2)))
    if group == "negation":
        return Need("product", topic=topic, hyponym=hyponym, without_feature=True)
    if group == "numeric":
        return Need("product", topic=topic, hyponym=hyponym, number=int(rng.integers(t.lo, t.hi + 1)))
    return need


def _render(world: World, need: Need, intent: str, group: str, rng: np.random.Generator) -> str:
    if need.kind == "route":
        return route_phrase(world, need.origin, need.dest, need.mode, rng)
    core = thing_name(world, need.topic, need.hyponym, need.entity, rng, alias_p=1.0 if group == "alias" else 0.0)
    if need.qualifier:
        core = f"{qualifier_word(need.qualifier, need.qual_value, rng)} {core}"
    if need.without_feature:
        core = f"{core} without {world.topics[need.topic].feature}"
    if need.number >= 0:
        core = f"{core} {need.number} {world.topics[need.topic].unit}"
    if need.entity2 >= 0:
        return f"{core} vs {world.entities[need.entity2].name}"
    templates = {"informational": ["how to choose a {c}", "{c} guide", "is the {c} any good"],
                 "navigational": ["{c}"],
                 "transactional": ["buy {c}", "{c} price", "{c} deals"],
                 "freshness": ["latest {c} 2026", "{c} news", "new {c} this year"],
                 "comparison": ["{c}"]}
    return pick(rng, templates[intent]).format(c=core)


def make_queries(world: World, seed: int) -> list[Query]:
    """n_queries distinct queries. Raises ValueError when the world is too small to hold them."""
    rng = rng_for(seed, "queries")
    groups, intents = list(GROUPS), list(INTENTS)
    seen: set[str] = set()
    out: list[Query] = []
    attempts = 0
    while len(out) < world.cfg.n_queries:
        attempts += 1
        if attempts > 50 * world.cfg.n_queries:
            raise ValueError(f"the world holds too few distinct queries for n_queries={world.cfg.n_queries}: "
                             "raise data.entities_per_topic, data.n_topics or data.n_places")
        group = groups[rng.choice(len(groups), p=list(GROUPS.values()))]
        intent = intents[rng.choice(len(intents), p=list(INTENTS.values()))]
        if group == "route":
            a, b = rng.choice(len(world.places), size=2, replace=False)
            need = Need("route", origin=int(a), dest=int(b), mode=int(rng.integers(len(words.TRAVEL_MODES))))
            intent = "transactional"
        else:
            need = _product_need(world, group, rng)
            if intent == "comparison":
                if need.entity < 0:
                    intent = "informational"
                else:
                    other = [e.id for e in world.entities_of(need.topic) if e.id != need.entity]
                    need = Need("product", topic=need.topic, entity=need.entity, entity2=int(pick(rng, other)))
        text = _render(world, need, intent, group, rng)
        if text not in seen:
            seen.add(text)
            out.append(Query(len(out), text, need, group, intent))
    return out
