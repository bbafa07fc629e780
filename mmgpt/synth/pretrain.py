"""The pretraining corpus standing in for OpenFlamingo's web data: interleaved image-text lines and plain text.

Interleaved lines carry 1-2 images, each followed by plain statements (caption, counts, colours, kinds, positions,
text) and `<|endofchunk|>`; text lines carry knowledge-base facts, arithmetic and word facts, short prose, and
question-and-answer text whose answers restate their question (copy lines and worked arithmetic). A world made
with `mmgpt synth --reading` adds passages of its instruction data (reading lines).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable

from mmgpt.synth import descriptions as D
from mmgpt.synth.knowledge import (
    SHAPE_FACTS,
    WORDS,
    arithmetic_statement,
    kb_facts,
    language_task,
)
from mmgpt.synth.nlg import capitalise, plural, with_article
from mmgpt.synth.qa import (
    COLOUR_COUNT_QUESTIONS,
    COLOUR_QUESTIONS,
    KIND_COUNT_QUESTIONS,
    colour_statement,
    count_statement,
    kind_statement,
    ref_without_colour,
    ref_without_kind,
    shape_statement,
    total_statement,
    word_statements,
)
from mmgpt.synth.scene import Scene
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS, SIZE_NAMES

IMAGE_TOKEN = "<image>"
END_OF_CHUNK = "<|endofchunk|>"


def image_statements(scene: Scene, rng: random.Random) -> str:
    """A caption followed by 2-4 true statements about `scene` and one about its text.

    The statements: the number of shapes, counts of each colour and kind present ("The number of red shapes is
    2."), one absent colour's count of 0, each shape with its size, colour and position ("There is a medium red
    square at the top-left."), and each shape's colour or kind after a referent that needs neither ("The square
    is red.", "The red shape is a square.")."""
    pool = [total_statement(len(scene.shapes))]
    pool += [count_statement(scene.count(colour=colour), f"{colour} shape") for colour in scene.colours()]
    pool += [count_statement(scene.count(kind=kind), kind) for kind in scene.kinds()]
    for shape in scene.shapes:
        pool.append(shape_statement(shape))
        if ref := ref_without_colour(scene, shape):
            pool.append(colour_statement(ref, shape.colour))
        if ref := ref_without_kind(scene, shape):
            pool.append(kind_statement(ref, shape.kind))
    absent = [c for c in COLOUR_NAMES if c not in scene.colours()]
    if absent:
        pool.append(count_statement(0, f"{rng.choice(absent)} shape"))
    text = word_statements(scene) if scene.word else ["There is no text in the image."]
    chosen = rng.sample(pool, min(len(pool), rng.randint(2, 4)))
    return " ".join([D.caption(scene, rng), *chosen, rng.choice(text)])


def interleaved_lines(
    scenes: list[Scene], paths: dict[int, str], rng: random.Random, passes: int = 2
) -> list[dict]:
    """`passes` shuffled passes over `scenes`, grouped into lines of 1-2 images: {"images", "text"}."""
    lines = []
    for _ in range(passes):
        order = list(scenes)
        rng.shuffle(order)
        i = 0
        while i < len(order):
            group = order[i : i + rng.randint(1, 2)]
            i += len(group)
            text = "".join(f"{IMAGE_TOKEN}{image_statements(s, rng)}{END_OF_CHUNK}" for s in group)
            lines.append({"images": [paths[s.image_id] for s in group], "text": text})
    return lines


def _word_facts(word: str) -> str:
    cat, colour = WORDS[word]
    facts = [
        f"The word {word} has {len(word)} letters.",
        f"The first letter of {word} is {word[0]}.",
        f"The word {word} reversed is {word[::-1]}.",
        f"The word {word} in capital letters is {word.upper()}.",
        f"{with_article(word).capitalize()} is {with_article(cat)}.",
    ]
    if colour:
        facts.append(f"{with_article(word).capitalize()} is usually {colour}.")
    return " ".join(facts)


PROSE = [
    "Shapes come in many kinds. A circle is round, while squares, triangles and diamonds have straight sides.",
    "Colours help us tell things apart. Red, orange and yellow feel warm; green, blue and purple feel cool.",
    "A picture can hold many shapes. Some are small, some are medium and some are large.",
    "When we count objects we point at each one and say the next number aloud.",
    "A word is made of letters. Reading a word means saying its letters together.",
    "Big shapes take up more space than small ones, and shapes that do not touch are easy to count.",
    "The top-left corner of a picture is where we start reading, and the bottom-right is where we stop.",
    "Adding two numbers gives a bigger number; taking one number away from another gives a smaller one.",
]


#: Question-and-answer lines per repeat of `text_lines`: copy lines and worked arithmetic. With the world's
#: statements said twice per 1000 training images, they make about a quarter and a fifth of the plain text.
COPY_LINES_PER_REPEAT = 88
ARITHMETIC_LINES_PER_REPEAT = 62
#: Question-and-answer pairs per line. A text batch pads to its longest line: with two pairs a batch of 32 is
#: about 61 tokens wide (45 with statements alone); with 2-3 pairs it was 91 and the Flamingo stage 1.19x slower.
PAIRS_PER_LINE = 2
#: Phrasings of a question about a shape's kind in the copy lines: the answer restates the whole subject.
_KIND_COPY_QUESTIONS = ("What shape is {ref}?", "What about {ref}?")


def _copy_subject(rng: random.Random) -> str:
    """A shape named by its kind, with a size and a colour each half the time: "the small red star"."""
    words = [rng.choice(SIZE_NAMES)] if rng.random() < 0.5 else []
    words += [rng.choice(COLOUR_NAMES)] if rng.random() < 0.5 else []
    return "the " + " ".join([*words, rng.choice(KINDS)])


def _copy_pair(rng: random.Random) -> tuple[str, str]:
    """One question about a shape no text describes and its answer, which restates what the question asks about."""
    draw = rng.random()
    if draw < 0.35:
        ref = _copy_subject(rng)
        question = rng.choice(COLOUR_QUESTIONS).format(ref=ref)
        return question, f"{capitalise(ref)} is the one we ask about."
    if draw < 0.55:
        colour = rng.choice(COLOUR_NAMES)
        question = rng.choice(COLOUR_COUNT_QUESTIONS).format(colour=colour)
        return question, f"The number of {colour} shapes is what we count."
    if draw < 0.75:
        kinds = plural(rng.choice(KINDS), 2)
        question = rng.choice(KIND_COUNT_QUESTIONS).format(kinds=kinds)
        return question, f"The number of {kinds} is what we count."
    ref = _copy_subject(rng)
    return rng.choice(_KIND_COPY_QUESTIONS).format(ref=ref), f"{capitalise(ref)}."


def _question_lines(n: int, draw_pair: Callable[[], tuple[str, str]]) -> list[str]:
    """`n` lines of PAIRS_PER_LINE "Question: … Answer: …" pairs, each pair from `draw_pair()`."""
    return [
        " ".join(f"Question: {q} Answer: {a}" for q, a in (draw_pair() for _ in range(PAIRS_PER_LINE)))
        for _ in range(n)
    ]


def copy_lines(rng: random.Random, n: int) -> list[str]:
    """`n` lines of PAIRS_PER_LINE questions about shapes no text describes, each answered by restating the
    shape, colour or kind it names ("Question: What colour is the large star? Answer: The large star is the one
    we ask about.").

    Only copying from the question predicts these answers. They stand in for the copying a pretrained LLaMA
    brings: a base pretrained without them names another shape than the one asked about in about half its
    answers, taking the referent from the image (experiments/README.md, "Copy lines in the plain text"). Their
    subjects are drawn freely; subjects in the held-out questions' own forms ("the red shape", "the shape on
    the left") taught the tuned model less (same section)."""
    return _question_lines(n, lambda: _copy_pair(rng))


def arithmetic_lines(rng: random.Random, allowed: dict[str, list[tuple[int, int]]], n: int) -> list[str]:
    """`n` lines of PAIRS_PER_LINE arithmetic questions on the `allowed` operand pairs, each answered as the
    instruction data answers it, by restating the operation and its result ("Question: Subtract 3 from 18.
    Answer: 18 minus 3 equals 15."). Beside the copy lines they keep held-out arithmetic, which copy lines alone
    cost."""

    def pair() -> tuple[str, str]:
        item = language_task(rng.choice(("sum", "difference")), rng, allowed)
        return item.question, item.response

    return _question_lines(n, pair)


#: How often each word form of the instruction data is read in the reading lines (where the data has that many
#: passages holding it), and the longest passage in words: a text batch pads to its longest line.
READING_MIN_COUNT = 2
READING_MAX_WORDS = 40
_SENTENCE_END = re.compile(r"(?<=[.?!])(\s+)")
_WORD = re.compile(r"\S+")
_PUNCTUATION = ".,?!:;\"'()"


def word_forms(text: str) -> set[tuple[bool, str]]:
    """The words of `text` as a byte-level tokenizer tells them apart: (after a space, the word without the
    punctuation around it). "How" opening an instruction and " how" inside one are different tokens."""
    forms = set()
    for match in _WORD.finditer(text):
        word = match.group().strip(_PUNCTUATION)
        if word:
            forms.add((match.start() > 0 and text[match.start() - 1] == " ", word))
    return forms


def passages(text: str, max_words: int = READING_MAX_WORDS) -> list[str]:
    """`text` cut at sentence ends into runs of whole sentences of at most `max_words` words each (a longer
    sentence is a passage of its own); the sentences of a run keep the space or line break between them."""
    pieces = _SENTENCE_END.split(text.strip())  # sentence, separator, sentence, ...
    out: list[str] = []
    words = 0
    for i in range(0, len(pieces), 2):
        sentence, n = pieces[i], len(pieces[i].split())
        if out and words + n <= max_words:
            out[-1] += pieces[i - 1] + sentence
            words += n
        else:
            out.append(sentence)
            words = n
    return out


def reading_lines(
    turns: Iterable[str],
    rng: random.Random,
    min_count: int = READING_MIN_COUNT,
    max_words: int = READING_MAX_WORDS,
) -> list[str]:
    """Passages of instruction data (`turns`: instructions, inputs or responses, as the template renders them),
    one a line and unpaired, chosen so that every word form of `turns` (`word_forms`) is read at least
    `min_count` times where the passages allow.

    They stand in for the breadth of a pretrained LLaMA's reading: the demo's base never reads "How" opening a
    line, " would" or "Yes", and such tokens keep their random initial embeddings, which LoRA cannot train
    (`python experiments/unread_tokens.py`). The demo's world has none: bases that read them answered
    follow-ups worse (experiments/README.md, "Words the base never read").
    """
    candidates = sorted({p for t in turns for p in passages(t, max_words)})
    rng.shuffle(candidates)
    read: Counter = Counter()
    lines = []
    for passage in candidates:
        forms = word_forms(passage)
        if any(read[f] < min_count for f in forms):
            lines.append(passage)
            read.update(forms)
    return lines


def text_lines(
    rng: random.Random,
    allowed: dict[str, list[tuple[int, int]]],
    repeats: int = 1,
    reading: Iterable[str] = (),
) -> list[dict]:
    """Plain-text lines {"text"}, shuffled: `repeats` times the knowledge-base facts, arithmetic (on the
    `allowed` operand pairs only, see `knowledge.allowed_pairs`), word facts and prose, then per repeat
    COPY_LINES_PER_REPEAT copy lines and ARITHMETIC_LINES_PER_REPEAT worked-arithmetic lines, and the
    `reading` lines (see `reading_lines`) once."""
    lines: list[str] = []
    facts = kb_facts()
    for _ in range(repeats):
        rng.shuffle(facts)
        lines += [" ".join(facts[i : i + 4]) for i in range(0, len(facts), 4)]
        statements = []
        for op in ("sum", "difference"):
            statements += [arithmetic_statement(op, a, b) for a, b in allowed[op]]
        rng.shuffle(statements)
        lines += [" ".join(statements[i : i + 5]) for i in range(0, len(statements), 5)]
        lines += [_word_facts(w) for w in WORDS]
        for kind in KINDS:
            c = SHAPE_FACTS[kind]["corners"]
            lines.append(
                f"{with_article(kind).capitalize()} has {'no' if c == 0 else c} {plural('corner', c)}. "
                f"Two {plural(kind, 2)} together have {2 * c} corners."
            )
        lines += PROSE
    lines += copy_lines(rng, COPY_LINES_PER_REPEAT * repeats)
    lines += arithmetic_lines(rng, allowed, ARITHMETIC_LINES_PER_REPEAT * repeats)
    lines += reading
    rng.shuffle(lines)
    return [{"text": t} for t in lines]
