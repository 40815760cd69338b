"""Words for the things of the world: how queries, documents and the corpus name them.
Surface variety (aliases, synonyms, reordered routes) is what makes lexical matching fail."""
from __future__ import annotations

import numpy as np

from . import words
from .world import World


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def product_name(world: World, entity: int, rng: np.random.Generator, alias_p: float) -> str:
    e = world.entities[entity]
    return e.alias if rng.random() < alias_p else e.name


def qualifier_word(kind: str, value: int, rng: np.random.Generator) -> str:
    return pick(rng, words.QUALIFIERS[kind][value])


def thing_name(world: World, topic: int, hyponym: int, entity: int, rng: np.random.Generator,
               alias_p: float = 0.0) -> str:
    """The most specific name of what a need or a document is about."""
    if entity >= 0:
        return product_name(world, entity, rng, alias_p)
    if hyponym >= 0:
        return world.hyponyms[hyponym].name
    return world.topics[topic].noun


def route_phrase(world: World, origin: int, dest: int, mode: int, rng: np.random.Generator) -> str:
    a, b, m = world.places[origin], world.places[dest], words.TRAVEL_MODES[mode]
    # The third form reverses the surface order without reversing the route: only context tells.
    return pick(rng, [f"{m} from {a} to {b}", f"{a} to {b} {m}", f"{m} to {b} from {a}"])


def attribute_sentences(world: World, topic: int, size: int, price: int, has_feature: int, number: int,
                        rng: np.random.Generator, state_p: float, subject: str = "it") -> list[str]:
    """Sentences stating some of a product's attributes; each is said with probability state_p,
    so a model must often know them from the corpus instead. `subject` names the product
    ("it" in a document, the product's name or alias in the corpus)."""
    t = world.topics[topic]
    out = []
    if size >= 0 and rng.random() < state_p:
        out.append(f"{subject} is {qualifier_word('size', size, rng)}.")
    if price >= 0 and rng.random() < state_p:
        out.append(f"the price is {qualifier_word('price', price, rng)}." if subject == "it"
                   else f"{subject} is {qualifier_word('price', price, rng)}.")
    if has_feature >= 0 and rng.random() < state_p:
        out.append(f"{subject} comes {'with' if has_feature else 'without'} a {t.feature}.")
    if number >= 0 and rng.random() < state_p:
        out.append(f"rated at {number} {t.unit}.")
    return out


def emoji_noise(rng: np.random.Generator, n: int) -> str:
    return " ".join(pick(rng, words.EMOJI_NOISE) for _ in range(n))
