"""A saved model loads as Hub remote code in a process where `brain_jepa_hf` cannot be imported,
and through the registered Auto classes when the package is installed."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from brain_jepa_hf import (
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)

from helpers import make_config, make_inputs
from package_blocker import BLOCK_PACKAGE


LOAD_WITHOUT_PACKAGE = BLOCK_PACKAGE + textwrap.dedent(
    """
    import numpy as np
    import torch
    import transformers

    folder, auto_class, inputs, output = sys.argv[1:5]
    model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        result = model(torch.from_numpy(np.load(inputs)))
    np.save(output, (result.logits if hasattr(result, "logits") else result.last_hidden_state).numpy())
    print(type(model).__name__)
    """
)


def run_without_package(tmp_path, folder, auto_class, fmri):
    np.save(tmp_path / "inputs.npy", fmri.numpy())
    script = tmp_path / "load.py"
    script.write_text(LOAD_WITHOUT_PACKAGE)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "hf"),
    }
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            str(folder),
            auto_class,
            str(tmp_path / "inputs.npy"),
            str(tmp_path / "out.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1], torch.from_numpy(np.load(tmp_path / "out.npy"))


def test_encoder_loads_as_remote_code_without_the_package(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = BrainJepaModel(tiny_config).eval()
    fmri, gradient = make_inputs(tiny_config)
    model.set_gradient(gradient)
    folder = tmp_path / "brain-jepa-tiny"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_brain_jepa.BrainJepaConfig",
        "AutoModel": "modeling_brain_jepa.BrainJepaModel",
        "AutoModelForPreTraining": "modeling_brain_jepa.BrainJepaForPreTraining",
        "AutoModelForSequenceClassification": "modeling_brain_jepa.BrainJepaForSequenceClassification",
    }
    assert (folder / "modeling_brain_jepa.py").exists() and (folder / "configuration_brain_jepa.py").exists()

    name, remote = run_without_package(tmp_path, folder, "AutoModel", fmri)
    assert name == "BrainJepaModel"
    with torch.no_grad():
        expected = model(fmri).last_hidden_state
    torch.testing.assert_close(remote, expected, atol=0, rtol=0)

    local = AutoModel.from_pretrained(folder).eval()  # package installed: no trust_remote_code needed
    assert type(local) is BrainJepaModel
    with torch.no_grad():
        torch.testing.assert_close(local(fmri).last_hidden_state, expected, atol=0, rtol=0)


def test_classifier_loads_as_remote_code_without_the_package(tmp_path):
    config = make_config(num_labels=2)
    torch.manual_seed(0)
    model = BrainJepaForSequenceClassification(config).eval()
    fmri, gradient = make_inputs(config)
    model.set_gradient(gradient)
    with torch.no_grad():
        model.classifier.weight.normal_()  # a "trained" head, so the logits are not all ~0
    folder = tmp_path / "classifier"
    model.save_pretrained(folder)
    name, remote = run_without_package(tmp_path, folder, "AutoModelForSequenceClassification", fmri)
    assert name == "BrainJepaForSequenceClassification"
    with torch.no_grad():
        expected = model(fmri).logits
    torch.testing.assert_close(remote, expected, atol=0, rtol=0)
    assert type(AutoModelForSequenceClassification.from_pretrained(folder)) is BrainJepaForSequenceClassification


def test_pretraining_folder_loads_its_target_encoder_as_remote_automodel(tmp_path, tiny_config):
    torch.manual_seed(0)
    model = BrainJepaForPreTraining(tiny_config).eval()
    fmri, gradient = make_inputs(tiny_config)
    model.set_gradient(gradient)
    with torch.no_grad():
        for param in model.context_encoder.parameters():
            param.add_(0.05)  # the encoders differ: only the target encoder may come back
    folder = tmp_path / "pretrained"
    model.save_pretrained(folder)
    name, remote = run_without_package(tmp_path, folder, "AutoModel", fmri)
    assert name == "BrainJepaModel"
    with torch.no_grad():
        torch.testing.assert_close(remote, model.brain_jepa(fmri).last_hidden_state, atol=0, rtol=0)
