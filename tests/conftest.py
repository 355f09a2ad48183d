"""Shared fixtures: tiny Brain-JEPA configs and inputs that run in milliseconds on CPU."""

import os

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from brain_jepa_hf import BrainJepaForPreTraining  # noqa: E402

from helpers import make_config, make_inputs  # noqa: E402
from original_layout import original_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def pretrained():
    """A tiny pretraining model whose context and target encoders differ, its inputs and gradient."""
    config = make_config()
    torch.manual_seed(0)
    model = BrainJepaForPreTraining(config).eval()
    with torch.no_grad():
        for param in model.context_encoder.parameters():
            param.add_(0.05 * torch.randn_like(param))
    fmri, gradient = make_inputs(config)
    model.set_gradient(gradient)
    return model, fmri, gradient


@pytest.fixture(scope="module")
def original_files(pretrained, tmp_path_factory):
    model, _, gradient = pretrained
    folder = tmp_path_factory.mktemp("original")
    torch.save(original_checkpoint(model), folder / "jepa-ep300.pth.tar")
    np.savetxt(folder / "gradient_mapping.csv", gradient.double().numpy(), delimiter=",")
    return folder / "jepa-ep300.pth.tar", folder / "gradient_mapping.csv"


@pytest.fixture
def tiny_config():
    return make_config()


def pytest_configure(config):
    # Markers of transformers' common tests (tests/test_transformers_common.py).
    for marker in (
        "accelerate_tests",
        "flash_attn_test",
        "flash_attn_3_test",
        "flash_attn_4_test",
        "torch_compile_test",
    ):
        config.addinivalue_line("markers", f"{marker}: marker of transformers' common model tests")
