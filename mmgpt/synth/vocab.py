"""The closed vocabulary of the synthetic world: colours, shape kinds, sizes, positions, numbers and words.

Everything here is a plain constant so that `mmgpt.synth.answers` (used by the evaluator) can import it cheaply.
"""

from __future__ import annotations

#: Saturated, well-separated fill colours (RGB); names are the answers for colour questions.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 165, 55),
    "blue": (35, 80, 225),
    "yellow": (235, 205, 0),
    "purple": (135, 45, 185),
    "orange": (245, 125, 0),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

#: Shape kinds, chosen to stay distinguishable at 64 px.
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star")

#: Size names and their bounding-box extent in pixels at a 64 px image (scaled with the image size).
SIZES: dict[str, int] = {"small": 12, "medium": 17, "large": 23}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)

#: 3x3 grid of position names, row-major (top row first).
POSITIONS: tuple[str, ...] = (
    "top-left",
    "top",
    "top-right",
    "left",
    "centre",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
)

NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)

#: Word categories of the knowledge base.
CATEGORIES: tuple[str, ...] = ("animal", "fruit", "flower", "vehicle", "object")

#: The words that may be written on images: word -> (category, typical colour or None). 3-5 letters each,
#: none of them a colour, shape, size, position or number word, and no word is another one reversed.
WORDS: dict[str, tuple[str, str | None]] = {
    "cat": ("animal", None),
    "dog": ("animal", None),
    "fox": ("animal", "orange"),
    "frog": ("animal", "green"),
    "bird": ("animal", None),
    "fish": ("animal", None),
    "lion": ("animal", "yellow"),
    "bear": ("animal", None),
    "owl": ("animal", None),
    "apple": ("fruit", "red"),
    "lemon": ("fruit", "yellow"),
    "plum": ("fruit", "purple"),
    "pear": ("fruit", "green"),
    "kiwi": ("fruit", "green"),
    "grape": ("fruit", "purple"),
    "mango": ("fruit", "orange"),
    "rose": ("flower", "red"),
    "tulip": ("flower", None),
    "lily": ("flower", None),
    "iris": ("flower", "purple"),
    "daisy": ("flower", None),
    "car": ("vehicle", None),
    "bus": ("vehicle", None),
    "boat": ("vehicle", None),
    "ship": ("vehicle", None),
    "taxi": ("vehicle", "yellow"),
    "van": ("vehicle", None),
    "cup": ("object", None),
    "hat": ("object", None),
    "key": ("object", None),
    "lamp": ("object", None),
    "book": ("object", None),
    "sock": ("object", None),
    "ring": ("object", None),
}
WORD_LIST: tuple[str, ...] = tuple(WORDS)

LETTERS: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz")
