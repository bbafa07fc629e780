"""`mmgpt demo`: the whole system, offline, in one command on the synthetic world.

Synthesise the world, pretrain a tiny OpenFlamingo-style base (cached), instruction-tune it the MultiModal-GPT way
(frozen base, LoRA, joint vision-language + language-only batches, unified template), evaluate tuned vs base vs
two blind baselines (chance, most frequent answer) on held-out images, print a metrics table and a multi-round
transcript, and leave `DIR/model` for `mmgpt chat`, `mmgpt web` and `mmgpt serve`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# --quick: a minute-scale smoke run of every stage (tests use it); the numbers it gives mean nothing.
QUICK_BASE = [
    "optim.max_steps=40",
    "optim.warmup_steps=5",
    "data.batch_size=8",
    "logging.save_every=40",
    "model.tiny.hidden_size=64",
    "model.tiny.num_layers=2",
    "model.tiny.cross_attn_every_n_layers=2",
    "model.tiny.intermediate_size=128",
    "model.tiny.vision_width=48",
    "model.tiny.vision_layers=1",
    "model.tiny.vision_heads=2",
    "model.tokenizer_vocab_size=700",
    "vision_pretrain.steps=20",
    "vision_pretrain.batch_size=16",
    "vision_pretrain.fresh_scenes=32",
    "language_pretrain.steps=20",
    "language_pretrain.batch_size=8",
]
QUICK_TUNE = ["optim.warmup_steps=2", "data.batch_size=8", "data.language_batch_size=16"]
QUICK_TUNE_STEPS = 20
# The full demo's budget is 15 minutes on 2 cores with bf16 matrix units: the base config as written (the vision
# tower's scene parsing, 2000 steps, about 3 minutes there, 500 text-only steps of the language model, then 550
# Flamingo pretraining steps over the frozen tower; the overrides only restate them) and a longer tuning run than
# the tuning config's 250 steps.
FULL_BASE_STEPS = 550
FULL_TUNE_STEPS = 400
# Both models are evaluated in the precision both stages train in (`precision.dtype: auto`): bf16 where the CPU
# multiplies bf16 in hardware, where the tuned model answered the 2027 held-out items 1.53x faster than in fp32
# and the base 1.51x, every metric within 0.014 of fp32's (bench/eval_precision.py), else fp32. Batches of 64
# instead of 32 left the metrics unchanged.
EVAL_DTYPE = "auto"
EVAL_BATCH_SIZE = 64
EVAL_MAX_NEW_TOKENS = 48


def evaluate_model_dir(
    model_dir: Path, heldout: Path, limit: int | None = None
) -> tuple[dict[str, float], list[dict], Any]:
    """Load a model directory (LoRA adapters folded in) and evaluate it on a held-out jsonl file the way the demo
    does (EVAL_DTYPE, EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS, greedy); `limit` items per kind. Returns the metrics,
    the per-item records and the loaded model."""
    from mmgpt.eval.runner import evaluate_heldout
    from mmgpt.model.checkpoints import load_model

    model = load_model(model_dir, dtype=EVAL_DTYPE, merge_adapters=True)
    metrics, records = evaluate_heldout(
        model, heldout, limit, EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS, progress=False
    )
    return metrics, records, model


def base_overrides(quick: bool = False, steps: int | None = None) -> list[str]:
    """The demo's overrides of `configs/synthetic_base.yaml`: the small model for `quick`, and `steps` Flamingo
    pretraining steps after the vision tower's (default 550; 40 when `quick`) with a checkpoint halfway and at
    the end. Raises ConfigError if `steps` is below 1."""
    from mmgpt.errors import ConfigError

    if steps is not None and steps < 1:
        raise ConfigError(f"--base-steps must be at least 1, got {steps}")
    if quick:
        return QUICK_BASE + (
            [] if steps is None else [f"optim.max_steps={steps}", f"logging.save_every={steps}"]
        )
    steps = steps or FULL_BASE_STEPS
    return [f"optim.max_steps={steps}", f"logging.save_every={max(1, steps // 2)}"]


def tuning_overrides(quick: bool = False, steps: int | None = None) -> list[str]:
    """The demo's overrides of `configs/synthetic_mmgpt.yaml` for `steps` tuning steps (default 400, or 20 when
    `quick`), with a checkpoint halfway and at the end. Raises ConfigError if `steps` is below 1."""
    from mmgpt.errors import ConfigError

    if steps is None:
        steps = QUICK_TUNE_STEPS if quick else FULL_TUNE_STEPS
    if steps < 1:
        raise ConfigError(f"--tune-steps must be at least 1, got {steps}")
    return (QUICK_TUNE if quick else []) + [
        f"optim.max_steps={steps}",
        f"logging.save_every={max(1, steps // 2)}",
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mmgpt demo`."""
    p = subparsers.add_parser(
        "demo", help="synthesise a world, pretrain, instruction-tune, evaluate and chat (offline)"
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="minute-scale smoke version")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-limit", type=int, default=None, help="held-out items per kind (default: all)")
    p.add_argument(
        "--tune-steps",
        type=int,
        default=None,
        help=f"instruction-tuning steps (default {FULL_TUNE_STEPS}, {QUICK_TUNE_STEPS} with --quick): more steps "
        "buy quality for time (see the README)",
    )
    p.add_argument(
        "--base-steps",
        type=int,
        default=None,
        help=f"Flamingo pretraining steps of the base (default {FULL_BASE_STEPS}); each count is cached as its own "
        "base. More steps buy quality for time (see the README)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="where pretrained bases are cached (default $MMGPT_CACHE or ~/.cache/mmgpt)",
    )
    p.set_defaults(func=_demo)


def default_cache_dir() -> Path:
    """The base-model cache shared by every demo run: $MMGPT_CACHE, else ~/.cache/mmgpt."""
    return Path(os.environ.get("MMGPT_CACHE") or Path.home() / ".cache" / "mmgpt")


def world_scale(quick: bool) -> str:
    """The synthetic-world scale the demo uses: `quick` for --quick, else `default`."""
    return "quick" if quick else "default"


def base_dir_for(
    seed: int, quick: bool, cache_dir: Path | None = None, base_steps: int | None = None
) -> Path:
    """The cached run directory of the base pretrained for this world seed/scale, base config and step count."""
    return Path(cache_dir or default_cache_dir()) / f"base-{base_cache_key(seed, quick, base_steps)}"


def train_in_fresh_process(config: Path, overrides: list[str], resume: bool = True) -> Path:
    """Run `mmgpt train --config config overrides...` in a new interpreter (with `--no-resume` unless `resume`:
    by default a killed run continues from its last checkpoint); returns the model directory written.

    Each training stage gets a process of its own because tuning in the process that had just pretrained the base
    ran 1.3x slower than in a fresh one (40 tuning steps: 42 s against 31 s, measured on 2 cores, the same work;
    what slows it is left in the process by the pretraining). The child preloads tcmalloc where it is installed
    (see `mmgpt.train.allocator`: the same weights, faster tuning steps, half the memory). The config is checked
    here first, so a bad key fails before the child starts; a failing child raises `TrainingError` (its own
    messages are already on the terminal).
    """
    from mmgpt.errors import TrainingError
    from mmgpt.train.allocator import find_tcmalloc, preload_environment
    from mmgpt.train.config import load_train_config

    settings = load_train_config(config, overrides)
    environment = preload_environment(os.environ, find_tcmalloc())
    verbosity = logging.getLogger().getEffectiveLevel()
    flags = ["-v"] if verbosity <= logging.DEBUG else ["-q"] if verbosity >= logging.WARNING else []
    command = [sys.executable, "-m", "mmgpt", *flags, "train", "--config", str(config), *overrides]
    if not resume:
        command.insert(command.index("train") + 1, "--no-resume")
    done = subprocess.run(command, stdout=subprocess.DEVNULL, env=environment)
    if done.returncode != 0:
        raise TrainingError(
            f"training with {config} failed (exit code {done.returncode}): {' '.join(command)}"
        )
    return Path(settings.output_dir) / "model"


def _stage(name: str) -> float:
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def _done(start: float) -> float:
    """Print and return the seconds since `start`."""
    seconds = time.perf_counter() - start
    print(f"   done in {seconds:.0f} s", flush=True)
    return round(seconds, 1)


# Bumped whenever the training code changes what the same config produces (2: eager attention on CPU in bf16;
# 3: logits at labelled positions only, which sums the output head's gradient in another order), so a base
# cached by an older version is not reused.
BASE_RECIPE = 3


def precision_notice(device: torch.device | None = None) -> str:
    """One line for the start of the demo: the precision its stages will train and evaluate in on `device`
    (default: CUDA when available, else CPU; `precision.dtype: auto` in both configs) and, on a CPU that only
    emulates bf16, what that costs in time."""
    from mmgpt.model.precision import default_device, resolve_precision

    device = device or default_device()
    chosen = resolve_precision("auto", device)
    if device.type != "cpu":
        return f"   training in {chosen} on {device}"
    if chosen == "bf16":
        return "   training in bf16: this CPU multiplies bf16 in hardware"
    # measured: 1406 s and about 2010 s for a cold demo on a 2-core AVX-512 Xeon without bf16 units, 794 s with AMX
    return (
        "   training in fp32: this CPU has no bf16 units (AMX, AVX512-BF16), so a cold demo takes about twice as "
        "long as on one that has (23-34 minutes on 2 such cores); a cached base skips the longest stage"
    )


def allocator_notice() -> str:
    """One line for the start of the demo: whether its training processes preload tcmalloc, and how to get it
    where they cannot (Linux only). Raises ConfigError for a `$MMGPT_TCMALLOC` naming a missing file."""
    from mmgpt.train.allocator import ENV_VAR, INSTALL_HINT, find_tcmalloc

    library = find_tcmalloc()
    if library is not None:
        return f"   training with tcmalloc ({library}; {ENV_VAR}=off to use the system allocator)"
    if os.environ.get(ENV_VAR, "").strip() or not sys.platform.startswith("linux"):
        return ""
    return f"   tcmalloc not found: `{INSTALL_HINT}` makes tuning steps about 1.1x faster in half the memory"


def base_cache_key(seed: int, quick: bool, base_steps: int | None = None) -> str:
    """Hash of what determines the base model: world seed/scale/generator, the base config's settings, the step
    overrides (`base_overrides`)."""
    from mmgpt.model.precision import inference_dtype
    from mmgpt.synth.world import GENERATOR_VERSION

    scale = world_scale(quick)
    # the parsed config, so that editing its comments does not force a new base
    config = yaml.safe_load((CONFIG_DIR / "synthetic_base.yaml").read_text())
    payload = json.dumps(
        {
            "seed": seed,
            "scale": scale,
            "config": config,
            "overrides": base_overrides(quick, base_steps),
            "recipe": BASE_RECIPE,
            # the base's tokenizer is trained on the world's text, instruction data included
            "world": GENERATOR_VERSION,
            # `precision.dtype: auto` trains in bf16 on some machines and fp32 on others: different bases
            "precision": inference_dtype("auto"),
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def tuning_run_overrides(world: Path, base_dir: Path, tune_dir: Path, seed: int) -> list[str]:
    """The tuning run's data, base, output and seed overrides, with absolute paths: the run records them in its
    config.yaml, which `experiments/ablations.py` and a resumed demo compare from whatever directory they run in."""
    return [
        f"data.config={(world / 'datasets.yaml').absolute()}",
        f"model.path={base_dir.absolute()}",
        f"output_dir={tune_dir.absolute()}",
        f"seed={seed}",
    ]


def run_demo(
    out: Path,
    quick: bool = False,
    seed: int = 0,
    eval_limit: int | None = None,
    cache_dir: Path | None = None,
    tune_steps: int | None = None,
    base_steps: int | None = None,
) -> dict[str, Any]:
    """Run every stage; returns the results dict also written to `out/results.json`. `tune_steps` replaces the
    instruction-tuning run's step count (see `tuning_overrides`), `base_steps` the base's Flamingo pretraining
    steps (see `base_overrides`).

    The base is cached across runs (and output directories) under `cache_dir`, keyed by `base_cache_key`:
    the synthetic world is a pure function of (seed, scale), so the same key means the same base.
    """
    from mmgpt.eval.runner import chance, load_heldout, most_frequent
    from mmgpt.provenance import environment, fingerprint
    from mmgpt.synth import generate_world

    tuning = tuning_overrides(quick, tune_steps)  # validated before any work
    pretraining = base_overrides(quick, base_steps)
    begin = time.perf_counter()
    stages: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    print(precision_notice(), flush=True)
    notice = allocator_notice()
    if notice:
        print(notice, flush=True)
    scale = world_scale(quick)
    world = out / "world"
    t = _stage(f"1/5 synthesising the world ({scale}) into {world}")
    world_reused = _world_matches(world, seed, scale)
    if not world_reused:
        if world.exists():
            shutil.rmtree(world)  # a world of another seed/scale: stale
        generate_world(world, seed=seed, scale=scale, progress=False)
    else:
        print("   reusing the existing world", flush=True)
    stages["world"] = _done(t)

    cache = base_dir_for(seed, quick, cache_dir, base_steps)
    t = _stage(
        f"2/5 pretraining the base model: vision tower, language model, then the whole Flamingo (cached in "
        f"{cache})"
    )
    if (cache / "model" / "config.json").exists():
        print("   using the cached base model", flush=True)
    else:
        overrides = [
            f"data.world={world.absolute()}",
            f"output_dir={cache.absolute()}",
            f"seed={seed}",
        ] + pretraining
        train_in_fresh_process(CONFIG_DIR / "synthetic_base.yaml", overrides)
    base_dir = cache / "model"
    parsing = cache / "vision_tower.json"
    if parsing.exists():
        scores = json.loads(parsing.read_text())
        print(
            "   vision tower, held-out scene parsing accuracy: "
            + ", ".join(f"{name} {value:.2f}" for name, value in scores.items()),
            flush=True,
        )
    stages["pretraining"] = _done(t)

    t = _stage("3/5 instruction tuning: frozen base + LoRA, joint vision-language and language-only batches")
    tune_dir = out / "tune"
    overrides = tuning_run_overrides(world, base_dir, tune_dir, seed) + tuning
    if tune_dir.exists() and not _unfinished_tuning(tune_dir, overrides, world_reused):
        shutil.rmtree(tune_dir)
    elif tune_dir.exists():
        print("   resuming the interrupted tuning run", flush=True)
    tuned_dir = train_in_fresh_process(CONFIG_DIR / "synthetic_mmgpt.yaml", overrides)
    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(tuned_dir, final)
    stages["tuning"] = _done(t)

    t = _stage("4/5 evaluating tuned vs base vs blind baselines on held-out images")
    heldout = world / "eval" / "heldout.jsonl"
    limit = eval_limit if eval_limit is not None else (4 if quick else None)
    tuned_metrics, records, tuned = evaluate_model_dir(final, heldout, limit)
    base_metrics, _, _ = evaluate_model_dir(base_dir, heldout, limit)
    heldout_items = load_heldout(heldout, limit)
    chance_metrics = chance(heldout_items)
    prior_metrics = most_frequent(heldout_items)
    stages["evaluation"] = _done(t)

    t = _stage("5/5 a conversation about a held-out image")
    transcript = _transcript(tuned, heldout)
    stages["conversation"] = _done(t)

    results = {
        "seconds": round(time.perf_counter() - begin, 1),
        "tuned": tuned_metrics,
        "base": base_metrics,
        "chance": chance_metrics,
        "most_frequent": prior_metrics,
        "stages": stages,
        # the base's weights depend on the CPU's kernels and library versions, not only on the seed and config
        "environment": environment(),
        "fingerprints": {
            name: fingerprint(d) for name, d in (("world", world), ("base", base_dir), ("tuned", final))
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "eval_items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    print("\n" + format_results(results))
    env, prints = results["environment"], results["fingerprints"]
    print(
        f"fingerprints: world {prints['world']}, base {prints['base']}, tuned {prints['tuned']} "
        f"(torch {env['packages']['torch']}, "
        f"{env['cpu_capability']} kernels, bf16 flags {' '.join(env['cpu_bf16_flags']) or 'none'}); "
        "a table differs from another run's when these do"
    )
    print("\n" + transcript)
    print(
        f"\nresults: {out / 'results.json'}; model: {final} (try: mmgpt chat --model {final} --image "
        f"{world / 'eval' / 'images'}/...)"
    )
    return results


def _unfinished_tuning(tune_dir: Path, overrides: list[str], world_reused: bool) -> bool:
    """Whether `tune_dir` holds a tuning run that was interrupted and that these `overrides` would continue:
    checkpoints, no model yet, the same settings and the same world (a regenerated world keeps its path)."""
    from mmgpt.train.checkpointing import list_checkpoints
    from mmgpt.train.config import changed_settings, load_train_config

    if not world_reused or (tune_dir / "model").exists() or not list_checkpoints(tune_dir):
        return False
    return not changed_settings(tune_dir, load_train_config(CONFIG_DIR / "synthetic_mmgpt.yaml", overrides))


def _world_matches(world: Path, seed: int, scale: str) -> bool:
    manifest = world / "world.json"
    if not manifest.exists():
        return False
    from mmgpt.synth.world import GENERATOR_VERSION, WorldManifest

    meta = WorldManifest.load(manifest)
    # a world made with `mmgpt synth --reading` has other pretraining text than the demo's
    demo_world = "pretrain_reading" not in meta.counts
    return demo_world and (meta.seed, meta.scale, meta.generator) == (seed, scale, GENERATOR_VERSION)


def format_results(results: dict[str, Any]) -> str:
    """The tuned / base / chance / most-frequent-answer metrics as a text table."""
    from mmgpt.eval.runner import format_metric

    names = list(results["tuned"])
    columns = [k for k in ("tuned", "base", "chance", "most_frequent") if k in results]
    lines = [f"{'metric':<22}" + "".join(f"{k.replace('_', ' '):>15}" for k in columns)]
    for name in names:
        lines.append(f"{name:<22}" + "".join(f"{format_metric(results[k][name]):>15}" for k in columns))
    lines.append(f"total time: {results['seconds']:.0f} s")
    return "\n".join(lines)


def _transcript(model: Any, heldout: Path) -> str:
    """A chat about the first held-out image with a follow-up: a description, a count and a colour question, the
    follow-up with the round it needs, then a held-out language task; the text the demo prints."""
    from mmgpt.eval.runner import load_heldout

    items = load_heldout(heldout)
    image = next(i["image"] for i in items if i["kind"] == "followup" and i.get("image"))
    same = [i for i in items if i.get("image") == image]
    questions = ["Describe the image briefly."]
    questions += [i["question"] for i in same if i["kind"] in ("counting", "color")][:2]
    followup = next((i for i in same if i["kind"] == "followup"), None)
    if followup and followup.get("history"):
        questions += [followup["history"][0]["question"], followup["question"]]
    # a held-out language task last, asked with the image still in the conversation, as people ask one mid-chat
    questions += [i["question"] for i in items if i["kind"] == "language"][:1]
    session = model.chat(max_new_tokens=64)
    lines = [f"transcript (image {image}):"]
    for k, q in enumerate(questions):
        reply = session.ask(q, images=[Path(heldout.parent.parent) / image] if k == 0 else None)
        lines += [f"  user: {q}", f"  mmgpt: {reply}"]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    logging.getLogger("mmgpt").setLevel(logging.WARNING)
    cache = Path(args.cache_dir) if args.cache_dir else None
    run_demo(
        Path(args.out),
        quick=args.quick,
        seed=args.seed,
        eval_limit=args.eval_limit,
        cache_dir=cache,
        tune_steps=args.tune_steps,
        base_steps=args.base_steps,
    )
    return 0
