"""The paper's unified instruction templates (Tables 1-3), rendered to token ids and loss labels.

One renderer serves training samples and chat prompts, so a chat sees byte for byte the format the model was
trained on. Each turn is tokenised as two segments, the prompt part (unsupervised) and the response part
(supervised, closed by EOS), and their ids are concatenated: no token straddles a label boundary, and rendering a
conversation round by round gives exactly the ids of rendering it at once.

    <BOS>Below is an instruction ... the request.
    ### Image:\\n<image>             (a turn that attaches k images gets k <image> tokens)
    ### Instruction:\\n{question}
    ### Input:\\n{input}              (language-only data with an input)
    ### Response:\\n{response}<EOS>
(with "\\n\\n" before every "###").
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from mmgpt.model.labelled_logits import IGNORE_INDEX
from mmgpt.model.tokenizer import IMAGE_TOKEN, special_token_ids

PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
IMAGE_HEADER = "\n\n### Image:\n"
INSTRUCTION_HEADER = "\n\n### Instruction:\n"
INPUT_HEADER = "\n\n### Input:\n"
RESPONSE_HEADER = "\n\n### Response:\n"

# Table 3 of the paper, then further phrasings of the same request.
CAPTION_INSTRUCTIONS = (
    "Can you describe the image?",
    "Could you provide a description of the image?",
    "What do you see in this image?",
    "Share your thoughts on the content of the image.",
    "Please narrate what's happening in the picture.",
    "Can you give a brief explanation of the image?",
    "Describe the main elements and details present in the image.",
    "In your own words, what is depicted in the image?",
    "How would you describe the image's content in a caption?",
    "Can you suggest an insightful caption that highlights the underlying message of the image?",
    "Describe the image.",
    "Write a caption for this picture.",
    "What is shown in the picture?",
    "Give a short description of this image.",
    "Tell me what this image contains.",
    "Summarize the visual content of the image.",
    "What can be seen in this photo?",
    "Explain what the image shows.",
    "Provide a caption for the image.",
    "What does this picture show?",
    "Describe everything you can see in the image.",
    "How would you caption this image?",
    "Please describe the picture in a sentence.",
    "What is in this image?",
    "Give a description of the scene in the image.",
    "Describe the contents of this picture.",
    "Can you tell me what the image depicts?",
    "Write a brief description of what you see.",
    "What is going on in this image?",
    "Describe this image in detail.",
)


def caption_instruction(key: str, seed: int = 0) -> str:
    """A caption instruction from the pool, chosen deterministically from a sample key and a seed."""
    rng = random.Random(zlib.crc32(f"{seed}:{key}".encode()))
    return rng.choice(CAPTION_INSTRUCTIONS)


@dataclass
class Turn:
    """One round: the user's text (and optional Input), the images it attaches, the assistant's reply.

    `assistant=None` marks the open round of a chat prompt.
    """

    user: str
    assistant: str | None = None
    num_images: int = 0
    input: str | None = None


@dataclass
class Conversation:
    """A dialogue of turns; images are numbered in the order the turns attach them."""

    turns: list[Turn] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return sum(t.num_images for t in self.turns)


@dataclass
class Encoded:
    """Token ids and labels of a rendered conversation (labels are -100 outside responses + EOS)."""

    input_ids: list[int]
    labels: list[int]
    num_images: int
    num_rounds: int


class SampleTooLong(ValueError):
    """The first round alone does not fit in `max_length`."""


class _Renderer:
    """Tokeniser-bound rendering with the fixed strings' ids cached."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        ids = special_token_ids(tokenizer)
        self.media, self.eos, self.bos = ids.media, ids.eos, ids.bos
        self.specials = [token for token in tokenizer.all_special_tokens if token]

    def text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def has_special(self, text: str) -> bool:
        """Whether `text` spells a special token ("</s>", "<s>", "<|endofchunk|>")."""
        return any(token in text for token in self.specials)

    def written(self, text: str) -> list[int]:
        """Ids of text someone wrote (a message, a dataset's response), in which the spelling of a special token
        stays text: a "</s>" in a response must not end it early in training, nor "<s>" (HTML's strikethrough)
        start a sequence. Text without such spellings tokenises exactly as `text` does."""
        if not self.has_special(text):
            return self.text(text)
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def prompt(self, turn: Turn, first: bool) -> list[int]:
        """Ids of a turn's unsupervised part: (BOS + preamble if first), image header, instruction, response header."""
        head = PREAMBLE if first else ""
        if turn.num_images:
            head += IMAGE_HEADER + IMAGE_TOKEN * turn.num_images
        # A literal "<image>" typed by a user must not become an image slot.
        # (text, whether someone wrote it) in order
        pieces = [(head + INSTRUCTION_HEADER, False), (turn.user.replace(IMAGE_TOKEN, "").strip(), True)]
        if turn.input:
            pieces += [(INPUT_HEADER, False), (turn.input.replace(IMAGE_TOKEN, "").strip(), True)]
        pieces.append((RESPONSE_HEADER, False))
        if any(written and self.has_special(text) for text, written in pieces):
            # piece by piece, the written ones as text; in one piece otherwise, as the public code renders
            ids = [
                i for text, written in pieces for i in (self.written(text) if written else self.text(text))
            ]
        else:
            ids = self.text("".join(text for text, _ in pieces))
        if first and self.bos is not None:
            ids = [self.bos, *ids]
        return ids

    def response(self, text: str) -> list[int]:
        return [*self.written(text.replace(IMAGE_TOKEN, "").strip()), self.eos]


_RENDERERS: dict[int, _Renderer] = {}


def _renderer(tokenizer: PreTrainedTokenizerBase) -> _Renderer:
    key = id(tokenizer)
    rend = _RENDERERS.get(key)
    if rend is None or rend.tokenizer is not tokenizer:
        rend = _RENDERERS[key] = _Renderer(tokenizer)
    return rend


def encode_conversation(
    conv: Conversation, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None
) -> Encoded:
    """Render every completed turn of `conv` to ids + labels.

    Truncation keeps whole leading rounds within `max_length` (a kept round always keeps its EOS); raises
    `SampleTooLong` when even the first round does not fit and ValueError when a turn has no response.
    """
    rend = _renderer(tokenizer)
    ids: list[int] = []
    labels: list[int] = []
    rounds = images = 0
    for i, turn in enumerate(conv.turns):
        if turn.assistant is None:
            raise ValueError(f"turn {i} has no response; use encode_prompt for chat prompts")
        prompt = rend.prompt(turn, first=i == 0)
        response = rend.response(turn.assistant)
        if max_length is not None and len(ids) + len(prompt) + len(response) > max_length:
            if i == 0:
                raise SampleTooLong(
                    f"first round needs {len(prompt) + len(response)} tokens > max_length {max_length}"
                )
            break
        ids += prompt + response
        labels += [IGNORE_INDEX] * len(prompt) + response
        rounds += 1
        images += turn.num_images
    return Encoded(input_ids=ids, labels=labels, num_images=images, num_rounds=rounds)


def encode_continuation(conv: Conversation, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of only the last turn's prompt part, assuming every earlier turn is already rendered (with EOS)."""
    if not conv.turns:
        raise ValueError("empty conversation")
    return _renderer(tokenizer).prompt(conv.turns[-1], first=len(conv.turns) == 1)


def encode_prompt(conv: Conversation, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of a chat prompt: every earlier turn complete, the last turn's prompt ending with "### Response:\\n"."""
    if not conv.turns:
        raise ValueError("empty conversation")
    history = encode_conversation(Conversation(conv.turns[:-1]), tokenizer).input_ids
    return history + encode_continuation(conv, tokenizer)


def encode_response(text: str, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of a response closed by EOS, exactly as training renders it."""
    return _renderer(tokenizer).response(text)


def supervised_spans(encoded: Encoded) -> list[list[int]]:
    """The contiguous runs of supervised token ids, in order (each a response followed by its EOS)."""
    spans: list[list[int]] = []
    current: list[int] = []
    for label in encoded.labels:
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
                current = []
        else:
            current.append(label)
    if current:
        spans.append(current)
    return spans
