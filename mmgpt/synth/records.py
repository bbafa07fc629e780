"""Record builders for each public dataset format (REFERENCE section 5); one function per format.

Every builder takes a scene (or nothing, for language data) and a `random.Random`, and returns records shaped
exactly like the public files so the project's ordinary readers load them.
"""

from __future__ import annotations

import random
import re
import string

from mmgpt.synth import descriptions as D
from mmgpt.synth import qa as Q
from mmgpt.synth.followups import followup_chain
from mmgpt.synth.knowledge import WORDS, brainstorm, closed_qa, creative, language_task
from mmgpt.synth.qa import QA
from mmgpt.synth.scene import Scene

IMAGE_TOKEN = "<image>"


def llava_image_name(image_id: int) -> str:
    """COCO-style image file name used by LLaVA: 000000000042.jpg."""
    return f"{image_id:012d}.jpg"


def llava_record(image_id: int, rounds: list[tuple[str, str]]) -> dict:
    """A LLaVA-Instruct record about training image `image_id`: the (question, answer) `rounds` as human / gpt
    turns, the image token before the first question."""
    conversations = []
    for i, (question, answer) in enumerate(rounds):
        value = f"{IMAGE_TOKEN}\n{question}" if i == 0 else question
        conversations.append({"from": "human", "value": value})
        conversations.append({"from": "gpt", "value": answer})
    return {"id": f"{image_id:012d}", "image": llava_image_name(image_id), "conversations": conversations}


def llava_detail(scene: Scene, rng: random.Random) -> dict:
    """A LLaVA detail_23k record: one detailed-description round."""
    return llava_record(scene.image_id, [(rng.choice(D.DETAIL_PROMPTS), D.detailed_description(scene, rng))])


def llava_reasoning(scene: Scene, rng: random.Random) -> dict:
    """A LLaVA complex_reasoning record: one reasoning round (sometimes two)."""
    rounds = [D.reasoning_question(scene, rng)]
    if rng.random() < 0.3:
        second = D.reasoning_question(scene, rng)
        if second.question != rounds[0].question:
            rounds.append(second)
    return llava_record(scene.image_id, [(qa.question, qa.response) for qa in rounds])


def conversation_rounds(scene: Scene, rng: random.Random, n_rounds: int) -> list[QA]:
    """About `n_rounds` (2-4) rounds: one follow-up chain plus single questions, a caption request or a second
    chain, in random order; a chain always stays contiguous and no question repeats."""
    blocks: list[list[QA]] = [followup_chain(scene, rng)]
    seen = {qa.question for qa in blocks[0]}
    total = len(blocks[0])
    for _ in range(30):
        if total >= n_rounds:
            break
        r = rng.random()
        if r < 0.25 and total + 2 <= n_rounds:
            block = followup_chain(scene, rng)
        elif r < 0.4:
            block = [QA("caption", rng.choice(D.CAPTION_PROMPTS), "", None, D.caption(scene, rng))]
        else:
            block = [Q.random_question(scene, rng)]
        if any(qa.question in seen for qa in block):
            continue
        seen.update(qa.question for qa in block)
        blocks.append(block)
        total += len(block)
    rng.shuffle(blocks)
    return [qa for block in blocks for qa in block]


def llava_conversation(scene: Scene, rng: random.Random) -> dict:
    """A LLaVA conversation record with 2-4 rounds, one of them a follow-up needing an earlier answer."""
    rounds = conversation_rounds(scene, rng, rng.randint(2, 4))
    return llava_record(scene.image_id, [(qa.question, qa.response) for qa in rounds])


#: The single rounds of an attribute conversation, in drawing order (shuffled per conversation): the colour of a
#: shape named without its colour (twice), the kind of one named without its kind, a count of one colour and one
#: of one kind, the questions colour/shape QA and counting ask. Those that do not apply to a scene are skipped.
ATTRIBUTE_ROUNDS = (Q.colour_of, Q.kind_of, Q.colour_of, Q.count_colour, Q.count_kind)


#: The share of attribute conversations with one language-only task among their rounds (an aside).
ASIDE_SHARE = 0.3


def llava_attributes(
    scene: Scene,
    rng: random.Random,
    aside_rng: random.Random | None = None,
    tasks: dict[str, float] | None = None,
    pairs: dict[str, list[tuple[int, int]]] | None = None,
) -> dict:
    """A LLaVA conversation record drilling one image's attributes: the applicable ATTRIBUTE_ROUNDS in random
    order, then one follow-up chain, so that the drill also keeps asking questions that need an earlier answer.
    A round whose answer another round already gives (the same shape asked about twice) is left out.

    With `aside_rng`, ASIDE_SHARE of the conversations also get a language-only task (drawn from `tasks`, with
    the arithmetic operand `pairs` training may use) at a random place before the follow-up chain: people ask
    such things in the middle of a chat about an image, and a model that has only seen them without an image
    answers them about the image. The asides have a stream of their own, so the other rounds stay the same."""
    drawn = [qa for qa in (generate(scene, rng) for generate in ATTRIBUTE_ROUNDS) if qa is not None]
    rng.shuffle(drawn)
    chain = followup_chain(scene, rng)
    given = {qa.response for qa in chain}
    rounds = []
    for qa in drawn:
        if qa.response not in given:
            given.add(qa.response)
            rounds.append((qa.question, qa.response))
    if aside_rng is not None and aside_rng.random() < ASIDE_SHARE:
        if tasks is None or pairs is None:
            raise ValueError("asides need the language tasks and the arithmetic pairs training may use")
        task = aside_rng.choices(list(tasks), weights=list(tasks.values()))[0]
        item = language_task(task, aside_rng, pairs)
        rounds.insert(aside_rng.randint(0, len(rounds)), (item.question, item.response))
    return llava_record(scene.image_id, rounds + [(qa.question, qa.response) for qa in chain])


def cc_sbu(scene: Scene, rng: random.Random) -> dict:
    """A cc_sbu_align filter_cap annotation: a two-sentence caption."""
    text = D.caption(scene, rng)
    extra = D.detailed_description(scene, rng).split(". ", 1)[-1]
    return {"image_id": str(scene.image_id), "caption": f"{text} {extra}"}


def _question_id(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(22))


AOKVQA_QUESTIONS = [
    Q.count_colour,
    Q.count_kind,
    Q.count_total,
    Q.colour_of,
    Q.kind_of,
    Q.ocr_word,
    D.most_common_colour,
]


def aokvqa(scene: Scene, rng: random.Random) -> dict:
    """An A-OKVQA record: 4 choices, correct index, 10 direct answers and 3 rationale sentences."""
    qa = None
    while qa is None:
        qa = rng.choice(AOKVQA_QUESTIONS)(scene, rng)
    distractors = rng.sample([a for a in qa.answer_space if a != qa.answer], 3)
    choices = distractors + [qa.answer]
    rng.shuffle(choices)
    listing = D.detailed_description(scene, rng).split(". ", 1)[-1].split(". ")[0].rstrip(".") + "."
    return {
        "split": "train",
        "image_id": scene.image_id,
        "question_id": _question_id(rng),
        "question": qa.question,
        "choices": choices,
        "correct_choice_idx": choices.index(qa.answer),
        "direct_answers": [qa.answer] * 10,
        "difficult_direct_answer": False,
        "rationales": [qa.response, D.caption(scene, rng), listing],
    }


def coco_filename(image_id: int) -> str:
    """Karpathy/COCO-2014 file name: COCO_train2014_000000000042.jpg."""
    return f"COCO_train2014_{image_id:012d}.jpg"


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def coco_karpathy(scene: Scene, rng: random.Random, imgid: int) -> dict:
    """A Karpathy dataset_coco.json image entry with five caption sentences (sentid = imgid * 5 + k)."""
    sentences = []
    for k, style in enumerate(range(5)):
        raw = D.caption(scene, rng, style=style)
        sentences.append({"tokens": _tokens(raw), "raw": raw, "imgid": imgid, "sentid": imgid * 5 + k})
    return {
        "filepath": "train2014",
        "sentids": [s["sentid"] for s in sentences],
        "filename": coco_filename(scene.image_id),
        "imgid": imgid,
        "split": "train",
        "sentences": sentences,
        "cocoid": scene.image_id,
    }


def ocr_key(image_id: int) -> str:
    """OCR-VQA record key (an ASIN-like 10-digit string)."""
    return f"{image_id:010d}"


def ocr_vqa(scene: Scene, rng: random.Random, split: int) -> tuple[str, dict]:
    """An OCR-VQA (key, record): questions about the written word with full-sentence answers."""
    rounds: list[QA] = []
    if scene.word:
        ocr = Q.ocr_word(scene, rng)
        rounds.append(
            QA(ocr.kind, "What word is written in the image?", ocr.answer, ocr.answer_space, ocr.response)
        )
        rounds.append(Q.has_text(scene, rng))
        w, cat = scene.word, WORDS[scene.word][0]
        rounds.append(
            QA(
                "ocr",
                "What is the first letter of the word in the image?",
                w[0],
                None,
                f"The first letter of {w} is {w[0]}.",
            )
        )
        rounds.append(
            QA(
                "ocr",
                "What kind of thing does the word name?",
                cat,
                None,
                f"The word {w} names {'an' if cat[0] in 'aeiou' else 'a'} {cat}.",
            )
        )
        pos = Q.word_position(scene, rng)
        if pos:
            rounds.append(pos)
    else:
        rounds += [Q.has_text(scene, rng), Q.count_total(scene, rng)]
    key = ocr_key(scene.image_id)
    return key, {
        "imageURL": f"http://images.synth.local/{key}.jpg",
        "questions": [qa.question for qa in rounds],
        "answers": [qa.response for qa in rounds],
        "title": scene.word.capitalize() if scene.word else "Untitled",
        "authorName": "Synthetic Press",
        "genre": WORDS[scene.word][0].capitalize() if scene.word else "Shapes",
        "split": split,
    }


_VQA_TYPES = {
    "count_total": ("how many", "number"),
    "count_colour": ("how many", "number"),
    "colour_of": ("what color is the", "other"),
    "kind_of": ("what shape is", "other"),
    "is_there": ("is there a", "yes/no"),
    "ocr_word": ("what is written", "other"),
    "has_text": ("is there", "yes/no"),
}


def vqa(scene: Scene, rng: random.Random, n_questions: int = 3) -> tuple[list[dict], list[dict]]:
    """VQA v2 questions and annotations (10 identical one/two-word answers each) for one image."""
    questions, annotations, seen = [], [], set()
    names = list(_VQA_TYPES)
    for _ in range(20):
        if len(questions) == n_questions:
            break
        name = rng.choice(names)
        qa = getattr(Q, name)(scene, rng)
        if qa is None or qa.question in seen:
            continue
        seen.add(qa.question)
        qid = scene.image_id * 10 + len(questions)
        qtype, atype = _VQA_TYPES[name]
        questions.append({"image_id": scene.image_id, "question": qa.question, "question_id": qid})
        annotations.append(
            {
                "question_id": qid,
                "image_id": scene.image_id,
                "question_type": qtype,
                "answer_type": atype,
                "multiple_choice_answer": qa.answer,
                "answers": [
                    {"answer": qa.answer, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)
                ],
            }
        )
    return questions, annotations


# ---- language-only ----------------------------------------------------------------------------------------
def dolly(rng: random.Random, tasks: dict[str, float], pairs: dict[str, list[tuple[int, int]]]) -> dict:
    """A databricks-dolly-15k record."""
    r = rng.random()
    if r < 0.1:
        instruction, context, response = closed_qa(rng)
        return {"instruction": instruction, "context": context, "response": response, "category": "closed_qa"}
    if r < 0.18:
        instruction, response = brainstorm(rng)
        return {"instruction": instruction, "context": "", "response": response, "category": "brainstorming"}
    if r < 0.25:
        instruction, response = creative(rng)
        return {
            "instruction": instruction,
            "context": "",
            "response": response,
            "category": "creative_writing",
        }
    item = language_task(rng.choices(list(tasks), weights=list(tasks.values()))[0], rng, pairs)
    return {"instruction": item.question, "context": "", "response": item.response, "category": item.category}


def alpaca(rng: random.Random, tasks: dict[str, float], pairs: dict[str, list[tuple[int, int]]]) -> dict:
    """An alpaca_gpt4_data record (half with an `input`, half self-contained)."""
    r = rng.random()
    if r < 0.08:
        instruction, output = brainstorm(rng)
        return {"instruction": instruction, "input": "", "output": output}
    if r < 0.15:
        instruction, output = creative(rng)
        return {"instruction": instruction, "input": "", "output": output}
    item = language_task(rng.choices(list(tasks), weights=list(tasks.values()))[0], rng, pairs)
    if rng.random() < 0.5:
        return {"instruction": item.instruction, "input": item.input, "output": item.response}
    return {"instruction": item.question, "input": "", "output": item.response}
