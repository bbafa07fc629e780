"""Tokenizer set-up shared by every model: OpenFlamingo's special tokens and a small trainable tokenizer.

The order of added tokens matters: released OpenFlamingo / MultiModal-GPT embedding rows were trained with
`<|endofchunk|>` then `<image>` as additional special tokens, then `<PAD>` as pad token when the base tokenizer
has none. Changing the order would silently permute those rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

ENDOFCHUNK_TOKEN = "<|endofchunk|>"
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<PAD>"


@dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of the tokens the Flamingo model and the templates rely on."""

    media: int
    endofchunk: int
    pad: int
    eos: int
    bos: int | None


def add_flamingo_special_tokens(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds:
    """Add `<|endofchunk|>`, `<image>` and (when missing) `<PAD>` in OpenFlamingo's order; return their ids.

    Idempotent: calling it on a tokenizer that already has the tokens changes nothing.
    """
    existing = set(tokenizer.extra_special_tokens or [])
    missing = [t for t in (ENDOFCHUNK_TOKEN, IMAGE_TOKEN) if t not in existing]
    if missing:
        # Extend, never replace: a base tokenizer's own extra tokens keep their ids.
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    return special_token_ids(tokenizer)


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenIds:
    """Return the ids of the Flamingo special tokens of a tokenizer prepared by `add_flamingo_special_tokens`."""
    media = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    eoc = tokenizer.convert_tokens_to_ids(ENDOFCHUNK_TOKEN)
    if media is None or media == tokenizer.unk_token_id or eoc is None or eoc == tokenizer.unk_token_id:
        raise ValueError("tokenizer lacks <image>/<|endofchunk|>: call add_flamingo_special_tokens first")
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no EOS token; the templates need one to close each response")
    if tokenizer.unk_token_id is not None and tokenizer.eos_token_id == tokenizer.unk_token_id:
        # e.g. an early LLaMA conversion whose tokenizer_config.json names "" as EOS: responses would be closed
        # by nothing, and the model would never learn or signal the end of a reply
        raise ValueError(
            f"tokenizer's EOS token {tokenizer.eos_token!r} is the unknown token (id {tokenizer.eos_token_id}); "
            "set eos_token in tokenizer_config.json to the real end-of-sequence token (LLaMA: </s>)"
        )
    return SpecialTokenIds(
        media=int(media),
        endofchunk=int(eoc),
        pad=int(tokenizer.pad_token_id),
        eos=int(tokenizer.eos_token_id),
        bos=None if tokenizer.bos_token_id is None else int(tokenizer.bos_token_id),
    )


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 1000, split_digits: bool = False
) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with LLaMA-like specials (`<s>`, `</s>`, `<unk>`) on `texts`.

    With `split_digits` every digit is a token of its own, as in LLaMA's tokenizer, so that "13" is "1" "3"
    whatever the training text's frequencies: a model then meets every number through the same ten digits.

    Used for tiny test models and the synthetic world's base model, where no pretrained tokenizer can be
    downloaded. Returns a tokenizer *without* the Flamingo tokens (call `add_flamingo_special_tokens`).
    The tokenizer prepends `<s>` when `add_special_tokens=True`, like LLaMA's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    bos_id = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=4096
    )
