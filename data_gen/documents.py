"""Documents: for each query, the candidate pool the production ranker can show. Each candidate
is a perturbation of the query's need (the same product, a sibling, the hypernym, a reversed
route, a stuffed page...), judged by the rubric and rendered as a title and a short body.

The pool is built per query with its own random stream, so pools can be made in any order.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import words
from .queries import Query
from .rng import rng_for
from .rubric import Content, Need, judge
from .text import attribute_sentences, emoji_noise, pick, route_phrase, thing_name
from .world import World

PRODUCT_KINDS = {"match": 0.30, "same_level": 0.17, "sibling": 0.15, "hypernym": 0.08, "other_topic": 0.10,
                 "stuffed": 0.07, "fake_tag": 0.05, "near_dup": 0.08}
ROUTE_KINDS = {"match": 0.30, "reversed": 0.20, "other_mode": 0.15, "other_dest": 0.15, "other_route": 0.07,
               "stuffed": 0.05, "near_dup": 0.08}
STATE_P = 0.35  # how often a document states each attribute of its product


def _entity_content(world: World, entity: int, share: float, **flags) -> Content:
    e = world.entities[entity]
    return Content("product", topic=e.topic, hyponym=e.hyponym, entity=e.id, size=e.size, price=e.price,
                   has_feature=int(e.has_feature), number=e.number, main_share=share, **flags)


def _satisfies(world: World, need: Need, entity: int) -> bool:
    e = world.entities[entity]
    return ((not need.qualifier or (e.size if need.qualifier == "size" else e.price) == need.qual_value)
            and (not need.without_feature or not e.has_feature)
            and (need.number < 0 or abs(e.number - need.number) <= 0.05 * need.number))


def _in_scope(world: World, need: Need) -> list[int]:
    return [e.id for e in world.entities_of(need.topic) if need.hyponym < 0 or e.hyponym == need.hyponym]


def _product_candidate(world: World, need: Need, kind: str, share: float, rng) -> Content:
    topic = need.topic
    if kind == "match":
        if need.entity >= 0:
            if need.entity2 >= 0 and rng.random() < 0.5:
                return replace(_entity_content(world, need.entity, share), entity2=need.entity2)
            return _entity_content(world, pick(rng, [need.entity, need.entity2]) if need.entity2 >= 0
                                   else need.entity, share)
        fitting = [e for e in _in_scope(world, need) if _satisfies(world, need, e)]
        if fitting and rng.random() < 0.7:
            return _entity_content(world, pick(rng, fitting), share)
        hyponym = need.hyponym if need.hyponym >= 0 else pick(rng, world.hyponyms_of(topic)).id
        number = int(need.number * (1 + rng.uniform(-0.03, 0.03))) if need.number >= 0 else -1
        return Content("product", topic=topic, hyponym=hyponym,
                       size=need.qual_value if need.qualifier == "size" else -1,
                       price=need.qual_value if need.qualifier == "price" else -1,
                       has_feature=0 if need.without_feature else -1, number=number, main_share=share)
    if kind == "same_level":
        if need.entity >= 0:  # the same product, but mostly about something else
            return _entity_content(world, need.entity, min(share, 0.45))
        return _entity_content(world, pick(rng, _in_scope(world, need)), share)
    if kind == "sibling":
        if need.entity >= 0:
            return _entity_content(world, pick(rng, [e.id for e in world.entities_of(topic)
                                                     if e.id not in (need.entity, need.entity2)]), share)
        others = [h.id for h in world.hyponyms_of(topic) if h.id != need.hyponym]
        if need.hyponym >= 0 and others:
            return Content("product", topic=topic, hyponym=pick(rng, others), main_share=share)
        kind = "other_topic"
    if kind == "hypernym":
        hyponym = world.entities[need.entity].hyponym if need.entity >= 0 and rng.random() < 0.5 else -1
        return Content("product", topic=topic, hyponym=hyponym, main_share=share)
    # Off-topic pages: another topic's product, sometimes dressed up with the query's words.
    other_topics = [t.id for t in world.topics if t.id != topic] or [topic]
    entity = pick(rng, world.entities_of(pick(rng, other_topics))).id
    if kind == "fake_tag" and need.entity >= 0:
        entity = pick(rng, [e.id for e in world.entities_of(topic) if e.id not in (need.entity, need.entity2)])
    return _entity_content(world, entity, share, stuffed=kind == "stuffed", fake_tag=kind == "fake_tag")


def _route_candidate(world: World, need: Need, kind: str, share: float, rng) -> Content:
    a, b, m = need.origin, need.dest, need.mode
    others = [p for p in range(len(world.places)) if p not in (a, b)]
    if kind == "reversed":
        a, b = b, a
    elif kind == "other_mode":
        m = pick(rng, [x for x in range(len(words.TRAVEL_MODES)) if x != m])
    elif kind == "other_dest":
        b = pick(rng, others)
    elif kind in ("other_route", "stuffed"):
        a, b = rng.choice(others, size=2, replace=False)
    return Content("route", origin=int(a), dest=int(b), mode=int(m), main_share=share, stuffed=kind == "stuffed")


def _render(world: World, c: Content, query: Query, genre: str, clickbait: bool, rng) -> tuple[str, str]:
    """Title and body of a document with content `c`."""
    if c.kind == "route":
        phrase = route_phrase(world, c.origin, c.dest, c.mode, rng)
        title = pick(rng, [f"{phrase} timetable", f"{phrase}: tickets and times", f"travel guide: {phrase}"])
        body = [f"{words.TRAVEL_MODES[c.mode]} leave {world.places[c.origin]} for {world.places[c.dest]} every day."]
    else:
        name = thing_name(world, c.topic, c.hyponym, c.entity, rng, alias_p=0.15)
        if c.entity2 >= 0:
            name = f"{name} vs {world.entities[c.entity2].name}"
        title = pick(rng, {"guide": [f"how to pick a {name}", f"{name} buying guide"],
                           "review": [f"{name} review", f"{name}: {pick(rng, words.PRAISE)}"],
                           "news": [f"{name} gets a new version", f"news: {name} update"],
                           "shop": [f"{name} on sale", f"{name} | free delivery"],
                           "forum": [f"anyone own the {name}?", f"{name} questions"]}[genre])
        if c.entity >= 0 and rng.random() < 0.15:  # the product is named only in the body
            title = pick(rng, ["our honest review", "what we bought this year", "a month later"])
        body = [f"the {name} {pick(rng, words.PRAISE + words.COMPLAINT)}."]
        if c.hyponym >= 0 and rng.random() < 0.3:
            body.append(f"a {world.hyponyms[c.hyponym].name} for everyday use.")
        if rng.random() < 0.3:
            body.append(f"one of the better {world.topics[c.topic].noun}s around.")
        body += attribute_sentences(world, c.topic, c.size, c.price, c.has_feature, c.number, rng, STATE_P)
        if c.main_share <= 0.5:  # mostly about other things
            for e in rng.choice(world.entities_of(c.topic), size=2):
                body.insert(0, f"the {e.name} {pick(rng, words.PRAISE + words.COMPLAINT)}.")
    if clickbait:
        title = f"you won't believe this {title}"
    if c.stuffed:
        body.append(" ".join([query.text] * int(rng.integers(2, 4))))
    if c.fake_tag:
        title += " #" + query.text.replace(" ", "")
    if (c.stuffed or c.fake_tag) and rng.random() < 0.5:
        title += " " + emoji_noise(rng, 3)
    return title, " ".join(body)


def _overlap(query: str, text: str) -> float:
    """Share of the query's words found in the document: what an old lexical ranker leans on."""
    q = query.lower().split()
    d = set(text.lower().replace(":", " ").replace("?", " ").replace(".", " ").split())
    return sum(w in d for w in q) / len(q)


def candidate_pool(world: World, query: Query, seed: int) -> list[dict]:
    """docs_per_query candidate documents for one query, each a row with its text, page
    features (genre, age, quality, attractiveness) and hidden truth (tiers, reasons, structure)."""
    rng = rng_for(seed, "docs", query.id)
    need = query.need
    kinds = ROUTE_KINDS if need.kind == "route" else dict(PRODUCT_KINDS)
    if query.group == "stuffing":
        kinds["stuffed"] += 0.15
    names, p = list(kinds), np.array(list(kinds.values()))
    important = "" if need.kind == "route" else world.topics[need.topic].important
    rows: list[dict] = []
    for j in range(world.cfg.docs_per_query):
        kind = names[rng.choice(len(names), p=p / p.sum())]
        if kind == "near_dup" and rows:
            src = rows[int(rng.integers(len(rows)))]
            rows.append({**src, "doc_id": query.id * world.cfg.docs_per_query + j,
                         "title": src["title"] + pick(rng, ["", " (updated)", "!", " - 2nd edition"]),
                         "near_dup_of": src["doc_id"], "publish_day": int(rng.integers(0, 1500))})
            continue
        kind = "match" if kind == "near_dup" else kind
        share = float(rng.uniform(0.2, 1.0))
        content = (_route_candidate if need.kind == "route" else _product_candidate)(world, need, kind, share, rng)
        genre = pick(rng, words.GENRES)
        clickbait = rng.random() < 0.1
        title, body = _render(world, content, query, genre, clickbait, rng)
        spam = content.stuffed or content.fake_tag
        tier1, reason1 = judge(need, content, important, version=1)
        tier2, reason2 = judge(need, content, important, version=2)
        rows.append({
            "doc_id": query.id * world.cfg.docs_per_query + j, "query_id": query.id, "title": title,
            "body": body, "genre": genre, "publish_day": int(rng.integers(0, 1500)),
            "quality": float(rng.beta(1, 4) if spam else rng.beta(2, 2)),
            "attractiveness": float(rng.uniform(0.8, 1.0) if clickbait else rng.beta(2, 5)),
            "clickbait": clickbait, "stuffed": content.stuffed, "fake_tag": content.fake_tag,
            "near_dup_of": -1, "candidate_kind": kind,
            "tier_v1": tier1, "tier_v2": tier2, "reason_v1": reason1, "reason_v2": reason2,
            "lexical_overlap": _overlap(query.text, title + " " + body),
            "doc_topic": content.topic, "doc_hyponym": content.hyponym, "doc_entity": content.entity,
        })
    return rows
