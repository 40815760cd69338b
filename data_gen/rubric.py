"""The relevance rubric, as code a learner can read: does document d meet the need of query q?

Relevance is about the need, not about shared words, and ignores quality, freshness and
personalisation. Four tiers: 3 high, 2 mid (relevant), 1 low, 0 none (not relevant).

The rules, in the order they are applied:
1. A fake tag (the document claims to be about the query's product but is not) → not relevant.
2. The main need must survive: the same product, or the same kind, or the same topic.
   A hypernym query accepts a hyponym document ("vacuum" → a plaiden review); a hyponym query
   does not accept a hypernym document ("plaiden" → a general vacuum guide is low).
   A route needs the same mode and the same direction ("A to B" is not "B to A").
3. Qualifiers: losing or contradicting an important one → not relevant; an unimportant one
   lost → still relevant. A negated feature ("without a bag") is always important. A number
   matches within a tolerance.
4. Relevant documents are high when more than half of them serves the need, else mid; a
   comparison query ("A vs B") is only fully served by a document that covers both.
   Not relevant documents are low when they stay on the topic, else none.

Version 2 of the rubric changes two rules (labels carry the version they were made under):
- the numeric tolerance tightens from ±15% to ±5%;
- contradicting an UNIMPORTANT qualifier ("cheap" query, premium product, where price does not
  matter for the topic) was still relevant in v1 (high or mid, by rule 4) and is low in v2.
Together they move about 1% of a world's pairs, a typical small revision.

Version 0, the first guideline, judged the subject rather than the need, a common first rubric
before a team learns what its users want: a document on the query's topic that contradicted
nothing the query states was relevant (mid), even when it was a general guide to a product's
kind, a hypernym for a hyponym query, the right route in another travel mode, or silent on the
query's important qualifier, number or negated feature (the reasons in V0_ACCEPTS). Otherwise it
is version 1. From v0 to v2 about 11% of a world's pairs change between relevant and not: a
rubric rewrite. The world's truth table holds tiers v1 and v2; a v0 tier follows from the v1
judgement (`first_guideline`), so v0 adds no column and changes nothing the world generates.

>>> need = Need("product", topic=0, qualifier="size", qual_value=0)
>>> doc = Content("product", topic=0, hyponym=1, size=0, main_share=0.8)
>>> judge(need, doc, important="size", version=2)
(3, 'relevant: hypernym query, hyponym document')
>>> judge(need, Content("product", topic=0, size=1, main_share=0.8), important="size", version=2)
(1, 'important qualifier contradicted')
>>> judge(need, Content("product", topic=0, main_share=0.8), important="size", version=0)
(2, 'relevant under v0: important qualifier lost')
"""
from __future__ import annotations

from dataclasses import dataclass

VERSIONS = (0, 1, 2)
TOLERANCE = {1: 0.15, 2: 0.05}
# What v1 calls not relevant for these reasons, v0 called mid: on the subject, contradicting nothing.
V0_ACCEPTS = frozenset({"product query, general document (hypernym)", "hyponym query, hypernym document",
                        "travel mode changed", "important qualifier lost", "numeric attribute missing",
                        "negated feature not addressed"})
TIER_NAMES = {3: "high", 2: "mid", 1: "low", 0: "none"}


@dataclass(frozen=True)
class Need:
    """What a query asks for. -1 / '' / False mean 'not part of the need'."""
    kind: str                   # "product" or "route"
    topic: int = -1
    hyponym: int = -1
    entity: int = -1
    entity2: int = -1           # the other side of a comparison query
    qualifier: str = ""         # "size" or "price"
    qual_value: int = -1
    without_feature: bool = False
    number: int = -1
    origin: int = -1
    dest: int = -1
    mode: int = -1


@dataclass(frozen=True)
class Content:
    """What a document covers. For attributes, -1 means 'the document does not say'."""
    kind: str
    topic: int = -1
    hyponym: int = -1
    entity: int = -1
    entity2: int = -1
    size: int = -1
    price: int = -1
    has_feature: int = -1
    number: int = -1
    origin: int = -1
    dest: int = -1
    mode: int = -1
    main_share: float = 1.0     # share of the document about its main subject
    fake_tag: bool = False      # tagged with a product it is not about
    stuffed: bool = False       # keyword stuffing: the query's words appended to an unrelated text


def judge(q: Need, d: Content, important: str, version: int) -> tuple[int, str]:
    """(tier, reason) for query need `q` and document content `d` under rubric `version`.
    `important` is the qualifier kind that matters for the query's topic."""
    if version not in VERSIONS:
        raise ValueError(f"unknown rubric version {version}; choose one of {VERSIONS}")
    if version == 0:
        return first_guideline(*judge(q, d, important, version=1))
    off_topic = 0 if d.kind != q.kind or (q.kind == "product" and d.topic != q.topic) else 1
    if d.fake_tag:
        return off_topic, "fake tag"
    if d.stuffed:
        return 0, "keyword stuffing: the text is about something else"
    if q.kind == "route":
        return _judge_route(q, d, off_topic)
    if not off_topic:
        return 0, "different topic"

    lost = _main_need_lost(q, d)
    if lost:
        return 1, lost
    for failed in (_qualifier_fails(q, d, important, version), _negation_fails(q, d), _number_fails(q, d, version)):
        if failed:
            return 1, failed
    if q.entity2 >= 0 and not {q.entity, q.entity2} <= {d.entity, d.entity2}:
        return 2, "relevant: covers one side of the comparison"
    tier = 3 if d.main_share > 0.5 else 2
    how = "hypernym query, hyponym document" if (q.hyponym < 0 and q.entity < 0 and
                                                  (d.hyponym >= 0 or d.entity >= 0)) else "meets the need"
    return tier, f"relevant: {how}"


def first_guideline(tier: int, reason: str) -> tuple[int, str]:
    """The rubric-v0 judgement of a pair, given its rubric-v1 (tier, reason).

    >>> first_guideline(1, "travel mode changed"), first_guideline(1, "direction reversed")
    ((2, 'relevant under v0: travel mode changed'), (1, 'direction reversed'))
    """
    return (2, f"relevant under v0: {reason}") if reason in V0_ACCEPTS else (tier, reason)


def _main_need_lost(q: Need, d: Content) -> str:
    if q.entity >= 0:
        if {q.entity, q.entity2} & {d.entity, d.entity2} - {-1}:
            return ""
        return "other product" if d.entity >= 0 else "product query, general document (hypernym)"
    if q.hyponym >= 0:
        if d.hyponym == q.hyponym:
            return ""
        return "other kind" if d.hyponym >= 0 else "hyponym query, hypernym document"
    return ""  # a topic query: any kind or product of the topic serves it


def _qualifier_fails(q: Need, d: Content, important: str, version: int) -> str:
    if not q.qualifier:
        return ""
    value = d.size if q.qualifier == "size" else d.price
    if value == q.qual_value:
        return ""
    if q.qualifier == important:
        return "important qualifier lost" if value < 0 else "important qualifier contradicted"
    if value >= 0 and version == 2:
        return "unimportant qualifier contradicted (rubric v2)"
    return ""


def _negation_fails(q: Need, d: Content) -> str:
    if not q.without_feature:
        return ""
    if d.has_feature == 1:
        return "negation violated: has what the query excludes"
    return "negated feature not addressed" if d.has_feature < 0 else ""


def _number_fails(q: Need, d: Content, version: int) -> str:
    if q.number < 0:
        return ""
    if d.number < 0:
        return "numeric attribute missing"
    if abs(d.number - q.number) > TOLERANCE[version] * q.number:
        return f"numeric attribute out of tolerance (±{TOLERANCE[version]:.0%})"
    return ""


def _judge_route(q: Need, d: Content, off_topic: int) -> tuple[int, str]:
    if d.kind != "route":
        return 0, "different topic"
    if (d.origin, d.dest) == (q.dest, q.origin):
        return 1, "direction reversed"
    if (d.origin, d.dest) != (q.origin, q.dest):
        shares_place = {d.origin, d.dest} & {q.origin, q.dest}
        return (1, "other destination") if shares_place else (0, "other route")
    if d.mode != q.mode:
        return 1, "travel mode changed"
    return (3 if d.main_share > 0.5 else 2), "relevant: same route and mode"
