"""Single-round question/answer generators about a scene, shared by every dataset writer and the held-out set.

Each generator takes `(scene, rng)` and returns a `QA` (question, short answer, its answer space and a
full-sentence response) or None when the question does not apply to the scene. Phrasings are drawn from fixed
template lists so held-out questions use phrasings seen in training. In every response the short answer is the
*first* token that belongs to the answer space (see `mmgpt.synth.answers`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from mmgpt.synth.nlg import (
    be,
    capitalise,
    count_phrase,
    plural,
    position_phrase,
    skip_phrasing_draw,
    with_article,
)
from mmgpt.synth.scene import Scene, Shape
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS, POSITIONS, SIZE_NAMES, WORD_LIST

COUNT_SPACE: list[str] = [str(i) for i in range(7)]

#: Phrasings of the questions that name what they ask about (a colour, a kind, a shape's referent); the colour
#: and count phrasings are shared with the pretraining text's copy lines (`mmgpt.synth.pretrain.copy_lines`).
COLOUR_COUNT_QUESTIONS = (
    "How many {colour} shapes are there?",
    "How many {colour} shapes can you see?",
    "Count the {colour} shapes in the image.",
)
KIND_COUNT_QUESTIONS = (
    "How many {kinds} are there?",
    "How many {kinds} can you see in the picture?",
    "Count the {kinds} in the image.",
)
COLOUR_QUESTIONS = ("What colour is {ref}?", "Which colour does {ref} have?", "Tell me the colour of {ref}.")
KIND_QUESTIONS = ("What shape is {ref}?", "What kind of shape is {ref}?", "Which shape is {ref}?")
YES_NO: list[str] = ["yes", "no"]


@dataclass(frozen=True)
class QA:
    """One question about an image: `kind` (counting|color|shape|ocr|position|size|yesno), the question, the
    short answer, the candidate short answers and a full-sentence response."""

    kind: str
    question: str
    answer: str
    answer_space: list[str] | None
    response: str


def _words(rng: random.Random) -> bool:
    """Whether to spell numbers as words in this response (about one time in three)."""
    return rng.random() < 0.33


def count_statement(n: int, noun: str) -> str:
    """ "The number of red shapes is 2.": a count of one colour or kind stated after what is counted, as the
    pretraining text states it, so that the number is predicted with its referent in context ("There are 2 red
    shapes." asks for it first). experiments/README.md ("Which colour belongs to which shape") measures what
    the referent-first forms changed.
    """
    return f"The number of {plural(noun, 2)} is {n}."


def total_statement(n: int) -> str:
    """ "The number of shapes is 3.": the pretraining text's statement of how many shapes an image holds, in the
    form the instruction data answers every count in (`count_total`). Stated "There are 3 shapes." instead, the
    bases of world version 8 read totals in that sentence, yet their tuned models answered "The number of shapes
    is 1." to most totals (experiments/README.md, "A smaller tower that sees more scenes, and totals in one
    form")."""
    return count_statement(n, "shape")


def _referent_count_response(n: int, noun: str, rng: random.Random, places: list[str]) -> str:
    """`count_statement(n, noun)`, making (and dropping) the draws of the earlier "There are N ..." form."""
    _words(rng)
    skip_phrasing_draw(rng, len(places))
    return count_statement(n, noun)


# ---- counting ---------------------------------------------------------------------------------------------
def count_total(scene: Scene, rng: random.Random) -> QA:
    """How many shapes in total, answered as the counts of one colour or kind are ("The number of shapes is 3.").

    With totals answered "There are 3 shapes in the image." and the other counts "The number of red shapes is 2.",
    tuned models often answered a total's question in the other form, with a colour the question does not name
    and the commonest count ("How many shapes can you see?" -> "The number of blue shapes is 1."): 72-78 of the
    78 held-out totals with tuning seed 1 on four bases (experiments/README.md, "Totals in the form of the other
    counts"). One form for every count leaves only its noun to choose.
    """
    n = len(scene.shapes)
    question = rng.choice(
        [
            "How many shapes are there in the image?",
            "How many shapes can you see?",
            "Count the shapes in the picture.",
            "How many objects are in this image?",
        ]
    )
    response = _referent_count_response(n, "shape", rng, ["in the image", "in the picture", "in all"])
    return QA("counting", question, str(n), COUNT_SPACE, response)


def count_colour(scene: Scene, rng: random.Random, colour: str | None = None) -> QA:
    """How many shapes of one colour (a present colour most of the time, sometimes an absent one -> 0)."""
    if colour is None:
        colour = rng.choice(scene.colours()) if rng.random() < 0.75 else rng.choice(COLOUR_NAMES)
    n = scene.count(colour=colour)
    question = rng.choice(COLOUR_COUNT_QUESTIONS).format(colour=colour)
    response = _referent_count_response(
        n, f"{colour} shape", rng, ["in the image", "in the picture", "in all"]
    )
    return QA("counting", question, str(n), COUNT_SPACE, response)


def count_kind(scene: Scene, rng: random.Random, kind: str | None = None) -> QA:
    """How many shapes of one kind."""
    if kind is None:
        kind = rng.choice(scene.kinds()) if rng.random() < 0.75 else rng.choice(KINDS)
    n = scene.count(kind=kind)
    question = rng.choice(KIND_COUNT_QUESTIONS).format(kinds=plural(kind, 2))
    response = _referent_count_response(n, kind, rng, ["in the picture", "in the image", "in all"])
    return QA("counting", question, str(n), COUNT_SPACE, response)


def count_colour_kind(scene: Scene, rng: random.Random) -> QA:
    """How many shapes of one colour and kind (taken from a shape in the scene)."""
    shape = rng.choice(scene.shapes)
    n = scene.count(colour=shape.colour, kind=shape.kind)
    noun = f"{shape.colour} {shape.kind}"
    question = rng.choice(
        [f"How many {plural(noun, 2)} are there?", f"How many {plural(noun, 2)} can you see?"]
    )
    response = _referent_count_response(n, noun, rng, ["in the image", "in the picture"])
    return QA("counting", question, str(n), COUNT_SPACE, response)


# ---- referring to one shape -------------------------------------------------------------------------------
def ref_without_colour(scene: Scene, shape: Shape) -> str | None:
    """A noun phrase naming `shape` uniquely without its colour ("the circle", "the large circle",
    "the shape at the top-left"), or None."""
    if scene.count(kind=shape.kind) == 1:
        return f"the {shape.kind}"
    if scene.count(kind=shape.kind, size=shape.size) == 1:
        return f"the {shape.size} {shape.kind}"
    if len(scene.at(shape.position)) == 1:
        return f"the shape {position_phrase(shape.position)}"
    return None


def ref_without_kind(scene: Scene, shape: Shape) -> str | None:
    """A noun phrase naming `shape` uniquely without its kind ("the red shape", "the shape on the left")."""
    if scene.count(colour=shape.colour) == 1:
        return f"the {shape.colour} shape"
    if scene.count(colour=shape.colour, size=shape.size) == 1:
        return f"the {shape.size} {shape.colour} shape"
    if len(scene.at(shape.position)) == 1:
        return f"the shape {position_phrase(shape.position)}"
    return None


def ref_full(scene: Scene, shape: Shape) -> str | None:
    """A noun phrase naming `shape` uniquely by colour and kind (maybe size), without its position."""
    if scene.count(colour=shape.colour, kind=shape.kind) == 1:
        return f"the {shape.colour} {shape.kind}"
    if scene.count(colour=shape.colour, kind=shape.kind, size=shape.size) == 1:
        return f"the {shape.size} {shape.colour} {shape.kind}"
    return None


def _pick(
    scene: Scene, rng: random.Random, ref: Callable[[Scene, Shape], str | None]
) -> tuple[Shape, str] | None:
    candidates = [(s, r) for s in scene.ordered() if (r := ref(scene, s)) is not None]
    return rng.choice(candidates) if candidates else None


def shape_statement(shape: Shape) -> str:
    """The pretraining text's statement of one shape: "There is a medium red square at the top-left."."""
    return f"There is {with_article(f'{shape.size} {shape.colour} {shape.kind}')} {position_phrase(shape.position)}."


def colour_statement(ref: str, colour: str) -> str:
    """ "The square is red.": the colour of the shape `ref` names, stated after the referent.

    Colour questions are answered in this form and the pretraining text states colours in it too, so that the
    colour is predicted with the referent in context ("There is a medium red square" asks for the colour before
    the shape it belongs to is named).
    """
    return f"{capitalise(ref)} is {colour}."


def kind_statement(ref: str, kind: str) -> str:
    """ "The red shape is a square.": the kind of the shape `ref` names, stated after the referent."""
    return f"{capitalise(ref)} is {with_article(kind)}."


def colour_of(scene: Scene, rng: random.Random, shape: Shape | None = None) -> QA | None:
    """What colour is a uniquely described shape."""
    picked = (shape, ref_without_colour(scene, shape)) if shape else _pick(scene, rng, ref_without_colour)
    if not picked or picked[1] is None:
        return None
    shape, ref = picked
    question = rng.choice(COLOUR_QUESTIONS).format(ref=ref)
    skip_phrasing_draw(rng, 3)
    return QA("color", question, shape.colour, list(COLOUR_NAMES), colour_statement(ref, shape.colour))


def kind_of(scene: Scene, rng: random.Random, shape: Shape | None = None) -> QA | None:
    """What kind of shape is a uniquely described shape."""
    picked = (shape, ref_without_kind(scene, shape)) if shape else _pick(scene, rng, ref_without_kind)
    if not picked or picked[1] is None:
        return None
    shape, ref = picked
    question = rng.choice(KIND_QUESTIONS).format(ref=ref)
    skip_phrasing_draw(rng, 3)
    return QA("shape", question, shape.kind, list(KINDS), kind_statement(ref, shape.kind))


def position_of(scene: Scene, rng: random.Random) -> QA | None:
    """Where is a uniquely described shape."""
    picked = _pick(scene, rng, ref_full)
    if not picked:
        return None
    shape, ref = picked
    question = rng.choice([f"Where is {ref}?", f"Where is {ref} in the image?", f"Where can you see {ref}?"])
    where = position_phrase(shape.position)
    response = rng.choice([f"{capitalise(ref)} is {where}.", f"It is {where} of the image."])
    if shape.position == "centre":
        response = f"{capitalise(ref)} is in the centre of the image."
    return QA("position", question, shape.position, list(POSITIONS), response)


def size_of(scene: Scene, rng: random.Random) -> QA | None:
    """What size is a uniquely described shape."""
    picked = _pick(scene, rng, ref_full)
    if not picked:
        return None
    shape, ref = picked
    question = rng.choice([f"What size is {ref}?", f"How big is {ref}?"])
    response = rng.choice([f"{capitalise(ref)} is {shape.size}.", f"It is {with_article(shape.size)} one."])
    return QA("size", question, shape.size, list(SIZE_NAMES), response)


def what_at(scene: Scene, rng: random.Random) -> QA | None:
    """What is at a position that holds exactly one shape."""
    positions = [p for p in POSITIONS if len(scene.at(p)) == 1]
    if not positions:
        return None
    position = rng.choice(positions)
    shape = scene.at(position)[0]
    where = position_phrase(position)
    question = rng.choice([f"What is {where} of the image?", f"Which shape is {where}?"])
    thing = f"{shape.size} {shape.colour} {shape.kind}"
    response = rng.choice(
        [f"There is {with_article(thing)} {where}.", f"{capitalise(with_article(thing))} is {where}."]
    )
    return QA("shape", question, shape.kind, list(KINDS), response)


# ---- yes/no -----------------------------------------------------------------------------------------------
def is_there(scene: Scene, rng: random.Random) -> QA:
    """Is there a shape of a colour (and maybe kind)."""
    colour = rng.choice(COLOUR_NAMES)
    kind = rng.choice(KINDS) if rng.random() < 0.5 else None
    noun = f"{colour} {kind}" if kind else f"{colour} shape"
    n = scene.count(colour=colour, kind=kind)
    question = rng.choice(
        [f"Is there {with_article(noun)} in the image?", f"Can you see {with_article(noun)}?"]
    )
    if n:
        response = f"Yes, there {be(n)} {count_phrase(n, noun, _words(rng))} in the image."
    else:
        response = f"No, there {be(0)} {count_phrase(0, noun)} in the image."
    return QA("yesno", question, "yes" if n else "no", YES_NO, response)


# ---- text in the image --------------------------------------------------------------------------------------
OCR_QUESTIONS = [
    "What word is written in the image?",
    "What does the text in the image say?",
    "Read the word in the image.",
    "What is written in this picture?",
]


def word_statements(scene: Scene) -> list[str]:
    """The pretraining text's two statements of a scene's word: "The word taxi is written at the top.", "The
    text says taxi."."""
    return [f"The word {scene.word} is written at the {scene.word_band}.", f"The text says {scene.word}."]


def ocr_word(scene: Scene, rng: random.Random) -> QA | None:
    """What word is written (only for scenes with a word)."""
    if not scene.word:
        return None
    # The word is read out as the pretraining text states it, which the base has learned to read off an image;
    # the draw among four (the phrasings once used here) keeps the world's random stream as it was.
    response = word_statements(scene)[rng.randrange(4) % 2]
    return QA("ocr", rng.choice(OCR_QUESTIONS), scene.word, list(WORD_LIST), response)


def has_text(scene: Scene, rng: random.Random) -> QA:
    """Is there text in the image."""
    question = rng.choice(["Is there text in the image?", "Is there any writing in this picture?"])
    if scene.word:
        response = rng.choice(
            [
                f"Yes, the word {scene.word} is written in the image.",
                f"Yes, the image has the word {scene.word}.",
            ]
        )
    else:
        response = rng.choice(
            ["No, there is no text in the image.", "No, nothing is written in this picture."]
        )
    return QA("yesno", question, "yes" if scene.word else "no", YES_NO, response)


def word_position(scene: Scene, rng: random.Random) -> QA | None:
    """Where is the word written."""
    if not scene.word:
        return None
    question = rng.choice(["Where is the word written?", "Where is the text in the image?"])
    response = f"The word {scene.word} is written at the {scene.word_band} of the image."
    return QA("position", question, scene.word_band, ["top", "bottom"], response)


#: Generators used for plain single questions, with sampling weights.
SINGLE_QUESTIONS: list[tuple[Callable[[Scene, random.Random], QA | None], float]] = [
    (count_total, 3.0),
    (count_colour, 3.0),
    (count_kind, 2.0),
    (count_colour_kind, 1.0),
    (colour_of, 3.0),
    (kind_of, 3.0),
    (position_of, 1.5),
    (what_at, 1.0),
    (size_of, 1.0),
    (is_there, 1.0),
    (ocr_word, 3.0),
    (has_text, 0.7),
    (word_position, 0.5),
]


def random_question(scene: Scene, rng: random.Random) -> QA:
    """Draw one applicable single-round question by weight (count_total always applies)."""
    generators, weights = zip(*SINGLE_QUESTIONS, strict=True)
    for _ in range(20):
        qa = rng.choices(generators, weights=weights)[0](scene, rng)
        if qa is not None:
            return qa
    return count_total(scene, rng)
