"""The `mmgpt` command: a thin dispatcher over the package's rooms.

Each room owns a `commands` module exposing `register(subparsers)`, which adds its sub-commands and sets
`func=handler` on each parser; a handler takes the parsed `argparse.Namespace` and returns an exit code.
Heavy imports (torch, transformers) happen inside handlers so `mmgpt --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mmgpt import __version__

COMMAND_MODULES = [
    "mmgpt.model.commands",
    "mmgpt.data.commands",
    "mmgpt.train.commands",
    "mmgpt.infer.commands",
    "mmgpt.serve.commands",
    "mmgpt.eval.commands",
    "mmgpt.synth.commands",
    "mmgpt.demo",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every room's sub-commands registered."""
    parser = argparse.ArgumentParser(
        prog="mmgpt", description="MultiModal-GPT: train, import, chat with and serve vision-language models."
    )
    parser.add_argument("--version", action="version", version=f"mmgpt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue  # a room without commands
            raise
        module.register(subparsers)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`argv` parsed by `parser`; a command's `key=value` overrides may also follow its options.

    argparse stops collecting overrides at the first option after them (`train --config c.yaml a=b
    --output-dir x c=d` would reject `c=d`), so such words are taken as overrides wherever they stand.
    """
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in w and not w.startswith("-") for w in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the chosen command and return its exit code."""
    parser = build_parser()
    args = parse_args(parser, argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mmgpt.errors import MmgptError

    try:
        return int(args.func(args) or 0)
    except MmgptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # a path that cannot be read or written, a full disk: the message names the file; -v shows where
        if args.verbose:
            raise
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def describe_os_error(err: OSError) -> str:
    """The message for a failed file operation: the system's own, except where it misleads, as "File exists"
    does when an output directory's path is a file."""
    from pathlib import Path

    name = err.filename
    if isinstance(err, (FileExistsError, NotADirectoryError)) and name is not None:
        path = Path(name)
        blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            inside = "" if blocking == path else f" (for {path})"
            return f"{blocking} is a file, where a directory is needed{inside}"
    return str(err)


if __name__ == "__main__":
    raise SystemExit(main())
