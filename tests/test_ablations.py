"""experiments/ablations.py: when the demo's own tuned model may stand for the joint variant."""

from __future__ import annotations

from tests.scripts import load_script


def test_the_demo_model_stands_for_the_joint_variant_only_if_tuned_the_same_way(tmp_path):
    from mmgpt.demo import tuning_overrides
    from mmgpt.model.precision import default_device, resolve_precision
    from mmgpt.train.config import load_train_config

    ablations = load_script("ablations")
    demo = tmp_path / "demo"
    (demo / "model").mkdir(parents=True)
    (demo / "model" / "config.json").write_text("{}")
    common = [f"data.config={demo / 'world' / 'datasets.yaml'}", f"model.path={tmp_path / 'base'}"]
    tuned = load_train_config(
        ablations.TUNE_CONFIG, [*common, f"output_dir={demo / 'tune'}", *tuning_overrides(steps=600)]
    )
    tuned.precision.dtype = resolve_precision(tuned.precision.dtype, default_device())
    (demo / "tune").mkdir()
    tuned.save(demo / "tune" / "config.yaml")
    variant = [*common, "output_dir=elsewhere", "logging.progress=false"]
    # a demo run with --tune-steps 600 is not the 400-step variant, but is the 600-step one
    assert not ablations._tuned_as(demo, [*variant, *tuning_overrides()])
    assert ablations._tuned_as(demo, [*variant, *tuning_overrides(steps=600)])
    assert not ablations._tuned_as(demo, [*variant, *tuning_overrides(steps=600), "seed=3"])
