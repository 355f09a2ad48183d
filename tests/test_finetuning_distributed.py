"""`brain-jepa finetune` under `accelerate launch --multi_gpu --num_processes 2`: on a machine without
GPUs the two processes form a gloo CPU group and train data-parallel, the test split is evaluated
once over both processes (every sample exactly once), and only the main process writes the output
and pushes it to the Hub."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from brain_jepa_hf.downstream_arguments import DataArguments
from brain_jepa_hf.downstream_data import load_splits
from brain_jepa_hf.example_data import example_gradient, load_example_dataset
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.gradients import save_gradient_csv
from brain_jepa_hf.metrics import task_metrics
from brain_jepa_hf.runtime import has_accelerator

from helpers import accelerate_launch, hub_env
from hub_server import LoopbackHub


pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")

# 24 subjects -> train 17, validation 2, test 5: an odd test split, so one process gets a padded shard.
SUBJECTS = 24
TRAIN_SIZE, TEST_SIZE = 17, 5
PER_DEVICE_BATCH = 4


def launch_finetune(tmp_path, output_dir, *extra, env=None):
    command = [
        *accelerate_launch("brain_jepa_cli.finetune"),
        "--preset",
        "tiny",
        "--num_frames",
        "16",
        "--sampling_rate",
        "4",
        "--dataset",
        str(tmp_path / "cohort"),
        "--gradient",
        str(tmp_path / "gradient.csv"),
        "--label_column",
        "age",
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "4",
        "--eval_strategy",
        "steps",
        "--save_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--save_steps",
        "2",
        "--logging_steps",
        "2",
        "--per_device_train_batch_size",
        str(PER_DEVICE_BATCH),
        "--per_device_eval_batch_size",
        "2",
        *extra,
    ]
    if has_accelerator():  # the Trainer's own switch, besides accelerate's --cpu
        command.append("--use_cpu")
    env = {**(env or {**os.environ, "HF_HUB_OFFLINE": "1"}), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def single_process_test_metrics(output_dir, dataset_folder) -> dict:
    """The saved model evaluated here, in one process, on the whole test split (centre clip)."""
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    extractor = BrainJepaFeatureExtractor.from_pretrained(output_dir)
    test = load_splits(DataArguments(dataset=str(dataset_folder), label_column="age"))["test"].with_format("numpy")
    with torch.no_grad():
        logits = model(**extractor(test["fmri"], time_axis=-1, return_tensors="pt")).logits.numpy()
    mean, std = model.config.regression_target_mean, model.config.regression_target_std
    labels = (np.asarray(test["age"], dtype=np.float64) - mean) / std
    return task_metrics("regression", logits, labels, mean, std, 1)


def test_two_process_finetune_evaluates_each_test_sample_once_and_writes_once(tmp_path):
    load_example_dataset(num_subjects=SUBJECTS).save_to_disk(str(tmp_path / "cohort"))
    save_gradient_csv(tmp_path / "gradient.csv", example_gradient())
    out = tmp_path / "runs" / "ft-age"

    with LoopbackHub(user="tester") as hub:
        result = launch_finetune(
            tmp_path,
            out,
            "--seeds",
            "2",
            "--push_to_hub",
            "--hub_model_id",
            "tester/bj-age",
            env=hub_env(hub, tmp_path / "hf-home"),
        )
        assert result.returncode == 0, result.stderr[-4000:]
        commits = [commit.summary for commit in hub.state.repos["tester/bj-age"].commits]
        pushed = hub.files("tester/bj-age")
    # Pushed once, by the main process, after the folder was complete.
    assert commits == ["initial commit", "Fine-tuned Brain-JEPA on age"]
    assert pushed["results.json"] == (out / "results.json").read_bytes()
    assert pushed["model.safetensors"] == (out / "model.safetensors").read_bytes()
    # The Hub's eval results file travels with the model, naming the repository as its source.
    eval_file = ".eval_results/cohort-age-finetune.yaml"
    assert pushed[eval_file] == (out / eval_file).read_bytes()
    assert "url: https://huggingface.co/tester/bj-age" in pushed[eval_file].decode()

    # One output folder, written by the main process only: no staging folders left, summary printed once.
    assert sorted(p.name for p in out.parent.iterdir()) == ["ft-age"]
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("results.json")] == [
        out.relative_to(tmp_path) / "results.json"
    ]
    assert result.stdout.count("| Model / task |") == 1
    saved = json.loads((out / "results.json").read_text())
    assert saved["task"]["num_samples"] == {"train": TRAIN_SIZE, "validation": 2, "test": TEST_SIZE}
    assert [r["seed"] for r in saved["per_seed"]] == [42, 43]
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-42", "seed-43"]
    assert not list(out.glob("seed-*/checkpoint-*"))

    # Data parallel over 2 processes: each step takes 2 x 4 samples, so an epoch of 17 is 3 steps.
    assert saved["training"]["num_processes"] == 2
    assert saved["training"]["learning_rate"] == pytest.approx(1e-3 * 2 * PER_DEVICE_BATCH / 256)
    steps_per_epoch = -(-TRAIN_SIZE // (2 * PER_DEVICE_BATCH))
    for record in saved["per_seed"]:
        assert record["train"] == {"global_step": 4, "epoch": pytest.approx(4 / steps_per_epoch)}
        # Predictions gathered from both processes: the padded duplicate is dropped, none is missing.
        assert record["num_test_predictions"] == TEST_SIZE

    # The test metrics are those of the whole split: the saved model evaluated in one process gives the
    # same numbers (so the second process's half came from an identical model and was counted once).
    selected = next(r for r in saved["per_seed"] if r["seed"] == saved["selected_seed"])
    reference = single_process_test_metrics(out, tmp_path / "cohort")
    for name in ("mse", "mae", "pearson_r", "r2", "normalized_mse"):
        assert selected["test"][name] == pytest.approx(reference[name], rel=1e-4, abs=1e-6), name
    assert saved["test"]["mse"]["mean"] == pytest.approx(np.mean([r["test"]["mse"] for r in saved["per_seed"]]))

    # Launching again into the finished folder fails with the reason and leaves the folder as it was.
    before = (out / "results.json").read_bytes()
    again = launch_finetune(tmp_path, out, "--seeds", "1")
    assert again.returncode != 0
    assert f"output_dir: {out} already exists" in again.stderr
    assert (out / "results.json").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["ft-age"]
