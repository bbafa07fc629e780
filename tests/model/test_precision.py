"""`precision.dtype: auto`: which precision training and inference pick on which hardware."""

from __future__ import annotations

import pytest
import torch

from mmgpt.model import precision
from mmgpt.model.precision import cpu_has_native_bf16, inference_dtype, resolve_precision


@pytest.mark.parametrize("explicit", ["bf16", "fp16", "fp32"])
def test_an_explicit_dtype_is_kept(explicit):
    assert resolve_precision(explicit, torch.device("cpu")) == explicit


@pytest.mark.parametrize(
    ("native", "expected", "name"), [(False, "fp32", "float32"), (True, "bf16", "bfloat16")]
)
def test_auto_on_cpu_follows_the_bf16_instruction_sets(monkeypatch, native, expected, name):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert inference_dtype("auto", torch.device("cpu")) == name


def test_auto_on_cuda_prefers_bf16_then_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert inference_dtype("auto", torch.device("cuda")) == "float16"


def test_inference_dtype_passes_explicit_names_through():
    assert inference_dtype("bfloat16") == "bfloat16"
    assert inference_dtype("float32") == "float32"


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu avx512f amx_bf16 amx_tile", True),
        ("fpu avx512f avx512_bf16", True),
        ("fpu avx2 avx512f avx512_vnni avx512_fp16", False),
    ],
)
def test_native_bf16_detection_reads_cpuinfo(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n")
    assert cpu_has_native_bf16(cpuinfo) is native


def test_no_cpuinfo_means_no_native_bf16(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize(("native", "expected"), [(False, torch.float32), (True, torch.bfloat16)])
def test_load_model_with_auto_dtype(make_tiny_model, tmp_path, monkeypatch, native, expected):
    from mmgpt.model.checkpoints import load_model, save_model_dir

    save_model_dir(make_tiny_model(), tmp_path / "model")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_model(tmp_path / "model", dtype="auto").dtype == expected
