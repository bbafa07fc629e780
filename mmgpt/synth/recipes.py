"""The dataset-mix YAML files written next to the data (schema read by the project's data loader)."""

from __future__ import annotations

HEADER = """data_root: .
max_length: 512
strict: false
seed: {seed}
"""
VISION_LANGUAGE = """vision_language:
  - {type: llava, ann_path: llava/detail.json, image_root: llava/images, name: llava_detail}
  - {type: llava, ann_path: llava/complex_reasoning.json, image_root: llava/images, name: llava_reasoning}
  - {type: llava, ann_path: llava/conversation.json, image_root: llava/images, name: llava_conversation}
  - {type: llava, ann_path: llava/attributes.json, image_root: llava/images, name: llava_attributes, weight: 3}
  - {type: minigpt4, ann_path: cc_sbu_align/filter_cap.json, image_root: cc_sbu_align/image}
  - {type: aokvqa, ann_path: aokvqa/aokvqa_v1p0_train.json, image_root: coco/train2017}
  - {type: coco_caption, ann_path: coco/dataset_coco.json, image_root: coco, split: train}
  - {type: ocr_vqa, ann_path: ocr_vqa/dataset.json, image_root: ocr_vqa/images, split: train}
"""
VQA_ENTRY = """  - {type: vqa, ann_path: vqa/annotations.json, question_path: vqa/questions.json, image_root: vqa/images, options: {image_pattern: "{image_id:012d}.jpg"}}
"""
LANGUAGE = """language:
  - {type: dolly, ann_path: dolly/dolly.jsonl}
  - {type: alpaca_gpt4, ann_path: alpaca/alpaca_gpt4_data.json}
"""

#: file name -> YAML text builder
RECIPES = {
    "datasets.yaml": lambda seed: HEADER.format(seed=seed) + VISION_LANGUAGE + LANGUAGE,
    "datasets_with_vqa.yaml": lambda seed: HEADER.format(seed=seed) + VISION_LANGUAGE + VQA_ENTRY + LANGUAGE,
    "datasets_vl_only.yaml": lambda seed: HEADER.format(seed=seed) + VISION_LANGUAGE,
}


def recipe_texts(seed: int = 0) -> dict[str, str]:
    """The three recipe files (training mix, + VQA v2 for the data-quality ablation, vision-language only)."""
    return {name: build(seed) for name, build in RECIPES.items()}
