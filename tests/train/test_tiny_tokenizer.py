"""The tokenizer of a tiny model trained on a synthetic world."""

from __future__ import annotations


def test_the_base_tokenizer_gives_the_instruction_data_its_whole_words(tmp_path):
    """A word that only the responses hold is one token, not a string of byte pieces the base never read."""
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
    assert {"Ġquokka", "Zanzibar"} <= set(tokenizer.get_vocab())
    assert (
        tokenizer.decode(tokenizer("Zanzibar quokka.", add_special_tokens=False)["input_ids"])
        == "Zanzibar quokka."
    )
