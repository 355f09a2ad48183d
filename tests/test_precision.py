"""Inference precision: `resolve_dtype` ("auto" from the CPU / GPU capability probe), `--dtype` reaching
the encoder in every inference command and the pipelines, bfloat16 outputs close to float32, the
finite-value check after the cast, and the no-autograd fast paths leaving results unchanged."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers import pipeline

from brain_jepa_cli import main
from brain_jepa_cli.options import DTYPE_CHOICES
from brain_jepa_hf import BrainJepaModel, modeling_brain_jepa
from brain_jepa_hf.modeling_brain_jepa import (
    INFERENCE_DTYPES,
    cpu_has_fast_bf16,
    resolve_dtype,
)
from brain_jepa_hf.pipelines import FEATURE_EXTRACTION_TASK

from helpers import make_config, make_inputs, save_pretrained_folder, small_dataset


# bfloat16 keeps 8 significant bits: a tiny encoder's pooled output stays within this of float32.
POOLED_COSINE_MIN = 0.999
POOLED_ABS_TOL = 0.05


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "model"
    save_pretrained_folder(path, make_config(num_rois=23, num_frames=40, patch_size=8))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision-data") / "data"
    small_dataset(num_subjects=12).save_to_disk(str(path))
    return path


@contextmanager
def encoder_dtypes():
    """The dtype of every BrainJepaModel forward that runs inside: (parameters, output)."""
    seen = []

    def hook(module, args, output):
        if isinstance(module, BrainJepaModel):
            seen.append((next(module.parameters()).dtype, output.last_hidden_state.dtype))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ------------------------------------------------------------------------------ resolve_dtype


@pytest.mark.parametrize("fast", [True, False])
def test_auto_follows_the_cpu_probe(monkeypatch, fast):
    monkeypatch.setattr(modeling_brain_jepa, "cpu_has_fast_bf16", lambda: fast)
    expected = torch.bfloat16 if fast else torch.float32
    assert resolve_dtype("auto") is expected
    assert resolve_dtype("auto", "cpu") is expected
    assert resolve_dtype("auto", torch.device("cpu")) is expected
    # explicit choices ignore the probe
    assert resolve_dtype("float32", "cpu") is torch.float32 and resolve_dtype(torch.float32) is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16 and resolve_dtype(torch.bfloat16) is torch.bfloat16
    assert resolve_dtype(None) is torch.float32


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_on_cuda_follows_the_gpu_probe(monkeypatch, native_bf16):
    calls = []

    def probe(including_emulation=True):
        calls.append(including_emulation)
        return native_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", probe)
    monkeypatch.setattr(modeling_brain_jepa, "cpu_has_fast_bf16", lambda: not native_bf16)  # must not be asked
    assert resolve_dtype("auto", "cuda:0") is (torch.bfloat16 if native_bf16 else torch.float32)
    assert calls == [False], "emulated bfloat16 must not count as support"
    assert resolve_dtype("auto", "meta") is torch.float32  # other devices: float32


def test_resolve_dtype_rejects_other_precisions():
    assert DTYPE_CHOICES == INFERENCE_DTYPES
    for bad in ("float16", torch.float16, "fp32", 32):
        with pytest.raises(ValueError, match=r"dtype: expected one of \('auto', 'float32', 'bfloat16'\).*got"):
            resolve_dtype(bad)


def test_cpu_probe_agrees_with_the_cpu_flags():
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/cpuinfo")
    with open("/proc/cpuinfo") as handle:
        flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    if flags is None:
        pytest.skip("no x86 flags line in /proc/cpuinfo")
    assert cpu_has_fast_bf16() == any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


# ------------------------------------------------------------------------------ commands


@pytest.mark.parametrize(
    "choice, fast, expected",
    [
        ("float32", True, torch.float32),
        ("bfloat16", False, torch.bfloat16),
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float32),
    ],
)
def test_embed_dtype_reaches_the_encoder(tmp_path, folder, data_dir, monkeypatch, capsys, choice, fast, expected):
    monkeypatch.setattr(modeling_brain_jepa, "cpu_has_fast_bf16", lambda: fast)
    with encoder_dtypes() as seen:
        assert (
            main(
                [
                    "embed",
                    "--model",
                    str(folder),
                    "--dataset",
                    str(data_dir),
                    "--output",
                    str(tmp_path / "e.npy"),
                    "--batch_size",
                    "5",
                    "--dtype",
                    choice,
                ]
            )
            == 0
        )
    assert seen and set(seen) == {(expected, expected)}
    assert np.load(tmp_path / "e.npy").dtype == np.float32
    summary = capsys.readouterr().out
    precision = str(expected).removeprefix("torch.") + (r" \(--dtype auto\)" if choice == "auto" else "")
    pattern = rf"embedded 12 subjects on cpu in {precision}: [\d.]+ s, [\d.]+ subjects/s, [\d.]+ s/subject"
    assert re.search(pattern, summary), summary
    assert ("bfloat16 is emulated" in summary) == (expected == torch.bfloat16 and not fast)


def test_embed_defaults_to_auto(tmp_path, folder, data_dir, monkeypatch, capsys):
    monkeypatch.setattr(modeling_brain_jepa, "cpu_has_fast_bf16", lambda: True)
    with encoder_dtypes() as seen:
        main(["embed", "--model", str(folder), "--dataset", str(data_dir), "--output", str(tmp_path / "e.npy")])
    assert set(seen) == {(torch.bfloat16, torch.bfloat16)}
    assert "in bfloat16 (--dtype auto)" in capsys.readouterr().out


def test_resumed_embed_refuses_another_precision(tmp_path, folder, data_dir):
    from datasets import load_from_disk

    from brain_jepa_hf.embedding import embed

    data = load_from_disk(str(data_dir))
    assert embed(folder, data, tmp_path / "e.npy", chunk_size=4, max_chunks=1, progress=False, dtype="float32") is None
    with pytest.raises(ValueError, match="output: .* holds a run with other settings"):
        embed(folder, data, tmp_path / "e.npy", chunk_size=4, progress=False, dtype="bfloat16")


@pytest.mark.parametrize("choice, expected", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_probe_dtype_reaches_the_encoder(tmp_path, folder, data_dir, capsys, choice, expected):
    with encoder_dtypes() as seen:
        assert (
            main(
                [
                    "probe",
                    "--model_name_or_path",
                    str(folder),
                    "--dataset",
                    str(data_dir),
                    "--label_column",
                    "age",
                    "--seeds",
                    "1",
                    "--cv_folds",
                    "2",
                    "--output_dir",
                    str(tmp_path / "out"),
                    "--dtype",
                    choice,
                ]
            )
            == 0
        )
    assert seen and set(seen) == {(expected, expected)}
    assert json.loads((tmp_path / "out" / "results.json").read_text())["model"]["dtype"] == choice
    assert f"embeddings in {choice}" in capsys.readouterr().err


def test_probe_torch_engine_rejects_dtype(tmp_path, folder, data_dir, capsys):
    assert (
        main(
            [
                "probe",
                "--engine",
                "torch",
                "--model_name_or_path",
                str(folder),
                "--dataset",
                str(data_dir),
                "--label_column",
                "age",
                "--output_dir",
                str(tmp_path / "out"),
                "--dtype",
                "bfloat16",
            ]
        )
        == 1
    )
    assert re.fullmatch(
        r"brain-jepa probe: error: dtype: the torch engine runs through the Trainer.*got --dtype "
        r"bfloat16.*",
        capsys.readouterr().err.strip().splitlines()[-1],
    )


# ------------------------------------------------------------------------------ pipelines


def test_pipeline_auto_follows_the_probe_and_stays_close_to_float32(folder, monkeypatch):
    series = np.random.default_rng(3).standard_normal((23, 60)).astype(np.float32)
    reference = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder), dtype="float32")
    assert reference.model.dtype == torch.float32
    monkeypatch.setattr(modeling_brain_jepa, "cpu_has_fast_bf16", lambda: True)
    fast = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder))  # transformers' default dtype is "auto"
    with encoder_dtypes() as seen:
        vector = fast(series)
    assert set(seen) == {(torch.bfloat16, torch.bfloat16)}
    assert vector.dtype == np.float32
    expected = reference(series)
    assert cosine(vector, expected) >= POOLED_COSINE_MIN
    assert np.abs(vector - expected).max() <= POOLED_ABS_TOL
    monkeypatch.setattr(modeling_brain_jepa, "cpu_has_fast_bf16", lambda: False)
    assert pipeline(FEATURE_EXTRACTION_TASK, model=str(folder)).model.dtype == torch.float32


# ------------------------------------------------------------------------------ numerics


def test_bfloat16_pooled_output_is_close_to_float32():
    config = make_config(num_hidden_layers=4)
    torch.manual_seed(0)
    model = BrainJepaModel(config).eval()
    fmri, gradient = make_inputs(config, batch=4)
    with torch.no_grad():
        full = model(fmri, gradient=gradient).pooler_output.numpy()
        model.to(torch.bfloat16)
        half = model(fmri, gradient=gradient)
    assert half.pooler_output.dtype == torch.bfloat16 and half.last_hidden_state.dtype == torch.bfloat16
    half = half.pooler_output.float().numpy()
    assert not np.array_equal(half, full), "the bfloat16 model did not run in bfloat16"
    assert cosine(half, full).min() >= POOLED_COSINE_MIN
    assert np.abs(half - full).max() <= POOLED_ABS_TOL


def test_finite_check_applies_to_the_values_the_model_sees():
    config = make_config()
    model = BrainJepaModel(config).eval()
    fmri, gradient = make_inputs(config, batch=1)
    near_max = fmri.clone()
    near_max[0, 0, 0, :2] = 3.4e38  # finite in float32, Inf once rounded to bfloat16
    with torch.no_grad():
        # float32 model: the input fits, but the activations overflow; said so, with no float32 advice
        with pytest.raises(
            ValueError,
            match=r"fmri_values: finite inputs gave non-finite outputs: the model's "
            r"torch.float32 activations overflowed \(input \|x\| up to 3.4e\+38\); "
            r"rescale the input \(e.g. z-score it\)$",
        ):
            model(near_max, gradient=gradient)
        with pytest.raises(
            ValueError,
            match=r"fmri_values: expected values within the range of the model's dtype "
            r"torch.float32 .*got \|x\| up to 1e\+300; rescale the input \(e.g. "
            r"z-score it\)$",
        ):
            model(
                fmri.double().index_put_(
                    (torch.tensor(0), torch.tensor(0), torch.tensor(1), torch.tensor(0)),
                    torch.tensor(1e300, dtype=torch.float64),
                ),
                gradient=gradient,
            )
        model.to(torch.bfloat16)
        with pytest.raises(
            ValueError,
            match=r"fmri_values: expected values within the range of the model's dtype "
            r"torch.bfloat16 .*got \|x\| up to 3.4e\+38; .* or use a float32 model$",
        ):
            model(near_max, gradient=gradient)
        big_gradient = gradient.clone()
        big_gradient[3, 1] = 3.4e38
        with pytest.raises(ValueError, match="gradient: expected values within the range .* torch.bfloat16"):
            model(fmri, gradient=big_gradient)
        with pytest.raises(ValueError, match="fmri_values: expected finite values, got 1 NaN/Inf"):
            model(
                fmri.index_put_(
                    (torch.tensor(0), torch.tensor(0), torch.tensor(0), torch.tensor(0)), torch.tensor(float("nan"))
                ),
                gradient=gradient,
            )


def test_inference_fast_paths_change_nothing():
    """Without autograd GELU and the residual adds run in place; the values, and every returned hidden
    state, are bitwise those of the autograd path."""
    config = make_config(num_hidden_layers=3)
    torch.manual_seed(1)
    model = BrainJepaModel(config).eval()
    fmri, gradient = make_inputs(config, batch=2)
    with torch.enable_grad():
        reference = model(fmri, gradient=gradient, output_hidden_states=True)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            fast = model(fmri, gradient=gradient, output_hidden_states=True)
        assert torch.equal(fast.last_hidden_state, reference.last_hidden_state.detach())
        assert torch.equal(fast.pooler_output, reference.pooler_output.detach())
        assert len(fast.hidden_states) == config.num_hidden_layers + 1
        for ours, theirs in zip(fast.hidden_states, reference.hidden_states):
            assert torch.equal(ours, theirs.detach())
