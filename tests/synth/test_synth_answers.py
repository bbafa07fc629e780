"""Short-answer extraction and caption keyword F1."""

from __future__ import annotations

import pytest

from mmgpt.synth.answers import (
    extract_answer,
    extract_colour,
    extract_from_space,
    extract_number,
    extract_shape,
    extract_word,
    extract_yes_no,
    is_correct,
    keyword_f1,
    normalize_answer,
    tokens,
)
from mmgpt.synth.knowledge import NUMBER_SPACE_40


def test_tokens_normalise_numbers_and_plurals():
    assert tokens("Three red Circles, at the TOP-LEFT.") == ["3", "red", "circle", "at", "the", "top-left"]
    assert normalize_answer(" Red. ") == "red"
    assert normalize_answer("Three") == "3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("There are 3 red shapes.", "3"),
        ("I can see three shapes in the picture.", "3"),
        ("There is one circle.", "1"),
        ("There are no blue shapes.", "0"),
        ("None of them.", "0"),
        ("No, there are 2 of them.", "2"),
        ("I cannot tell.", None),
        ("There are 12 corners.", "12"),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_extract_words():
    assert extract_colour("The large circle is coloured purple.") == "purple"
    assert extract_colour("It is grey.") is None
    assert extract_shape("The red shape has the shape of a triangle.") == "triangle"
    assert extract_shape("There are two stars and a circle.") == "star"
    assert extract_word("The text says TULIP.") == "tulip"
    assert extract_word("The image shows the word cat.") == "cat"
    assert extract_word("Nothing written.") is None
    assert extract_yes_no("Yes, there is 1 red shape.") == "yes"
    assert extract_yes_no("No, there is no text in the image.") == "no"


def test_extract_from_space_first_last_and_multi_token():
    assert extract_from_space("A small red circle on the left", ["left", "top left"]) == "left"
    assert extract_from_space("It sits at the top left corner", ["left", "top left"]) == "top left"
    assert extract_from_space("7 plus 5 equals 12.", NUMBER_SPACE_40) == "7"
    assert extract_from_space("7 plus 5 equals 12.", NUMBER_SPACE_40, last=True) == "12"
    assert extract_from_space("A circle has no corners.", NUMBER_SPACE_40, last=True) == "0"
    assert extract_from_space("nothing here", []) is None


def test_extract_answer_by_kind():
    assert extract_answer("counting", "There are four shapes in the image.") == "4"
    assert extract_answer("color", "The circle is red.") == "red"
    assert extract_answer("shape", "It is a diamond.") == "diamond"
    assert extract_answer("ocr", "It says lemon.") == "lemon"
    assert extract_answer("language", "The sum of 7 and 5 is 12.", NUMBER_SPACE_40) == "12"
    assert extract_answer("language", "The sum of 7 and 5 is 12.") == "12"
    assert (
        extract_answer("language", "Mixing red and blue gives purple.", ["red", "blue", "purple"]) == "purple"
    )
    assert extract_answer("followup", "Then there would be 3 red shapes.", [str(i) for i in range(11)]) == "3"
    assert extract_answer("caption", "Two red circles.") is None
    assert is_correct("counting", "I can see three circles.", "3")
    assert not is_correct("color", "The circle is blue.", "red")


def test_keyword_f1():
    keywords = ["red", "blue", "circle", "square"]
    assert keyword_f1("A red circle and a blue square.", keywords) == pytest.approx(1.0)
    assert keyword_f1("Two red circles.", keywords) == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    # a wrong colour lowers precision: said {red, green, circle}, 2 of them right, 2 of 4 recalled
    assert keyword_f1("A red circle and a green one.", keywords) == pytest.approx(
        2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    )
    assert keyword_f1("Nothing useful here.", keywords) == 0.0
    assert keyword_f1("", []) == 1.0
    assert keyword_f1("The word TULIP in red.", ["tulip", "red"]) == pytest.approx(1.0)
    assert keyword_f1("apples", ["apple"], vocabulary=["apple", "pear"]) == 0.0  # exact tokens only
