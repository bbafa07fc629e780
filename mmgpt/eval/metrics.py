"""Metrics: VQA accuracy with the official answer normalisation, CIDEr-D, exact match, response length."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "isnt": "isn't",
    "itll": "it'll",
    "its": "it's",
    "lets": "let's",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "theres": "there's",
    "theyre": "they're",
    "wasnt": "wasn't",
    "werent": "weren't",
    "whats": "what's",
    "wont": "won't",
    "wouldnt": "wouldn't",
    "youre": "you're",
    "youve": "you've",
    "im": "i'm",
    "ive": "i've",
}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
]
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")


def normalize_vqa(answer: str) -> str:
    """The official VQA evaluation's answer processing: punctuation, digits, articles, contractions."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or re.search(_COMMA_DIGIT, text) is not None:
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    text = _PERIOD.sub("", text)
    words = []
    for word in text.split():
        word = _NUMBERS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Official VQA accuracy: min(#humans who gave the answer / 3, 1), averaged over the 10 leave-one-out subsets."""
    pred = normalize_vqa(prediction)
    answers = [normalize_vqa(a) for a in human_answers]
    if not answers:
        return 0.0
    scores = []
    for i in range(len(answers)):
        others = answers[:i] + answers[i + 1 :]
        scores.append(min(1.0, sum(a == pred for a in others) / 3.0))
    return sum(scores) / len(scores)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the VQA-normalised strings are equal."""
    return float(normalize_vqa(prediction) == normalize_vqa(reference))


def response_words(text: str) -> int:
    """Length of a response in whitespace-separated words."""
    return len(text.split())


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def cider_d(predictions: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (x10) of predictions against their reference sets.

    n-grams 1-4 weighted by tf-idf with document frequencies from the references; cosine similarity with clipping
    of candidate counts by reference counts and a Gaussian length penalty (sigma 6); averaged over references and n.
    """
    if len(predictions) != len(references):
        raise ValueError("one reference set per prediction is required")
    if not predictions:
        return 0.0
    refs_tok = [[_tokenize(r) for r in refs] for refs in references]
    doc_freq: Counter = Counter()
    for refs in refs_tok:
        seen = set()
        for r in refs:
            for n in range(1, 5):
                seen.update(_ngrams(r, n))
        doc_freq.update(seen)
    log_docs = math.log(float(len(predictions)))

    def vec(words: list[str]) -> list[dict]:
        out = []
        for n in range(1, 5):
            counts = _ngrams(words, n)
            out.append({g: c * (log_docs - math.log(max(1.0, doc_freq[g]))) for g, c in counts.items()})
        return out

    total = 0.0
    for pred, refs in zip(predictions, refs_tok, strict=True):
        cand_words = _tokenize(pred)
        cand = vec(cand_words)
        score = 0.0
        for ref_words in refs:
            ref = vec(ref_words)
            delta = len(cand_words) - len(ref_words)
            for n in range(4):
                num = sum(min(v, ref[n].get(g, 0.0)) * ref[n].get(g, 0.0) for g, v in cand[n].items())
                norm_c = math.sqrt(sum(v * v for v in cand[n].values()))
                norm_r = math.sqrt(sum(v * v for v in ref[n].values()))
                if norm_c and norm_r:
                    score += num / (norm_c * norm_r) * math.exp(-(delta**2) / (2 * sigma**2))
        total += score / 4.0 / max(1, len(refs)) * 10.0
    return total / len(predictions)
