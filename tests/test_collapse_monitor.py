"""The pretraining collapse monitor: statistics, the absolute and relative rules, and a real run
that collapses (tiny model, LR 1e-2, EMA momentum 0.9) being flagged before the absolute
thresholds would see it."""

import json
import os
import subprocess
import sys

import pytest
import torch

from brain_jepa_hf.collapse_monitor import (
    CollapseMonitor,
    feature_statistics,
    sample_spread,
)


def test_statistics_tell_spread_features_from_collapsed_ones():
    generator = torch.Generator().manual_seed(0)
    spread = torch.randn(4, 100, 32, generator=generator)
    std, rank = feature_statistics(spread)
    assert std == pytest.approx(1.0, abs=0.05) and rank > 25
    one_direction = torch.randn(4, 100, 1, generator=generator) * torch.randn(32, generator=generator)
    std_1d, rank_1d = feature_statistics(one_direction)
    assert rank_1d < 1.5 and std_1d > 0.1  # still spread, but along a single direction
    same_for_everyone = torch.randn(1, 32, generator=generator).expand(8, 32)
    assert sample_spread(same_for_everyone) == pytest.approx(0.0, abs=1e-6)
    assert sample_spread(torch.randn(8, 32, generator=generator)) > 0.5


def test_relative_rule_uses_the_first_reading_and_survives_a_resume():
    monitor = CollapseMonitor(width=64)
    assert monitor.check(0.45, 16.0, 0.012) == []
    assert monitor.check(0.37, 15.0, 0.008) == []  # ordinary fluctuation (0.82x)
    reasons = monitor.check(0.20, 15.0, 0.011)
    assert reasons == ["target std 0.2000 < 0.5 x its first reading 0.4500"]
    reasons = monitor.check(0.40, 15.0, 0.005)
    assert reasons == [
        "pooled std across samples 0.0050 < 0.5 x its first reading 0.0120 (features losing subject content)"
    ]

    resumed = CollapseMonitor(width=64)
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    assert resumed.check(0.20, 15.0, 0.011) == ["target std 0.2000 < 0.5 x its first reading 0.4500"]

    absolute = CollapseMonitor(width=64, relative_fraction=0.0)
    absolute.check(0.45, 16.0)
    assert absolute.check(0.20, 15.0) == []
    assert absolute.check(0.01, 1.0) == ["target std 0.0100 < 0.0500", "effective rank 1.00 < 1.28"]
    with pytest.raises(ValueError, match=r"collapse_relative_fraction: expected a value in \[0, 1\), got 1.5"):
        CollapseMonitor(width=64, relative_fraction=1.5)


def test_a_collapsing_run_is_flagged_in_the_log(tmp_path):
    out = tmp_path / "collapsing"
    command = [
        sys.executable,
        "-m",
        "brain_jepa_hf",
        "pretrain",
        "--preset",
        "example-tiny",
        "--example_subjects",
        "24",
        "--per_device_batch_size",
        "4",
        "--num_frames",
        "80",
        "--logging_steps",
        "3",
        "--max_steps",
        "12",
        "--start_lr",
        "1e-3",
        "--learning_rate",
        "1e-2",
        "--final_lr",
        "1e-3",
        "--warmup_epochs",
        "0",
        "--ema_start",
        "0.9",
        "--ema_end",
        "0.9",
        "--output_dir",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (out / "pretraining_log.jsonl").read_text().splitlines()]
    assert not log[0]["collapse_warning"]
    assert min(record["loss"] for record in log) < 0.5 * log[0]["loss"]  # the loss looks great...
    assert log[-1]["target_std"] < 0.5 * log[0]["target_std"]  # ...because the targets shrink
    flagged = [record for record in log if record["collapse_warning"]]
    assert flagged and flagged[-1]["step"] == 12
    # The first warning comes while the absolute thresholds alone would still be silent.
    assert flagged[0]["target_std"] > 0.05 and flagged[0]["target_effective_rank"] > 0.02 * 64
    assert "representation collapse? at step" in result.stderr and "x its first reading" in result.stderr
