"""The unified templates: exact text, exact supervised spans, truncation, and incremental chat rendering."""

from __future__ import annotations

import pytest

from mmgpt.data.templates import (
    CAPTION_INSTRUCTIONS,
    IGNORE_INDEX,
    Conversation,
    SampleTooLong,
    Turn,
    caption_instruction,
    encode_continuation,
    encode_conversation,
    encode_prompt,
    encode_response,
    supervised_spans,
)

PRE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def text(tok, ids):
    return tok.decode(ids)


def spans(tok, enc):
    return [tok.decode(s) for s in supervised_spans(enc)]


def test_language_only_with_input(tiny_tokenizer):
    conv = Conversation([Turn("Add the numbers.", "The sum is 5.", input="2 and 3")])
    enc = encode_conversation(conv, tiny_tokenizer)
    assert text(tiny_tokenizer, enc.input_ids) == (
        f"<s>{PRE}\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\nThe sum is 5.</s>"
    )
    assert spans(tiny_tokenizer, enc) == ["The sum is 5.</s>"]


def test_language_only_without_input(tiny_tokenizer):
    enc = encode_conversation(Conversation([Turn("Say hi.", "Hi there.")]), tiny_tokenizer)
    assert (
        text(tiny_tokenizer, enc.input_ids)
        == f"<s>{PRE}\n\n### Instruction:\nSay hi.\n\n### Response:\nHi there.</s>"
    )


def test_vision_language_multi_round(tiny_tokenizer):
    conv = Conversation(
        [
            Turn("What colour is the circle?", "The circle is red.", num_images=1),
            Turn("How many shapes?", "There are 3 shapes."),
            Turn("And squares?", "One square."),
        ]
    )
    enc = encode_conversation(conv, tiny_tokenizer)
    assert text(tiny_tokenizer, enc.input_ids) == (
        f"<s>{PRE}\n\n### Image:\n<image>\n\n### Instruction:\nWhat colour is the circle?\n\n### Response:\n"
        "The circle is red.</s>\n\n### Instruction:\nHow many shapes?\n\n### Response:\nThere are 3 shapes.</s>"
        "\n\n### Instruction:\nAnd squares?\n\n### Response:\nOne square.</s>"
    )
    # Exactly the three responses and their EOS are supervised; no human message ever is.
    assert spans(tiny_tokenizer, enc) == [
        "The circle is red.</s>",
        "There are 3 shapes.</s>",
        "One square.</s>",
    ]
    assert enc.num_images == 1 and enc.num_rounds == 3
    media = tiny_tokenizer.convert_tokens_to_ids("<image>")
    assert enc.labels[enc.input_ids.index(media)] == IGNORE_INDEX
    assert enc.labels[0] == IGNORE_INDEX  # BOS


def test_later_round_images(tiny_tokenizer):
    conv = Conversation(
        [Turn("First?", "One.", num_images=1), Turn("Compare these.", "They differ.", num_images=2)]
    )
    rendered = text(tiny_tokenizer, encode_conversation(conv, tiny_tokenizer).input_ids)
    assert "One.</s>\n\n### Image:\n<image><image>\n\n### Instruction:\nCompare these." in rendered


def test_truncation_drops_whole_rounds_and_keeps_eos(tiny_tokenizer):
    conv = Conversation(
        [Turn("Q one?", "Answer one."), Turn("Q two?", "Answer two is a much longer reply here.")]
    )
    full = encode_conversation(conv, tiny_tokenizer)
    first_only = encode_conversation(Conversation(conv.turns[:1]), tiny_tokenizer)
    cut = encode_conversation(conv, tiny_tokenizer, max_length=len(full.input_ids) - 1)
    assert cut.input_ids == first_only.input_ids and cut.num_rounds == 1
    assert cut.input_ids[-1] == tiny_tokenizer.eos_token_id and cut.labels[-1] == tiny_tokenizer.eos_token_id
    with pytest.raises(SampleTooLong):
        encode_conversation(conv, tiny_tokenizer, max_length=len(first_only.input_ids) - 1)


def test_chat_rendering_is_incremental_and_matches_training(tiny_tokenizer):
    turns = [
        Turn("What is this?", "A red circle.", num_images=1),
        Turn("Bigger?", "Yes."),
        Turn("Why?", "Because."),
    ]
    full = encode_conversation(Conversation(turns), tiny_tokenizer).input_ids
    ids: list[int] = []
    for k in range(len(turns)):
        open_conv = Conversation([*turns[:k], Turn(turns[k].user, None, turns[k].num_images)])
        new = encode_continuation(open_conv, tiny_tokenizer)
        assert ids + new == encode_prompt(open_conv, tiny_tokenizer)
        ids += new + encode_response(turns[k].assistant, tiny_tokenizer)
    assert ids == full


def test_caption_pool_contains_table_3_and_is_deterministic():
    assert len(CAPTION_INSTRUCTIONS) >= 30
    assert "Can you describe the image?" in CAPTION_INSTRUCTIONS[:10]
    assert caption_instruction("x", 1) == caption_instruction("x", 1)
    assert len({caption_instruction(str(i), 0) for i in range(200)}) > 10


def test_special_token_spellings_in_written_text_stay_text(tiny_tokenizer):
    """A "</s>" in a response must not end it early in training, nor a "<s>" or "<|endofchunk|>" in a message
    become that token; the text around them renders as before."""
    tok = tiny_tokenizer
    specials = {tok.eos_token_id, tok.bos_token_id, tok.convert_tokens_to_ids("<|endofchunk|>")}
    conv = Conversation(
        [
            Turn("What does <s>old</s> mean in HTML?", "It strikes out old; </s> closes it.", num_images=1),
            Turn("And <|endofchunk|>?", "Ends a chunk.", input="see </s>"),
        ]
    )
    enc = encode_conversation(conv, tok)
    assert text(tok, enc.input_ids) == (
        f"<s>{PRE}\n\n### Image:\n<image>\n\n### Instruction:\nWhat does <s>old</s> mean in HTML?\n\n"
        "### Response:\nIt strikes out old; </s> closes it.</s>\n\n### Instruction:\nAnd <|endofchunk|>?\n\n"
        "### Input:\nsee </s>\n\n### Response:\nEnds a chunk.</s>"
    )
    # the only special ids are the template's: BOS first, one image slot, one EOS closing each response
    found = [(i, t) for i, t in enumerate(enc.input_ids) if t in specials]
    assert [t for _, t in found] == [tok.bos_token_id, tok.eos_token_id, tok.eos_token_id]
    assert found[0][0] == 0 and found[-1][0] == len(enc.input_ids) - 1
    assert enc.input_ids.count(tok.convert_tokens_to_ids("<image>")) == 1
    assert spans(tok, enc) == ["It strikes out old; </s> closes it.</s>", "Ends a chunk.</s>"]
    assert encode_response("Use </s>.", tok).count(tok.eos_token_id) == 1
    # a chat prompt renders the same way
    prompt = encode_prompt(Conversation([Turn("Type </s> here", None)]), tok)
    assert tok.eos_token_id not in prompt
    # text without such spellings is rendered in one piece, as before
    plain = Conversation([Turn("Say hi.", None, input="x")])
    joined = f"{PRE}\n\n### Instruction:\nSay hi.\n\n### Input:\nx\n\n### Response:\n"
    assert encode_prompt(plain, tok) == [
        tok.bos_token_id,
        *tok(joined, add_special_tokens=False)["input_ids"],
    ]
