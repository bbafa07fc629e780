"""Training with tcmalloc preloaded against the system allocator: tokens a second, peak memory and the final loss
of the same training run under each, alternating, so a change in the machine's speed spreads over both.

    python bench/allocator.py --config runs/demo/tune/config.yaml [--steps 60] [--rounds 3]

`--config` is any `mmgpt train` config (the demo's tuning run writes its own to runs/demo/tune/config.yaml); the
runs go to a temporary directory. Tokens a second are the mean of the run's logged steps after the tenth.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmgpt.train.allocator import INSTALL_HINT, find_tcmalloc, preload_environment  # noqa: E402
from mmgpt.train.loop import read_metrics  # noqa: E402


def run_once(config: str, steps: int, out: Path, library: str | None) -> dict:
    """One `mmgpt train` run of `steps` steps into `out`, with `library` preloaded (None: without tcmalloc).
    Returns its wall seconds, mean tokens a second after step 10, final loss and peak resident memory."""
    environment = preload_environment({k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, library)
    command = [
        sys.executable,
        "-m",
        "mmgpt",
        "-q",
        "train",
        "--config",
        config,
        "--no-resume",
        f"output_dir={out}",
        f"optim.max_steps={steps}",
        f"logging.save_every={steps * 10}",
        "logging.progress=false",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, for its peak memory
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"training failed (exit code {process.returncode}): {' '.join(command)}")
    rows = read_metrics(out / "metrics.jsonl")
    timed = [r["tokens_per_s"] for r in rows if r["step"] > 10] or [r["tokens_per_s"] for r in rows]
    return {
        "seconds": seconds,
        "tokens_per_s": sum(timed) / len(timed),
        "final_loss": rows[-1]["loss"],
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", required=True, help="an `mmgpt train` config, e.g. runs/demo/tune/config.yaml"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    library = find_tcmalloc()
    if library is None:
        raise SystemExit(f"tcmalloc not found ({INSTALL_HINT}, or MMGPT_TCMALLOC=/path/to/libtcmalloc.so)")
    results: dict[str, list[dict]] = {"system allocator": [], "tcmalloc": []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name, preload in (("system allocator", None), ("tcmalloc", library)):
                result = run_once(args.config, args.steps, Path(scratch) / f"{name}-{round_}", preload)
                results[name].append(result)
                print(
                    f"round {round_ + 1} {name:16s} {result['tokens_per_s']:7.0f} tokens/s  "
                    f"{result['seconds']:6.1f} s  peak {result['peak_rss_mb']:6.0f} MB  "
                    f"final loss {result['final_loss']:.6f}",
                    flush=True,
                )
    print(f"\n{args.steps} steps of {args.config}, tcmalloc = {library}")
    for round_, (plain, fast) in enumerate(
        zip(results["system allocator"], results["tcmalloc"], strict=True), 1
    ):
        same = "the same" if plain["final_loss"] == fast["final_loss"] else "a different"
        print(
            f"round {round_}: tcmalloc {fast['tokens_per_s'] / plain['tokens_per_s']:.2f}x the tokens a second, "
            f"{fast['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x the peak memory, {same} final loss"
        )


if __name__ == "__main__":
    main()
