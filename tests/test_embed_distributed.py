"""`brain-jepa embed` under `accelerate launch --multi_gpu --num_processes 2`: on a machine without GPUs
the processes form a gloo CPU group, share the chunks, and write the very file one process writes;
killed with SIGKILL mid-way, the same command finishes the run with the same bytes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch

from brain_jepa_hf import BrainJepaConfig, BrainJepaModel
from brain_jepa_hf.example_data import example_gradient, load_example_dataset
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

from helpers import accelerate_launch


pytestmark = pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")

SUBJECTS = 12


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny 450-ROI encoder over 160 frames (4500 tokens: slow enough to be killed mid-way) and the
    example cohort saved to disk."""
    root = tmp_path_factory.mktemp("embed-distributed")
    torch.manual_seed(0)
    BrainJepaModel(BrainJepaConfig.from_preset("tiny")).save_pretrained(root / "model")
    BrainJepaFeatureExtractor(
        num_rois=450, num_frames=160, sampling_rate=1, scaling="zscore", gradient=example_gradient()
    ).save_pretrained(root / "model")
    load_example_dataset(num_subjects=SUBJECTS, num_timepoints=170).save_to_disk(str(root / "cohort"))
    return root


def embed_command(root, output, processes: int) -> list[str]:
    arguments = [
        "--model",
        str(root / "model"),
        "--dataset",
        str(root / "cohort"),
        "--output",
        str(output),
        "--batch_size",
        "1",
        "--chunk_size",
        "1",
        "--dtype",
        "float32",
    ]
    return launch_command("embed", arguments, processes)


def launch_command(name: str, arguments: list[str], processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", f"brain_jepa_cli.{name}", *arguments]
    return [*accelerate_launch(f"brain_jepa_cli.{name}", processes), *arguments]


def environment() -> dict:
    # One thread per process everywhere: the float results then do not depend on the thread split.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def run(command) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def one_process(inputs):
    run(embed_command(inputs, inputs / "one.npy", 1))
    return (inputs / "one.npy").read_bytes()


def test_two_processes_write_the_bytes_one_process_writes(inputs, one_process, tmp_path):
    output = tmp_path / "two.npy"
    result = run(embed_command(inputs, output, 2))
    assert output.read_bytes() == one_process
    assert np.load(output).shape == (SUBJECTS, 64)
    lines = result.stdout.splitlines()  # printed once, by the main process: the summary, then the path
    assert lines[-1] == str(output) and len(lines) == 2
    assert lines[0].startswith(f"embedded {SUBJECTS} subjects on cpu in float32: ")
    assert not (tmp_path / "two.npy.partial").exists()


def test_sigkill_mid_way_then_rerun_completes_with_identical_bytes(inputs, one_process, tmp_path):
    output = tmp_path / "killed.npy"
    partial = tmp_path / "killed.npy.partial"
    process = subprocess.Popen(
        embed_command(inputs, output, 2),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment(),
        text=True,
    )
    deadline = time.time() + 300
    while len(list(partial.glob("chunk-*.npy"))) < 2:
        assert process.poll() is None, f"run ended before it could be killed: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no two finished chunks within 300 s"
        time.sleep(0.02)
    workers = psutil.Process(process.pid).children(recursive=True)  # torch elastic starts them in new sessions
    for victim in [process, *workers]:
        victim.send_signal(signal.SIGKILL)
    process.wait()
    psutil.wait_procs(workers, timeout=30)
    kept = sorted(p.name for p in partial.glob("chunk-*.npy"))
    assert not output.exists() and 2 <= len(kept) < SUBJECTS
    run(embed_command(inputs, output, 2))
    assert output.read_bytes() == one_process
    assert not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.npy"]  # no staging debris left


def test_two_process_sklearn_probe_shares_the_embedding_and_matches_one_process(inputs, tmp_path):
    def probe(processes: int):
        output = tmp_path / f"probe-{processes}"
        arguments = [
            "--model_name_or_path",
            str(inputs / "model"),
            "--dataset",
            str(inputs / "cohort"),
            "--label_column",
            "age",
            "--seeds",
            "2",
            "--cv_folds",
            "2",
            "--output_dir",
            str(output),
        ]
        result = run(launch_command("probe", arguments, processes))
        return json.loads((output / "results.json").read_text()), result.stdout

    one, _ = probe(1)
    two, printed = probe(2)
    assert two["per_seed"] == one["per_seed"] and two["test"] == one["test"]
    assert printed.count("| age |") == 1  # the table once, from the main process
    assert [p.name for p in (tmp_path / "probe-2" / ".eval_results").iterdir()] == ["cohort-age-linear_probe.yaml"]
