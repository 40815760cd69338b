"""Pretraining text. The in-domain corpus is the only place that states the world's knowledge in
words: which kind a product is, what a kind is a kind of, aliases, attributes, routes. That is
why pretraining can help a relevance model that human labels alone cannot teach (WORLD.md §6).
The general corpus is everyday prose that knows nothing of the domain. Both carry dirt —
verbatim duplicates and symbol/emoji spam — marked in a `dirt` column so cleaning can be scored.

>>> from data_gen.config import world_config
>>> from data_gen.world import build_world
>>> w = build_world(world_config("smoke"), 0)
>>> lines = corpus_lines(w, "domain", 5, seed=0, shard=0)
>>> len(lines["text"]) == 5 and all(isinstance(t, str) for t in lines["text"])
True
"""
from __future__ import annotations

import numpy as np

from . import words
from .rng import rng_for
from .text import attribute_sentences, emoji_noise, pick, qualifier_word, route_phrase
from .world import World


def _domain_line(w: World, rng: np.random.Generator) -> str:
    e = w.entities[int(rng.integers(len(w.entities)))]
    h, t = w.hyponyms[e.hyponym], w.topics[e.topic]
    kind = int(rng.integers(7))
    if kind == 0:
        return pick(rng, [f"a {h.name} is a kind of {t.noun}.", f"the {h.name} is one type of {t.noun}."])
    if kind == 1:
        return pick(rng, [f"the {e.name} is a {h.name}.", f"{e.name}, a popular {h.name}, sold out again."])
    if kind == 2:
        return pick(rng, [f"{e.alias} is another name for the {e.name}.", f"fans call the {e.name} {e.alias}."])
    if kind == 3:
        facts = attribute_sentences(w, e.topic, e.size, e.price, int(e.has_feature), e.number, rng, 1.0)
        return f"the {pick(rng, [e.name, e.alias])}: " + pick(rng, facts)
    if kind == 4:
        q = pick(rng, list(words.QUALIFIERS))
        value = int(rng.integers(2))
        return f"{qualifier_word(q, value, rng)} means {qualifier_word(q, value, rng)} when people talk about {t.noun}s."
    if kind == 5:
        a, b = rng.choice(len(w.places), size=2, replace=False)
        return f"{route_phrase(w, int(a), int(b), int(rng.integers(len(words.TRAVEL_MODES))), rng)} run every day."
    return f"i bought the {pick(rng, [e.name, e.alias])} last month and it {pick(rng, words.PRAISE + words.COMPLAINT)}."


def _general_line(w: World, rng: np.random.Generator) -> str:
    line = f"{pick(rng, words.GENERAL_SUBJECTS)} {pick(rng, words.GENERAL_VERBS)} {pick(rng, words.GENERAL_TAILS)}."
    if rng.random() < 0.2:
        line = f"in {pick(rng, w.places)}, {line}"
    return line


def corpus_lines(world: World, which: str, n: int, seed: int, shard: int) -> dict[str, list]:
    """n lines of the 'general' or 'domain' corpus for one shard, with their dirt kind
    ('' clean, 'duplicate', 'symbol_spam')."""
    rng = rng_for(seed, f"corpus-{which}", shard)
    make = _domain_line if which == "domain" else _general_line
    texts: list[str] = []
    dirt: list[str] = []
    for _ in range(n):
        r = rng.random()
        if r < world.cfg.dirt_share / 2 and texts:
            texts.append(texts[int(rng.integers(len(texts)))])
            dirt.append("duplicate")
        elif r < world.cfg.dirt_share:
            texts.append(f"{emoji_noise(rng, 2)} {make(world, rng)} {emoji_noise(rng, 4)}")
            dirt.append("symbol_spam")
        else:
            texts.append(make(world, rng))
            dirt.append("")
    return {"text": texts, "dirt": dirt}
