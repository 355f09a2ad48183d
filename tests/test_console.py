"""Quiet terminal output of the commands that train or embed (brain_jepa_hf.console): one progress bar at a time,
no accelerate INFO lines and no library bars inside it, the Trainer's metrics printed as numbers."""

import os
import re
import subprocess
import sys

import pytest

from brain_jepa_hf.console import format_metrics

from helpers import FINETUNE_FAST, run_pretrain


BAR = re.compile(r"\d+%\|")  # what tqdm draws


def bars(stderr: str) -> list[str]:
    """Every progress-bar frame written to stderr (frames are separated by carriage returns)."""
    return [frame.strip() for frame in re.split(r"[\r\n]", stderr) if BAR.search(frame)]


def run_cli(*arguments, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "brain_jepa_hf", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console") / "pretrain"
    result = run_pretrain(folder, "--max-steps", "3", "--save-steps", "2")
    return folder, result


def test_format_metrics_prints_numbers():
    line = format_metrics(
        {
            "loss": 0.75764,
            "grad_norm": 4.9113,
            "learning_rate": 1.9642e-06,
            "epoch": 0.5714,
            "step": 2,
            "total_flos": 123.0,
        }
    )
    assert line == "loss 0.7576, grad_norm 4.911, learning_rate 1.964e-06, epoch 0.5714, step 2"


def test_pretrain_shows_one_bar_and_no_accelerate_info(pretrained):
    _, result = pretrained
    assert "INFO accelerate" not in result.stderr  # five lines per checkpoint before
    frames = bars(result.stderr)
    assert frames and all(frame.startswith("pretraining:") for frame in frames), frames  # no "Writing model shards"
    assert "pretrained model saved to" in result.stdout


def test_finetune_one_bar_per_seed_and_numeric_metrics(pretrained, tmp_path):
    folder, _ = pretrained
    result = run_cli(
        "finetune",
        "--model-name-or-path",
        str(folder),
        "--example_subjects",
        "40",
        "--seeds",
        "2",
        "--output-dir",
        str(tmp_path / "ft"),
        *FINETUNE_FAST,
        cwd=tmp_path,
    )
    frames = bars(result.stderr)
    assert {frame.split(":")[0] for frame in frames} == {"seed 42", "seed 43"}, (
        frames
    )  # no seeds / eval / loading bars
    assert "'eval_loss'" not in result.stdout + result.stderr  # transformers 5 prints {'eval_loss': '0.8566', ...}
    evaluation = re.search(r"^seed 42, step 2: eval_loss (\S+), eval_mse (\S+),", result.stderr, re.MULTILINE)
    assert evaluation, result.stderr[-3000:]
    assert float(evaluation.group(1)) > 0 and float(evaluation.group(2)) > 0
    assert re.search(r"^seed 43, step 4: loss [0-9.e+-]+, grad_norm [0-9.e+-]+,", result.stderr, re.MULTILINE)
    assert "| Model / task |" in result.stdout


def test_embed_shows_only_its_bar(pretrained, tmp_path):
    folder, _ = pretrained
    result = run_cli("embed", "--model", str(folder), "--example-subjects", "8", "--output", "e.npy", cwd=tmp_path)
    frames = bars(result.stderr)
    assert frames and all(frame.startswith("embedding:") for frame in frames), frames  # no "Loading weights"
    assert result.stdout.strip().splitlines()[-1] == "e.npy"
