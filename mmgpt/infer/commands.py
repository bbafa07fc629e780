"""`mmgpt chat`: a terminal chat that streams replies; scriptable through a pipe (one message per line)."""

from __future__ import annotations

import argparse
import sys

# The `--dtype` of every command that loads a model to answer with it (chat, web, serve, eval).
DTYPE_CHOICES = ["float32", "bfloat16", "auto"]
DTYPE_HELP = (
    "compute dtype (default: float32, whatever dtype the files hold); bfloat16 answers faster on GPUs and on CPUs with bf16 matrix units "
    "(AMX, AVX512-BF16) and slower on other CPUs, which emulate it; auto picks bfloat16 where it is native, "
    "else float32"
)


def add_generation_flags(p: argparse.ArgumentParser) -> None:
    """Generation options shared by the chat, web and serve commands."""
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--num-beams", type=int, default=1)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument(
        "--presence-penalty",
        type=float,
        default=0.0,
        help="OpenAI's, in [-2, 2]: lowers tokens the reply has used",
    )
    g.add_argument(
        "--frequency-penalty", type=float, default=0.0, help="OpenAI's, in [-2, 2]: lowers them per use"
    )
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default=None, help=DTYPE_HELP)


def generation_options(args: argparse.Namespace) -> dict:
    """ChatOptions keyword arguments from parsed flags."""
    return {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": args.sample,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "num_beams": args.num_beams,
        "repetition_penalty": args.repetition_penalty,
        "presence_penalty": args.presence_penalty,
        "frequency_penalty": args.frequency_penalty,
        "stop": tuple(args.stop),
        "seed": args.seed,
    }


CHAT_COMMANDS = "/image PATH, /reset, /save FILE, /help, /quit"
CHAT_COMMANDS_HELP = (
    "/image PATH attaches an image to your next message, /reset starts over, /save FILE writes the transcript, "
    "/help lists these commands, /quit exits"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mmgpt chat`."""
    p = subparsers.add_parser(
        "chat",
        help="chat with a model in the terminal",
        description=f"Commands: {CHAT_COMMANDS_HELP}. With stdin a pipe, each line is a message and only replies "
        "are printed.",
    )
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument(
        "--image", action="append", default=[], help="image attached to the first message (repeatable)"
    )
    add_generation_flags(p)
    p.set_defaults(func=_chat)


def _chat(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmgpt.errors import MmgptError
    from mmgpt.infer.session import ChatOptions, ChatSession, load_pil
    from mmgpt.model.checkpoints import load_model

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    options = generation_options(args)
    ChatOptions(**options)  # a bad flag is refused before the model loads
    model = load_model(args.model, dtype=args.dtype, merge_adapters=True)
    session = ChatSession(model, **options)
    pending = [load_pil(p) for p in args.image]
    if interactive:
        print(f"mmgpt chat: {CHAT_COMMANDS}", flush=True)
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            if interactive:
                print(flush=True)  # Ctrl-D: end the prompt's line so the shell's prompt starts on its own
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            command, _, rest = line.partition(" ")
            rest = rest.strip()
            try:
                if command == "/quit":
                    break
                if command == "/help":
                    print(f"{CHAT_COMMANDS_HELP}.", flush=True)
                elif command == "/reset":
                    session.reset()
                    pending = []
                    print("(conversation reset)", flush=True)
                elif command in ("/image", "/save") and not rest:
                    print(f"usage: {command} {'PATH' if command == '/image' else 'FILE'}", file=sys.stderr)
                elif command == "/image":
                    pending.append(load_pil(Path(rest).expanduser()))
                    print(f"(image attached: {rest})", flush=True)
                elif command == "/save":
                    session.save(Path(rest).expanduser())
                    print(f"(saved {rest})", flush=True)
                else:
                    print(
                        f"unknown command {command}; use {CHAT_COMMANDS}",
                        file=sys.stderr,
                        flush=True,
                    )
            except (MmgptError, OSError) as err:
                # a bad path must not end the conversation (and lose it)
                print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        if interactive:
            print("mmgpt> ", end="", flush=True)
        if _reply(session, line, pending, interactive):
            pending = []
    return 0


def _reply(session, line: str, images: list, interactive: bool) -> bool:
    """Stream the reply to `line` to stdout; True when the round was kept. At a terminal, Ctrl-C stops the reply
    and a message the context cannot hold is reported, and both leave the conversation as it was (the images stay
    attached to the next message); through a pipe they end the command."""
    from mmgpt.infer.session import ContextLengthError

    try:
        for delta in session.stream(line, images=images):
            print(delta, end="", flush=True)
    except KeyboardInterrupt:
        if not interactive:
            raise
        print("\n(reply stopped; this message is not part of the conversation)", flush=True)
        return False
    except ContextLengthError as err:
        if not interactive:
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        return False
    print(flush=True)
    return True
