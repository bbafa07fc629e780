"""Multi-round chat about images with a cached conversation state.

A session renders its dialogue with the training template (mmgpt.data.templates), encodes each image once per
conversation (its cross-attention keys/values computed once), and keeps the self-attention KV cache between rounds,
so a new round runs only its own tokens. Each finished round is closed exactly as in training (response + EOS):
when the generated ids differ from the training tokenisation of the reply (or it was cut at a stop string or the
token limit), the cache is rolled back to the start of the reply and the canonical ids are run instead.

Context policy: when a new round (prompt + max_new_tokens) would exceed `max_context` tokens, the oldest rounds
(and the images they attached) are dropped and the remaining conversation is re-run from scratch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmgpt.data.templates import Conversation, Turn, encode_continuation, encode_prompt, encode_response
from mmgpt.errors import ConfigError, MmgptError
from mmgpt.model import generation as gen

logger = logging.getLogger(__name__)
ImageLike = Image.Image | str | Path


class ContextLengthError(MmgptError):
    """A message that does not fit the model's context with the requested number of new tokens."""


@dataclass
class ChatOptions:
    """Generation settings of a session (validated by `GenerationOptions`)."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 1
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # checked when a session is made (a chat command refuses a bad flag before loading the model), not first
        # when a reply is generated
        try:
            self.decoding()
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def decoding(self, eos_token_ids: tuple[int, ...] = (), pad_token_id: int = 0) -> gen.GenerationOptions:
        """These settings as the decoder's options, ending at `eos_token_ids` and padding with `pad_token_id`."""
        return gen.GenerationOptions(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            num_beams=self.num_beams,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            eos_token_ids=eos_token_ids,
            pad_token_id=pad_token_id,
            seed=self.seed,
        )


@dataclass(frozen=True)
class ReplyStats:
    """How the last reply was generated: `generated_tokens` counts every token the model chose (a closing EOS
    included, padding not); `finish_reason` is "length" when it stopped at `max_new_tokens` without an EOS or a
    stop string, else "stop"."""

    generated_tokens: int
    finish_reason: str


@dataclass
class _Round:
    turn: Turn
    images: list[Image.Image] = field(default_factory=list)


def load_pil(image: ImageLike) -> Image.Image:
    """A PIL RGB image from a PIL image or a path; MmgptError naming the path when it cannot be read."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise MmgptError(f"cannot read image {path}: {err}") from err


class ChatSession:
    """One conversation with a shared, read-only model. Not itself thread-safe; use one session per thread."""

    def __init__(self, model: Any, max_context: int | None = None, **options: Any):
        if model.tokenizer is None or model.image_processor is None:
            raise MmgptError("the model has no tokenizer/image processor; load it with mmgpt.load_model")
        self.model = model
        self.tokenizer = model.tokenizer
        self.options = ChatOptions(**options)
        text_cfg = model.config.text_config
        self.max_context = max_context or int(
            text_cfg.get("max_position_embeddings") or text_cfg.get("max_seq_len") or 2048
        )
        self.prefilled_tokens = 0  # tokens run through the model by this session (for tests and stats)
        self.last_reply: ReplyStats | None = None
        self.reset()

    # ------------------------------------------------------------------ public API
    def reset(self) -> None:
        """Forget the conversation, its images and its cache."""
        self.rounds: list[_Round] = []
        self._state: gen.DecodeState | None = None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The conversation so far: [{"user", "assistant", "num_images"}]."""
        return [
            {"user": r.turn.user, "assistant": r.turn.assistant, "num_images": r.turn.num_images}
            for r in self.rounds
        ]

    def conversation(self) -> Conversation:
        """The completed rounds as a template `Conversation`."""
        return Conversation([r.turn for r in self.rounds])

    def token_ids(self) -> list[int]:
        """Every token of the conversation as the model has seen it (pending closing tokens included)."""
        if self._state is None:
            return []
        ids = self._state.token_ids[0].tolist()
        if self._state.pending is not None and self._state.pending.numel():
            tail = self._state.pending[0].tolist()
            if ids[-len(tail) :] != tail:
                ids += tail
        return ids

    def ask(self, text: str, images: Sequence[ImageLike] | None = None, **overrides: Any) -> str:
        """Send a message (optionally attaching images) and return the full reply."""
        return "".join(self.stream(text, images, **overrides))

    def stream(self, text: str, images: Sequence[ImageLike] | None = None, **overrides: Any) -> Iterator[str]:
        """Send a message and yield the reply as text deltas while it is generated."""
        if not text or not text.strip():
            raise MmgptError("empty message")
        pil = [load_pil(im) for im in images or []]
        options = replace(self.options, **overrides)
        new_round = _Round(Turn(user=text.strip(), assistant=None, num_images=len(pil)), pil)
        try:
            logits = self._prepare(new_round, options)
            yield from self._generate(new_round, logits, options)
        except BaseException:
            # The reply did not finish (the caller stopped reading, Ctrl-C, an error): the round is not kept,
            # but the cache already holds its prompt and part of its reply, so the next round re-runs the
            # conversation from the kept rounds instead of continuing after tokens no round accounts for.
            self._state = None
            raise

    def check_fits(self, text: str, num_images: int = 0, **overrides: Any) -> None:
        """Raise ContextLengthError when a message of `text` with `num_images` images could not be answered
        with `max_new_tokens` (or the override) even after dropping every earlier round; runs nothing."""
        options = replace(self.options, **overrides)
        self._fit([_Round(Turn(user=text.strip(), assistant=None, num_images=num_images))], options)

    def save(self, path: str | Path) -> None:
        """Write the transcript as JSON."""
        Path(path).write_text(json.dumps({"rounds": self.history}, indent=2, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------ internals
    def _prepare(self, new_round: _Round, options: ChatOptions) -> torch.Tensor:
        """Run the new round's prompt, reusing the cache when possible; returns the next-token logits (1, V)."""
        rounds = [*self.rounds, new_round]
        full, dropped = self._fit(rounds, options)
        v1_new_image = (
            self.model.config.media_attention == "openflamingo_v1" and new_round.images and self.rounds
        )
        if dropped or self._state is None or v1_new_image:
            if dropped:
                logger.info(
                    "context full: dropped the oldest round(s); re-running %d round(s)", len(rounds) - 1
                )
            self.rounds = rounds[:-1]
            self._state = gen.new_state(self.model, 1)
            all_images = [im for r in rounds for im in r.images]
            if all_images:
                gen.add_images(self.model, self._state, self._pixels(all_images))
            ids = full
        else:
            if new_round.images:
                gen.add_images(self.model, self._state, self._pixels(new_round.images))
            ids = encode_continuation(Conversation([r.turn for r in rounds]), self.tokenizer)
        pending = 0 if self._state.pending is None else self._state.pending.shape[1]
        self.prefilled_tokens += len(ids) + pending
        with torch.no_grad():
            return gen.prefill(self.model, self._state, torch.tensor([ids], dtype=torch.long))

    def _fit(self, rounds: list[_Round], options: ChatOptions) -> tuple[list[int], bool]:
        """Drop the oldest of `rounds` (in place) until their prompt leaves room for `options.max_new_tokens`;
        returns the prompt ids and whether any round was dropped. ContextLengthError when the last round alone
        does not fit."""
        budget = self.max_context - options.max_new_tokens
        full = encode_prompt(Conversation([r.turn for r in rounds]), self.tokenizer)
        dropped = False
        while len(full) > budget and len(rounds) > 1:
            rounds.pop(0)
            dropped = True
            full = encode_prompt(Conversation([r.turn for r in rounds]), self.tokenizer)
        if len(full) > budget:
            raise ContextLengthError(
                f"the message needs {len(full)} tokens but the context allows {max(budget, 0)} "
                f"({self.max_context} minus max_new_tokens {options.max_new_tokens})"
            )
        return full, dropped

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.model.image_processor.batch(images)  # (T, 3, H, W)
        return pixels[None, :, None].to(self.model.dtype)

    def _generate(self, new_round: _Round, logits: torch.Tensor, options: ChatOptions) -> Iterator[str]:
        state = self._state
        start_len, start_tokens = state.cached_length, state.token_ids.shape[1]
        start_mask, start_pos = state.attention_mask.clone(), state.next_position.clone()
        eos = self.model.config.eos_token_id
        gen_options = options.decoding((eos, self.model.config.eoc_token_id), self.model.config.pad_token_id)
        streamer = _TextStreamer(self.tokenizer, options.stop)
        stop_fn = streamer.should_stop if options.stop else None
        emitted = 0
        if options.num_beams > 1:
            with torch.no_grad():
                chosen = gen.decode(self.model, state, logits, gen_options)[0].tolist()
            # a finished beam is padded to the others' length; the padding was never chosen
            chosen = chosen[: _first_eos(chosen, gen_options.eos_token_ids) + 1]
            streamer.tokens = [t for t in chosen if t not in gen_options.eos_token_ids]
        else:
            chosen = []
            for tokens in gen.decode_steps(self.model, state, logits, gen_options, stop_fn):
                chosen.append(int(tokens.reshape(-1)[0]))
                streamer.put(tokens)
                text = streamer.visible_text()
                if len(text) > emitted:
                    yield text[emitted:]
                    emitted = len(text)
        reply = streamer.final_text()
        ended = bool(chosen) and chosen[-1] in gen_options.eos_token_ids
        stopped_by_string = streamer.should_stop(chosen)
        at_limit = len(chosen) >= options.max_new_tokens and not ended and not stopped_by_string
        self.last_reply = ReplyStats(len(chosen), "length" if at_limit else "stop")
        if len(reply) > emitted:
            yield reply[emitted:]
        # Close the round exactly as training renders it: canonical reply ids + EOS.
        canonical = encode_response(reply, self.tokenizer)
        generated = state.token_ids[0, start_tokens:].tolist()
        if generated != canonical:
            gen.truncate_cache(state.cache, start_len)
            state.attention_mask, state.next_position = start_mask, start_pos
            state.token_ids = torch.cat([state.token_ids[:, :start_tokens], torch.tensor([canonical])], dim=1)
            state.pending = torch.tensor([canonical])
        new_round.turn.assistant = reply
        self.rounds.append(new_round)


class _TextStreamer:
    """Collects generated ids (batch of one) and turns them into text, holding back partial characters and the
    possible beginning of a stop string."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.tokens: list[int] = []
        self.count = 0
        self.special = set(tokenizer.all_special_ids)

    def put(self, value: torch.Tensor) -> None:
        token = int(value.reshape(-1)[0])
        self.count += 1
        if token not in self.special:
            self.tokens.append(token)

    def end(self) -> None:
        pass

    def _text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=True)

    def should_stop(self, row: list[int]) -> bool:
        text = self.tokenizer.decode([t for t in row if t not in self.special], skip_special_tokens=True)
        return any(s in text for s in self.stop)

    def final_text(self) -> str:
        text = self._text()
        cut = min((text.find(s) for s in self.stop if s in text), default=-1)
        return (text[:cut] if cut >= 0 else text).strip()

    def visible_text(self) -> str:
        text = self._text().rstrip("\ufffd")
        hold = max((len(s) - 1 for s in self.stop), default=0)
        if any(s in text for s in self.stop):
            return self.final_text()
        text = text[: len(text) - hold] if hold else text
        return text.lstrip()


def chat_session(model: Any, **options: Any) -> ChatSession:
    """A new `ChatSession` on `model` (see ChatOptions for the options)."""
    return ChatSession(model, **options)


def _first_eos(tokens: list[int], eos_ids: Sequence[int]) -> int:
    """Index of the first end-of-sequence token in `tokens`, or the last index when there is none."""
    return next((i for i, t in enumerate(tokens) if t in eos_ids), len(tokens) - 1)
