"""Multi-round chains whose follow-up question can only be answered with the earlier answer.

`followup_chain(scene, rng)` returns [first QA, follow-up QA]; the follow-up's `kind` is "followup" and its
question refers back ("And if one more were added?", "How many shapes have that colour?").
"""

from __future__ import annotations

import random
from collections.abc import Callable

from mmgpt.synth import qa as Q
from mmgpt.synth.knowledge import SHAPE_FACTS, WORDS
from mmgpt.synth.nlg import be, count_phrase, with_article
from mmgpt.synth.qa import QA
from mmgpt.synth.scene import Scene
from mmgpt.synth.vocab import CATEGORIES, LETTERS

NUMBERS = [str(i) for i in range(11)]
Chain = list[QA]


def _count_base(scene: Scene, rng: random.Random) -> tuple[QA, int, str]:
    """A colour or kind count question, its count and the counted noun."""
    if rng.random() < 0.5:
        colour = rng.choice(scene.colours())
        return Q.count_colour(scene, rng, colour), scene.count(colour=colour), f"{colour} shape"
    kind = rng.choice(scene.kinds())
    return Q.count_kind(scene, rng, kind), scene.count(kind=kind), kind


def add_one(scene: Scene, rng: random.Random) -> Chain:
    """Count, then "And if one more were added?" -> count + 1."""
    first, n, noun = _count_base(scene, rng)
    question = rng.choice(
        ["And if one more were added?", "What if one more were added?", "And if we added one more?"]
    )
    response = f"Then there would be {count_phrase(n + 1, noun)}."
    return [first, QA("followup", question, str(n + 1), NUMBERS, response)]


def remove_one(scene: Scene, rng: random.Random) -> Chain:
    """Count, then "And if one were removed?" -> count - 1."""
    first, n, noun = _count_base(scene, rng)
    question = rng.choice(["And if one were removed?", "What if one of them were taken away?"])
    response = f"Then there would be {count_phrase(n - 1, noun)}."
    return [first, QA("followup", question, str(n - 1), NUMBERS, response)]


def same_colour_count(scene: Scene, rng: random.Random) -> Chain | None:
    """Colour of a shape, then "How many shapes have that colour?"."""
    first = Q.colour_of(scene, rng)
    if first is None:
        return None
    n = scene.count(colour=first.answer)
    question = rng.choice(["How many shapes have that colour?", "How many shapes share that colour?"])
    response = f"There {be(n)} {count_phrase(n, first.answer + ' shape')} in total."
    return [first, QA("followup", question, str(n), NUMBERS, response)]


def word_length(scene: Scene, rng: random.Random) -> Chain | None:
    """Read the word, then "How many letters does it have?"."""
    first = Q.ocr_word(scene, rng)
    if first is None:
        return None
    w = first.answer
    question = rng.choice(["How many letters does it have?", "How long is that word?"])
    response = f"The word {w} has {len(w)} letters."
    return [first, QA("followup", question, str(len(w)), NUMBERS, response)]


def word_first_letter(scene: Scene, rng: random.Random) -> Chain | None:
    """Read the word, then "What is its first letter?"."""
    first = Q.ocr_word(scene, rng)
    if first is None:
        return None
    w = first.answer
    question = rng.choice(["What is its first letter?", "Which letter does it start with?"])
    response = f"The first letter of {w} is {w[0]}."
    return [first, QA("followup", question, w[0], list(LETTERS), response)]


def word_kind(scene: Scene, rng: random.Random) -> Chain | None:
    """Read the word, then "What kind of thing is that?" (knowledge base category)."""
    first = Q.ocr_word(scene, rng)
    if first is None:
        return None
    w = first.answer
    cat = WORDS[w][0]
    question = rng.choice(["What kind of thing is that?", "What kind of thing does that word name?"])
    response = f"{with_article(w).capitalize()} is {with_article(cat)}."
    return [first, QA("followup", question, cat, list(CATEGORIES), response)]


def shape_corners(scene: Scene, rng: random.Random) -> Chain | None:
    """Kind of a shape, then "How many corners does it have?" (knowledge base)."""
    first = Q.kind_of(scene, rng)
    if first is None:
        return None
    kind = first.answer
    c = SHAPE_FACTS[kind]["corners"]
    question = rng.choice(["How many corners does it have?", "And how many corners does that shape have?"])
    response = f"{with_article(kind).capitalize()} has {'no' if c == 0 else c} corners."
    return [first, QA("followup", question, str(c), NUMBERS, response)]


def subset_colour(scene: Scene, rng: random.Random) -> Chain:
    """Count a kind, then "And how many of them are red?"."""
    kind = rng.choice(scene.kinds())
    first = Q.count_kind(scene, rng, kind)
    colour = (
        rng.choice([s.colour for s in scene.select(kind=kind)])
        if rng.random() < 0.8
        else rng.choice(scene.colours())
    )
    n = scene.count(kind=kind, colour=colour)
    question = rng.choice([f"And how many of them are {colour}?", f"How many of those are {colour}?"])
    response = f"There {be(n)} {count_phrase(n, f'{colour} {kind}')} among them."
    return [first, QA("followup", question, str(n), NUMBERS, response)]


CHAINS: list[tuple[Callable[[Scene, random.Random], Chain | None], float]] = [
    (add_one, 2.0),
    (remove_one, 1.5),
    (same_colour_count, 2.0),
    (word_length, 1.0),
    (word_first_letter, 0.7),
    (word_kind, 0.7),
    (shape_corners, 1.0),
    (subset_colour, 1.5),
]


def followup_chain(scene: Scene, rng: random.Random) -> Chain:
    """Draw one applicable two-round chain by weight (add_one always applies)."""
    generators, weights = zip(*CHAINS, strict=True)
    for _ in range(20):
        chain = rng.choices(generators, weights=weights)[0](scene, rng)
        if chain is not None:
            return chain
    return add_one(scene, rng)
