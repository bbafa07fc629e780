"""How fast is this machine right now, with one thread and with all of them? Matrix products and memory copies.

The demo's stage times on the same kind of 2-core machine vary by up to 2x between hours for the same work bit for
bit (experiments/README.md, "Where the demo's time goes"). This prints, for 1 thread and for torch's default
number of threads, the throughput of a square matrix product in bf16 and fp32 (GFLOP/s) and of copying a large
fp32 tensor (GB/s, read + write), each the median of `--rounds` timings, so that two hours (or two machines) can
be compared on the parts that training leans on.

    python bench/machine_speed.py [--size 2048] [--rounds 5] [--copy-mib 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def median_seconds(operation: Callable[[], object], rounds: int, repeat: int = 5) -> float:
    """Median over `rounds` timings of the seconds one call of `operation` takes (each timing averages `repeat`
    calls), after one untimed call for kernel selection and allocation."""
    operation()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            operation()
        times.append((time.perf_counter() - start) / repeat)
    return statistics.median(times)


def matmul_gflops(size: int, dtype, rounds: int) -> float:
    """GFLOP/s of the product of two (size, size) matrices of `dtype` (see `median_seconds`)."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    return 2 * size**3 / median_seconds(lambda: a @ b, rounds) / 1e9


def copy_gbps(mebibytes: int, rounds: int) -> float:
    """GB/s (bytes read + written) of copying an fp32 tensor of `mebibytes` MiB (see `median_seconds`)."""
    import torch

    source = torch.randn(mebibytes * 2**20 // 4)
    target = torch.empty_like(source)
    return 2 * source.numel() * 4 / median_seconds(lambda: target.copy_(source), rounds) / 1e9


def measure(threads: int, size: int, rounds: int, copy_mib: int) -> dict[str, float]:
    """{"bf16 matmul", "fp32 matmul" (GFLOP/s), "copy" (GB/s)} with torch limited to `threads` threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {
            "bf16 matmul": matmul_gflops(size, torch.bfloat16, rounds),
            "fp32 matmul": matmul_gflops(size, torch.float32, rounds),
            "copy": copy_gbps(copy_mib, rounds),
        }
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="side of the square matrices")
    parser.add_argument("--rounds", type=int, default=5, help="timings per measure (the median is printed)")
    parser.add_argument("--copy-mib", type=int, default=64, help="size of the copied tensor in MiB")
    args = parser.parse_args()
    for option in ("size", "rounds", "copy_mib"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")

    import torch

    counts = sorted({1, torch.get_num_threads()})
    results = {n: measure(n, args.size, args.rounds, args.copy_mib) for n in counts}
    print(f"{'threads':>8}{'bf16 matmul GFLOP/s':>22}{'fp32 matmul GFLOP/s':>22}{'copy GB/s':>12}")
    for n, row in results.items():
        print(f"{n:>8}{row['bf16 matmul']:>22.0f}{row['fp32 matmul']:>22.0f}{row['copy']:>12.1f}")
    if len(counts) > 1:
        one, many = results[1], results[counts[-1]]
        print(
            f"{counts[-1]} threads against 1: bf16 matmul {many['bf16 matmul'] / one['bf16 matmul']:.2f}x, "
            f"fp32 matmul {many['fp32 matmul'] / one['fp32 matmul']:.2f}x, copy {many['copy'] / one['copy']:.2f}x"
        )


if __name__ == "__main__":
    main()
