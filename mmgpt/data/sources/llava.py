"""LLaVA-format conversations: `llava` (detail / complex reasoning / conversation files) and `conversation`
(the same format for users' own data, one or several images per record).

Record: {"id", "image": "file.jpg" | ["a.jpg", "b.jpg"] (optional), "conversations": [{"from": "human"|"gpt",
"value"}, ...]}. Messages must alternate human, gpt: every gpt message is a target and no human message ever is.
Each `<image>` in a human message attaches the next image to that round; a record whose text has no `<image>`
but exactly one image attaches it to the first round.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmgpt.data.sources.common import Sample, Skips, load_json, not_a_list
from mmgpt.data.templates import Conversation, Turn
from mmgpt.model.tokenizer import IMAGE_TOKEN

HUMAN = {"human", "user"}
ASSISTANT = {"gpt", "assistant"}


def read_llava(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """Yield one Sample per valid record of a LLaVA-format JSON list."""
    records = load_json(ann_path)
    if not isinstance(records, list):
        raise not_a_list(ann_path, records)
    for index, record in enumerate(records):
        where = f"{ann_path}:{record.get('id', index) if isinstance(record, dict) else index}"
        sample = _parse(record, index, ann_path, image_root, name, skips, where)
        if sample is not None:
            yield sample


def _parse(record, index, ann_path, image_root, name, skips, where) -> Sample | None:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        skips.add("malformed", where, "missing or non-list field 'conversations'")
        return None
    image_field = record.get("image")
    if image_field is None:
        files: list[str] = []
    elif isinstance(image_field, str):
        files = [image_field]
    elif isinstance(image_field, list) and all(isinstance(f, str) for f in image_field):
        files = list(image_field)
    else:
        skips.add("malformed", where, "field 'image' must be a string or a list of strings")
        return None
    if any(not f.strip() for f in files):
        # an empty name would resolve to the image folder itself
        skips.add("malformed", where, "field 'image' holds an empty file name")
        return None
    messages = record["conversations"]
    turns: list[Turn] = []
    for position in range(0, len(messages), 2):
        pair = messages[position : position + 2]
        if len(pair) < 2 or not all(isinstance(m, dict) for m in pair):
            skips.add("malformed", where, f"message {position} has no reply")
            return None
        human, gpt = pair
        if human.get("from") not in HUMAN or gpt.get("from") not in ASSISTANT:
            found = f"{human.get('from')!r} then {gpt.get('from')!r}"
            skips.add(
                "bad_turn_order", where, f"messages {position}-{position + 1} are {found}, not human then gpt"
            )
            return None
        question, answer = human.get("value"), gpt.get("value")
        if not isinstance(question, str) or not isinstance(answer, str):
            bad, value = (position, question) if not isinstance(question, str) else (position + 1, answer)
            skips.add(
                "malformed", where, f"message {bad} has a {type(value).__name__} 'value', expected string"
            )
            return None
        if not answer.strip():
            skips.add("empty_response", where, f"message {position + 1}")
            return None
        count = question.count(IMAGE_TOKEN)
        turns.append(
            Turn(user=question.replace(IMAGE_TOKEN, "").strip(), assistant=answer.strip(), num_images=count)
        )
    if not turns:
        skips.add("malformed", where, "no conversation rounds")
        return None
    tagged = sum(t.num_images for t in turns)
    if tagged == 0 and len(files) == 1:
        turns[0].num_images = 1
        tagged = 1
    if tagged != len(files):
        skips.add("image_count_mismatch", where, f"{tagged} <image> tag(s) for {len(files)} image(s)")
        return None
    root = image_root or ann_path.parent
    paths = [root / f for f in files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        skips.add("missing_image", where, str(missing[0]))
        return None
    return Sample(
        dataset=name,
        id=str(record.get("id", index)),
        conversation=Conversation(turns),
        images=paths,
        where=where,
    )
