"""A pretraining run's log (`pretraining_log.jsonl`) read back, and drawn as training curves: loss, target
feature std, effective rank and learning rate per step, collapse-monitor warnings shaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from .figure_style import new_figure
from .run_folder import LOG_FILE


REQUIRED_LOG_FIELDS = ("step", "loss", "lr", "target_std", "target_effective_rank")


def training_log_path(run_dir_or_log, name: str = "run_dir_or_log") -> Path:
    """The log file of a run folder, or the file itself; FileNotFoundError naming what is missing."""
    path = Path(run_dir_or_log)
    if path.is_dir():
        path = path / LOG_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{name}: no {LOG_FILE} in {path.parent} (is it a `brain-jepa pretrain` output folder?)"
            )
    elif not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    return path


def read_training_log(run_dir_or_log) -> list[dict]:
    """Records of a run's `pretraining_log.jsonl` (a folder or the file), one per logged step, in
    step order. A resumed run re-logs the steps after its checkpoint: the last record of a step
    wins. An unfinished last line (a run killed mid-write) is skipped; any other bad line is an error."""
    path = training_log_path(run_dir_or_log)
    text = path.read_text()
    lines = text.split("\n")
    by_step: dict[int, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # no newline after it: cut off while being written
                continue
            raise ValueError(f"{path}: line {number} is not JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
        absent = [field for field in REQUIRED_LOG_FIELDS if field not in record]
        if absent:
            raise ValueError(f"{path}: line {number}: expected fields {list(REQUIRED_LOG_FIELDS)}, missing {absent}")
        by_step[int(record["step"])] = record
    if not by_step:
        raise ValueError(f"{path}: no records (empty log); pretraining writes one every logging_steps steps")
    return [by_step[step] for step in sorted(by_step)]


def _hidden_size(log_path: Path) -> int | None:
    config = log_path.parent / "config.json"
    try:
        return int(json.loads(config.read_text())["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot_training_curves(run_dir_or_log, title: str | None = None) -> Figure:
    """Pretraining curves from a run folder's `pretraining_log.jsonl` (or the file): loss, target
    feature std (and pooled std across samples), effective rank of the target features, learning
    rate; steps flagged by the collapse monitor are shaded in every panel."""
    path = training_log_path(run_dir_or_log)
    records = read_training_log(path)
    steps = np.array([r["step"] for r in records], dtype=float)

    def column(field):
        return np.array([np.nan if r.get(field) is None else float(r[field]) for r in records])

    marker = "o" if len(records) <= 40 else None
    style = {"marker": marker, "markersize": 3, "linewidth": 1.4}
    figure = new_figure(9.0, 6.2)
    (loss_axes, std_axes), (rank_axes, lr_axes) = figure.subplots(2, 2, sharex=True)
    loss_axes.plot(steps, column("loss"), color="#0072B2", **style)
    loss_axes.set_ylabel("loss (smooth L1)")
    loss_axes.set_title("Prediction loss (mean over the logging window)", fontsize="medium")
    stds = [column("target_std")]
    std_axes.plot(steps, stds[0], color="#009E73", label="across target tokens", **style)
    pooled = column("pooled_sample_std")
    if np.isfinite(pooled).any():
        stds.append(pooled)
        std_axes.plot(steps, pooled, color="#E69F00", linestyle="--", label="pooled, across subjects", **style)
        std_axes.legend(frameon=False, fontsize="small")
    finite = np.concatenate(stds)[np.isfinite(np.concatenate(stds))]
    if finite.size and finite.min() > 0:
        std_axes.set_yscale("log")  # the two stds differ by orders of magnitude; collapse shows as a plunge
        std_axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        std_axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        std_axes.yaxis.set_minor_formatter(NullFormatter())
    std_axes.set_ylabel("std per dimension")
    std_axes.set_title("Target feature std (falls to 0 on collapse)", fontsize="medium")
    rank_axes.plot(steps, column("target_effective_rank"), color="#CC79A7", **style)
    width = _hidden_size(path)
    rank_axes.set_ylabel("effective rank" + (f" (of {width} dims)" if width else ""))
    rank_axes.set_title("Target feature effective rank (falls to 1 on collapse)", fontsize="medium")
    lr_axes.plot(steps, column("lr"), color="#D55E00", **style)
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_title("Learning rate", fontsize="medium")
    lr_axes.yaxis.set_major_formatter(FormatStrFormatter("%.1e"))
    flagged = [r["step"] for r in records if r.get("collapse_warning")]
    for axes in (loss_axes, std_axes, rank_axes, lr_axes):
        axes.spines[["top", "right"]].set_visible(False)
        axes.grid(color="#e5e5e5", linewidth=0.6)
        for step in flagged:
            axes.axvspan(step - 0.5, step + 0.5, color="#D55E00", alpha=0.15, linewidth=0)
    for axes in (rank_axes, lr_axes):
        axes.set_xlabel("optimizer step")
    heading = title or f"Pretraining: {path.parent.name}"
    summary = f"{len(records)} logged steps, last step {int(steps[-1])}"
    if flagged:
        summary += f"; collapse warnings at {len(flagged)} steps (shaded)"
    figure.suptitle(f"{heading}\n{summary}", fontsize="large")
    return figure


__all__ = ["REQUIRED_LOG_FIELDS", "plot_training_curves", "read_training_log", "training_log_path"]
