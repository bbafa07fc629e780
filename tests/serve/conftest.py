"""A live `mmgpt serve` app on 127.0.0.1 (uvicorn in a thread) around a tiny random model."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import pytest
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_url(colour="red", size=(40, 40), fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch
    import uvicorn

    from mmgpt.model.builder import build_model, tiny_config
    from mmgpt.model.image_processing import FlamingoImageProcessor
    from mmgpt.model.tokenizer import add_flamingo_special_tokens, special_token_ids, train_bpe_tokenizer
    from mmgpt.serve.api import ChatService, ServerLimits, create_app
    from tests.conftest import CORPUS

    tok = train_bpe_tokenizer(CORPUS * 20, vocab_size=350)
    add_flamingo_special_tokens(tok)
    torch.manual_seed(0)
    model = build_model(tiny_config(len(tok), special_token_ids(tok), gate_init=1.0)).eval()
    model.tokenizer, model.image_processor = tok, FlamingoImageProcessor(32)
    service = ChatService(
        model,
        "tiny",
        ServerLimits(max_images=2, max_tokens=64, max_request_bytes=200_000, max_image_pixels=512 * 512),
        api_key="sekret",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
