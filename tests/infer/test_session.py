"""Chat sessions: training-identical rendering, cache reuse, context policy, concurrency, the terminal chat."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading

import pytest
from PIL import Image

from mmgpt.data.templates import encode_conversation
from mmgpt.infer import ChatSession
from mmgpt.infer.session import ReplyStats


def img(colour):
    return Image.new("RGB", (40, 40), colour)


@pytest.fixture
def model(make_tiny_model):
    return make_tiny_model(gate_init=1.0)


def test_session_ids_equal_training_rendering_and_reuse_cache(model):
    session = model.chat(max_new_tokens=6)
    session.ask("What is in the picture?", images=[img("red")])
    first = session.prefilled_tokens
    session.ask("And what colour is it?")
    session.ask("Compare with this one.", images=[img("blue")])
    session.ask("Beam please.", num_beams=2)
    assert session.token_ids() == encode_conversation(session.conversation(), model.tokenizer).input_ids
    second_round_cost = (
        len(
            model.tokenizer(
                "\n\n### Instruction:\nAnd what colour is it?\n\n### Response:\n", add_special_tokens=False
            ).input_ids
        )
        + 1
    )
    # the second round ran only its own prompt plus the pending token that closed round one
    assert session.prefilled_tokens - first > 0
    assert first > second_round_cost
    assert [h["num_images"] for h in session.history] == [1, 0, 1, 0]


def test_second_round_runs_only_new_tokens(model, monkeypatch):
    import mmgpt.model.generation as gen

    seen = []
    real = gen.prefill

    def spy(m, state, ids, mask=None):
        seen.append(0 if ids is None else ids.shape[1])
        return real(m, state, ids, mask)

    monkeypatch.setattr(gen, "prefill", spy)
    session = ChatSession(model, max_new_tokens=3)
    session.ask("Describe it.", images=[img("green")])
    seen.clear()
    session.ask("Again?")
    from mmgpt.data.templates import Conversation, Turn, encode_continuation

    turns = [*session.conversation().turns[:1], Turn("Again?", None)]
    new_prompt = encode_continuation(Conversation(turns), model.tokenizer)
    assert seen[0] == len(new_prompt) < len(session.token_ids()) // 2  # only the new round's prompt ran


def test_stop_strings_and_streaming(model):
    session = ChatSession(model, max_new_tokens=12, do_sample=True, seed=3, temperature=1.5)
    deltas = list(session.stream("Say something.", images=[img("red")]))
    full = "".join(deltas)
    assert full == session.history[-1]["assistant"]
    first = full.strip()[:1]
    if first:
        again = ChatSession(model, max_new_tokens=12, do_sample=True, seed=3, temperature=1.5, stop=(first,))
        assert first not in again.ask("Say something.", images=[img("red")])


@pytest.mark.parametrize("num_beams", [1, 2])
def test_reply_stats_count_the_chosen_tokens_and_say_why_the_reply_ended(model, monkeypatch, num_beams):
    # end-of-sequence ids no token has: every reply runs to the limit
    monkeypatch.setattr(model.config, "eos_token_id", -7)
    monkeypatch.setattr(model.config, "eoc_token_id", -8)
    session = ChatSession(model, max_new_tokens=5, num_beams=num_beams)
    session.ask("Describe it.", images=[img("red")])
    assert session.last_reply == ReplyStats(5, "length")


def test_reply_stats_after_an_eos_and_after_a_stop_string(model, monkeypatch):
    import mmgpt.model.generation as gen

    chosen = []
    real = gen.decode_steps

    def spy(*args, **kwargs):
        for tokens in real(*args, **kwargs):
            chosen.append(int(tokens[0]))
            yield tokens

    monkeypatch.setattr(gen, "decode_steps", spy)
    ChatSession(model, max_new_tokens=3).ask("Describe it.", images=[img("red")])
    # the token greedy decoding picks first, made the end of sequence: the reply is that one token
    monkeypatch.setattr(model.config, "eos_token_id", chosen[0])
    session = ChatSession(model, max_new_tokens=3)
    session.ask("Describe it.", images=[img("red")])
    assert session.last_reply == ReplyStats(1, "stop")

    monkeypatch.setattr(model.config, "eos_token_id", -7)
    monkeypatch.setattr(model.config, "eoc_token_id", -8)
    free = ChatSession(model, max_new_tokens=12)
    text = free.ask("Describe it.", images=[img("red")])
    assert free.last_reply == ReplyStats(12, "length") and text
    stopped = ChatSession(model, max_new_tokens=12, stop=(text[0],))
    stopped.ask("Describe it.", images=[img("red")])
    assert stopped.last_reply.finish_reason == "stop" and stopped.last_reply.generated_tokens < 12


def test_context_overflow_drops_oldest_rounds(model):
    session = ChatSession(model, max_new_tokens=4, max_context=150)
    for i in range(6):
        session.ask(f"Question number {i} about the shapes?", images=[img("red")] if i == 0 else None)
    assert len(session.history) < 6
    assert session.token_ids() == encode_conversation(session.conversation(), model.tokenizer).input_ids


def test_concurrent_sessions_match_sequential(model):
    questions = ["What is this?", "Tell me more.", "Anything else?"]

    def run(colour):
        s = ChatSession(model, max_new_tokens=5)
        return [s.ask(q, images=[img(colour)] if i == 0 else None) for i, q in enumerate(questions)]

    colours = ["red", "blue", "green"]
    expected = {c: run(c) for c in colours}
    got = {}
    threads = [threading.Thread(target=lambda c=c: got.__setitem__(c, run(c))) for c in colours]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == expected


def test_v1_mode_reruns_when_a_later_round_adds_an_image(make_tiny_model):
    model = make_tiny_model(gate_init=1.0, media_attention="openflamingo_v1")
    session = ChatSession(model, max_new_tokens=3)
    session.ask("First?", images=[img("red")])
    before = session.prefilled_tokens
    session.ask("Second?", images=[img("blue")])
    assert session.prefilled_tokens - before > len(session.token_ids()) - 10  # the whole conversation re-ran
    assert session.token_ids() == encode_conversation(session.conversation(), model.tokenizer).input_ids


def test_terminal_chat_through_a_pipe(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    img("red").save(tmp_path / "a.png")
    # a save into a missing directory fails with a message and the chat goes on, so nothing is lost
    script = (
        f"/image {tmp_path / 'a.png'}\nWhat is this?\nAnd then?\n/image {tmp_path / 'missing.png'}\n"
        f"/save {tmp_path / 'no' / 't.json'}\n/save\n/help\n/nonsense\n/save {tmp_path / 't.json'}\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmgpt",
            "-q",
            "chat",
            "--model",
            str(tmp_path / "m"),
            "--max-new-tokens",
            "4",
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "cannot read image" in out.stderr
    assert "No such file or directory" in out.stderr and "usage: /save FILE" in out.stderr
    assert "/help lists these commands" in out.stdout and "unknown command /help" not in out.stderr
    assert "unknown command /nonsense; use /image PATH" in out.stderr
    transcript = json.loads((tmp_path / "t.json").read_text())
    assert [r["user"] for r in transcript["rounds"]] == ["What is this?", "And then?"]
    assert transcript["rounds"][0]["num_images"] == 1


def test_decoding_passes_the_cache_under_the_installed_transformers_name(model):
    # recent transformers releases rename `past_key_values` to `cache` and warn on every call using the old name;
    # a chat must not print that deprecation to the user
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = model.chat(max_new_tokens=4)
        session.ask("What is in the picture?", images=[img("red")])
        session.ask("Beam please.", num_beams=2)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


def test_a_reply_left_unfinished_leaves_nothing_behind(model):
    # a caller that stops reading a streamed reply (a closed web page, Ctrl-C, `break`) must not leave that
    # round's prompt and partial reply in the cache under the next round
    session = ChatSession(model, max_new_tokens=6)
    session.ask("What is in the picture?", images=[img("red")])
    pieces = session.stream("Tell me a long story.", max_new_tokens=40, do_sample=True, seed=0)
    next(pieces)
    pieces.close()
    session.ask("And what colour is it?")
    assert [h["user"] for h in session.history] == ["What is in the picture?", "And what colour is it?"]
    assert session.token_ids() == encode_conversation(session.conversation(), model.tokenizer).input_ids


def test_check_fits_refuses_a_message_the_context_cannot_hold(model):
    from mmgpt.infer.session import ContextLengthError

    session = ChatSession(model, max_new_tokens=8, max_context=128)
    session.check_fits("How many shapes?", num_images=1)
    with pytest.raises(ContextLengthError, match="context allows 0"):
        session.check_fits("How many shapes?", max_new_tokens=128)
    with pytest.raises(ContextLengthError, match="the message needs"):
        session.check_fits("red square " * 100)
    assert session.history == [] and session.prefilled_tokens == 0  # nothing ran


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_chat_survives_ctrl_c_during_a_reply_and_a_message_too_long(
    model, monkeypatch, tmp_path, capsys
):
    import mmgpt.model.checkpoints
    from mmgpt.infer import commands

    real_generate = ChatSession._generate

    def generate(self, new_round, logits, options):
        pieces = real_generate(self, new_round, logits, options)
        if new_round.turn.user == "interrupt me":
            yield next(pieces, "")
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the reply was printing
        yield from pieces

    monkeypatch.setattr(ChatSession, "_generate", generate)
    monkeypatch.setattr(mmgpt.model.checkpoints, "load_model", lambda *a, **k: model)
    script = f"First?\ninterrupt me\n{'red square ' * 600}\nSecond?\n/save {tmp_path / 't.json'}\n"
    stdout = _Terminal()
    monkeypatch.setattr(sys, "stdin", _Terminal(script))
    monkeypatch.setattr(sys, "stdout", stdout)
    from mmgpt.cli import build_parser

    parsed = build_parser().parse_args(["chat", "--model", "m", "--max-new-tokens", "4"])
    try:
        assert commands._chat(parsed) == 0
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during a reply ended the chat and lost the conversation")
    assert "(reply stopped" in stdout.getvalue()
    assert "error: the message needs" in capsys.readouterr().err
    transcript = json.loads((tmp_path / "t.json").read_text())
    assert [r["user"] for r in transcript["rounds"]] == ["First?", "Second?"]
