"""`generate_world`: render the synthetic world and write every dataset file, the corpus and the held-out set.

Everything is derived from named `random.Random` streams seeded with f"{seed}-{stream}", so the same seed and
scale give byte-identical files.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmgpt.errors import ConfigError
from mmgpt.synth import heldout, pretrain, records
from mmgpt.synth.knowledge import TRAIN_TASKS, arithmetic_pairs, knowledge_base, reserved_pairs
from mmgpt.synth.recipes import recipe_texts
from mmgpt.synth.render import encode_jpeg, render
from mmgpt.synth.scene import Scene, sample_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scale:
    """How big a world is: image counts and how many language-only records per language dataset."""

    n_train: int
    n_heldout: int
    n_language: int
    n_heldout_language: int


SCALES: dict[str, Scale] = {
    "quick": Scale(n_train=200, n_heldout=40, n_language=150, n_heldout_language=40),
    "default": Scale(n_train=4000, n_heldout=300, n_language=2500, n_heldout_language=250),
    "large": Scale(n_train=16000, n_heldout=1200, n_language=10000, n_heldout_language=1000),
}

#: Probability that a training image is used by each image dataset (llava/images holds every train image).
MEMBERSHIP: dict[str, float] = {
    "llava_detail": 0.4,
    "llava_reasoning": 0.5,
    "llava_conversation": 0.6,
    "cc_sbu": 0.25,
    "aokvqa": 0.3,
    "coco": 0.25,
    "vqa": 0.4,
}
OCR_WITH_WORD, OCR_WITHOUT_WORD, OCR_VAL = 0.9, 0.1, 0.05
TRAIN_WORD_PROB, HELDOUT_WORD_PROB = 0.3, 0.5


def scene_signature(scene: Scene) -> str:
    """Everything that determines a scene's pixels (ground truth without id and split)."""
    d = scene.to_dict()
    del d["image_id"], d["split"]
    return json.dumps(d, sort_keys=True)


def image_paths(scene: Scene, member: dict[str, bool]) -> list[str]:
    """Relative paths (under the world directory) where this scene's JPEG is written."""
    i = scene.image_id
    if scene.split == "heldout":
        return [f"eval/images/{i:012d}.jpg"]
    paths = [f"llava/images/{records.llava_image_name(i)}"]
    if member["cc_sbu"]:
        paths.append(f"cc_sbu_align/image/{i}.jpg")
    if member["aokvqa"]:
        paths.append(f"coco/train2017/{i:012d}.jpg")
    if member["coco"]:
        paths.append(f"coco/train2014/{records.coco_filename(i)}")
    if member["ocr_vqa"]:
        paths.append(f"ocr_vqa/images/{records.ocr_key(i)}.jpg")
    if member["vqa"]:
        paths.append(f"vqa/images/{i:012d}.jpg")
    return paths


@dataclass
class WorldManifest:
    """What `generate_world` wrote: seed, scale, counts, per-image ground truth, the KB and every file path.

    `scenes` holds one dict per image (ground truth plus its "paths"); `files` lists every non-image file.
    """

    seed: int
    scale: str
    image_size: int
    counts: dict = field(default_factory=dict)
    scenes: list[dict] = field(default_factory=list)
    knowledge_base: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> WorldManifest:
        """Read a world.json (or the directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "world.json"
        return cls(**json.loads(path.read_text()))

    def image_files(self, split: str | None = None) -> list[str]:
        """Every image path written, optionally only for one split ("train" or "heldout")."""
        return [p for s in self.scenes if split in (None, s["split"]) for p in s["paths"]]


class _Writer:
    """Writes files under `root` and remembers their relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[str] = []

    def text(self, rel: str, text: str) -> None:
        """Write UTF-8 `text` to `rel` (creating folders)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files.append(rel)

    def json(self, rel: str, obj: object) -> None:
        """Write `obj` as compact JSON."""
        self.text(rel, json.dumps(obj, ensure_ascii=False))

    def jsonl(self, rel: str, rows: list[dict]) -> None:
        """Write one JSON object per line."""
        self.text(rel, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _render_all(root: Path, scenes: list[Scene], paths: dict[int, list[str]], progress: bool) -> None:
    from tqdm import tqdm

    made: set[Path] = set()
    for scene in tqdm(scenes, desc="rendering images", unit="img", disable=not progress):
        data = encode_jpeg(render(scene))
        for rel in paths[scene.image_id]:
            target = root / rel
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            target.write_bytes(data)


def generate_world(
    out_dir: str | Path, seed: int = 0, scale: str = "default", image_size: int = 64, progress: bool = True
) -> WorldManifest:
    """Generate the synthetic world into `out_dir` and return its manifest (also written as world.json).

    `scale` is quick|default|large; `image_size` is the square image side in pixels (64 by default).
    """
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
    if image_size < 32:
        raise ConfigError(f"image_size must be at least 32 pixels, got {image_size}")
    cfg = SCALES[scale]
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)

    def stream(name: str) -> random.Random:
        return random.Random(f"{seed}-{name}")

    scene_rng, heldout_rng = stream("scenes-train"), stream("scenes-heldout")
    train = [sample_scene(scene_rng, i + 1, "train", image_size, TRAIN_WORD_PROB) for i in range(cfg.n_train)]
    seen = {scene_signature(s) for s in train}
    held: list[Scene] = []
    while len(held) < cfg.n_heldout:  # a held-out scene never duplicates a training scene
        s = sample_scene(heldout_rng, cfg.n_train + len(held) + 1, "heldout", image_size, HELDOUT_WORD_PROB)
        if scene_signature(s) not in seen:
            held.append(s)
    member_rng = stream("membership")
    members: dict[int, dict[str, bool]] = {}
    for s in train:
        m = {name: member_rng.random() < p for name, p in MEMBERSHIP.items()}
        m["ocr_vqa"] = member_rng.random() < (OCR_WITH_WORD if s.word else OCR_WITHOUT_WORD)
        members[s.image_id] = m
    paths = {s.image_id: image_paths(s, members.get(s.image_id, {})) for s in train + held}
    log.info("rendering %d train and %d held-out images into %s", len(train), len(held), root)
    _render_all(root, train + held, paths, progress)

    w = _Writer(root)
    counts: dict[str, int] = {"train_images": len(train), "heldout_images": len(held)}

    def build(name: str, fn: Callable[[Scene, random.Random], dict]) -> list[dict]:
        """Records of one image dataset, one per member training image, from its own random stream."""
        rng = stream(name)
        out = [fn(s, rng) for s in train if members[s.image_id][name]]
        counts[name] = len(out)
        return out

    w.json("llava/detail.json", build("llava_detail", records.llava_detail))
    w.json("llava/complex_reasoning.json", build("llava_reasoning", records.llava_reasoning))
    w.json("llava/conversation.json", build("llava_conversation", records.llava_conversation))
    w.json("cc_sbu_align/filter_cap.json", {"annotations": build("cc_sbu", records.cc_sbu)})
    w.json("aokvqa/aokvqa_v1p0_train.json", build("aokvqa", records.aokvqa))
    coco_rng = stream("coco")
    coco_train = [s for s in train if members[s.image_id]["coco"]]
    coco_images = [records.coco_karpathy(s, coco_rng, imgid) for imgid, s in enumerate(coco_train)]
    counts["coco"] = len(coco_images)
    w.json("coco/dataset_coco.json", {"images": coco_images, "dataset": "coco"})
    ocr_rng = stream("ocr_vqa")
    ocr = dict(
        records.ocr_vqa(s, ocr_rng, 2 if ocr_rng.random() < OCR_VAL else 1)
        for s in train
        if members[s.image_id]["ocr_vqa"]
    )
    counts["ocr_vqa"] = len(ocr)
    w.json("ocr_vqa/dataset.json", ocr)
    vqa_rng, questions, annotations = stream("vqa"), [], []
    for s in (s for s in train if members[s.image_id]["vqa"]):
        q, a = records.vqa(s, vqa_rng)
        questions += q
        annotations += a
    counts["vqa_questions"] = len(questions)
    w.json(
        "vqa/questions.json",
        {
            "info": {"description": "synthetic world"},
            "task_type": "Open-Ended",
            "data_type": "mscoco",
            "license": {"name": "Apache-2.0"},
            "data_subtype": "train2014",
            "questions": questions,
        },
    )
    w.json(
        "vqa/annotations.json",
        {
            "info": {"description": "synthetic world"},
            "data_type": "mscoco",
            "license": {"name": "Apache-2.0"},
            "data_subtype": "train2014",
            "annotations": annotations,
        },
    )

    reserved = reserved_pairs(seed)
    allowed = {op: [p for p in arithmetic_pairs(op) if p not in reserved[op]] for op in reserved}
    dolly_rng, alpaca_rng = stream("dolly"), stream("alpaca")
    w.jsonl(
        "dolly/dolly.jsonl", [records.dolly(dolly_rng, TRAIN_TASKS, allowed) for _ in range(cfg.n_language)]
    )
    w.json(
        "alpaca/alpaca_gpt4_data.json",
        [records.alpaca(alpaca_rng, TRAIN_TASKS, allowed) for _ in range(cfg.n_language)],
    )
    counts["dolly"] = counts["alpaca"] = cfg.n_language

    llava_paths = {s.image_id: paths[s.image_id][0] for s in train}
    interleaved = pretrain.interleaved_lines(train, llava_paths, stream("pretrain-interleaved"))
    text = pretrain.text_lines(stream("pretrain-text"), reserved, repeats=max(1, cfg.n_train // 1000))
    w.jsonl("pretrain/interleaved.jsonl", interleaved)
    w.jsonl("pretrain/text.jsonl", text)
    counts["pretrain_interleaved"], counts["pretrain_text"] = len(interleaved), len(text)

    eval_rng = stream("heldout-items")
    items = [it for s in held for it in heldout.image_items(s, paths[s.image_id][0], eval_rng)]
    items += heldout.language_items(cfg.n_heldout_language, stream("heldout-language"), reserved)
    w.jsonl("eval/heldout.jsonl", items)
    for kind in heldout.KINDS:
        counts[f"heldout_{kind}"] = sum(it["kind"] == kind for it in items)

    for name, body in recipe_texts().items():
        w.text(name, body)

    manifest = WorldManifest(
        seed=seed,
        scale=scale,
        image_size=image_size,
        counts=counts,
        scenes=[{**s.to_dict(), "paths": paths[s.image_id]} for s in train + held],
        knowledge_base=knowledge_base(),
        files=[*w.files, "world.json"],
    )
    (root / "world.json").write_text(json.dumps(manifest.to_dict(), ensure_ascii=False), encoding="utf-8")
    log.info("wrote %d images and %d files to %s", len(manifest.image_files()), len(manifest.files), root)
    return manifest
