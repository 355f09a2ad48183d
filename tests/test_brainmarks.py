"""Brainmarks: the plugin passes Brainmarks' own model test, its transform is exactly our feature
extractor on the un-normalised series, a logistic probe in Brainmarks' protocol runs on a local shard
in its layout, data moves between the two layouts, and `.eval_results` files parse with huggingface_hub."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from brain_jepa_cli import main
from brain_jepa_hf import BrainJepaConfig, BrainJepaModel
from brain_jepa_hf.brainmarks_data import (
    from_brainmarks,
    is_brainmarks_layout,
    load_dataset_folder,
    normalise_per_roi,
    save_brainmarks_dataset,
    to_brainmarks,
)
from brain_jepa_hf.downstream_arguments import DataArguments
from brain_jepa_hf.downstream_data import load_splits
from brain_jepa_hf.embedding import embed
from brain_jepa_hf.eval_results import read_eval_results, read_eval_results_file
from brain_jepa_hf.example_data import (
    EXAMPLE_TR,
    example_gradient,
    load_example_dataset,
)
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.probing import run_sklearn_probe


SUBJECTS, TIMEPOINTS = 20, 100


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny encoder on the released 450-ROI layout (16 frames = one time patch), z-score extractor."""
    folder = tmp_path_factory.mktemp("model") / "tiny-450"
    torch.manual_seed(0)
    BrainJepaModel(BrainJepaConfig.from_preset("tiny", num_frames=16, patch_size=16)).save_pretrained(folder)
    BrainJepaFeatureExtractor(
        num_rois=450, num_frames=16, sampling_rate=3, scaling="zscore", gradient=example_gradient()
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cohort():
    return load_example_dataset(num_subjects=SUBJECTS, num_timepoints=TIMEPOINTS)


def stratified_splits(dataset, column: str) -> dict:
    """train / validation / test with every class in each (Brainmarks' evaluation needs that)."""
    labels = np.asarray(dataset[column])
    roles = {"train": [], "validation": [], "test": []}
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        held = max(2, len(members) // 4)
        roles["validation"] += members[:held].tolist()
        roles["test"] += members[held : 2 * held].tolist()
        roles["train"] += members[2 * held :].tolist()
    return {role: dataset.select(sorted(indices)) for role, indices in roles.items()}


def test_layout_round_trip_and_embed_reads_a_brainmarks_folder(tmp_path, model_folder, cohort):
    converted = to_brainmarks(cohort.select(range(6)), tr=EXAMPLE_TR)
    assert is_brainmarks_layout(converted) and not is_brainmarks_layout(cohort)
    row = converted.with_format("numpy")[0]
    assert row["bold"].shape == (TIMEPOINTS, 450) and converted.features["bold"].dtype == "float16"
    assert row["mean"].shape == row["std"].shape == (1, 450) and row["tr"] == np.float32(EXAMPLE_TR)
    assert np.allclose(row["bold"].astype(np.float32).mean(axis=0), 0, atol=2e-3)  # z-scored per ROI over time
    back = np.asarray(from_brainmarks(converted).with_format("numpy")["fmri"])
    original = np.asarray(cohort.select(range(6)).with_format("numpy")["fmri"])
    assert back.shape == original.shape
    assert np.allclose(back, original, rtol=0, atol=2e-3 * np.abs(original).max())  # float16 bold

    folder = tmp_path / "cohort.schaefer400_tians3.arrow"
    save_brainmarks_dataset({"train": converted}, folder)
    assert sorted(p.name for p in (folder / "train").glob("*.arrow"))  # Brainmarks' shards
    assert (
        main(["embed", "--model", str(model_folder), "--dataset", str(folder), "--output", str(tmp_path / "bm.npy")])
        == 0
    )
    direct = embed(model_folder, cohort.select(range(6)), tmp_path / "ours.npy", progress=False)
    assert np.allclose(np.load(tmp_path / "bm.npy"), np.load(direct), atol=1e-3)
    splits = load_splits(DataArguments(dataset=str(folder), label_column="sex"))
    assert splits["train"].features["fmri"].shape == (450, TIMEPOINTS)


def test_ragged_brainmarks_series_load_as_lists(tmp_path):
    from datasets import Array2D, Dataset, Features, Value

    rng = np.random.default_rng(0)
    rows = {"bold": [], "mean": [], "std": [], "tr": [1.0, 1.0]}
    for length in (30, 41):
        bold, mean, std = normalise_per_roi(rng.normal(5.0, 2.0, (length, 7)))
        rows["bold"].append(bold), rows["mean"].append(mean), rows["std"].append(std)
    features = Features(
        {
            "bold": Array2D((None, 7), "float32"),
            "mean": Array2D((1, 7), "float32"),
            "std": Array2D((1, 7), "float32"),
            "tr": Value("float32"),
        }
    )
    save_brainmarks_dataset({"train": Dataset.from_dict(rows, features=features)}, tmp_path / "ragged.arrow")
    loaded = load_dataset_folder(tmp_path / "ragged.arrow")["train"].with_format("numpy")
    assert [np.shape(loaded[i]["fmri"]) for i in range(2)] == [(7, 30), (7, 41)]


def test_plugin_passes_brainmarks_own_model_test(model_folder, monkeypatch):
    registry = pytest.importorskip("brainmarks.models.registry")
    test_models = pytest.importorskip("brainmarks.models.test_models")
    assert "brain_jepa_hf" in registry.list_models()  # found as a namespace-package plugin
    monkeypatch.setenv("BRAIN_JEPA_HF_MODEL", str(model_folder))
    for n_samples in (16, 160):  # Brainmarks' own dummy samples, transform, default_collate, forward
        test_models.test_model("brain_jepa_hf", n_samples)
    transform, model = registry.create_model("brain_jepa_hf", model=str(model_folder))
    sample = test_models.get_dummy_sample(model.__space__, 160)
    cls, reg, patch = model(torch.utils.data.default_collate([transform(sample)]))
    assert model.__space__ == "schaefer400_tians3" and reg is None
    assert cls.shape == (1, 1, 64) and patch.shape == (1, 450, 64)
    assert torch.allclose(cls[:, 0], patch.mean(dim=1), atol=1e-5)
    with pytest.raises(ValueError, match="model: expected a brain-jepa-hf Hub id or folder"):
        monkeypatch.delenv("BRAIN_JEPA_HF_MODEL")
        registry.create_model("brain_jepa_hf")


@pytest.mark.parametrize("target_tr", [None, 0.735])
def test_transform_is_our_feature_extractor_on_the_unnormalised_series(model_folder, target_tr):
    registry = pytest.importorskip("brainmarks.models.registry")
    rng = np.random.default_rng(1)
    raw = (rng.normal(0.0, 1.0, (200, 450)) * rng.uniform(1, 50, 450) + rng.uniform(100, 1000, 450)).astype(np.float32)
    bold, mean, std = normalise_per_roi(raw)  # what Brainmarks stores
    sample = {
        "bold": torch.from_numpy(bold),
        "mean": torch.from_numpy(mean),
        "std": torch.from_numpy(std),
        "tr": 1.0,
        "target": 1,
    }
    transform, _ = registry.create_model("brain_jepa_hf", model=str(model_folder), target_tr=target_tr)
    out = transform(dict(sample))
    assert set(out) == {"fmri_values", "tr", "target"}
    extractor = BrainJepaFeatureExtractor.from_pretrained(model_folder)
    extractor.target_tr = target_tr
    tr = 1.0 if target_tr else None
    undone = (sample["bold"] * sample["std"] + sample["mean"]).numpy()
    expected = extractor(undone, time_axis=0, tr=tr, return_tensors="pt")["fmri_values"][0]
    assert out["fmri_values"].shape == (1, 450, 16)
    assert torch.equal(out["fmri_values"], expected)  # identical tensors: nothing else happens
    from_raw = extractor(raw, time_axis=0, tr=tr, return_tensors="pt")["fmri_values"][0]
    assert torch.allclose(out["fmri_values"], from_raw, atol=1e-4)


def test_logistic_probe_in_brainmarks_protocol_on_a_local_shard(tmp_path, model_folder, cohort):
    pytest.importorskip("brainmarks.main_logistic")
    labelled = cohort.add_column("gender", ["M" if s else "F" for s in cohort["sex"]])
    splits = {role: to_brainmarks(split, tr=EXAMPLE_TR) for role, split in stratified_splits(labelled, "sex").items()}
    root = tmp_path / "hcpya"
    save_brainmarks_dataset(splits, root / "hcpya-rest1lr.schaefer400_tians3.arrow")
    env = {
        **os.environ,
        "HCPYA_ROOT": str(root),
        "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = [
        sys.executable,
        "-m",
        "brainmarks.main_logistic",
        "brain_jepa_hf",
        "patch",
        "hcpya_rest1lr_gender",
        "--overrides",
        "device=cpu",
        "num_workers=1",
        "batch_size=4",
        "amp=false",
        "n_trials=1",
        "cv_folds=2",
        "Cs=3",
        f"output_root={tmp_path / 'out'}",
        f"model_kwargs.model={model_folder}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (table_path,) = (tmp_path / "out").rglob("eval_table.csv")
    table = pd.read_csv(table_path)
    test_rows = table[table["split"] == "test"]
    assert len(test_rows) == 2  # the fixed split + 1 random-split trial
    assert test_rows["bacc"].between(0, 1).all() and test_rows["acc"].between(0, 1).all()
    assert set(table["model"]) == {"brain_jepa_hf"} and set(table["dataset"]) == {"hcpya_rest1lr_gender"}


def test_probe_writes_eval_results_that_parse_with_huggingface_hub(tmp_path, model_folder, cohort):
    folder = tmp_path / "cohort.arrow"
    save_brainmarks_dataset(
        {role: to_brainmarks(split, tr=EXAMPLE_TR) for role, split in stratified_splits(cohort, "sex").items()}, folder
    )
    results = run_sklearn_probe(
        model_folder,
        DataArguments(dataset=str(folder), label_column="sex"),
        output_dir=str(tmp_path / "probe"),
        seeds=2,
        cv=2,
        progress=False,
    )
    (path,) = (tmp_path / "probe" / ".eval_results").glob("*.yaml")
    assert path.name == "cohort.arrow-sex-linear_probe.yaml"
    entries = {entry.task_id: entry for entry in read_eval_results(tmp_path / "probe")}
    assert entries["sex-accuracy"].value == round(results["test"]["accuracy"]["mean"], 6)
    assert entries["sex-accuracy"].dataset_id == "cohort.arrow"
    assert "mean of 2 seed(s)" in entries["sex-f1"].notes
    assert yaml.safe_load(path.read_text())[0]["dataset"] == {"id": "cohort.arrow", "task_id": "sex-accuracy"}
    path.write_text(yaml.safe_dump([{"value": 0.5}]))
    with pytest.raises(
        ValueError, match=r"\.eval_results/cohort.arrow-sex-linear_probe.yaml: expected the Hub's eval results format"
    ):
        read_eval_results_file(path)
