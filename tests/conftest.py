"""Shared fixtures: tiny Brain-JEPA configs and inputs that run in milliseconds on CPU."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from brain_jepa_hf import BrainJepaConfig  # noqa: E402


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


@pytest.fixture
def tiny_config():
    return make_config()


def pytest_configure(config):
    # Markers of transformers' common tests (tests/test_transformers_common.py).
    for marker in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test"):
        config.addinivalue_line("markers", f"{marker}: marker of transformers' common model tests")
