"""The shipped paper data config parses and lists the paper's datasets with its sample sizes."""

from pathlib import Path

from mmgpt.data.config import load_data_config

ROOT = Path(__file__).resolve().parents[2]


def test_paper_config():
    config = load_data_config(ROOT / "configs" / "datasets" / "paper.yaml")
    samples = {s.label: s.sample for s in config.vision_language}
    assert samples["aokvqa"] == 5000 and samples["coco_caption"] == 512 and samples["ocr_vqa"] == 512
    assert samples["llava_detail"] is None and samples["cc_sbu_align"] is None
    assert [s.type for s in config.language] == ["dolly", "alpaca_gpt4"]
