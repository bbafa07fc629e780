"""Metrics: VQA accuracy with the official answer normalisation, CIDEr-D, exact match, response length."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# The official evaluation's contraction table, as "written>normalised" pairs. Words are lowercased before
# the lookup, so its capitalised entries ("Im", "Ive", "Id've", "I'dve") never apply and are left out, as are
# its two entries that map a word to itself; "its" is not in it ("its" and "it's" stay different answers).
_CONTRACTION_PAIRS = """
aint>ain't arent>aren't cant>can't couldve>could've couldnt>couldn't couldn'tve>couldn't've
couldnt've>couldn't've didnt>didn't doesnt>doesn't dont>don't hadnt>hadn't hadnt've>hadn't've
hadn'tve>hadn't've hasnt>hasn't havent>haven't hed>he'd hed've>he'd've he'dve>he'd've hes>he's
howd>how'd howll>how'll hows>how's isnt>isn't itd>it'd itd've>it'd've it'dve>it'd've itll>it'll
maam>ma'am mightnt>mightn't mightnt've>mightn't've mightn'tve>mightn't've mightve>might've
mustnt>mustn't mustve>must've neednt>needn't notve>not've oclock>o'clock oughtnt>oughtn't
ow's'at>'ow's'at 'ows'at>'ow's'at 'ow'sat>'ow's'at shant>shan't shed've>she'd've she'dve>she'd've
shouldve>should've shouldnt>shouldn't shouldnt've>shouldn't've shouldn'tve>shouldn't've
somebody'd>somebodyd somebodyd've>somebody'd've somebody'dve>somebody'd've somebodyll>somebody'll
somebodys>somebody's someoned>someone'd someoned've>someone'd've someone'dve>someone'd've
someonell>someone'll someones>someone's somethingd>something'd somethingd've>something'd've
something'dve>something'd've somethingll>something'll thats>that's thered>there'd
thered've>there'd've there'dve>there'd've therere>there're theres>there's theyd>they'd
theyd've>they'd've they'dve>they'd've theyll>they'll theyre>they're theyve>they've twas>'twas
wasnt>wasn't wed've>we'd've we'dve>we'd've weve>we've werent>weren't whatll>what'll whatre>what're
whats>what's whatve>what've whens>when's whered>where'd wheres>where's whereve>where've whod>who'd
whod've>who'd've who'dve>who'd've wholl>who'll whos>who's whove>who've whyll>why'll whyre>why're
whys>why's wont>won't wouldve>would've wouldnt>wouldn't wouldnt've>wouldn't've
wouldn'tve>wouldn't've yall>y'all yall'll>y'all'll y'allll>y'all'll yall'd've>y'all'd've
y'alld've>y'all'd've y'all'dve>y'all'd've youd>you'd youd've>you'd've you'dve>you'd've youll>you'll
youre>you're youve>you've
"""
_CONTRACTIONS = dict(pair.split(">") for pair in _CONTRACTION_PAIRS.split())
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
    original = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    # Whether a mark is deleted or becomes a space is decided on the answer as given, not on the text left by
    # the marks handled before it, as the official evaluator does.
    digit_comma = re.search(_COMMA_DIGIT, original) is not None
    text = original
    for p in _PUNCT:
        if p + " " in original or " " + p in original or digit_comma:
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
    """Official VQA accuracy: min(#humans who gave the answer / 3, 1), averaged over the 10 leave-one-out subsets.

    The prediction and every human answer are normalised with `normalize_vqa`. The official script normalises
    the human answers only when they disagree, so the two differ only where ten identical human answers are not
    already in normal form.
    """
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


# The COCO caption evaluation tokenises with the Penn Treebank tokenizer and drops punctuation tokens: clitics
# become tokens of their own ("don't" -> "do n't", "dog's" -> "dog 's") and hyphenated words and decimals stay
# whole ("t-shirt", "3.5"). These two patterns do the same for plain caption text without the Java tool.
_CLITIC = re.compile(r"(?<=[a-z0-9])(n't|'s|'re|'ve|'ll|'d|'m)\b")
_CAPTION_TOKEN = re.compile(r"n't|'[a-z]+|\d+(?:[.,]\d+)+|[a-z0-9]+(?:-[a-z0-9]+)*")


def caption_tokens(text: str) -> list[str]:
    """The lowercased words of a caption as CIDEr-D counts them, punctuation dropped (see `_CLITIC`)."""
    return _CAPTION_TOKEN.findall(_CLITIC.sub(r" \1", text.lower().replace("\u2019", "'")))


def cider_d(predictions: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0) -> float:
    """Corpus CIDEr-D (x10) of predictions against their reference sets.

    n-grams 1-4 weighted by tf-idf with document frequencies from the references; cosine similarity with clipping
    of candidate counts by reference counts and a Gaussian length penalty (sigma 6); averaged over references and n.
    """
    if len(predictions) != len(references):
        raise ValueError("one reference set per prediction is required")
    if not predictions:
        return 0.0
    refs_tok = [[caption_tokens(r) for r in refs] for refs in references]
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
        cand_words = caption_tokens(pred)
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
