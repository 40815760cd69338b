"""Pretraining text, one short paragraph (two to four sentences) a line. The in-domain corpus is the only place that states the world's knowledge in
words: which kind a product is, what a kind is a kind of, aliases, attributes, routes. That is
why pretraining can help a relevance model that human labels alone cannot teach (README.md §6).
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


def _product_paragraph(w: World, rng: np.random.Generator) -> str:
    """A paragraph about one product, the way shop and review text talks about it: the first
    sentence introduces it with its kind, the next ones state facts (its kind's place in the
    taxonomy, its alias, its attributes, an opinion), each naming it again by name or alias.

    Names recur within the paragraph, as they do in real product text, so masked-language
    modelling often finds a hidden name elsewhere in the context: it learns to look across the
    text for a matching word, the skill a relevance model needs to compare query and document.
    The facts come from a few templates each, combined at random, so a cleaned corpus still
    states every product's kind and alias many times in many forms (exact repeats are rare)."""
    e = w.entities[int(rng.integers(len(w.entities)))]
    h, t = w.hyponyms[e.hyponym], w.topics[e.topic]

    def name() -> str:   # mostly the name, sometimes the alias
        return e.alias if rng.random() < 0.3 else f"the {e.name}"

    intro = pick(rng, [f"the {e.name} is a {h.name}.", f"{e.name}, a popular {h.name}, sold out again.",
                       f"we tested the {e.name}, a {h.name} from this year.", f"meet the {e.name}, a new {h.name}."])
    facts = [pick(rng, [f"a {h.name} is a kind of {t.noun}.", f"like every {h.name}, {name()} is a {t.noun}.",
                        f"{name()} is one of the best known {h.name}s, a type of {t.noun}."]),
             pick(rng, [f"fans call the {e.name} {e.alias}.", f"{e.alias} is another name for the {e.name}.",
                        f"many people know the {e.name} as {e.alias}."]),
             *attribute_sentences(w, e.topic, e.size, e.price, int(e.has_feature), e.number, rng, 0.5, name()),
             f"i bought {name()} last month and it {pick(rng, words.PRAISE + words.COMPLAINT)}."]
    chosen = rng.choice(len(facts), size=min(len(facts), int(rng.integers(2, 4))), replace=False)
    return " ".join([intro, *(facts[i] for i in sorted(chosen))])


def _domain_line(w: World, rng: np.random.Generator) -> str:
    """A short paragraph of site text: mostly about a product, else qualifier synonyms or a route."""
    kind = rng.random()
    if kind < 0.7:
        return _product_paragraph(w, rng)
    t = w.topics[int(rng.integers(len(w.topics)))]
    if kind < 0.85:  # qualifier synonyms
        q = pick(rng, list(words.QUALIFIERS))
        value = int(rng.integers(2))
        a, b = qualifier_word(q, value, rng), qualifier_word(q, value, rng)
        return f"{a} means {b} when people talk about {t.noun}s. so a {a} {t.noun} is a {b} one."
    return route_paragraph(w, rng)


def route_paragraph(w: World, rng: np.random.Generator, restate: bool = True) -> str:
    """A random route's paragraph of site text. With `restate` (the corpus, world version 3) it
    says the route a second time in other words, as travel pages do; without it (version 2) it
    names the route once and goes on about the trip.

    >>> from data_gen.config import world_config
    >>> from data_gen.world import build_world
    >>> route_paragraph(build_world(world_config("smoke"), 0), np.random.default_rng(1))
    'ferry to Solgan from Yalost run every day. ferry leave Yalost for Solgan every morning. it is quiet.'
    """
    a, b = rng.choice(len(w.places), size=2, replace=False)
    mode = int(rng.integers(len(words.TRAVEL_MODES)))
    origin, dest, hours = w.places[a], w.places[b], int(rng.integers(1, 12))
    # Travel pages say the route again in other words. Both places are then in view, so a masked
    # one can be told from the other only by where it stands ("from", "to", "for"): masked-language
    # modelling on this text rewards reading word order, which is what direction needs.
    again = restate and pick(rng, [f"{words.TRAVEL_MODES[mode]} leave {origin} for {dest} every morning.",
                                   f"the trip from {origin} to {dest} takes {hours} hours.",
                                   f"from {origin} it takes {hours} hours to reach {dest}."])
    lead = f"{route_phrase(w, int(a), int(b), mode, rng)} run every day."
    busy = pick(rng, ["it is busy", "it is quiet"])
    return f"{lead} {again} {busy}." if restate else f"{lead} the trip takes {hours} hours and {busy}."


def _general_line(w: World, rng: np.random.Generator) -> str:
    first = f"{pick(rng, words.GENERAL_SUBJECTS)} {pick(rng, words.GENERAL_VERBS)} {pick(rng, words.GENERAL_TAILS)}."
    if rng.random() < 0.2:
        first = f"in {pick(rng, w.places)}, {first}"
    then = f"after that, {pick(rng, words.GENERAL_SUBJECTS)} {pick(rng, words.GENERAL_VERBS)}."
    return f"{first} {then}"


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
