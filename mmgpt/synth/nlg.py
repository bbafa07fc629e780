"""Small natural-language helpers: plurals, articles, count phrases, list joining, position phrases."""

from __future__ import annotations

import random

from mmgpt.synth.vocab import NUMBER_WORDS


def plural(noun: str, n: int) -> str:
    """Return `noun` in singular for n == 1, else its plural (the world's nouns all take a plain -s/-es)."""
    if n == 1:
        return noun
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    return noun + "s"


def article(word: str) -> str:
    """Return the indefinite article ("a" or "an") for `word`."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def with_article(phrase: str) -> str:
    """Prefix `phrase` with its indefinite article: "an orange circle"."""
    return f"{article(phrase)} {phrase}"


def number(n: int, as_word: bool = False) -> str:
    """Return `n` as digits, or as an English word when `as_word` (and n <= 20)."""
    if as_word and 0 <= n < len(NUMBER_WORDS):
        return NUMBER_WORDS[n]
    return str(n)


def count_phrase(n: int, noun: str, as_word: bool = False) -> str:
    """Return "no red shapes" / "1 red shape" / "3 red shapes" (or "one"/"three" when `as_word`).

    `noun` may carry adjectives; only its last word is pluralised.
    """
    head, _, last = noun.rpartition(" ")
    counted = (head + " " if head else "") + plural(last, n)
    if n == 0:
        return f"no {counted}"
    return f"{number(n, as_word)} {counted}"


def be(n: int) -> str:
    """Return "is" for n == 1 else "are" (for "there is/are")."""
    return "is" if n == 1 else "are"


def join_list(items: list[str]) -> str:
    """Join ["a", "b", "c"] as "a, b and c"."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def position_phrase(position: str) -> str:
    """Return the prepositional phrase for a grid position: "at the top-left", "in the centre", "on the left"."""
    if position == "centre":
        return "in the centre"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"at the {position}"


def capitalise(text: str) -> str:
    """Upper-case the first character only."""
    return text[:1].upper() + text[1:]


def skip_phrasing_draw(rng: random.Random, n: int) -> None:
    """Make (and drop) the draw of one of `n` phrasings that the world once chose from at this point.

    Answers now stated in one fixed form (the pretraining text's) call this where they used to draw a phrasing,
    so every later draw, and with it every other record of the world, stays as it was.
    """
    rng.randrange(n)
