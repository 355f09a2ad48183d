"""Push to and pull from a Hub over real HTTP (a loopback Hub-compatible server), and loading with
remote code in a fresh process where `brain_jepa_hf` cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from brain_jepa_hf import BrainJepaModel
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.hub import check_hub_folder, prepare_hub_folder
from brain_jepa_hf.model_card import quick_start_code

from helpers import hub_env, make_config, make_inputs
from hub_server import LoopbackHub
from package_blocker import BLOCK_PACKAGE


REPO_ID = "tester/brain-jepa-base"
SUBPROCESS_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def hub():
    with LoopbackHub(user="tester") as server:
        yield server


def run_python(code: str, env: dict, isolated: bool = False, cwd: Path | None = None) -> str:
    args = [sys.executable] + (["-I"] if isolated else []) + ["-c", (BLOCK_PACKAGE if isolated else "") + code]
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    """A tiny encoder with its gradient, a feature extractor, and expected outputs on fixed inputs."""
    config = make_config()
    torch.manual_seed(1)
    model = BrainJepaModel(config).eval()
    fmri, gradient = make_inputs(config, batch=2)
    model.set_gradient(gradient)
    feature_extractor = BrainJepaFeatureExtractor(
        num_rois=config.num_rois,
        num_frames=config.num_frames,
        sampling_rate=3,
        scaling="zscore",
        gradient=gradient.numpy(),
    )
    series = np.random.default_rng(3).standard_normal((130, config.num_rois)).astype(np.float32)  # (time, ROI)
    with torch.no_grad():
        expected_tokens = model(fmri).last_hidden_state.numpy()
        features = feature_extractor(series, time_axis=0, return_tensors="pt")
        expected_pooled = model(features["fmri_values"]).pooler_output[0].numpy()
    work = tmp_path_factory.mktemp("hub-work")
    np.save(work / "fmri.npy", fmri.numpy())
    np.save(work / "series.npy", series)
    folder = prepare_hub_folder(model, work / "brain-jepa-base", feature_extractor=feature_extractor)
    # The local card loads the folder; pushing points its quick start at the Hub repository.
    assert f'repo = "{folder.resolve()}"' in (folder / "README.md").read_text()
    return folder, work, expected_tokens, expected_pooled


def test_push_then_pull_with_remote_code_in_a_process_without_the_package(hub, local_model, tmp_path):
    folder, work, expected_tokens, expected_pooled = local_model
    push = f"""
from brain_jepa_hf.hub import push_folder_to_hub
commit = push_folder_to_hub({str(folder)!r}, {REPO_ID!r}, commit_message="Upload tiny Brain-JEPA")
print("COMMIT", commit.oid)
"""
    out = run_python(push, hub_env(hub, tmp_path / "push-home"))
    commit = out.split("COMMIT ")[1].split()[0]
    posts = [path for method, path in hub.requests if method == "POST"]
    assert "/api/repos/create" in posts
    assert f"/api/models/{REPO_ID}/preupload/main" in posts and f"/api/models/{REPO_ID}/commit/main" in posts
    stored = hub.files(REPO_ID)
    for name in (
        "config.json",
        "model.safetensors",
        "modeling_brain_jepa.py",
        "configuration_brain_jepa.py",
        "feature_extraction_brain_jepa.py",
        "pipeline_brain_jepa.py",
        "preprocessor_config.json",
        "README.md",
    ):
        assert name in stored, name
    assert stored["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    card = ModelCard(stored["README.md"].decode())
    assert card.data.library_name == "transformers" and f'repo = "{REPO_ID}"' in card.text

    pull_home = tmp_path / "pull-home"
    pull = f"""
import json, numpy as np, torch
from transformers import AutoFeatureExtractor, AutoModel, pipeline
model = AutoModel.from_pretrained({REPO_ID!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
feature_extractor = AutoFeatureExtractor.from_pretrained({REPO_ID!r}, trust_remote_code=True)
series = np.load({str(work / "series.npy")!r})
with torch.no_grad():
    tokens = model(torch.from_numpy(np.load({str(work / "fmri.npy")!r}))).last_hidden_state.numpy()
    pooled = model(feature_extractor(series, time_axis=0, return_tensors="pt")["fmri_values"]).pooler_output[0].numpy()
embedder = pipeline("brain-jepa-feature-extraction", model={REPO_ID!r}, trust_remote_code=True, dtype="float32")
vector = embedder(series, time_axis=0)
np.save("tokens.npy", tokens); np.save("pooled.npy", pooled); np.save("vector.npy", vector)
"""
    run_python(pull, hub_env(hub, pull_home, token=None), isolated=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "tokens.npy"), expected_tokens, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.load(tmp_path / "pooled.npy"), expected_pooled, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.load(tmp_path / "vector.npy"), expected_pooled, atol=1e-5, rtol=0)
    cache = pull_home / "hub" / f"models--{REPO_ID.replace('/', '--')}"
    assert (cache / "refs" / "main").read_text() == commit, "the pull did not resolve main to the pushed commit"
    snapshot = cache / "snapshots" / commit
    assert (snapshot / "model.safetensors").is_file(), "the model did not come from the fresh cache"
    assert any(method == "HEAD" and path.endswith("/model.safetensors") for method, path in hub.requests)


def test_quick_start_of_the_pushed_card_runs(hub, local_model, tmp_path):
    if REPO_ID not in hub.state.repos:
        pytest.skip("needs the repository pushed by the previous test")
    code = quick_start_code(hub.files(REPO_ID)["README.md"].decode())
    out = run_python(code, hub_env(hub, tmp_path / "home", token=None), isolated=True, cwd=tmp_path)
    assert "torch.Size([1, 64])" in out


def test_incomplete_folder_is_refused_before_any_upload(hub, local_model, tmp_path):
    folder, *_ = local_model
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folder.iterdir():
        if path.name != "modeling_brain_jepa.py":
            (broken / path.name).write_bytes(path.read_bytes())
    (broken / "helpers.py").write_text("import brain_jepa_hf\nfrom .missing import thing\n")
    with pytest.raises(ValueError) as info:
        check_hub_folder(broken)
    message = str(info.value)
    assert "refers to 'modeling_brain_jepa.BrainJepaModel' but modeling_brain_jepa.py is missing" in message
    assert "helpers.py: imports 'brain_jepa_hf'" in message
    assert "helpers.py: relative import '.missing' does not name a file of this folder" in message
    requests_before = len(hub.requests)
    code = f"""
from brain_jepa_hf.hub import push_folder_to_hub
try:
    push_folder_to_hub({str(broken)!r}, "tester/broken")
except ValueError as err:
    print("REFUSED", str(err).splitlines()[0])
"""
    out = run_python(code, hub_env(hub, tmp_path / "home"))
    assert "REFUSED folder" in out and "is not a complete Brain-JEPA Hub repository" in out
    assert len(hub.requests) == requests_before and "tester/broken" not in hub.state.repos


def test_prepared_folder_config_lists_every_auto_class(local_model):
    folder, *_ = local_model
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForPreTraining",
        "AutoModelForSequenceClassification",
    }
    assert not list(folder.parent.glob(".brain-jepa-base.tmp-*")), "staging folder left behind"
    from brain_jepa_hf.atomic_io import usual_mode

    for path in folder.iterdir():  # model.safetensors too (transformers writes it 0600)
        assert path.stat().st_mode & 0o777 == usual_mode(directory=path.is_dir()), path.name


def test_pushing_a_pretraining_output_uploads_only_the_model_files(hub, tmp_path):
    """A pretraining folder holds checkpoints (optimizer, RNG states), run bookkeeping and, after a kill,
    hidden staging folders: none of it reaches the Hub, whatever the depth."""
    from brain_jepa_hf.hub import hub_upload_files

    from helpers import run_pretrain

    out = tmp_path / "run"
    run_pretrain(out, "--max_steps", "2", "--save_steps", "1")
    checkpoint = out / "checkpoints" / "step-00000002"
    assert (checkpoint / "optimizer.bin").is_file() and list(checkpoint.glob("random_states_*.pkl"))
    for debris in (
        out / ".final.tmp" / "model.safetensors",
        out / "..final.tmp.tmp-x1" / "config.json",
        out / "checkpoints" / ".step-00000003.tmp" / "optimizer.bin",
        out / "nested" / ".staging" / "a.py",
        out / "nested" / "checkpoints" / "model.safetensors",
        out / "step-00000001" / "random_states_0.pkl",
    ):
        debris.parent.mkdir(parents=True, exist_ok=True)
        debris.write_bytes(b"not a model file")
    expected = {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "configuration_brain_jepa.py",
        "modeling_brain_jepa.py",
        "feature_extraction_brain_jepa.py",
        "pipeline_brain_jepa.py",
    }
    assert {p.relative_to(out).as_posix() for p in hub_upload_files(out)} == expected
    push = f"""
from brain_jepa_hf.hub import push_folder_to_hub
push_folder_to_hub({str(out)!r}, "tester/pretrained-run")
"""
    run_python(push, hub_env(hub, tmp_path / "home"))
    stored = hub.files("tester/pretrained-run")
    assert set(stored) - {".gitattributes"} == expected  # .gitattributes: made by the Hub on creation
    assert stored["model.safetensors"] == (out / "model.safetensors").read_bytes()
