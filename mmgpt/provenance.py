"""What a run's numbers depend on beyond its config: the software and CPU it ran on, and fingerprints of its data
and weights.

The demo trains its base from scratch (under bf16 autocast, or in fp32 on CPUs without bf16 units), so its
weights, and every metric after them, depend on the matrix kernels the CPU dispatches to and on library versions
(the tokenizer trainer, the image codec) as well as on the seed. The same command and config reproduce a base bit
for bit on one machine and gave different bases on two machines of the same kind. `mmgpt demo` records both in
`results.json`, so that two tables can be told apart: same fingerprints, same numbers; different ones, a
different run.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

# The libraries whose versions can change what a run computes or reads.
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "pillow", "numpy")
# CPU instruction sets that bf16 matrix kernels may use; torch's capability string ("AVX512") does not tell them
# apart, and a machine with and one without them compute bf16 products differently.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_value(key: str, cpuinfo: Path) -> str | None:
    """The value of the first `key: value` line of `cpuinfo` (the first CPU's), or None when the file is missing
    (not Linux) or has no such line."""
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(key) and ":" in line:
            return line.split(":", 1)[1].strip()
    return None


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` reports, else "unknown"."""
    return _cpuinfo_value("model name", cpuinfo) or platform.processor() or platform.machine() or "unknown"


def cpu_flags(names: tuple[str, ...] = BF16_CPU_FLAGS, cpuinfo: Path = CPUINFO) -> list[str]:
    """Those of `names` that the first CPU's "flags" line in `cpuinfo` lists, in the order of `names`; an empty
    list when the file is missing (not Linux) or has no flags line."""
    present = set((_cpuinfo_value("flags", cpuinfo) or "").split())
    return [name for name in names if name in present]


def environment() -> dict[str, object]:
    """Python, OS/architecture, CPU model, the kernels torch dispatches to on this CPU (e.g. "AVX512"), which of
    `BF16_CPU_FLAGS` the CPU has, torch's intra-op thread count, and the installed versions of `PACKAGES` ("not
    installed" when missing)."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "packages": versions,
    }


def fingerprint(path: str | Path) -> str:
    """A short SHA-256 (16 hex digits) of a file's bytes, or of a directory's files: each file's path relative to
    the directory and its bytes, in sorted path order, so the same tree gives the same fingerprint anywhere.
    Raises FileNotFoundError if `path` does not exist."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot fingerprint {path}: it does not exist")
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file is not path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]
