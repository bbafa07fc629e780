"""Decoding for Flamingo models: greedy, sampling and beam search over a KV cache.

The decoding state (`DecodeState`) is an explicit object owned by the caller: the self-attention KV cache, the
images' perceiver latents and their per-layer cross-attention keys/values, the attention mask, positions and the
number of images seen. `Flamingo.generate` makes one per call; a chat session keeps one per conversation so a new
round processes only its new tokens and an image is encoded once per conversation.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from mmgpt.model.config import FlamingoConfig
from mmgpt.model.kv_cache import GrowingCache
from mmgpt.model.media_context import media_context


class Streamer(Protocol):
    """transformers-style streamer: receives each step's new token ids (B,) and a final `end()`."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


#: OpenAI's bounds for presence_penalty and frequency_penalty
PENALTY_RANGE = (-2.0, 2.0)


@dataclass
class GenerationOptions:
    """Decoding parameters (validated)."""

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 1
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    length_penalty: float = 1.0
    min_new_tokens: int = 0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        low, high = PENALTY_RANGE
        for name in ("presence_penalty", "frequency_penalty"):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {getattr(self, name)}")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam search with sampling is not supported; use num_beams=1 or do_sample=False")

    @classmethod
    def from_kwargs(cls, config: FlamingoConfig, **kwargs: Any) -> GenerationOptions:
        """Accept OpenFlamingo / transformers-style keyword names (eos_token_id, max_length is refused)."""
        if "max_length" in kwargs:
            raise ValueError("use max_new_tokens instead of max_length")
        eos = kwargs.pop("eos_token_id", None)
        if eos is None:
            eos = (config.eoc_token_id, config.eos_token_id)
        elif isinstance(eos, int):
            eos = (eos,)
        kwargs.setdefault("pad_token_id", config.pad_token_id)
        kwargs.pop("use_cache", None)
        unknown = set(kwargs) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
        return cls(eos_token_ids=tuple(int(e) for e in eos), **kwargs)

    def logits_processors(self, prompt_length: int) -> LogitsProcessorList:
        """transformers logits processors implementing these options."""
        procs = LogitsProcessorList()
        if self.min_new_tokens > 0 and self.eos_token_ids:
            procs.append(
                MinNewTokensLengthLogitsProcessor(
                    prompt_length, self.min_new_tokens, list(self.eos_token_ids)
                )
            )
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.presence_penalty or self.frequency_penalty:
            procs.append(
                OpenAIPenaltyLogitsProcessor(prompt_length, self.presence_penalty, self.frequency_penalty)
            )
        if self.do_sample:
            if self.temperature != 1.0:
                procs.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k > 0:
                procs.append(TopKLogitsWarper(self.top_k))
            if self.top_p < 1.0:
                procs.append(TopPLogitsWarper(self.top_p))
        return procs


class OpenAIPenaltyLogitsProcessor(LogitsProcessor):
    """OpenAI's presence and frequency penalties over the tokens generated so far (those after the first
    `prompt_length`): a token's logit is lowered by `presence` once it has appeared and by `frequency` for each
    time it has, so positive values discourage repeating the reply's own words (negative ones encourage it)."""

    def __init__(self, prompt_length: int, presence: float, frequency: float):
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids (B, T) with the prompt first; scores (B, V) -> penalised scores (B, V)."""
        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


@dataclass
class DecodeState:
    """Everything a continuation needs: cache, images, mask, positions (all with batch dimension B).

    `pending` holds tokens chosen but not yet run through the model (the last sampled token, or a beam search's
    winner); the next `prefill` runs them first.
    """

    cache: DynamicCache
    token_ids: torch.Tensor  # (B, L) every token of the sequence so far, pending ones included
    attention_mask: torch.Tensor  # (B, L_cached)
    next_position: torch.Tensor  # (B,) position id of the next real token
    image_count: torch.Tensor  # (B,) <image> tokens run so far
    latents: torch.Tensor | None = None  # (B, T_img, n, D)
    media_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    pending: torch.Tensor | None = None  # (B, P)

    @property
    def batch_size(self) -> int:
        return self.token_ids.shape[0]

    @property
    def cached_length(self) -> int:
        return self.attention_mask.shape[1]

    def num_images(self) -> int:
        """Number of image slots holding latents (T_img)."""
        return 0 if self.latents is None else self.latents.shape[1]


def new_state(model: Any, batch_size: int = 1) -> DecodeState:
    """An empty decoding state for `batch_size` sequences on the model's device."""
    device = model.device
    return DecodeState(
        cache=GrowingCache(),
        token_ids=torch.zeros(batch_size, 0, dtype=torch.long, device=device),
        attention_mask=torch.zeros(batch_size, 0, dtype=torch.long, device=device),
        next_position=torch.zeros(batch_size, dtype=torch.long, device=device),
        image_count=torch.zeros(batch_size, dtype=torch.long, device=device),
    )


def add_images(model: Any, state: DecodeState, vision_x: torch.Tensor) -> None:
    """Encode vision_x (B, T_new, 1, 3, H, W) once and append its latents and cross-attention K/V to the state.

    The new images are numbered after the ones already in the state, in order; the `<image>` tokens that refer
    to them are run later by `prefill`.
    """
    latents = model.encode_vision(vision_x.to(model.device))
    kv = model.media_kv(latents)
    if state.latents is None:
        state.latents, state.media_kv = latents, kv
        return
    state.latents = torch.cat([state.latents, latents], dim=1)
    for i, (k, v) in kv.items():
        old_k, old_v = state.media_kv[i]
        state.media_kv[i] = (torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2))


def _lm_forward_parameters(model: Any) -> frozenset[str]:
    """Names the language model's forward accepts, read once per model: they differ between transformers
    releases (`logits_to_keep`; `cache`, which recent releases use instead of `past_key_values` and warn on every
    call that passes the old name)."""
    cached = getattr(model, "_mmgpt_lm_parameters", None)
    if cached is None:
        cached = frozenset(inspect.signature(model.lm.forward).parameters)
        model._mmgpt_lm_parameters = cached
    return cached


def prefill(
    model: Any, state: DecodeState, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Run new tokens (pending ones first) through the model, extending the cache.

    input_ids (B, L) may be None to run only pending tokens; attention_mask (B, L) marks real tokens (left padding
    = 0). Positions continue from the real tokens already cached. Returns the logits of the last position (B, V).
    """
    device = model.device
    chunks, masks = [], []
    if state.pending is not None and state.pending.numel():
        chunks.append(state.pending)
        masks.append(torch.ones_like(state.pending))
    if input_ids is not None and input_ids.shape[1]:
        input_ids = input_ids.to(device)
        chunks.append(input_ids)
        masks.append(
            attention_mask.to(device).long() if attention_mask is not None else torch.ones_like(input_ids)
        )
        state.token_ids = torch.cat([state.token_ids, input_ids], dim=1)
    if not chunks:
        raise ValueError("prefill needs at least one token")
    ids = torch.cat(chunks, dim=1)
    chunk_mask = torch.cat(masks, dim=1)
    state.pending = None

    positions = (state.next_position[:, None] + chunk_mask.cumsum(dim=1) - 1).clamp(min=0)
    full_mask = torch.cat([state.attention_mask, chunk_mask], dim=1)
    ctx = model.media_context_for(ids, state.latents, state.media_kv, prefix_image_count=state.image_count)
    accepted = _lm_forward_parameters(model)
    cache_keyword = "cache" if "cache" in accepted else "past_key_values"
    kwargs: dict[str, Any] = {cache_keyword: state.cache}
    if "logits_to_keep" in accepted:
        kwargs["logits_to_keep"] = 1
    with media_context(ctx):
        out = model.lang_encoder(
            input_ids=ids,
            attention_mask=full_mask,
            position_ids=positions,
            use_cache=True,
            **kwargs,
        )
    state.cache = out[cache_keyword]
    state.attention_mask = full_mask
    state.next_position = state.next_position + chunk_mask.sum(dim=1)
    state.image_count = state.image_count + (ids == model.config.media_token_id).sum(dim=1)
    return out.logits[:, -1, :].float()


def decode(
    model: Any,
    state: DecodeState,
    logits: torch.Tensor,
    options: GenerationOptions,
    streamer: Streamer | None = None,
    should_stop: Any = None,
) -> torch.Tensor:
    """Generate up to `options.max_new_tokens` tokens after a `prefill`; returns them (B, N), pad after EOS.

    `should_stop(tokens_of_row: list[int]) -> bool` (optional) ends a row early, e.g. at a stop string. Afterwards
    the state holds the generated tokens (the last one as `pending`), ready for the next round.
    """
    if options.num_beams > 1:
        return _beam_search(model, state, logits, options)
    generated = []
    for next_tokens in decode_steps(model, state, logits, options, should_stop):
        generated.append(next_tokens)
        if streamer is not None:
            streamer.put(next_tokens.cpu())
    if streamer is not None:
        streamer.end()
    if not generated:
        return torch.zeros(state.batch_size, 0, dtype=torch.long, device=logits.device)
    return torch.stack(generated, dim=1)


def decode_steps(
    model: Any, state: DecodeState, logits: torch.Tensor, options: GenerationOptions, should_stop: Any = None
) -> Iterator[torch.Tensor]:
    """Greedy or sampled decoding as a generator: yields each step's tokens (B,) as soon as they are chosen."""
    b = state.batch_size
    device = logits.device
    procs = options.logits_processors(state.token_ids.shape[1])
    generator = None
    if options.do_sample and options.seed is not None:
        generator = torch.Generator(device=device).manual_seed(options.seed)
    eos = torch.tensor(options.eos_token_ids or [-1], device=device)
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    rows: list[list[int]] = [[] for _ in range(b)]
    for step in range(options.max_new_tokens):
        scores = procs(state.token_ids, logits)
        if options.do_sample:
            probs = torch.softmax(scores, dim=-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        next_tokens = torch.where(finished, torch.full_like(next_tokens, options.pad_token_id), next_tokens)
        state.token_ids = torch.cat([state.token_ids, next_tokens[:, None]], dim=1)
        state.pending = next_tokens[:, None]
        newly_done = torch.isin(next_tokens, eos) & ~finished
        if should_stop is not None:
            for r in range(b):
                if not finished[r]:
                    rows[r].append(int(next_tokens[r]))
                    if not newly_done[r] and should_stop(rows[r]):
                        newly_done[r] = True
        finished |= newly_done
        yield next_tokens
        if finished.all() or step == options.max_new_tokens - 1:
            break
        with torch.no_grad():
            logits = prefill(model, state, None)


def truncate_cache(cache: DynamicCache, length: int) -> None:
    """Keep only the first `length` positions of every layer of `cache`."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


def _expand_state(state: DecodeState, k: int) -> None:
    """Repeat every per-row tensor of the state k times (row i -> rows i*k .. i*k+k-1)."""
    state.cache.batch_repeat_interleave(k)
    state.token_ids = state.token_ids.repeat_interleave(k, dim=0)
    state.attention_mask = state.attention_mask.repeat_interleave(k, dim=0)
    state.next_position = state.next_position.repeat_interleave(k, dim=0)
    state.image_count = state.image_count.repeat_interleave(k, dim=0)
    if state.latents is not None:
        state.latents = state.latents.repeat_interleave(k, dim=0)
        state.media_kv = {
            i: (kk.repeat_interleave(k, dim=0), vv.repeat_interleave(k, dim=0))
            for i, (kk, vv) in state.media_kv.items()
        }


def _select_rows(state: DecodeState, rows: torch.Tensor) -> None:
    """Keep only `rows` of every per-row tensor of the state."""
    state.cache.batch_select_indices(rows)
    state.token_ids = state.token_ids[rows]
    state.attention_mask = state.attention_mask[rows]
    state.next_position = state.next_position[rows]
    state.image_count = state.image_count[rows]
    if state.latents is not None:
        state.latents = state.latents[rows]
        state.media_kv = {i: (kk[rows], vv[rows]) for i, (kk, vv) in state.media_kv.items()}


def _beam_search(
    model: Any, state: DecodeState, logits: torch.Tensor, options: GenerationOptions
) -> torch.Tensor:
    """Beam search with length penalty; returns the best hypothesis per row (B, N), padded with pad_token_id.

    The prompt is run once per row and its cache then copied to the beams. Afterwards the cache is cut back to
    the prompt and the winner is left as `pending`, so a chat can continue from it.
    """
    b, k = state.batch_size, options.num_beams
    device = logits.device
    prefix_len = state.cached_length
    prefix_tokens = state.token_ids.shape[1]
    prefix_positions = state.next_position.clone()
    eos = set(options.eos_token_ids)
    procs = options.logits_processors(prefix_tokens)
    _expand_state(state, k)
    logits = logits.repeat_interleave(k, dim=0)
    beam_scores = torch.zeros(b, k, device=device)
    beam_scores[:, 1:] = -float("inf")  # all beams start identical: only the first may expand at step 0
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    beams: list[list[int]] = [[] for _ in range(b * k)]

    def penalised(score: float, length: int) -> float:
        return score / (max(length, 1) ** options.length_penalty)

    for step in range(options.max_new_tokens):
        logprobs = torch.log_softmax(procs(state.token_ids, logits), dim=-1)
        vocab = logprobs.shape[-1]
        total = (logprobs + beam_scores.view(-1, 1)).view(b, k * vocab)
        top_scores, top_idx = total.topk(min(2 * k, k * vocab), dim=1)
        src_rows, next_tokens, next_scores = [], [], []
        for row in range(b):
            chosen: list[tuple[int, int, float]] = []
            if not done[row]:
                for score, idx in zip(top_scores[row].tolist(), top_idx[row].tolist(), strict=True):
                    src, tok = row * k + idx // vocab, idx % vocab
                    if tok in eos:
                        if len(chosen) < k:  # an EOS only counts if it beats the beams we keep
                            finished[row].append((penalised(score, step + 1), beams[src] + [tok]))
                        continue
                    chosen.append((src, tok, score))
                    if len(chosen) == k:
                        break
                hyps = sorted(finished[row], key=lambda h: h[0], reverse=True)[:k]
                finished[row] = hyps
                best_running = max(s for _, _, s in chosen) if chosen else -float("inf")
                if len(hyps) >= k and hyps[-1][0] >= penalised(best_running, step + 1):
                    done[row] = True
            if done[row] or len(chosen) < k:
                chosen = [(row * k + j, options.pad_token_id, -float("inf")) for j in range(k)]
            for src, tok, score in chosen:
                src_rows.append(src)
                next_tokens.append(tok)
                next_scores.append(score)
        src_t = torch.tensor(src_rows, device=device)
        tokens_t = torch.tensor(next_tokens, device=device)
        beams = [beams[s] + [t] for s, t in zip(src_rows, next_tokens, strict=True)]
        beam_scores = torch.tensor(next_scores, device=device).view(b, k)
        state.cache.reorder_cache(src_t)
        state.token_ids = torch.cat([state.token_ids[src_t], tokens_t[:, None]], dim=1)
        if all(done) or step == options.max_new_tokens - 1:
            break
        state.pending = tokens_t[:, None]
        logits = prefill(model, state, None)
    for row in range(b):
        if not finished[row] or not done[row]:
            for j in range(k):
                score = float(beam_scores[row, j])
                if score > -float("inf"):
                    finished[row].append((penalised(score, len(beams[row * k + j])), beams[row * k + j]))
    best = [max(finished[row], key=lambda h: h[0])[1] if finished[row] else [] for row in range(b)]

    # Back to one row per sequence with only the prompt cached; the winner runs at the next prefill.
    truncate_cache(state.cache, prefix_len)
    state.pending = None
    keep = torch.arange(b, device=device) * k
    _select_rows(state, keep)
    state.attention_mask = state.attention_mask[:, :prefix_len]
    state.token_ids = state.token_ids[:, :prefix_tokens]
    state.next_position = prefix_positions
    width = max((len(t) for t in best), default=0)
    out = torch.full((b, width), options.pad_token_id, dtype=torch.long, device=device)
    for row, toks in enumerate(best):
        if toks:
            out[row, : len(toks)] = torch.tensor(toks, device=device)
    if width:
        state.pending = out  # rows shorter than `width` carry pads; chats use batch size 1
        state.token_ids = torch.cat([state.token_ids, out], dim=1)
    return out


def generate(
    model: Any,
    vision_x: torch.Tensor | None,
    lang_x: torch.Tensor,
    attention_mask: torch.Tensor | None,
    options: GenerationOptions,
    streamer: Streamer | None = None,
) -> torch.Tensor:
    """One-shot generation: encode images once, prefill the prompt, decode. Returns new tokens (B, N)."""
    state = new_state(model, lang_x.shape[0])
    if vision_x is not None:
        add_images(model, state, vision_x)
    logits = prefill(model, state, lang_x, attention_mask)
    return decode(model, state, logits, options, streamer=streamer)
