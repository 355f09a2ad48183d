"""Conversion of the authors' checkpoint layout: round trip, CLI, and every kind of bad input."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brain_jepa_cli import main as cli_main
from brain_jepa_hf import BrainJepaForPreTraining, BrainJepaModel
from brain_jepa_hf.conversion import convert_original_checkpoint

from helpers import disjoint_indices
from original_layout import original_checkpoint


REPO_ROOT = Path(__file__).resolve().parents[1]


def write_checkpoint(tmp_path, checkpoint) -> Path:
    path = tmp_path / "edited.pth.tar"
    torch.save(checkpoint, path)
    return path


def entries(folder: Path) -> set[str]:
    return set(os.listdir(folder))


def test_round_trip_with_predictor_reproduces_encoders_and_predictor(pretrained, original_files, tmp_path):
    model, fmri, _ = pretrained
    checkpoint, gradient_csv = original_files
    out = convert_original_checkpoint(
        checkpoint, gradient_csv, tmp_path / "brain-jepa", with_predictor=True, num_attention_heads=4
    )
    converted = BrainJepaForPreTraining.from_pretrained(out).eval()
    context, targets = disjoint_indices(fmri.shape[0], model.config.num_patches, 60, 25)
    with torch.no_grad():
        expected = model(fmri, context, targets)
        actual = converted(fmri, context, targets)
    torch.testing.assert_close(actual.predictions, expected.predictions, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.targets, expected.targets, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.context_hidden_states, expected.context_hidden_states, atol=1e-5, rtol=0)
    # The base model of a pretraining folder is the target encoder, what fine-tuning starts from.
    encoder = BrainJepaModel.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(fmri).last_hidden_state, model.brain_jepa(fmri).last_hidden_state, atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_checkpoint_converts_and_matches_within_its_rounding(
    pretrained, original_files, tmp_path, dtype
):
    """A checkpoint saved in float16/bfloat16 once failed with "token layout is not ROI-major": its stored
    time table differs from ours by the dtype's rounding, which must be tolerated, not refused."""
    model, fmri, _ = pretrained
    checkpoint, gradient_csv = original_files
    original = torch.load(checkpoint, weights_only=False)
    for part in ("encoder", "target_encoder", "predictor"):
        if isinstance(original.get(part), dict):
            original[part] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in original[part].items()}
    out = convert_original_checkpoint(
        write_checkpoint(tmp_path, original), gradient_csv, tmp_path / "brain-jepa", num_attention_heads=4
    )
    converted = BrainJepaModel.from_pretrained(out).eval().float()
    with torch.no_grad():
        actual = converted(fmri).last_hidden_state
        expected = model.brain_jepa(fmri).last_hidden_state
    difference = float((actual - expected).abs().max())
    assert 0 < difference < 0.1, difference  # the checkpoint's own rounding, nothing more


@pytest.mark.parametrize("source", ["target_encoder", "encoder"])
def test_round_trip_encoder_only_from_each_source(pretrained, original_files, tmp_path, source):
    model, fmri, gradient = pretrained
    checkpoint, gradient_csv = original_files
    out = convert_original_checkpoint(
        checkpoint, gradient_csv, tmp_path / "brain-jepa", source=source, num_attention_heads=4
    )
    converted = BrainJepaModel.from_pretrained(out).eval()
    reference = model.brain_jepa if source == "target_encoder" else model.context_encoder
    other = model.context_encoder if source == "target_encoder" else model.brain_jepa
    with torch.no_grad():
        actual = converted(fmri).last_hidden_state  # the stored gradient is used: none passed
        torch.testing.assert_close(actual, reference(fmri).last_hidden_state, atol=1e-5, rtol=0)
        assert (actual - other(fmri).last_hidden_state).abs().max() > 1e-3  # the source really matters
    torch.testing.assert_close(converted.embeddings.gradient, gradient.float())
    config = json.loads((out / "config.json").read_text())
    inferred = {
        k: config[k]
        for k in (
            "num_rois",
            "num_frames",
            "patch_size",
            "gradient_dim",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "predictor_hidden_size",
        )
    }
    assert inferred == {
        "num_rois": 23,
        "num_frames": 40,
        "patch_size": 8,
        "gradient_dim": 6,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "predictor_hidden_size": 32,
    }
    assert config["auto_map"]["AutoModel"] == "modeling_brain_jepa.BrainJepaModel"
    for name in (
        "model.safetensors",
        "configuration_brain_jepa.py",
        "modeling_brain_jepa.py",
        "feature_extraction_brain_jepa.py",
        "pipeline_brain_jepa.py",
        "preprocessor_config.json",
        "README.md",
    ):
        assert (out / name).is_file(), name
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert (processor["num_rois"], processor["num_frames"]) == (23, 40)
    np.testing.assert_allclose(np.asarray(processor["gradient"]), gradient.numpy(), atol=1e-6)
    readme = (out / "README.md").read_text()
    assert f"the `{source}` state dict" in readme


def test_cli_convert_and_script_help(original_files, tmp_path, capsys):
    checkpoint, gradient_csv = original_files
    out = tmp_path / "cli-out"
    code = cli_main(
        [
            "convert",
            str(checkpoint),
            "--gradient-csv",
            str(gradient_csv),
            "--output-dir",
            str(out),
            "--source",
            "encoder",
            "--with-predictor",
            "--num-attention-heads",
            "4",
        ]
    )
    assert code == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BrainJepaForPreTraining"]
    assert (
        cli_main(
            [
                "convert",
                str(checkpoint),
                "--gradient-csv",
                str(gradient_csv),
                "--output-dir",
                str(out),
                "--num-attention-heads",
                "4",
            ]
        )
        == 1
    )
    assert "already exists" in capsys.readouterr().err
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "conversion" / "convert_original_checkpoint.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--gradient-csv" in result.stdout and "Examples:" in result.stdout


def _bad_conversion(tmp_path, checkpoint, gradient_csv, match, error=ValueError, **kwargs):
    before = entries(tmp_path)
    with pytest.raises(error, match=match):
        convert_original_checkpoint(checkpoint, gradient_csv, tmp_path / "out", **{"num_attention_heads": 4, **kwargs})
    assert entries(tmp_path) == before, "a failed conversion left files behind"


def test_missing_unexpected_and_misshaped_keys_are_all_listed(pretrained, original_files, tmp_path):
    model, _, _ = pretrained
    _, gradient_csv = original_files
    checkpoint = original_checkpoint(model)
    target = checkpoint["target_encoder"]
    del target["module.blocks.1.mlp.fc2.bias"]
    target["module.blocks.0.attn.rel_pos"] = torch.zeros(3)
    target["module.blocks.0.attn.qkv.weight"] = target["module.blocks.0.attn.qkv.weight"][:190]
    path = write_checkpoint(tmp_path, checkpoint)
    before = entries(tmp_path)
    with pytest.raises(ValueError) as info:
        convert_original_checkpoint(path, gradient_csv, tmp_path / "out", num_attention_heads=4)
    message = str(info.value)
    assert "missing keys (1): ['layers.1.mlp.fc2.bias']" in message
    assert "unexpected keys (1): ['target_encoder:blocks.0.attn.rel_pos']" in message
    assert "layers.0.attention.qkv.weight: expected (192, 64), got (190, 64)" in message
    assert entries(tmp_path) == before


def test_predictor_keys_are_checked_too(pretrained, original_files, tmp_path):
    model, _, _ = pretrained
    _, gradient_csv = original_files
    checkpoint = original_checkpoint(model)
    del checkpoint["predictor"]["module.mask_token"]
    checkpoint["predictor"]["module.predictor_extra.weight"] = torch.zeros(2)
    path = write_checkpoint(tmp_path, checkpoint)
    _bad_conversion(
        tmp_path,
        path,
        gradient_csv,
        r"missing keys \(1\): \['predictor.mask_token'\][\s\S]*"
        r"unexpected keys \(1\): \['predictor:predictor_extra.weight'\]",
        with_predictor=True,
    )


def test_wrong_time_table_is_rejected(pretrained, original_files, tmp_path):
    model, _, _ = pretrained
    _, gradient_csv = original_files
    checkpoint = original_checkpoint(model)
    table = checkpoint["target_encoder"]["module.pos_embed_proj.emb_h"]
    half = table.shape[1] // 2
    checkpoint["target_encoder"]["module.pos_embed_proj.emb_h"] = torch.cat([table[:, half:], table[:, :half]], 1)
    path = write_checkpoint(tmp_path, checkpoint)
    _bad_conversion(tmp_path, path, gradient_csv, r"target_encoder.*time table differs from our sine-cosine")


def test_gradient_csv_of_the_wrong_shape(original_files, tmp_path):
    checkpoint, gradient_csv = original_files
    gradient = np.loadtxt(gradient_csv, delimiter=",")
    np.savetxt(tmp_path / "rows.csv", gradient[:-1], delimiter=",")
    np.savetxt(tmp_path / "cols.csv", gradient[:, :5], delimiter=",")
    _bad_conversion(
        tmp_path, checkpoint, tmp_path / "rows.csv", r"gradient_csv: expected 23 rows x 6 columns .* got 22 x 6"
    )
    _bad_conversion(
        tmp_path, checkpoint, tmp_path / "cols.csv", r"gradient_csv: expected 23 rows x 6 columns .* got 23 x 5"
    )
    _bad_conversion(
        tmp_path,
        checkpoint,
        tmp_path / "absent.csv",
        r"gradient_csv: .*absent.csv does not exist",
        error=FileNotFoundError,
    )


class _Exploit:
    """A pickle that would create a file when unpickled by a full (unsafe) loader."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_non_checkpoint_files_are_rejected_without_running_code(original_files, tmp_path):
    _, gradient_csv = original_files
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    _bad_conversion(tmp_path, text, gradient_csv, r"checkpoint: .*notes.txt is not a PyTorch checkpoint readable")
    marker = tmp_path / "code-ran"
    exploit = tmp_path / "exploit.pth"
    with open(exploit, "wb") as stream:
        pickle.dump({"encoder": _Exploit(marker)}, stream)
    _bad_conversion(tmp_path, exploit, gradient_csv, r"checkpoint: .*exploit.pth is not a PyTorch checkpoint")
    assert not marker.exists(), "unpickling ran code: the loader is not weights-only"
    listing = write_checkpoint(tmp_path, [torch.zeros(2)])
    _bad_conversion(tmp_path, listing, gradient_csv, r"checkpoint: expected a dict .* got list")
    other = tmp_path / "other.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, other)
    _bad_conversion(
        tmp_path,
        other,
        gradient_csv,
        r"checkpoint: expected keys 'encoder', 'target_encoder', "
        r"'predictor' .* got \['model'\]",
    )
    _bad_conversion(
        tmp_path,
        tmp_path / "missing.pth",
        gradient_csv,
        r"checkpoint: .*missing.pth does not exist",
        error=FileNotFoundError,
    )


def test_existing_output_folder_needs_overwrite(original_files, tmp_path):
    checkpoint, gradient_csv = original_files
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match=r"output_dir: .*out already exists; pass overwrite=True"):
        convert_original_checkpoint(checkpoint, gradient_csv, out, num_attention_heads=4)
    assert entries(out) == {"keep.txt"} and entries(tmp_path) == {"out"}
    convert_original_checkpoint(checkpoint, gradient_csv, out, overwrite=True, num_attention_heads=4)
    assert "keep.txt" not in entries(out) and "model.safetensors" in entries(out)
    assert entries(tmp_path) == {"out"}, "temporary folders were left beside the output"
