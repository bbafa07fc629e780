"""`mmgpt serve` (OpenAI-compatible API) and `mmgpt web` (Gradio page)."""

from __future__ import annotations

import argparse
import socket

from mmgpt.errors import ConfigError
from mmgpt.infer.commands import DTYPE_CHOICES, DTYPE_HELP


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


def check_can_listen(host: str, port: int) -> None:
    """Raise ConfigError when nothing could listen on host:port (in use, or an address this machine lacks), so
    the command fails at once instead of after loading the model."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # the servers set SO_REUSEADDR too, so a port left in TIME_WAIT by a previous run is not reported busy
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mmgpt serve` and `mmgpt web`."""
    p = subparsers.add_parser("serve", help="OpenAI-compatible chat completions API")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument(
        "--model-name",
        default=None,
        help="model id the API reports and requests must name (default: the model directory's name)",
    )
    p.add_argument(
        "--any-model-name",
        action="store_true",
        help="answer requests whatever model they name (for clients that hard-code a model id)",
    )
    p.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--max-images", type=int, default=8, help="images per request")
    p.add_argument("--max-request-mb", type=float, default=20.0)
    p.add_argument(
        "--allow-remote-images", action="store_true", help="let the server fetch http(s) image URLs"
    )
    p.add_argument("--allow-local-images", action="store_true", help="let requests name file:// images")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default=None, help=DTYPE_HELP)
    p.set_defaults(func=_serve)

    w = subparsers.add_parser("web", help="Gradio web page: upload an image and chat")
    w.add_argument("--model", required=True)
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=port_number, default=7860)
    w.add_argument("--dtype", choices=DTYPE_CHOICES, default=None, help=DTYPE_HELP)
    w.set_defaults(func=_web)


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    import uvicorn

    from mmgpt.model.checkpoints import load_model
    from mmgpt.serve.api import ChatService, ServerLimits, create_app

    check_can_listen(args.host, args.port)
    model = load_model(args.model, dtype=args.dtype, merge_adapters=True)
    limits = ServerLimits(
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        max_images=args.max_images,
        max_tokens=args.max_tokens,
        allow_remote_images=args.allow_remote_images,
        allow_local_images=args.allow_local_images,
    )
    name = args.model_name or Path(args.model).resolve().name
    service = ChatService(model, name, limits, args.api_key, any_model_name=args.any_model_name)
    print(f"serving {service.model_name} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0


def _web(args: argparse.Namespace) -> int:
    from mmgpt.model.checkpoints import load_model
    from mmgpt.serve.web import build_app, launch

    check_can_listen(args.host, args.port)
    model = load_model(args.model, dtype=args.dtype, merge_adapters=True)
    app = build_app(model)
    print(f"web UI on http://{args.host}:{args.port}", flush=True)
    launch(app, args.host, args.port)
    return 0
