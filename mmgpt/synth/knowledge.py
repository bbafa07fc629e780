"""The world's small fixed knowledge base and the language-only tasks built on it.

Language tasks need no image: small arithmetic (numbers 0-20), word manipulation over the world's word list and
facts from the knowledge base. `language_task(name, rng, ...)` returns a `LanguageItem` whose response is one
short full sentence with the short answer as the *last* token of the answer space (see `mmgpt.synth.answers`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mmgpt.synth.nlg import join_list, skip_phrasing_draw, with_article
from mmgpt.synth.vocab import CATEGORIES, COLOUR_NAMES, KINDS, LETTERS, WORD_LIST, WORDS

#: Corners and sides of each shape kind (a five-pointed star outline has 10 corners and 10 sides).
SHAPE_FACTS: dict[str, dict[str, int]] = {
    "circle": {"corners": 0, "sides": 0},
    "square": {"corners": 4, "sides": 4},
    "triangle": {"corners": 3, "sides": 3},
    "diamond": {"corners": 4, "sides": 4},
    "star": {"corners": 10, "sides": 10},
}
#: Paint mixing: unordered pair of colours -> result; every colour named is one of the world's colours.
MIXES: dict[tuple[str, str], str] = {
    ("blue", "red"): "purple",
    ("red", "yellow"): "orange",
    ("blue", "yellow"): "green",
}
WARM_COLOURS = ("red", "orange", "yellow")

NUMBER_SPACE_40 = [str(i) for i in range(41)]
NUMBER_SPACE_20 = [str(i) for i in range(21)]
SMALL_NUMBERS = [str(i) for i in range(11)]

#: Tasks drawn for training, with weights; HELDOUT_TASKS are the ones with an exact short answer.
TRAIN_TASKS: dict[str, float] = {
    "sum": 3.0,
    "difference": 3.0,
    "reverse": 1.5,
    "uppercase": 0.7,
    "first_letter": 1.0,
    "length": 1.0,
    "corners": 0.7,
    "sides": 0.5,
    "mix": 0.7,
    "category": 1.2,
    "typical_colour": 0.6,
}
HELDOUT_TASKS: dict[str, float] = {k: v for k, v in TRAIN_TASKS.items() if k != "uppercase"}


def knowledge_base() -> dict:
    """The knowledge base as a JSON-ready dict (written into world.json)."""
    return {
        "shapes": SHAPE_FACTS,
        "mixes": [{"colours": list(pair), "result": result} for pair, result in MIXES.items()],
        "words": {w: {"category": c, "colour": col} for w, (c, col) in WORDS.items()},
        "warm_colours": list(WARM_COLOURS),
    }


def arithmetic_statement(op: str, a: int, b: int, result: int | None = None) -> str:
    """The pretraining text's statement of a sum or difference ("sum"/"difference"): "7 plus 5 equals 12.".

    `result` states another number in place of the true one (a probe scores every candidate in this form).
    """
    if result is None:
        result = a + b if op == "sum" else a - b
    return f"{a} {'plus' if op == 'sum' else 'minus'} {b} equals {result}."


def mix_statement(a: str, b: str, result: str) -> str:
    """The knowledge base's statement of a colour mix: "Mixing red and blue gives purple."."""
    return f"Mixing {a} and {b} gives {result}."


def kb_facts() -> list[str]:
    """Every knowledge-base fact as one declarative sentence."""
    facts = []
    for kind, f in SHAPE_FACTS.items():
        corners = "no corners" if f["corners"] == 0 else f"{f['corners']} corners"
        sides = "no straight sides" if f["sides"] == 0 else f"{f['sides']} sides"
        facts.append(f"{with_article(kind).capitalize()} has {corners} and {sides}.")
    for (a, b), c in MIXES.items():
        facts.append(mix_statement(a, b, c))
    for w, (cat, col) in WORDS.items():
        facts.append(f"{with_article(w).capitalize()} is {with_article(cat)}.")
        if col:
            facts.append(f"{with_article(w).capitalize()} is usually {col}.")
    for c in COLOUR_NAMES:
        warmth = "warm" if c in WARM_COLOURS else "cool"
        facts.append(f"{c.capitalize()} is a {warmth} colour.")
    return facts


@dataclass(frozen=True)
class LanguageItem:
    """A language-only task: `question` is self-contained; `instruction` + `input` is the Alpaca-style split
    of the same request. `answer` is the short answer inside `response`."""

    task: str
    question: str
    instruction: str
    input: str
    response: str
    answer: str
    answer_space: list[str]
    category: str


def arithmetic_pairs(op: str) -> list[tuple[int, int]]:
    """All operand pairs of 0-20 for "sum", or the non-negative ones for "difference"."""
    return [(a, b) for a in range(21) for b in range(21) if op == "sum" or a >= b]


def reserved_pairs(seed: int, fraction: float = 0.12) -> dict[str, set[tuple[int, int]]]:
    """Arithmetic pairs kept out of all training data and used only by the held-out set, per operation."""
    out = {}
    for op in ("sum", "difference"):
        pairs = arithmetic_pairs(op)
        rng = random.Random(f"{seed}-reserved-{op}")
        out[op] = set(rng.sample(pairs, round(len(pairs) * fraction)))
    return out


def allowed_pairs(reserved: dict[str, set[tuple[int, int]]]) -> dict[str, list[tuple[int, int]]]:
    """Per operation, the operand pairs training may use: those of `arithmetic_pairs` not in `reserved` (see
    `reserved_pairs`), in `arithmetic_pairs` order."""
    return {op: [p for p in arithmetic_pairs(op) if p not in held] for op, held in reserved.items()}


def _a(word: str) -> str:
    return with_article(word).capitalize()


def language_task(
    name: str, rng: random.Random, allowed_pairs: dict[str, list[tuple[int, int]]] | None = None
) -> LanguageItem:
    """Build one item of task `name`; arithmetic operands are drawn from `allowed_pairs[name]` when given."""
    if name in ("sum", "difference"):
        pool = allowed_pairs[name] if allowed_pairs else arithmetic_pairs(name)
        a, b = rng.choice(pool)
        if name == "sum":
            s = a + b
            q = rng.choice(
                [f"What is {a} plus {b}?", f"What is the sum of {a} and {b}?", f"Add {a} and {b}."]
            )
            skip_phrasing_draw(rng, 3)
            r = arithmetic_statement("sum", a, b)
            return LanguageItem(
                name, q, "Add the two numbers.", f"{a} and {b}", r, str(s), NUMBER_SPACE_40, "open_qa"
            )
        d = a - b
        q = rng.choice(
            [
                f"What is {a} minus {b}?",
                f"Subtract {b} from {a}.",
                f"What is the difference between {a} and {b}?",
            ]
        )
        skip_phrasing_draw(rng, 3)
        r = arithmetic_statement("difference", a, b)
        return LanguageItem(
            name,
            q,
            "Subtract the second number from the first.",
            f"{a} and {b}",
            r,
            str(d),
            NUMBER_SPACE_20,
            "open_qa",
        )
    if name in ("reverse", "uppercase", "first_letter", "length"):
        w = rng.choice(WORD_LIST)
        if name == "reverse":
            rev = w[::-1]
            q = rng.choice([f"Reverse the word {w}.", f"Spell the word {w} backwards."])
            r = rng.choice([f"The word {w} reversed is {rev}.", f"Spelled backwards, {w} becomes {rev}."])
            space = [x[::-1] for x in WORD_LIST]
            return LanguageItem(
                name, q, "Reverse the letters of the given word.", w, r, rev, space, "general_qa"
            )
        if name == "uppercase":
            q = rng.choice([f"Write the word {w} in capital letters.", f"Convert {w} to uppercase."])
            r = f"The word {w} in capital letters is {w.upper()}."
            return LanguageItem(
                name,
                q,
                "Convert the given word to uppercase.",
                w,
                r,
                w.upper(),
                [x.upper() for x in WORD_LIST],
                "general_qa",
            )
        if name == "first_letter":
            q = rng.choice(
                [f"What is the first letter of the word {w}?", f"Which letter does {w} start with?"]
            )
            r = rng.choice(
                [f"The first letter of {w} is {w[0]}.", f"The word {w} starts with the letter {w[0]}."]
            )
            return LanguageItem(
                name, q, "Give the first letter of the given word.", w, r, w[0], list(LETTERS), "general_qa"
            )
        q = rng.choice([f"How many letters are in the word {w}?", f"How long is the word {w}?"])
        r = rng.choice(
            [f"The word {w} has {len(w)} letters.", f"{w.capitalize()} is spelled with {len(w)} letters."]
        )
        return LanguageItem(
            name, q, "Count the letters in the given word.", w, r, str(len(w)), SMALL_NUMBERS, "general_qa"
        )
    if name in ("corners", "sides"):
        kind = rng.choice(KINDS)
        n = SHAPE_FACTS[kind][name]
        noun = name if name == "corners" else "sides"
        q = rng.choice(
            [
                f"How many {noun} does {with_article(kind)} have?",
                f"How many {noun} has {with_article(kind)} got?",
            ]
        )
        r = f"{_a(kind)} has no {noun}." if n == 0 else f"{_a(kind)} has {n} {noun}."
        return LanguageItem(
            name, q, f"How many {noun} does the given shape have?", kind, r, str(n), SMALL_NUMBERS, "open_qa"
        )
    if name == "mix":
        (a, b), c = rng.choice(list(MIXES.items()))
        if rng.random() < 0.5:
            a, b = b, a
        q = rng.choice(
            [f"What colour do you get by mixing {a} and {b}?", f"What colour do {a} and {b} make when mixed?"]
        )
        skip_phrasing_draw(rng, 2)
        r = mix_statement(a, b, c)
        return LanguageItem(
            name,
            q,
            "Which colour do you get when mixing these two colours?",
            f"{a} and {b}",
            r,
            c,
            list(COLOUR_NAMES),
            "open_qa",
        )
    if name == "category":
        w = rng.choice(WORD_LIST)
        cat = WORDS[w][0]
        options = join_list([with_article(c) for c in CATEGORIES]).replace(" and ", " or ")
        q = rng.choice([f"What kind of thing is {with_article(w)}?", f"Is {with_article(w)} {options}?"])
        r = rng.choice([f"{_a(w)} is {with_article(cat)}.", f"{_a(w)} is a kind of {cat}."])
        return LanguageItem(
            name, q, f"Classify the word as {options}.", w, r, cat, list(CATEGORIES), "classification"
        )
    if name == "typical_colour":
        w = rng.choice([x for x, (_, col) in WORDS.items() if col])
        col = WORDS[w][1]
        q = rng.choice(
            [f"What colour is {with_article(w)} usually?", f"What is the usual colour of {with_article(w)}?"]
        )
        r = rng.choice([f"{_a(w)} is usually {col}.", f"The usual colour of {with_article(w)} is {col}."])
        return LanguageItem(
            name, q, "What is the usual colour of the given thing?", w, r, col, list(COLOUR_NAMES), "open_qa"
        )
    raise ValueError(f"unknown language task {name!r}")


def brainstorm(rng: random.Random) -> tuple[str, str]:
    """A brainstorming instruction ("Name three fruits.") and its response."""
    cat = rng.choice(CATEGORIES)
    members = [w for w, (c, _) in WORDS.items() if c == cat]
    picked = rng.sample(members, 3)
    noun = "things" if cat == "object" else f"{cat}s"
    return f"Name three {noun}.", f"Three {noun} are {join_list(picked)}."


def creative(rng: random.Random) -> tuple[str, str]:
    """A short creative-writing instruction about a coloured shape and its response."""
    colour, kind = rng.choice(COLOUR_NAMES), rng.choice(KINDS)
    corners = SHAPE_FACTS[kind]["corners"]
    feel = "warm" if colour in WARM_COLOURS else "cool"
    body = "It is perfectly round" if corners == 0 else f"Its {corners} corners are sharp"
    opening = rng.choice(["Once upon a time", "One sunny morning", "Long ago"])
    return (
        f"Write a short story about {with_article(colour)} {kind}.",
        f"{opening}, {with_article(colour)} {kind} sat on a light page. {body}, and its {feel} {colour} colour "
        f"made every other shape smile.",
    )


def closed_qa(rng: random.Random) -> tuple[str, str, str]:
    """A reading-comprehension item: (instruction, context, response) answerable from the context alone."""
    w = rng.choice(WORD_LIST)
    cat, col = WORDS[w]
    context = f"{_a(w)} is {with_article(cat)}. The word {w} has {len(w)} letters."
    if col:
        context += f" {_a(w)} is usually {col}."
    return (
        f"According to the text, what kind of thing is {with_article(w)}?",
        context,
        f"{_a(w)} is {with_article(cat)}.",
    )
