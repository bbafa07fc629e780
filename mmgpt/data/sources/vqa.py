"""Question-answer data: `aokvqa`, `ocr_vqa` and `vqa` (VQA v2 / OK-VQA official files)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from mmgpt.data.sources.common import Sample, Skips, load_json, require_str
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
        raise DataError(f"{ann_path}: expected a JSON list of A-OKVQA records")
    root = image_root or ann_path.parent
    for index, record in enumerate(records):
        where = f"{ann_path}:{record.get('question_id', index) if isinstance(record, dict) else index}"
        try:
            question = require_str(record, "question")
            choices = record["choices"]
            correct = record["correct_choice_idx"]
            rationales = record.get("rationales") or []
            image_id = int(record["image_id"])
            if (
                not isinstance(choices, list)
                or not isinstance(correct, int)
                or not 0 <= correct < len(choices)
            ):
                raise ValueError("correct_choice_idx does not index choices")
        except (KeyError, TypeError, ValueError) as err:
            skips.add("malformed", where, str(err))
            continue
        answer = f"The answer is {choices[correct]}."
        reasons = " ".join(str(r).strip() for r in rationales if str(r).strip())
        if reasons:
            answer += f" Because {reasons}"
        image = root / f"{image_id:012d}.jpg"
        if not image.exists():
            skips.add("missing_image", where, str(image))
            continue
        turn = Turn(user=question.strip(), assistant=answer, num_images=1)
        yield Sample(name, str(record.get("question_id", index)), Conversation([turn]), [image])


def read_ocr_vqa(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """OCR-VQA `dataset.json` (dict keyed by id); image `{image_root}/{id}{ext of imageURL}`; an image's
    question/answer pairs become the rounds of one conversation. `split`: train/val/test or 1/2/3."""
    data = load_json(ann_path)
    if not isinstance(data, dict):
        raise DataError(f"{ann_path}: expected a JSON object keyed by image id")
    root = image_root or ann_path.parent / "images"
    split = options.get("split")
    wanted = OCR_SPLITS.get(split, split) if split is not None else None
    for key, record in data.items():
        where = f"{ann_path}:{key}"
        if not isinstance(record, dict):
            skips.add("malformed", where, "record is not an object")
            continue
        if wanted is not None and int(record.get("split", -1)) != int(wanted):
            continue
        questions, answers = record.get("questions"), record.get("answers")
        if not isinstance(questions, list) or not isinstance(answers, list) or len(questions) != len(answers):
            skips.add("malformed", where, "questions and answers must be lists of equal length")
            continue
        pairs = [(str(q).strip(), str(a).strip()) for q, a in zip(questions, answers, strict=True)]
        if not pairs or any(not a for _, a in pairs):
            skips.add("empty_response", where, "empty answer")
            continue
        ext = Path(str(record.get("imageURL", ""))).suffix or ".jpg"
        image = root / f"{key}{ext}"
        if not image.exists():
            skips.add("missing_image", where, str(image))
            continue
        turns = [Turn(user=q, assistant=a, num_images=1 if i == 0 else 0) for i, (q, a) in enumerate(pairs)]
        yield Sample(name, str(key), Conversation(turns), [image])


def majority_answer(annotation: dict) -> str:
    """`multiple_choice_answer` when present, else the most common human answer."""
    answer = annotation.get("multiple_choice_answer")
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    answers = [a.get("answer", "").strip() for a in annotation.get("answers", []) if isinstance(a, dict)]
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
    root = image_root or ann_path.parent
    for index, record in enumerate(questions["questions"]):
        where = f"{question_path}:{record.get('question_id', index) if isinstance(record, dict) else index}"
        try:
            question = require_str(record, "question")
            image_id = int(record["image_id"])
            qid = record["question_id"]
        except (KeyError, TypeError, ValueError) as err:
            skips.add("malformed", where, str(err))
            continue
        annotation = by_id.get(qid)
        answer = majority_answer(annotation) if annotation else ""
        if not answer:
            skips.add("empty_response", where, "no annotation/answer for this question")
            continue
        image = root / pattern.format(image_id=image_id, split=image_split)
        if not image.exists():
            skips.add("missing_image", where, str(image))
            continue
        yield Sample(
            name,
            str(qid),
            Conversation([Turn(user=question.strip(), assistant=answer, num_images=1)]),
            [image],
        )
