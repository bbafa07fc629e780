"""Generation-based evaluation on held-out data (the synthetic world's `eval/heldout.jsonl`, VQA, COCO captions).

Prompts are rendered with the training template (history rounds complete, the question open), generated greedily
in batches with left padding, and scored per item kind. Two baselines ignore the image: `chance` guesses uniformly
from each item's answer space, `most_frequent` always gives the commonest answer of the item's kind.
"""

from __future__ import annotations

import json
import logging
import random
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmgpt.data.dataset import load_image
from mmgpt.data.templates import Conversation, Turn, encode_prompt
from mmgpt.errors import DataError
from mmgpt.eval.metrics import cider_d, response_words, vqa_accuracy

logger = logging.getLogger(__name__)

METRIC_OF_KIND = {
    "counting": "counting_acc",
    "color": "color_acc",
    "shape": "color_acc",  # colour/shape QA accuracy
    "ocr": "ocr_em",
    "caption": "caption_f1",
    "language": "language_acc",
    "followup": "followup_acc",
    "open": "mean_response_words",
}
METRICS = (
    "counting_acc",
    "color_acc",
    "ocr_em",
    "caption_f1",
    "language_acc",
    "followup_acc",
    "mean_response_words",
)


def load_heldout(path: str | Path, limit: int | None = None) -> list[dict]:
    """Items of a held-out jsonl file (optionally the first `limit` of each kind)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"evaluation file not found: {path}")
    items, per_kind = [], defaultdict(int)
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err
        if limit is not None and per_kind[item["kind"]] >= limit:
            continue
        per_kind[item["kind"]] += 1
        item["_root"] = str(path.parent.parent)
        items.append(item)
    return items


def _conversation(item: dict) -> Conversation:
    has_image = bool(item.get("image"))
    turns = [Turn(h["question"], h["answer"]) for h in item.get("history", [])]
    turns.append(Turn(item["question"], None))
    if has_image:
        turns[0].num_images = 1
    return Conversation(turns)


def generate_answers(
    model: Any, items: Sequence[dict], batch_size: int = 16, max_new_tokens: int = 48, progress: bool = True
) -> list[str]:
    """Greedy replies for held-out items, batched (items with and without images in separate batches)."""
    tokenizer = model.tokenizer
    pad = model.config.pad_token_id
    # batches of one kind of question end together (short answers do not wait for long captions), and similar
    # prompt lengths need little padding
    order = sorted(
        range(len(items)),
        key=lambda i: (bool(items[i].get("image")), items[i].get("kind", ""), len(items[i]["question"])),
    )
    replies: list[str] = [""] * len(items)
    bar = None
    if progress:
        from mmgpt.progress import progress_bar

        bar = progress_bar(total=len(items), desc="eval", unit="item", dynamic_ncols=True)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        groups = defaultdict(list)
        for i in chunk:
            groups[bool(items[i].get("image"))].append(i)
        for with_image, idx in groups.items():
            prompts = [encode_prompt(_conversation(items[i]), tokenizer) for i in idx]
            width = max(map(len, prompts))
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, p in enumerate(prompts):
                ids[row, width - len(p) :] = torch.tensor(p)
                mask[row, width - len(p) :] = 1
            vision_x = None
            if with_image:
                images = []
                for i in idx:
                    image = load_image(Path(items[i]["_root"]) / items[i]["image"])
                    if image is None:
                        raise DataError(f"cannot read image {items[i]['image']} of item {items[i]['id']}")
                    images.append(image)
                vision_x = model.image_processor.batch(images)[:, None, None].to(model.dtype)
            with torch.no_grad():
                out = model.generate(
                    vision_x,
                    ids,
                    mask,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=[model.config.eos_token_id, model.config.eoc_token_id],
                )
            for row, i in enumerate(idx):
                replies[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return replies


def _mean_per_metric(values: dict[str, list[float]]) -> dict[str, float | None]:
    """Every metric of METRICS as the mean of its per-item values, rounded to 4 places; None for a metric no item
    measures (a file without OCR items has no OCR accuracy, which 0.0 would misstate)."""
    return {m: round(statistics.fmean(values[m]), 4) if values[m] else None for m in METRICS}


def format_metric(value: float | None, spec: str = ".3f") -> str:
    """A metric for a table: formatted with `spec`, or "—" when no item measured it."""
    return "—" if value is None else format(value, spec)


def item_context(item: dict) -> str:
    """The text a held-out item's reply answers: its earlier rounds (questions and answers) and its question."""
    rounds = [f"{h['question']} {h['answer']}" for h in item.get("history", [])]
    return " ".join([*rounds, item.get("question", "")])


def score(items: Sequence[dict], replies: Sequence[str]) -> dict[str, float]:
    """Aggregate metrics (see METRICS) of replies to held-out items. A reply to a question about a named shape
    or group counts only when it is about that one (see `mmgpt.synth.answers.is_correct`)."""
    from mmgpt.synth.answers import is_correct, keyword_f1

    values: dict[str, list[float]] = defaultdict(list)
    for item, reply in zip(items, replies, strict=True):
        metric = METRIC_OF_KIND.get(item["kind"])
        if metric is None:
            continue
        if item["kind"] == "caption":
            values[metric].append(keyword_f1(reply, item.get("keywords") or []))
        elif item["kind"] == "open":
            values[metric].append(response_words(reply))
        else:
            values[metric].append(
                float(
                    is_correct(
                        item["kind"], reply, item["answer"], item.get("answer_space"), item_context(item)
                    )
                )
            )
    return _mean_per_metric(values)


def chance(items: Sequence[dict], seed: int = 0) -> dict[str, float]:
    """Expected metrics of a model that ignores the image and the question.

    Accuracy metrics: uniform guessing from each item's answer space (expected accuracy 1/|space|). Caption F1:
    the keyword F1 of a caption of *another* held-out image drawn at random (seeded), i.e. a fluent caption that
    is right only by luck, standing in for "a random training caption". Response length: 0 (nothing is said).
    """
    from mmgpt.synth.answers import keyword_f1

    rng = random.Random(seed)
    captions = [i for i in items if i["kind"] == "caption" and i.get("reference")]
    values: dict[str, list[float]] = defaultdict(list)
    for item in items:
        metric = METRIC_OF_KIND.get(item["kind"])
        if metric is None:
            continue
        if metric == "caption_f1":
            others = [c for c in captions if c.get("image") != item.get("image")]
            drawn = rng.choice(others)["reference"] if others else ""
            values[metric].append(keyword_f1(drawn, item.get("keywords") or []))
        elif metric == "mean_response_words":
            values[metric].append(0.0)
        else:
            space = item.get("answer_space") or []
            values[metric].append(1.0 / len(space) if space else 0.0)
    return _mean_per_metric(values)


def most_frequent(items: Sequence[dict]) -> dict[str, float]:
    """Metrics of a model that ignores the image and always gives the most frequent reference answer of each
    item kind among `items` (captions: the most frequent reference caption; response length: 0).

    Unlike `chance`, this baseline knows how skewed the answers are: most held-out counting questions ask about
    a colour or shape the image holds once, so always answering "1" already scores 0.61 on the demo's world.
    """
    from mmgpt.synth.answers import keyword_f1, normalize_answer

    answers: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        reference = item.get("reference") if item["kind"] == "caption" else item.get("answer")
        if reference:
            answers[item["kind"]][
                reference if item["kind"] == "caption" else normalize_answer(reference)
            ] += 1
    constant = {kind: counts.most_common(1)[0][0] for kind, counts in answers.items()}
    values: dict[str, list[float]] = defaultdict(list)
    for item in items:
        metric = METRIC_OF_KIND.get(item["kind"])
        if metric is None:
            continue
        said = constant.get(item["kind"], "")
        if metric == "caption_f1":
            values[metric].append(keyword_f1(said, item.get("keywords") or []))
        elif metric == "mean_response_words":
            values[metric].append(0.0)
        else:
            values[metric].append(float(bool(said) and said == normalize_answer(item.get("answer") or "")))
    return _mean_per_metric(values)


def evaluate_heldout(
    model: Any,
    path: str | Path,
    limit: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    progress: bool = True,
) -> tuple[dict[str, float], list[dict]]:
    """Metrics of `model` on a held-out jsonl file, plus per-item records (question, reply, answer, kind)."""
    items = load_heldout(path, limit)
    replies = generate_answers(model, items, batch_size, max_new_tokens, progress)
    records = [
        {"id": i["id"], "kind": i["kind"], "question": i["question"], "answer": i["answer"], "reply": r}
        for i, r in zip(items, replies, strict=True)
    ]
    return score(items, replies), records


def vqa_answer(reply: str) -> str:
    """The short answer a VQA reply gives: its first line and first sentence, without a leading "The answer
    is" or "Answer:" (instruction-tuned models answer in sentences, and MultiModal-GPT's A-OKVQA data taught
    "The answer is X. Because ..."); a one-word reply is returned as it is."""
    text = reply.strip().splitlines()[0] if reply.strip() else ""
    text = re.split(r"(?<=[^\d])\.(?:\s|$)|\s+because\b", text, maxsplit=1, flags=re.IGNORECASE)[0]
    return _ANSWER_LEAD.sub("", text).strip()


_ANSWER_LEAD = re.compile(r"^\s*(?:the\s+(?:correct\s+)?answer\s+is\s*:?|answer\s*:)\s*", re.IGNORECASE)


def _present_images(items: list[dict], what: str) -> tuple[list[dict], int]:
    """`items` whose image file exists, and how many were skipped; every image missing is an error, since it
    means a wrong image folder or file-name pattern rather than a few lost files."""
    present, missing = [], []
    for item in items:
        (present if (Path(item["_root"]) / item["image"]).is_file() else missing).append(item)
    if items and not present:
        example = Path(items[0]["_root"]) / items[0]["image"]
        raise DataError(f"{what}: none of the {len(items)} images exist (the first would be {example})")
    if missing:
        shown = ", ".join(str(Path(i["_root"]) / i["image"]) for i in missing[:3])
        logger.warning(
            "%s: %d of %d images are missing and skipped (%s...)", what, len(missing), len(items), shown
        )
    return present, len(missing)


def evaluate_vqa(
    model: Any,
    questions: Path,
    annotations: Path,
    images: Path,
    pattern: str,
    limit: int | None,
    batch_size: int,
    max_new_tokens: int,
    prompt: str = "{question}",
) -> tuple[dict[str, float], list[dict]]:
    """VQA accuracy on official question + annotation files (single-round template, the question rendered
    into `prompt`), scored on each reply's short answer (`vqa_answer`); returns the metrics (accuracy in
    percent, items scored, items skipped for a missing image or missing annotations) and one record per item.
    """
    from mmgpt.data.sources.common import load_json

    qs = load_json(questions)["questions"][: limit or None]
    answers = {
        a["question_id"]: [x["answer"] for x in a["answers"]] for a in load_json(annotations)["annotations"]
    }
    annotated = [q for q in qs if q["question_id"] in answers]
    if qs and not annotated:
        raise DataError(
            f"{annotations} has answers for none of the {len(qs)} questions of {questions} (another split?)"
        )
    if len(annotated) < len(qs):
        logger.warning(
            "%d of %d questions have no annotations and are skipped", len(qs) - len(annotated), len(qs)
        )
    items = [
        {
            "id": q["question_id"],
            "kind": "vqa",
            "question": prompt.replace("{question}", q["question"]),
            "history": [],
            "image": pattern.format(image_id=int(q["image_id"])),
            "_root": str(images),
        }
        for q in annotated
    ]
    items, missing = _present_images(items, f"VQA images in {images}")
    replies = generate_answers(model, items, batch_size, max_new_tokens)
    records, accs = [], []
    for item, reply in zip(items, replies, strict=True):
        said = vqa_answer(reply)
        accs.append(vqa_accuracy(said, answers[item["id"]]))
        records.append(
            {
                "id": item["id"],
                "question": item["question"],
                "reply": reply,
                "answer": said,
                "accuracy": accs[-1],
            }
        )
    metrics = {
        "vqa_accuracy": round(100 * statistics.fmean(accs), 2) if accs else 0.0,
        "items": len(items),
        "skipped_no_annotation": len(qs) - len(annotated),
        "skipped_missing_image": missing,
    }
    return metrics, records


def evaluate_coco(
    model: Any,
    ann: Path,
    images: Path,
    split: str,
    limit: int | None,
    batch_size: int,
    max_new_tokens: int,
    instruction: str = "Describe the image briefly.",
) -> tuple[dict[str, float], list[dict]]:
    """CIDEr-D of captions on a Karpathy split; returns the metrics (CIDEr-D, items scored, items skipped for a
    missing image) and one record per item (its reply and references)."""
    from mmgpt.data.sources.common import load_json

    entries = [e for e in load_json(ann)["images"] if e.get("split") == split][: limit or None]
    if not entries:
        raise DataError(f"{ann} has no images in split {split!r}")
    items = [
        {
            "id": e.get("cocoid"),
            "kind": "caption",
            "question": instruction,
            "history": [],
            "image": str(Path(e.get("filepath", "")) / e["filename"]),
            "_root": str(images),
            "references": [s["raw"] for s in e["sentences"]],
        }
        for e in entries
    ]
    items, missing = _present_images(items, f"COCO images in {images}")
    replies = generate_answers(model, items, batch_size, max_new_tokens)
    refs = [i["references"] for i in items]
    records = [
        {"id": i["id"], "reply": r, "references": i["references"]}
        for i, r in zip(items, replies, strict=True)
    ]
    metrics = {
        "cider": round(cider_d(replies, refs), 4),
        "items": len(items),
        "skipped_missing_image": missing,
    }
    return metrics, records
