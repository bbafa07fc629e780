"""OpenAI-compatible HTTP API: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

Each request builds a fresh chat session from its messages (earlier assistant messages become completed rounds,
rendered exactly as in training). One worker lock serialises generation on the shared model, so concurrent requests
queue instead of interleaving. Inputs are checked before any work: request size, JSON, roles, content parts, image
URLs (data: only, unless allowed), base64, image format and pixel count (decompression bombs are refused from the
header, before decoding), images per request and max tokens. Every refusal is a 4xx with an OpenAI-style body.
"""

import base64
import binascii
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from mmgpt.data.templates import Turn


@dataclass
class ServerLimits:
    """Request limits; the defaults suit a single-machine deployment."""

    max_request_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_images: int = 8
    max_tokens: int = 1024
    allow_remote_images: bool = False
    allow_local_images: bool = False


class RequestError(Exception):
    """A client error: HTTP status + OpenAI-style error fields."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


def decode_image(url: str, limits: ServerLimits, param: str) -> Image.Image:
    """An RGB image from a data URL (or, when allowed, an http(s)/file URL); RequestError otherwise."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise RequestError("image data URLs must be base64-encoded", param)
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as err:
            raise RequestError(f"invalid base64 image data: {err}", param) from err
    elif url.startswith(("http://", "https://")):
        if not limits.allow_remote_images:
            raise RequestError("remote image URLs are disabled on this server; send a data: URL", param)
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (explicitly allowed by the operator)
            raw = response.read(limits.max_request_bytes + 1)
    elif url.startswith("file://"):
        if not limits.allow_local_images:
            raise RequestError("file:// image URLs are disabled on this server; send a data: URL", param)
        raw = Path(url[len("file://") :]).read_bytes()
    else:
        raise RequestError("image_url.url must be a data: URL", param)
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size  # header only: nothing decoded yet
    except Exception as err:
        raise RequestError("the image bytes are not an image this server can read", param) from err
    if width * height > limits.max_image_pixels:
        raise RequestError(
            f"image of {width}x{height} pixels exceeds the limit of {limits.max_image_pixels}", param
        )
    try:
        image.load()
        return image.convert("RGB")
    except Exception as err:
        raise RequestError(f"cannot decode the image: {err}", param) from err


def parse_messages(
    messages: Any, limits: ServerLimits
) -> tuple[list[Turn], list[list[Image.Image]], str, list[Image.Image]]:
    """Split OpenAI messages into completed rounds (turns + their images) and the final user message."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", "messages")
    turns: list[Turn] = []
    turn_images: list[list[Image.Image]] = []
    pending_user: tuple[str, list[Image.Image]] | None = None
    total_images = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError("each message must be an object", where)
        role = message.get("role")
        if role in ("system", "developer"):
            continue  # the template has a fixed preamble; system prompts are accepted and not used
        text, images = _content(message.get("content"), f"{where}.content", limits)
        total_images += len(images)
        if total_images > limits.max_images:
            raise RequestError(f"at most {limits.max_images} images per request", where)
        if role == "user":
            if pending_user is not None:  # consecutive user messages are joined into one round
                text = pending_user[0] + "\n" + text
                images = pending_user[1] + images
            pending_user = (text, images)
        elif role == "assistant":
            if pending_user is None:
                raise RequestError("an assistant message must follow a user message", where)
            turns.append(Turn(pending_user[0], text, num_images=len(pending_user[1])))
            turn_images.append(pending_user[1])
            pending_user = None
        else:
            raise RequestError(f"unknown role {role!r}; use system, user or assistant", f"{where}.role")
    if pending_user is None or not pending_user[0].strip():
        raise RequestError("the last message must be a non-empty user message", "messages")
    return turns, turn_images, pending_user[0], pending_user[1]


def _content(content: Any, where: str, limits: ServerLimits) -> tuple[str, list[Image.Image]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError("content must be a string or a list of parts", where)
    texts, images = [], []
    for j, part in enumerate(content):
        pwhere = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise RequestError("each content part must be an object", pwhere)
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            if not isinstance(url, str):
                raise RequestError("image_url.url must be a string", pwhere)
            images.append(decode_image(url, limits, pwhere))
        else:
            raise RequestError("content parts must be {type: text} or {type: image_url}", pwhere)
    return "\n".join(texts), images


class ChatService:
    """Holds the model and the lock that serialises generation."""

    def __init__(self, model: Any, model_name: str, limits: ServerLimits, api_key: str | None = None):
        self.model, self.model_name, self.limits, self.api_key = model, model_name, limits, api_key
        self.lock = threading.Lock()
        self.created = int(time.time())

    def options(self, body: dict) -> dict[str, Any]:
        """ChatSession options from the request body (validated)."""
        n = body.get("n", 1)
        if n != 1:
            raise RequestError("only n=1 is supported", "n")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 256))
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= self.limits.max_tokens:
            raise RequestError(
                f"max_tokens must be an integer in [1, {self.limits.max_tokens}]", "max_tokens"
            )
        temperature = body.get("temperature", 0.0)
        top_p = body.get("top_p", 1.0)
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise RequestError("temperature must be in [0, 2]", "temperature")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise RequestError("top_p must be in (0, 1]", "top_p")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise RequestError("stop must be a string or a list of at most 4 strings", "stop")
        seed = body.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise RequestError("seed must be an integer", "seed")
        return {
            "max_new_tokens": max_tokens,
            "do_sample": temperature > 0,
            "temperature": temperature or 1.0,
            "top_p": float(top_p),
            "stop": tuple(stop),
            "seed": seed,
        }

    def session(self, turns: list[Turn], turn_images: list[list[Image.Image]], options: dict) -> Any:
        """A chat session primed with the completed rounds (run lazily with the new message)."""
        from mmgpt.infer.session import ChatSession, _Round

        session = ChatSession(self.model, **options)
        session.rounds = [_Round(t, imgs) for t, imgs in zip(turns, turn_images, strict=True)]
        return session

    def complete(self, body: dict) -> Iterator[tuple[str, dict | None]]:
        """Generate the reply: yields (text delta, None) pieces and finally ("", usage)."""
        turns, turn_images, text, images = parse_messages(body.get("messages"), self.limits)
        options = self.options(body)
        with self.lock:
            session = self.session(turns, turn_images, options)
            for delta in session.stream(text, images):
                yield delta, None
            prompt_tokens = session.prefilled_tokens
            completion = session.last_reply.generated_tokens
            finish = session.last_reply.finish_reason
        yield (
            "",
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
                "finish_reason": finish,
            },
        )


def create_app(service: ChatService) -> Any:
    """The FastAPI application serving `service`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="mmgpt", version="1")

    def error(err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    def check_auth(request: Request) -> None:
        if service.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {service.api_key}":
            raise RequestError(
                "invalid or missing API key", status=401, code="invalid_api_key", kind="authentication_error"
            )

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": service.model_name}

    @app.get("/v1/models")
    def models(request: Request) -> Any:
        try:
            check_auth(request)
        except RequestError as err:
            return error(err)
        return {
            "object": "list",
            "data": [
                {"id": service.model_name, "object": "model", "created": service.created, "owned_by": "mmgpt"}
            ],
        }

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        try:
            check_auth(request)
            declared = int(request.headers.get("content-length") or 0)
            if declared > service.limits.max_request_bytes:
                raise RequestError("request body too large", status=413, code="request_too_large")
            raw = await request.body()
            if len(raw) > service.limits.max_request_bytes:
                raise RequestError("request body too large", status=413, code="request_too_large")
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise RequestError(f"malformed JSON: {err}") from err
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            # Validate everything (and decode images) before queueing for the model.
            parse_messages(body.get("messages"), service.limits)
            service.options(body)
        except RequestError as err:
            return error(err)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            return StreamingResponse(
                _sse(service, body, completion_id, created), media_type="text/event-stream"
            )
        import anyio

        def run() -> tuple[str, dict]:
            text, usage = "", {}
            for delta, info in service.complete(body):
                text += delta
                usage = info or usage
            return text, usage

        text, usage = await anyio.to_thread.run_sync(run)
        finish = usage.pop("finish_reason", "stop")
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": service.model_name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            ],
            "usage": usage,
        }

    return app


def _sse(service: ChatService, body: dict, completion_id: str, created: int) -> Iterator[str]:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": service.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for delta, info in service.complete(body):
        if info is not None:
            finish = info.pop("finish_reason", "stop")
            yield chunk({}, finish, info)
        elif delta:
            yield chunk({"content": delta})
    yield "data: [DONE]\n\n"
