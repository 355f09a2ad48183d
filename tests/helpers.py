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
FINETUNE_FAST = [
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
    "4",
    "--use_cpu",
]


def small_dataset(num_subjects=20, num_rois=23, num_timepoints=60, seed=0, age=None):
    rng = np.random.default_rng(seed)
    fmri = rng.standard_normal((num_subjects, num_rois, num_timepoints)).astype(np.float32)
    labels = {
        "age": rng.uniform(45, 80, num_subjects) if age is None else age,
        "sex": rng.integers(0, 2, num_subjects),
    }
    return dataset_from_arrays([f"sub-{i}" for i in range(num_subjects)], fmri, labels)


def save_pretrained_folder(folder: Path, config) -> BrainJepaForPreTraining:
    model = BrainJepaForPreTraining(config)
    model.set_gradient(torch.randn(config.num_rois, config.gradient_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():  # make the context encoder differ from the target encoder
        for parameter in model.context_encoder.parameters():
            parameter.add_(0.5)
    model.save_pretrained(folder)
    BrainJepaFeatureExtractor(
        num_rois=config.num_rois, num_frames=config.num_frames, sampling_rate=1, scaling="zscore"
    ).save_pretrained(folder)
    return model


# Tiny model on the embedded example: 450 ROIs x 80 frames (Tp = 5), 4 subjects per batch.
PRETRAIN_FAST = [
    "--preset",
    "example-tiny",
    "--example_subjects",
    "12",
    "--per_device_batch_size",
    "4",
    "--num_frames",
    "80",
    "--logging_steps",
    "1",
]


def run_pretrain(output_dir, *extra, background=False):
    command = [
        sys.executable,
        "-m",
        "brain_jepa_hf",
        "pretrain",
        *PRETRAIN_FAST,
        "--output_dir",
        str(output_dir),
        *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_log(output_dir):
    return [json.loads(line) for line in (output_dir / "pretraining_log.jsonl").read_text().splitlines()]


# Runs `python -m brain_jepa_hf` (runpy, so it works wherever the command line lives) with two optional
# faults: an audit hook that SIGKILLs the process at the n-th audit event whose arguments match a pattern
# (a kill point that is reached for sure, e.g. the rename of a staging folder into place), and the time
# from after the heavy imports to exit, written to a file (so a "fails at once" check leaves out startup).
CLI_RUNNER = """
import os, re, runpy, signal, sys, time
kill_at = os.environ.pop("BRAIN_JEPA_TEST_KILL_AT", None)
if kill_at:
    event, rest = kill_at.split("|", 1)
    pattern, countdown = rest.rsplit("|", 1)
    pattern, countdown = re.compile(pattern), [int(countdown)]

    def hook(name, arguments):
        if name == event and pattern.search(" ".join(map(str, arguments))):
            countdown[0] -= 1
            if countdown[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
elapsed_file = os.environ.pop("BRAIN_JEPA_TEST_ELAPSED", None)
if elapsed_file:  # what the commands import, imported before the clock starts (modules may move: best effort)
    import importlib
    for module in ("torch", "transformers", "datasets", "accelerate", "sklearn.linear_model", "brain_jepa_hf",
                   "brain_jepa_cli", "brain_jepa_hf.embedding", "brain_jepa_hf.finetuning", "brain_jepa_hf.probing",
                   "brain_jepa_hf.analysis_report", "brain_jepa_hf.data"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
start = time.perf_counter()
sys.argv = ["brain_jepa_hf", *sys.argv[1:]]
try:
    runpy.run_module("brain_jepa_hf", run_name="__main__", alter_sys=True)
finally:
    if elapsed_file:
        with open(elapsed_file, "w") as handle:
            handle.write(str(time.perf_counter() - start))
"""


def brain_jepa_cli(
    *arguments,
    kill_at: tuple | None = None,
    file_size_limit: int | None = None,
    env: dict | None = None,
    elapsed_file: Path | None = None,
    cwd: Path | None = None,
    background: bool = False,
    timeout: float = 600,
):
    """`python -m brain_jepa_hf ARGUMENTS` in a subprocess (offline, one thread), as a user runs it.

    kill_at=(audit event, regex over its arguments[, n]) SIGKILLs the process at the n-th (default first)
    matching audit event, before the operation happens (e.g. ("os.rename", r"/\\.out\\.tmp-") : just before a
    staging folder is moved into place). file_size_limit sets RLIMIT_FSIZE in the child, so a write past that
    many bytes fails with EFBIG as a full disk fails with ENOSPC (SIGXFSZ ignored: the write raises instead)."""
    import resource
    import signal

    env = dict(env if env is not None else {**os.environ, "HF_HUB_OFFLINE": "1"})
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    if kill_at is not None:
        event, pattern, *nth = kill_at
        env["BRAIN_JEPA_TEST_KILL_AT"] = f"{event}|{pattern}|{nth[0] if nth else 1}"
    if elapsed_file is not None:
        env["BRAIN_JEPA_TEST_ELAPSED"] = str(elapsed_file)

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # kept across exec: the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    command = [sys.executable, "-c", CLI_RUNNER, *map(str, arguments)]
    preexec = limit_file_size if file_size_limit is not None else None
    if background:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, preexec_fn=preexec
        )
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, preexec_fn=preexec
    )


def listing(folder: Path) -> list[str]:
    """Every entry under `folder`, hidden ones included, as sorted relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*"))


def hub_env(hub, home: Path, token: str | None = "hf_loopback_test_token") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_XET": "1",
        }
    )
    if token:
        env["HF_TOKEN"] = token
    return env


def pretrain_tiny_run(output_dir: Path) -> Path:
    """A real 3-step in-process pretraining of the example-tiny preset (80 frames: 5 time patches, the
    masking minimum; about 10 s); returns its output folder."""
    from brain_jepa_cli.pretrain import parse_arguments
    from brain_jepa_hf.pretraining import pretrain

    settings = ["--preset", "example-tiny", "--example_subjects", "4", "--per_device_batch_size", "4"]
    settings += ["--num_frames", "80", "--logging_steps", "1", "--max_steps", "3", "--output_dir", str(output_dir)]
    pretrain(parse_arguments(settings))
    return output_dir


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(module: str, processes: int = 2) -> list[str]:
    """`accelerate launch` of `python -m <module>` as `processes` CPU processes of one machine (a gloo
    group; on a machine with an accelerator too, since one GPU cannot host two NCCL ranks)."""
    from brain_jepa_hf.runtime import has_accelerator

    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    return [*command, *(["--cpu"] if has_accelerator() else []), "-m", module]
