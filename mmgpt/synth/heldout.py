"""The held-out evaluation set: several questions per held-out image plus language-only items.

Each item: {"id", "kind", "image", "history", "question", "answer", "answer_space", "keywords", "reference"},
with kind one of counting|color|shape|ocr|caption|language|followup|open.
"""

from __future__ import annotations

import random

from mmgpt.synth import descriptions as D
from mmgpt.synth import qa as Q
from mmgpt.synth.followups import followup_chain
from mmgpt.synth.knowledge import HELDOUT_TASKS, language_task
from mmgpt.synth.qa import QA
from mmgpt.synth.scene import Scene

KINDS = ("counting", "color", "shape", "ocr", "caption", "language", "followup", "open")
COUNTING = [Q.count_total, Q.count_colour, Q.count_kind, Q.count_colour_kind]


def eval_item(
    item_id: str,
    kind: str,
    image: str | None,
    qa: QA,
    history: list[dict] | None = None,
    keywords: list[str] | None = None,
) -> dict:
    """One evaluation record (the format of the module docstring) asking `qa` about `image` (a path in the
    world, None for a language item) after the earlier rounds `history`."""
    return {
        "id": item_id,
        "kind": kind,
        "image": image,
        "history": history or [],
        "question": qa.question,
        "answer": qa.answer,
        "answer_space": qa.answer_space,
        "keywords": keywords or [],
        "reference": qa.response,
    }


def image_items(scene: Scene, image: str, rng: random.Random, open_prob: float = 0.35) -> list[dict]:
    """All held-out items about one image (counting, colour, shape, OCR, caption, follow-up, maybe open)."""
    base = f"heldout-{scene.image_id:06d}"
    items = [eval_item(f"{base}-counting", "counting", image, rng.choice(COUNTING)(scene, rng))]
    colour = Q.colour_of(scene, rng)
    if colour:
        items.append(eval_item(f"{base}-color", "color", image, colour))
    shape = Q.kind_of(scene, rng)
    if shape:
        items.append(eval_item(f"{base}-shape", "shape", image, shape))
    ocr = Q.ocr_word(scene, rng)
    if ocr:
        items.append(eval_item(f"{base}-ocr", "ocr", image, ocr))
    keywords = D.caption_keywords(scene)
    cap = D.caption(scene, rng)
    items.append(
        eval_item(
            f"{base}-caption",
            "caption",
            image,
            QA("caption", rng.choice(D.CAPTION_PROMPTS), cap, None, cap),
            keywords=keywords,
        )
    )
    first, second = followup_chain(scene, rng)
    history = [{"question": first.question, "answer": first.response}]
    items.append(eval_item(f"{base}-followup", "followup", image, second, history=history))
    if rng.random() < open_prob:
        text = D.detailed_description(scene, rng)
        items.append(
            eval_item(
                f"{base}-open",
                "open",
                image,
                QA("open", rng.choice(D.DETAIL_PROMPTS), text, None, text),
                keywords=keywords,
            )
        )
    return items


def language_items(n: int, rng: random.Random, reserved: dict[str, set[tuple[int, int]]]) -> list[dict]:
    """`n` language-only items; arithmetic uses only the reserved (never trained) operand pairs."""
    pairs = {op: sorted(p) for op, p in reserved.items()}
    items = []
    for i in range(n):
        task = rng.choices(list(HELDOUT_TASKS), weights=list(HELDOUT_TASKS.values()))[0]
        item = language_task(task, rng, pairs)
        qa = QA("language", item.question, item.answer, item.answer_space, item.response)
        items.append(eval_item(f"heldout-language-{i:05d}", "language", None, qa))
    return items
