"""OpenAI-compatible HTTP API: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`.

Each request builds a fresh chat session from its messages (earlier assistant messages become completed rounds,
rendered exactly as in training). One worker lock serialises generation on the shared model, so concurrent requests
queue instead of interleaving. Inputs are checked before any work: request size, JSON, roles, content parts, image
URLs (data: only, unless allowed), base64, image format and pixel count (decompression bombs are refused from the
header, before decoding), images per request and max tokens. Every refusal is a 4xx with an OpenAI-style body.
"""

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.responses import StreamingResponse

from mmgpt.data.templates import Turn
from mmgpt.model.generation import PENALTY_RANGE

logger = logging.getLogger(__name__)
# the range torch accepts for a random seed
SEED_RANGE = (-(2**63), 2**64 - 1)
# what a client is told about a failure that is not its fault (the log has the traceback)
SERVER_ERROR = {
    "error": {"message": "internal server error", "type": "server_error", "param": None, "code": None}
}


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

        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (allowed by the operator)
                raw = response.read(limits.max_request_bytes + 1)
        except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors
            raise RequestError(f"cannot fetch the image at {url}: {err}", param) from err
    elif url.startswith("file://"):
        if not limits.allow_local_images:
            raise RequestError("file:// image URLs are disabled on this server; send a data: URL", param)
        try:
            raw = Path(url[len("file://") :]).read_bytes()
        except OSError as err:
            raise RequestError(f"cannot read the image file: {err}", param) from err
    else:
        raise RequestError("image_url.url must be a data: URL", param)
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size  # header only: nothing decoded yet
    except Image.DecompressionBombError as err:
        # Pillow refuses an image far over its own limit while reading the header
        raise RequestError(
            f"the image has more pixels than the limit of {limits.max_image_pixels}: {err}", param
        ) from err
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
        content = message.get("content")
        if role == "assistant" and content is None:
            content = ""  # OpenAI allows it (a reply that was only tool calls or a refusal)
        text, images = _content(content, f"{where}.content", limits)
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
        elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])  # an earlier assistant reply that refused
        elif part.get("type") == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            if not isinstance(url, str):
                raise RequestError("image_url.url must be a string", pwhere)
            images.append(decode_image(url, limits, pwhere))
        else:
            raise RequestError("content parts must be {type: text} or {type: image_url}", pwhere)
    return "\n".join(texts), images


def unsupported_feature(body: dict) -> tuple[str, str] | None:
    """(message, field) for a request asking for what this server cannot do (tool calls, JSON mode,
    log-probabilities), else None: answering such a request with plain text would let the client take it for
    what it asked for. Their neutral values (no tools, "text" format, logprobs false) are accepted."""
    if body.get("tools") not in (None, []):
        return (
            "tools are not supported: the model has no tool calling; send the request without tools",
            "tools",
        )
    if body.get("functions") not in (None, []):
        return "functions are not supported: the model has no function calling", "functions"
    if body.get("tool_choice") not in (None, "none", "auto"):
        return "tool_choice is not supported: the model has no tool calling", "tool_choice"
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        return 'response_format is not supported beyond {"type": "text"}: the model has no JSON mode', (
            "response_format"
        )
    if body.get("logprobs") not in (None, False):
        return "log-probabilities are not supported by this server", "logprobs"
    if body.get("top_logprobs") not in (None, 0):
        return "log-probabilities are not supported by this server", "top_logprobs"
    return None


class ChatService:
    """Holds the model and the lock that serialises generation."""

    def __init__(
        self,
        model: Any,
        model_name: str,
        limits: ServerLimits,
        api_key: str | None = None,
        any_model_name: bool = False,
    ):
        self.model, self.model_name, self.limits, self.api_key = model, model_name, limits, api_key
        # Clients that hard-code a model id (say "gpt-4o") can be served with any_model_name=True; otherwise a
        # request naming another model is refused, as OpenAI refuses a model that does not exist.
        self.any_model_name = any_model_name
        self.lock = threading.Lock()
        self.created = int(time.time())

    def options(self, body: dict) -> dict[str, Any]:
        """ChatSession options from the request body (validated); a field given as null takes its default, as
        OpenAI's API does. RequestError naming the field otherwise."""

        def field(name: str, default: Any) -> Any:
            value = body.get(name)
            return default if value is None else value

        refused = unsupported_feature(body)
        if refused:
            raise RequestError(*refused)
        n = field("n", 1)
        if not _is_int(n) or n != 1:
            raise RequestError("only n=1 is supported", "n")
        param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        max_tokens = field(param, min(256, self.limits.max_tokens))  # a default the server's limit allows
        if not _is_int(max_tokens) or not 1 <= max_tokens <= self.limits.max_tokens:
            raise RequestError(f"{param} must be an integer in [1, {self.limits.max_tokens}]", param)
        temperature = field("temperature", 0.0)
        top_p = field("top_p", 1.0)
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise RequestError("temperature must be in [0, 2]", "temperature")
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise RequestError("top_p must be in (0, 1]", "top_p")
        penalties = {name: field(name, 0.0) for name in ("presence_penalty", "frequency_penalty")}
        for name, value in penalties.items():
            low, high = PENALTY_RANGE
            if not _is_number(value) or not low <= value <= high:
                raise RequestError(f"{name} must be a number in [{low:g}, {high:g}]", name)
        stop = field("stop", [])
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise RequestError("stop must be a string or a list of at most 4 strings", "stop")
        seed = body.get("seed")
        if seed is not None and (not _is_int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
            raise RequestError(f"seed must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}]", "seed")
        if not isinstance(field("stream", False), bool):
            raise RequestError("stream must be true or false", "stream")
        stream_options = field("stream_options", {})
        if not isinstance(stream_options, dict):
            raise RequestError("stream_options must be an object", "stream_options")
        return {
            "max_new_tokens": max_tokens,
            "do_sample": temperature > 0,
            "temperature": temperature or 1.0,
            "top_p": float(top_p),
            **{name: float(value) for name, value in penalties.items()},
            "stop": tuple(stop),
            "seed": seed,
        }

    def check_model(self, name: Any) -> None:
        """Accept a request's `model` field when it is absent, null or the served model's id (or any string when
        the server answers every name); RequestError otherwise: 400 for a non-string, 404 for another model."""
        if name is None:
            return
        if not isinstance(name, str):
            raise RequestError("model must be a string: the id GET /v1/models lists", "model")
        if name != self.model_name and not self.any_model_name:
            raise RequestError(
                f"the model {name!r} is not served here; this server serves {self.model_name!r} "
                "(GET /v1/models lists it)",
                "model",
                status=404,
                code="model_not_found",
            )

    def session(self, turns: list[Turn], turn_images: list[list[Image.Image]], options: dict) -> Any:
        """A chat session primed with the completed rounds (run lazily with the new message)."""
        from mmgpt.infer.session import ChatSession, _Round

        session = ChatSession(self.model, **options)
        session.rounds = [_Round(t, imgs) for t, imgs in zip(turns, turn_images, strict=True)]
        return session

    def prepare(self, body: dict) -> "PreparedRequest":
        """Check a request body completely (messages, images, options, and that the last message fits the
        model's context with its max_tokens) before it waits for the model; RequestError otherwise."""
        from mmgpt.infer.session import ContextLengthError

        self.check_model(body.get("model"))
        turns, turn_images, text, images = parse_messages(body.get("messages"), self.limits)
        options = self.options(body)
        try:
            self.session([], [], options).check_fits(text, len(images))
        except ContextLengthError as err:
            raise RequestError(str(err), "messages", code="context_length_exceeded") from err
        return PreparedRequest(turns, turn_images, text, images, options)

    def complete(
        self, request: "PreparedRequest", cancelled: threading.Event | None = None
    ) -> Iterator[tuple[str, dict | None]]:
        """Generate the reply: yields (text delta, None) pieces and finally ("", usage). Once `cancelled` is
        set (the client went away), it stops at the next piece, and before running at all."""
        with self.lock:
            if cancelled is not None and cancelled.is_set():
                return
            session = self.session(request.turns, request.turn_images, request.options)
            for delta in session.stream(request.text, request.images):
                if cancelled is not None and cancelled.is_set():
                    return
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


@dataclass
class PreparedRequest:
    """A checked request: the completed rounds with their images, the new message and the session options."""

    turns: list[Turn]
    turn_images: list[list[Image.Image]]
    text: str
    images: list[Image.Image]
    options: dict[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not the number 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def create_app(service: ChatService) -> Any:
    """The FastAPI application serving `service`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="mmgpt", version="1")

    def error(err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        # a bug, not the client's fault: logged with its traceback, answered in OpenAI's error format
        logger.error("error answering %s %s", request.method, request.url.path, exc_info=err)
        return JSONResponse(SERVER_ERROR, status_code=500)

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
            prepared = service.prepare(body)
        except RequestError as err:
            return error(err)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _sse(service, prepared, completion_id, created, include_usage)
            return ClosingStreamingResponse(events, media_type="text/event-stream")
        import anyio

        def run() -> tuple[str, dict]:
            text, usage = "", {}
            for delta, info in service.complete(prepared):
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


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always closes its body iterator, also when the client disconnects: Starlette
    leaves an interrupted iterator to the garbage collector, and ours must stop the generation that holds the
    model at once."""

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()


_END = object()  # the worker's last piece


def _run_completion(
    service: ChatService,
    request: PreparedRequest,
    emit: Callable[[Any], None],
    cancelled: threading.Event,
) -> None:
    """Worker thread: generate the reply, handing each piece to `emit`, an exception if generation failed,
    and finally _END. Stops early once `cancelled` is set."""
    try:
        with contextlib.closing(service.complete(request, cancelled)) as pieces:
            for piece in pieces:
                emit(piece)
    except Exception as err:
        logger.error("the streamed completion failed", exc_info=err)
        emit(err)
    finally:
        emit(_END)


async def _sse(
    service: ChatService, request: PreparedRequest, completion_id: str, created: int, include_usage: bool
) -> AsyncIterator[str]:
    """The server-sent events of a streamed completion. Generation runs in a worker thread and reaches this
    generator through a queue, so a client that disconnects (closing this generator) stops it at the next
    piece and frees the model for the next request."""

    def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> str:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": service.model_name,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload)}\n\n"

    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()

    def emit(piece: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the server is shutting down
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

    try:
        yield chunk({"role": "assistant", "content": ""})
        loop.run_in_executor(None, _run_completion, service, request, emit, cancelled)
        while (piece := await pieces.get()) is not _END:
            if isinstance(piece, Exception):
                yield f"data: {json.dumps(SERVER_ERROR)}\n\n"  # the openai client raises it
                return
            delta, info = piece
            if info is None:
                if delta:
                    yield chunk({"content": delta})
                continue
            finish = info.pop("finish_reason", "stop")
            if include_usage:  # OpenAI's form: a last chunk with no choices carries the usage
                yield chunk({}, finish)
                yield chunk(None, usage=info)
            else:
                yield chunk({}, finish, info)
        yield "data: [DONE]\n\n"
    finally:
        cancelled.set()
