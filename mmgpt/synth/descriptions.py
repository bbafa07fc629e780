"""Captions, detailed descriptions, caption keywords and multi-step reasoning answers about a scene."""

from __future__ import annotations

import random
from collections import Counter

from mmgpt.synth.knowledge import SHAPE_FACTS, WORDS
from mmgpt.synth.nlg import be, capitalise, count_phrase, join_list, plural, position_phrase, with_article
from mmgpt.synth.qa import QA, YES_NO
from mmgpt.synth.scene import Scene
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS


def background_phrase(scene: Scene) -> str:
    """ "a plain light background" or "a light gradient background"."""
    return (
        "a plain light background" if scene.background["style"] == "plain" else "a light gradient background"
    )


def _groups(scene: Scene, with_colour: bool = True, as_word: bool = True) -> list[str]:
    """Count phrases per (colour, kind) group in reading order: ["two red circles", "a blue square"]."""
    keys = [(s.colour if with_colour else "", s.kind) for s in scene.ordered()]
    counts = Counter(keys)
    out = []
    for key in dict.fromkeys(keys):
        noun = f"{key[0]} {key[1]}".strip()
        n = counts[key]
        out.append(with_article(noun) if n == 1 else count_phrase(n, noun, as_word))
    return out


def word_clause(scene: Scene, rng: random.Random) -> str:
    """ "with the word tulip written at the top" or "" when the scene has no word."""
    if not scene.word:
        return ""
    return rng.choice(
        [
            f" with the word {scene.word} written at the {scene.word_band}",
            f" and the word {scene.word} at the {scene.word_band}",
        ]
    )


def caption(scene: Scene, rng: random.Random, style: int | None = None) -> str:
    """One short caption sentence; `style` (0-4) picks a phrasing so five captions of one image differ."""
    style = rng.randrange(5) if style is None else style
    n = len(scene.shapes)
    groups = join_list(_groups(scene))
    words = word_clause(scene, rng)
    if style == 0:
        text = f"{capitalise(groups)} on {background_phrase(scene)}{words}."
    elif style == 1:
        text = f"A picture of {groups}{words}."
    elif style == 2:
        kinds = join_list(_groups(scene, with_colour=False))
        text = f"An image with {count_phrase(n, 'shape', True)}: {kinds}{words}."
    elif style == 3:
        first = scene.ordered()[0]
        rest = f" and {count_phrase(n - 1, 'other shape', True)}" if n > 1 else ""
        text = f"{capitalise(with_article(first.colour + ' ' + first.kind))} {position_phrase(first.position)}{rest}{words}."
    else:
        colours = join_list(scene.colours())
        text = f"{capitalise(count_phrase(n, 'shape', True))} in {colours}: {groups}{words}."
    return text


def caption_keywords(scene: Scene) -> list[str]:
    """Keywords a good caption should mention: the colours and kinds present, and the word if any."""
    return scene.colours() + scene.kinds() + ([scene.word] if scene.word else [])


def detailed_description(scene: Scene, rng: random.Random) -> str:
    """A paragraph listing every shape (size, colour, kind, position), the background and the word."""
    n = len(scene.shapes)
    opening = rng.choice(
        [
            f"The image shows {count_phrase(n, 'shape')} on {background_phrase(scene)}.",
            f"This picture contains {count_phrase(n, 'shape')} on {background_phrase(scene)}.",
            f"There {be(n)} {count_phrase(n, 'shape')} in this image, drawn on {background_phrase(scene)}.",
        ]
    )
    items = [
        f"{with_article(f'{s.size} {s.colour} {s.kind}')} {position_phrase(s.position)}"
        for s in scene.ordered()
    ]
    listing = f"There is {join_list(items)}." if n > 1 else f"It is {items[0]}."
    parts = [opening, listing]
    if scene.word:
        parts.append(
            rng.choice(
                [
                    f"The word {scene.word} is written at the {scene.word_band} of the image.",
                    f"At the {scene.word_band}, the word {scene.word} is written in dark letters.",
                ]
            )
        )
    else:
        parts.append("There is no text in the image.")
    return " ".join(parts)


DETAIL_PROMPTS = [
    "Describe the image in detail.",
    "Describe this picture in detail.",
    "What do you see in this image? Please describe everything.",
    "Give a detailed description of the image.",
    "Tell me about this image.",
    "What can you tell me about this picture?",
]
CAPTION_PROMPTS = [
    "Write a short caption for this image.",
    "Describe the image briefly.",
    "Give a one-sentence description of the picture.",
]


# ---- reasoning --------------------------------------------------------------------------------------------
def compare_colours(scene: Scene, rng: random.Random) -> QA:
    """Are there more shapes of one colour than of another, with the two counts as the reason."""
    present = scene.colours()
    c1 = rng.choice(present)
    pool = present if len(present) > 1 and rng.random() < 0.7 else list(COLOUR_NAMES)
    c2 = rng.choice([c for c in pool if c != c1])
    n1, n2 = scene.count(colour=c1), scene.count(colour=c2)
    question = f"Are there more {c1} shapes than {c2} shapes?"
    facts = f"there {be(n1)} {count_phrase(n1, c1 + ' shape')} and {count_phrase(n2, c2 + ' shape')}"
    if n1 > n2:
        response = f"Yes, {facts}, so {c1} shapes outnumber {c2} ones."
    elif n1 == n2:
        response = f"No, {facts}, so the two colours appear equally often."
    else:
        response = f"No, {facts}, so there are fewer {c1} shapes."
    return QA("yesno", question, "yes" if n1 > n2 else "no", YES_NO, response)


def most_common_colour(scene: Scene, rng: random.Random) -> QA | None:
    """Which colour appears most often (only when one colour is the unique maximum)."""
    counts = Counter(s.colour for s in scene.shapes).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    colour, n = counts[0]
    question = rng.choice(
        ["Which colour appears most often in the image?", "What is the most common colour here?"]
    )
    if len(counts) == 1:
        every = "the only shape is" if n == 1 else f"all {count_phrase(n, 'shape')} are"
        response = f"{colour.capitalize()} is the only colour: {every} {colour}."
    else:
        response = f"{colour.capitalize()} appears most often, with {count_phrase(n, colour + ' shape')}, more than any other colour."
    return QA("color", question, colour, list(COLOUR_NAMES), response)


def remove_kind(scene: Scene, rng: random.Random) -> QA:
    """How many shapes would be left if every shape of one kind were removed."""
    kind = rng.choice(scene.kinds())
    n, k = len(scene.shapes), scene.count(kind=kind)
    question = f"If all the {plural(kind, 2)} were removed, how many shapes would be left?"
    response = (
        f"There {be(n)} {count_phrase(n, 'shape')} and {k} of them {be(k)} {plural(kind, k)}, "
        f"so {count_phrase(n - k, 'shape')} would be left."
    )
    return QA("counting", question, str(n - k), [str(i) for i in range(7)], response)


def total_corners(scene: Scene, rng: random.Random) -> QA | None:
    """How many corners the shapes of one cornered kind have together."""
    kinds = [k for k in scene.kinds() if SHAPE_FACTS[k]["corners"] and k != "star"]
    if not kinds:
        return None
    kind = rng.choice(kinds)
    k, c = scene.count(kind=kind), SHAPE_FACTS[kind]["corners"]
    question = f"How many corners do the {plural(kind, 2)} in the image have in total?"
    response = (
        f"There {be(k)} {count_phrase(k, kind)} and each {kind} has {c} corners, "
        f"so together they have {k * c} corners."
    )
    return QA("counting", question, str(k * c), [str(i) for i in range(25)], response)


def word_category(scene: Scene, rng: random.Random) -> QA | None:
    """Is the written word the name of a given category."""
    if not scene.word:
        return None
    actual = WORDS[scene.word][0]
    asked = actual if rng.random() < 0.5 else rng.choice(["animal", "fruit", "flower", "vehicle"])
    question = f"Is the word in the image the name of {with_article(asked)}?"
    yes = asked == actual
    response = f"{'Yes' if yes else 'No'}, the word is {scene.word}, and {with_article(scene.word)} is {with_article(actual)}."
    return QA("yesno", question, "yes" if yes else "no", YES_NO, response)


def same_colour(scene: Scene, rng: random.Random) -> QA | None:
    """Are all the shapes the same colour (scenes with at least two shapes)."""
    if len(scene.shapes) < 2:
        return None
    colours = scene.colours()
    question = "Are all the shapes the same colour?"
    if len(colours) == 1:
        response = f"Yes, all {count_phrase(len(scene.shapes), 'shape')} are {colours[0]}."
    else:
        response = f"No, the shapes come in {len(colours)} colours: {join_list(colours)}."
    return QA("yesno", question, "yes" if len(colours) == 1 else "no", YES_NO, response)


def kinds_present(scene: Scene, rng: random.Random) -> QA:
    """Which kinds of shape appear, and which do not."""
    present = scene.kinds()
    absent = [k for k in KINDS if k not in present]
    response = f"The image has {join_list([plural(k, 2) for k in present])}"
    response += (
        f", but no {join_list([plural(k, 2) for k in absent]).replace(' and ', ' or ')}." if absent else "."
    )
    return QA("shape", "Which kinds of shapes appear in the image?", present[0], list(KINDS), response)


REASONING = [
    compare_colours,
    most_common_colour,
    remove_kind,
    total_corners,
    word_category,
    same_colour,
    kinds_present,
]


def reasoning_question(scene: Scene, rng: random.Random) -> QA:
    """Draw one applicable reasoning question."""
    for _ in range(20):
        qa = rng.choice(REASONING)(scene, rng)
        if qa is not None:
            return qa
    return remove_kind(scene, rng)
