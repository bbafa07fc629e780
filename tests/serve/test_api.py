"""The OpenAI-compatible API driven by the official `openai` client, including every bad request."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from tests.serve.conftest import data_url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="sekret", max_retries=0, timeout=60)


def image_message(text="What is in the image?", colour="red"):
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": data_url(colour)}},
        ],
    }


def test_plain_completion_with_image(client):
    reply = client.chat.completions.create(model="tiny", messages=[image_message()], max_tokens=5)
    assert reply.object == "chat.completion"
    assert isinstance(reply.choices[0].message.content, str)
    assert 1 <= reply.usage.completion_tokens <= 5 and reply.usage.prompt_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    # fewer tokens than allowed can only mean the model ended the reply itself
    if reply.usage.completion_tokens < 5:
        assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_streamed_completion_matches_plain(client):
    messages = [
        image_message(),
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "Sure?"},
    ]
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, seed=1)
    chunks = list(
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, seed=1, stream=True)
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_raw_stream_ends_with_done(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    r = httpx.post(
        f"{server}/v1/chat/completions", json=body, headers={"Authorization": "Bearer sekret"}, timeout=60
    )
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


BAD = {
    "malformed json": (b"{not json", 400),
    "empty messages": ({"messages": []}, 400),
    "unknown role": ({"messages": [{"role": "wizard", "content": "hi"}]}, 400),
    "bad base64": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}],
                }
            ]
        },
        400,
    ),
    "not an image": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}
                    ],
                }
            ]
        },
        400,
    ),
    "remote url": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}],
                }
            ]
        },
        400,
    ),
    "file url": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
                }
            ]
        },
        400,
    ),
    "too many pixels": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": data_url(size=(600, 600))}}],
                }
            ]
        },
        400,
    ),
    "too many images": ({"messages": [image_message(), image_message(), image_message()]}, 400),
    "model not a string": ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, 400),
    "another model": ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, 404),
    "n > 1": ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400),
    "max tokens": ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, 400),
    "too large": ({"messages": [{"role": "user", "content": "x" * 300_000}]}, 413),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_4xx_and_server_keeps_serving(server, client, case):
    payload, status = BAD[case]
    headers = {"Authorization": "Bearer sekret"}
    if isinstance(payload, bytes):
        r = httpx.post(
            f"{server}/v1/chat/completions",
            content=payload,
            headers={**headers, "content-type": "application/json"},
        )
    else:
        r = httpx.post(f"{server}/v1/chat/completions", json=payload, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    ok = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "still there?"}], max_tokens=2
    )
    assert ok.choices[0].message.content is not None


def test_api_key_is_required(server):
    r = httpx.post(f"{server}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    bad = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])


def test_a_request_naming_another_model_is_a_404_the_client_recognises(client, server):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert raised.value.body["code"] == "model_not_found" and "'tiny'" in raised.value.body["message"]
    # the model field may be left out (or null): the one model served answers
    r = httpx.post(
        f"{server}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        headers={"Authorization": "Bearer sekret"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["model"] == "tiny"


def test_a_server_told_to_answer_any_model_name_accepts_them_all():
    from mmgpt.serve.api import ChatService, RequestError, ServerLimits

    strict = ChatService(None, "demo", ServerLimits())
    lenient = ChatService(None, "demo", ServerLimits(), any_model_name=True)
    for name in (None, "demo"):
        strict.check_model(name)
    lenient.check_model("gpt-4o")
    with pytest.raises(RequestError) as raised:
        strict.check_model("gpt-4o")
    assert raised.value.status == 404 and raised.value.param == "model"
    with pytest.raises(RequestError):
        lenient.check_model(["demo"])  # a non-string is a malformed request either way


def test_concurrent_requests_are_queued_not_interleaved(client):
    def ask(colour):
        return (
            client.chat.completions.create(
                model="tiny", messages=[image_message(colour=colour)], max_tokens=5
            )
            .choices[0]
            .message.content
        )

    colours = ["red", "blue", "green", "yellow"]
    sequential = [ask(c) for c in colours]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(ask, colours))
    assert parallel == sequential


def post(server, body, timeout=30):
    return httpx.post(
        f"{server}/v1/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sekret"},
        timeout=timeout,
    )


def test_a_client_leaving_mid_stream_does_not_block_the_next_request(server, client):
    import json
    import socket
    from urllib.parse import urlparse

    address = urlparse(server)
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 64,
            "temperature": 1.0,
            "stream": True,
        }
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    for _ in range(3):
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(request)
            assert sock.recv(64).startswith(b"HTTP/1.1 200")  # the stream started; now hang up
    # the openai client leaving a stream early as well
    with client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=64,
        temperature=1.0,
        stream=True,
    ) as stream:
        next(iter(stream))
    quick = openai.OpenAI(base_url=f"{server}/v1", api_key="sekret", max_retries=0, timeout=20)
    reply = quick.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].message.content is not None


@pytest.mark.parametrize("stream", [False, True])
def test_a_message_longer_than_the_context_is_a_400_before_any_streaming(server, stream):
    body = {"messages": [{"role": "user", "content": "hello there, a small star, " * 300}], "stream": stream}
    r = post(server, {**body, "max_tokens": 8})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and "tokens" in error["message"]


def test_fields_sent_as_null_take_their_defaults_and_max_tokens_defaults_within_the_limit(client, server):
    # the fixture's server allows at most 64 tokens: a request that names no max_tokens must still be answered
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        temperature=None,
        top_p=None,
        n=None,
        seed=None,
    )
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage.completion_tokens <= 64
    r = post(server, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": None, "stop": None})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 10_000}, "max_completion_tokens"),
        ({"seed": 2**70}, "seed"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": "usage"}, "stream_options"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": "high"}, "frequency_penalty"),
    ],
)
def test_bad_option_values_are_400s_naming_the_field(server, fields, param):
    r = post(server, {"messages": [{"role": "user", "content": "hi"}], **fields})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
    ],
)
def test_features_the_server_cannot_honour_are_400s_not_ignored(server, fields, param):
    r = post(server, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and "not supported" in r.json()["error"]["message"]


def test_presence_and_frequency_penalties_reach_the_decoder(client, monkeypatch):
    from mmgpt.model import generation

    seen = []
    real = generation.OpenAIPenaltyLogitsProcessor.__init__

    def spy(self, prompt_length, presence, frequency):
        seen.append((presence, frequency))
        real(self, prompt_length, presence, frequency)

    monkeypatch.setattr(generation.OpenAIPenaltyLogitsProcessor, "__init__", spy)
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    assert seen == []  # no penalty, no processor
    client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=2, presence_penalty=0.5, frequency_penalty=-1
    )
    assert seen == [(0.5, -1.0)]


def test_the_neutral_values_of_those_features_are_accepted(client):
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,
        tools=[],
        tool_choice="none",
        response_format={"type": "text"},
        logprobs=False,
    )
    assert reply.choices[0].message.content is not None


def test_earlier_assistant_replies_may_be_null_or_refusals(client):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot say."}]},
        {"role": "user", "content": "really?"},
    ]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=2)
    assert reply.choices[0].message.content is not None


def test_include_usage_sends_it_in_a_last_chunk_without_choices(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert all(c.usage is None for c in chunks[:-1])


def test_an_unexpected_failure_is_a_json_500_and_the_server_goes_on(server, client, monkeypatch):
    from mmgpt.serve.api import ChatService

    def broken(self, request, cancelled=None):
        raise RuntimeError("boom")
        yield  # a generator, like the real one

    monkeypatch.setattr(ChatService, "complete", broken)
    r = post(server, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    with pytest.raises(openai.APIError, match="internal server error"):
        list(
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    monkeypatch.undo()
    assert client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    ).choices


def test_unreadable_local_and_remote_images_are_request_errors(tmp_path):
    from mmgpt.serve.api import RequestError, ServerLimits, decode_image

    limits = ServerLimits(allow_local_images=True, allow_remote_images=True)
    for url in (f"file://{tmp_path / 'missing.png'}", f"file://{tmp_path}", "http://127.0.0.1:9/a.png"):
        with pytest.raises(RequestError, match="cannot (read|fetch) the image") as caught:
            decode_image(url, limits, "messages[0].content[0]")
        assert caught.value.status == 400


def test_an_image_pillow_refuses_as_too_large_is_named_as_such(monkeypatch):
    from PIL import Image

    from mmgpt.serve.api import RequestError, ServerLimits, decode_image

    # Pillow raises on headers over twice its own pixel limit before the server's check can run
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(RequestError, match="more pixels than the limit"):
        decode_image(data_url(size=(100, 100)), ServerLimits(), "messages[0].content[0]")
