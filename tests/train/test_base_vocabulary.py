"""The base reads every token the instruction data uses: none keeps its random initial embedding."""

from __future__ import annotations

from collections import Counter

from transformers import AutoTokenizer

from mmgpt.data.config import load_data_config
from mmgpt.data.mixture import turn_texts
from mmgpt.train.pretrain_data import corpus_texts


def _token_counts(tokenizer, texts: list[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        # after a line break, as the template places every instruction and response (the break itself is the
        # template's, not the data's, so its token is dropped)
        ids = tokenizer("\n" + text, add_special_tokens=False)["input_ids"]
        counts.update(ids[1:] if tokenizer.convert_ids_to_tokens(ids[0]) == "Ċ" else ids)
    return counts


def test_every_token_of_the_instruction_data_is_read_in_pretraining(world, base_model):
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    read = Counter()
    for text in corpus_texts(world):
        read.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    used = _token_counts(tokenizer, turn_texts(load_data_config(world / "datasets.yaml")))
    never_read = {tokenizer.convert_ids_to_tokens(i): n for i, n in used.items() if read[i] == 0}
    assert len(used) > 200
    assert never_read == {}


def test_the_base_tokenizer_learns_no_word_that_only_the_instruction_data_holds(tmp_path):
    import json

    from mmgpt.train.config import load_train_config
    from mmgpt.train.loop import tiny_tokenizer

    (tmp_path / "pretrain").mkdir()
    reading = "".join(
        json.dumps({"text": f"The red square is small. {n} plus 1 equals {n + 1}."}) + "\n" for n in range(50)
    )
    (tmp_path / "pretrain" / "text.jsonl").write_text(reading)
    (tmp_path / "pretrain" / "interleaved.jsonl").write_text("")
    (tmp_path / "dolly.jsonl").write_text(
        json.dumps(
            {"instruction": "Say zanzibar quokka.", "context": "", "response": "Zanzibar quokka quokka."}
        )
        + "\n"
    )
    (tmp_path / "datasets.yaml").write_text(
        "language:\n  - {type: dolly, ann_path: dolly.jsonl, weight: 500}\n"
    )
    config = load_train_config(
        None,
        [
            f"data.world={tmp_path}",
            "model.tokenizer_vocab_size=1000",
            "model.tiny={hidden_size: 32}",
            "stage=pretrain",
        ],
    )
    tokenizer = tiny_tokenizer(config)
    assert "Ġsmall" in tokenizer.get_vocab()
    assert not {t for t in tokenizer.get_vocab() if "quokka" in t or "zanzibar" in t.lower()}
    assert (
        tokenizer.decode(tokenizer("Zanzibar quokka.", add_special_tokens=False)["input_ids"])
        == "Zanzibar quokka."
    )
