"""Short-answer extraction from generated responses, and caption keyword F1 (used by the evaluator).

Conventions of the synthetic world's references: for image questions and follow-ups the short answer is the
*first* token of the response that belongs to the answer space; for language-only tasks it is the *last* one
("7 plus 5 equals 12."). Number words count as digits ("three" -> "3"), plural shape names as singular, and a
numeric answer space with no number in the response falls back to "0" when the response says "no"/"none".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from mmgpt.synth.vocab import (
    CATEGORIES,
    COLOUR_NAMES,
    KINDS,
    NUMBER_WORDS,
    POSITIONS,
    SIZE_NAMES,
    WORD_LIST,
)

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(NUMBER_WORDS)}
_PLURALS = {k + "s": k for k in KINDS} | {"colours": "colour", "colors": "color"}
_ZERO_WORDS = {"no", "none", "nothing"}
DEFAULT_VOCABULARY: frozenset[str] = frozenset([*COLOUR_NAMES, *KINDS, *WORD_LIST])


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens with number words as digits and plural shape names singular.

    "Three red Circles, top-left." -> ["3", "red", "circle", "top-left"].
    """
    out = []
    for tok in _TOKEN.findall(text.lower()):
        tok = _NUMBER_WORDS.get(tok, tok)
        out.append(_PLURALS.get(tok, tok))
    return out


def normalize_answer(answer: str) -> str:
    """Normal form of a short answer for exact-match comparison ("Three" -> "3", " Red." -> "red")."""
    return " ".join(tokens(answer))


def extract_from_space(text: str, answer_space: Iterable[str], last: bool = False) -> str | None:
    """The first (or last) answer-space entry that occurs as whole tokens in `text`, in its original spelling.

    Multi-token entries ("top left") are matched as token sequences, longest first at each position. A numeric
    answer space falls back to "0" when no number occurs but the text says "no"/"none". Returns None if nothing
    matches.
    """
    space = {tuple(tokens(a)): a for a in answer_space if tokens(a)}
    if not space:
        return None
    lengths = sorted({len(k) for k in space}, reverse=True)
    toks = tokens(text)
    found: str | None = None
    for i in range(len(toks)):
        match = next((space[k] for n in lengths if (k := tuple(toks[i : i + n])) in space), None)
        if match is not None:
            if not last:
                return match
            found = match
    if found is not None:
        return found
    if "0" in space.values() and any(t in _ZERO_WORDS for t in toks):
        return "0"
    return None


def extract_number(text: str) -> str | None:
    """The first number in `text` as digits ("There are three" -> "3"); "no"/"none" -> "0"; else None."""
    for tok in tokens(text):
        if tok.isdigit():
            return str(int(tok))
    return "0" if any(t in _ZERO_WORDS for t in tokens(text)) else None


def extract_colour(text: str) -> str | None:
    """The first colour name in `text`, or None."""
    return extract_from_space(text, COLOUR_NAMES)


def extract_shape(text: str) -> str | None:
    """The first shape kind in `text` (plurals accepted), or None."""
    return extract_from_space(text, KINDS)


def extract_word(text: str) -> str | None:
    """The first word of the world's word list in `text` (case-insensitive), or None."""
    return extract_from_space(text, WORD_LIST)


def extract_yes_no(text: str) -> str | None:
    """ "yes" or "no", whichever comes first, or None."""
    return extract_from_space(text, ("yes", "no"))


_DEFAULT_SPACES: dict[str, Sequence[str]] = {
    "color": COLOUR_NAMES,
    "shape": KINDS,
    "ocr": WORD_LIST,
    "size": SIZE_NAMES,
    "position": POSITIONS,
    "category": CATEGORIES,
}


def extract_answer(kind: str, text: str, answer_space: Sequence[str] | None = None) -> str | None:
    """The short answer of a generated response for a held-out item of `kind`.

    counting: first number; color/shape/ocr: first colour/kind/word; language: last answer-space token;
    followup and others: first answer-space token. `answer_space` (from the item) overrides the defaults;
    caption/open items have no short answer (None).
    """
    if kind == "counting":
        return extract_number(text)
    if kind in ("caption", "open"):
        return None
    space = answer_space if answer_space is not None else _DEFAULT_SPACES.get(kind)
    if space is None:
        nums = [t for t in tokens(text) if t.isdigit()]
        return nums[-1] if kind == "language" and nums else None
    return extract_from_space(text, space, last=(kind == "language"))


#: Words that pick out a shape: its colour, kind, size or place in the 3x3 grid.
DESCRIPTORS: frozenset[str] = frozenset([*COLOUR_NAMES, *KINDS, *SIZE_NAMES, *POSITIONS])
#: Item kinds whose questions are about one shape or one group of shapes the question names.
REFERENT_KINDS: frozenset[str] = frozenset({"counting", "color", "shape", "followup"})


def foreign_descriptors(response: str, context: str, answer: str) -> list[str]:
    """The shape descriptors (`DESCRIPTORS`) `response` names that neither the `context` (the question and the
    dialogue before it) nor the reference `answer` names: signs that the response is about another shape."""
    allowed = {t for t in tokens(context) if t in DESCRIPTORS} | set(tokens(answer))
    return [t for t in tokens(response) if t in DESCRIPTORS and t not in allowed]


def is_correct(
    kind: str,
    response: str,
    answer: str,
    answer_space: Sequence[str] | None = None,
    context: str | None = None,
) -> bool:
    """Whether the short answer extracted from `response` equals the reference `answer` (normalised).

    With `context` (the question and the rounds before it), a response to a question about a named shape or
    group (`REFERENT_KINDS`) must also be about that one: "What colour is the star?" answered "The triangle is
    red." is wrong even when the star is red, since it names a kind the question does not (a colour, size or
    position likewise). Without `context` only the short answer is compared.
    """
    predicted = extract_answer(kind, response, answer_space)
    if predicted is None or normalize_answer(predicted) != normalize_answer(answer):
        return False
    return context is None or kind not in REFERENT_KINDS or not foreign_descriptors(response, context, answer)


def keyword_f1(prediction: str, keywords: Iterable[str], vocabulary: Iterable[str] | None = None) -> float:
    """F1 between the keywords a caption should mention and the keywords the prediction mentions.

    Recall = share of `keywords` found in `prediction`; precision = share of the prediction's vocabulary
    terms (colours, kinds and world words by default, plus the keywords themselves) that are keywords.
    Returns 1.0 when both sides are empty and 0.0 when exactly one is.
    """
    wanted = {normalize_answer(k) for k in keywords if normalize_answer(k)}
    vocab = {normalize_answer(v) for v in (DEFAULT_VOCABULARY if vocabulary is None else vocabulary)} | wanted
    said = {t for t in tokens(prediction) if t in vocab}
    if not wanted and not said:
        return 1.0
    hits = len(wanted & said)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(said), hits / len(wanted)
    return 2 * precision * recall / (precision + recall)
