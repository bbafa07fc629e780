"""`python -m mmgpt` is the same as the `mmgpt` command."""

from mmgpt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
