"""Question-answer data: `aokvqa`, `ocr_vqa` and `vqa` (VQA v2 / OK-VQA official files)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from mmgpt.data.sources.common import (
    Sample,
    Skips,
    field_error,
    load_json,
    not_a_list,
    require_int,
    require_str,
)
from mmgpt.data.templates import Conversation, Turn
from mmgpt.errors import DataError

OCR_SPLITS = {"train": 1, "val": 2, "test": 3}


def read_aokvqa(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """A-OKVQA list; image `{image_root}/{image_id:012d}.jpg`; answer in the authors' text:
    "The answer is {correct choice}. Because {rationales joined}"."""
    records = load_json(ann_path)
    if not isinstance(records, list):
        raise not_a_list(ann_path, records, "A-OKVQA records")
    root = image_root or ann_path.parent
    for index, record in enumerate(records):
        where = f"{ann_path}:{_record_key(record, 'question_id', index)}"
        try:
            question = require_str(record, "question")
            choice, reasons = _aokvqa_answer(record)
            image_id = require_int(record, "image_id")
        except (KeyError, TypeError, ValueError) as err:
            skips.add("malformed", where, field_error(err))
            continue
        if not choice:
            skips.add("empty_response", where, "the correct item of field 'choices' is empty")
            continue
        answer = f"The answer is {choice}."
        if reasons:
            answer += f" Because {reasons}"
        image = root / f"{image_id:012d}.jpg"
        if not image.is_file():
            skips.add("missing_image", where, str(image))
            continue
        turn = Turn(user=question.strip(), assistant=answer, num_images=1)
        key = record.get("question_id")
        yield Sample(name, str(index if key is None else key), Conversation([turn]), [image], where=where)


def _aokvqa_answer(record: dict) -> tuple[str, str]:
    """(correct choice, rationales joined by spaces) of an A-OKVQA record, both stripped; errors name the field."""
    choices = record["choices"]
    correct = record["correct_choice_idx"]
    if not isinstance(choices, list):
        raise TypeError(f"field 'choices' is {type(choices).__name__}, expected a list")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct < len(choices):
        raise ValueError(
            f"field 'correct_choice_idx' ({correct!r}) does not index the {len(choices)} choices"
        )
    choice = choices[correct]
    if not isinstance(choice, str):
        raise TypeError(f"field 'choices' item {correct} is {type(choice).__name__}, expected string")
    rationales = record.get("rationales")
    if rationales is None:
        rationales = []
    # a bare string would otherwise be iterated character by character
    if not isinstance(rationales, list) or not all(isinstance(r, str) for r in rationales):
        raise TypeError("field 'rationales' must be a list of strings")
    return choice.strip(), " ".join(r.strip() for r in rationales if r.strip())


def read_ocr_vqa(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """OCR-VQA `dataset.json` (dict keyed by id); image `{image_root}/{id}{ext of imageURL}`; an image's
    question/answer pairs become the rounds of one conversation. `split`: train/val/test or 1/2/3."""
    data = load_json(ann_path)
    if not isinstance(data, dict):
        raise DataError(f"{ann_path}: expected a JSON object keyed by image id")
    root = image_root or ann_path.parent / "images"
    wanted = _ocr_split(options.get("split"), ann_path)
    for key, record in data.items():
        where = f"{ann_path}:{key}"
        if not isinstance(record, dict):
            skips.add("malformed", where, "record is not an object")
            continue
        if wanted is not None:
            try:
                if require_int(record, "split") != wanted:
                    continue
            except (KeyError, TypeError, ValueError) as err:
                skips.add("malformed", where, field_error(err))
                continue
        questions, answers = record.get("questions"), record.get("answers")
        if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
            skips.add("malformed", where, "fields 'questions' and 'answers' must be lists of equal length")
            continue
        problem = _ocr_pairs_problem(questions, answers)
        if problem:
            skips.add("empty_response" if "empty" in problem else "malformed", where, problem)
            continue
        pairs = [(str(q).strip(), str(a).strip()) for q, a in zip(questions, answers, strict=True)]
        image = root / f"{key}{_url_suffix(record.get('imageURL'))}"
        if not image.is_file():
            skips.add("missing_image", where, str(image))
            continue
        turns = [Turn(user=q, assistant=a, num_images=1 if i == 0 else 0) for i, (q, a) in enumerate(pairs)]
        yield Sample(name, str(key), Conversation(turns), [image], where=where)


def _ocr_split(split: object, ann_path: Path) -> int | None:
    """The numeric OCR-VQA split (1 train, 2 val, 3 test) of a `split` option, None for all of them."""
    if split is None:
        return None
    number = OCR_SPLITS.get(split, split) if isinstance(split, str) else split
    if isinstance(number, str) and number.strip().isdigit():
        number = int(number)
    if number not in OCR_SPLITS.values() or isinstance(number, bool):
        raise DataError(f"{ann_path}: unknown OCR-VQA split {split!r} (use train, val or test, or 1, 2 or 3)")
    return number


def _ocr_pairs_problem(questions: list, answers: list) -> str | None:
    """What is wrong with an OCR-VQA record's question/answer lists, or None when every pair is usable.

    Numbers are accepted as text (they are answers such as a year); null or other values are not, since they
    would be trained on as the words "None" or a Python repr.
    """
    if not answers:
        return "fields 'questions' and 'answers' are empty"
    for field_name, values in (("questions", questions), ("answers", answers)):
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                return f"field '{field_name}' item {i} is {type(value).__name__}, expected string"
    for i, answer in enumerate(answers):
        if not str(answer).strip():
            return f"field 'answers' item {i} is empty"
    return None


def _url_suffix(url: object) -> str:
    """The file extension of an image URL's path (query and fragment ignored), ".jpg" when it has none."""
    path = urlparse(url).path if isinstance(url, str) else ""
    return Path(path).suffix or ".jpg"


def majority_answer(annotation: dict) -> str:
    """`multiple_choice_answer` when present, else the most common human answer."""
    answer = annotation.get("multiple_choice_answer")
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    given = annotation.get("answers")
    given = given if isinstance(given, list) else []
    # answers that are null or not text are left out rather than trained on as "None"
    answers = [a["answer"].strip() for a in given if isinstance(a, dict) and isinstance(a.get("answer"), str)]
    answers = [a for a in answers if a]
    return Counter(answers).most_common(1)[0][0] if answers else ""


def read_vqa(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """VQA v2 / OK-VQA: annotations file (`ann_path`) + questions file (`question_path`), majority answer.

    Images `{image_root}/` + options.image_pattern (default "COCO_{split}2014_{image_id:012d}.jpg", split from
    options.image_split, default "train")."""
    question_path = options.get("question_path")
    if not question_path:
        raise DataError(f"{ann_path}: the vqa reader needs question_path (the questions file)")
    annotations = load_json(ann_path)
    questions = load_json(Path(question_path))
    if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
        raise DataError(f'{ann_path}: expected {{"annotations": [...]}}')
    if not isinstance(questions, dict) or not isinstance(questions.get("questions"), list):
        raise DataError(f'{question_path}: expected {{"questions": [...]}}')
    by_id = {a.get("question_id"): a for a in annotations["annotations"] if isinstance(a, dict)}
    pattern = options.get("image_pattern", "COCO_{split}2014_{image_id:012d}.jpg")
    image_split = options.get("image_split", "train")
    _check_pattern(pattern, image_split, ann_path)
    root = image_root or ann_path.parent
    for index, record in enumerate(questions["questions"]):
        where = f"{question_path}:{_record_key(record, 'question_id', index)}"
        try:
            question = require_str(record, "question")
            image_id = require_int(record, "image_id")
            qid = record["question_id"]
        except (KeyError, TypeError, ValueError) as err:
            skips.add("malformed", where, field_error(err))
            continue
        annotation = by_id.get(qid)
        answer = majority_answer(annotation) if annotation else ""
        if not answer:
            skips.add("empty_response", where, "no annotation/answer for this question")
            continue
        image = root / pattern.format(image_id=image_id, split=image_split)
        if not image.is_file():
            skips.add("missing_image", where, str(image))
            continue
        yield Sample(
            name,
            str(qid),
            Conversation([Turn(user=question.strip(), assistant=answer, num_images=1)]),
            [image],
            where=where,
        )


def _check_pattern(pattern: object, image_split: object, ann_path: Path) -> None:
    """Fail early, naming the option, when `options.image_pattern` cannot name an image file."""
    try:
        if not isinstance(pattern, str):
            raise TypeError("not a string")
        pattern.format(image_id=0, split=image_split)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        reason = f"unknown placeholder {{{err.args[0]}}}" if isinstance(err, KeyError) else str(err)
        raise DataError(
            f"{ann_path}: options.image_pattern {pattern!r} is not usable ({reason}); it may use "
            "{image_id} and {split}, e.g. 'COCO_{split}2014_{image_id:012d}.jpg'"
        ) from err


def _record_key(record: object, key: str, index: int) -> object:
    """The record's own id for messages (`key`), else its position in the file."""
    value = record.get(key) if isinstance(record, dict) else None
    return index if value is None else value
