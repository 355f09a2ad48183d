"""What several test modules share: tiny configs and inputs, small datasets, saved model folders,
fast command-line settings and the loopback Hub's environment. Fixtures stay in conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from brain_jepa_hf import BrainJepaConfig, BrainJepaForPreTraining
from brain_jepa_hf.arrow_data import dataset_from_arrays
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor


def make_config(num_rois: int = 23, num_frames: int = 40, patch_size: int = 8, **overrides) -> BrainJepaConfig:
    """A tiny config with R and Tp deliberately unlike the paper's 450 and 10."""
    return BrainJepaConfig.from_preset(
        "tiny", num_rois=num_rois, num_frames=num_frames, patch_size=patch_size, gradient_dim=6, **overrides
    )


def make_inputs(config: BrainJepaConfig, batch: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    fmri = torch.randn(batch, 1, config.num_rois, config.num_frames, generator=generator)
    gradient = torch.randn(config.num_rois, config.gradient_dim, generator=generator)
    return fmri, gradient


def disjoint_indices(batch: int, num_tokens: int, num_context: int, num_targets: int, seed: int = 0):
    """Random per-sample context and target index sets that never overlap."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(num_tokens, generator=generator) for _ in range(batch)])
    return order[:, :num_context], order[:, num_context : num_context + num_targets]


# Fine-tuning: a few Trainer steps on CPU.
FINETUNE_FAST = ["--max_steps", "4", "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "2",
        "--save_steps", "2", "--logging_steps", "2", "--per_device_train_batch_size", "4", "--use_cpu"]


def small_dataset(num_subjects=20, num_rois=23, num_timepoints=60, seed=0, age=None):
    rng = np.random.default_rng(seed)
    fmri = rng.standard_normal((num_subjects, num_rois, num_timepoints)).astype(np.float32)
    labels = {"age": rng.uniform(45, 80, num_subjects) if age is None else age,
              "sex": rng.integers(0, 2, num_subjects)}
    return dataset_from_arrays([f"sub-{i}" for i in range(num_subjects)], fmri, labels)


def save_pretrained_folder(folder: Path, config) -> BrainJepaForPreTraining:
    model = BrainJepaForPreTraining(config)
    model.set_gradient(torch.randn(config.num_rois, config.gradient_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():  # make the context encoder differ from the target encoder
        for parameter in model.context_encoder.parameters():
            parameter.add_(0.5)
    model.save_pretrained(folder)
    BrainJepaFeatureExtractor(num_rois=config.num_rois, num_frames=config.num_frames, sampling_rate=1,
                              scaling="zscore").save_pretrained(folder)
    return model


# Tiny model on the embedded example: 450 ROIs x 80 frames (Tp = 5), 4 subjects per batch.
PRETRAIN_FAST = [
    "--preset", "example-tiny", "--example_subjects", "12", "--per_device_batch_size", "4",
    "--num_frames", "80", "--logging_steps", "1",
]


def run_pretrain(output_dir, *extra, background=False):
    command = [sys.executable, "-m", "brain_jepa_hf", "pretrain", *PRETRAIN_FAST, "--output_dir", str(output_dir), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_log(output_dir):
    return [json.loads(line) for line in (output_dir / "pretraining_log.jsonl").read_text().splitlines()]


def hub_env(hub, home: Path, token: str | None = "hf_loopback_test_token") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update({"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home),
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1"})
    if token:
        env["HF_TOKEN"] = token
    return env
