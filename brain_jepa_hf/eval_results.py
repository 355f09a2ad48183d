"""The Hub's `.eval_results/*.yaml` files (huggingface_hub `EvalResultEntry`) from fine-tuning and
probing results: one file per (dataset, label, mode), one entry per headline test metric (mean over
seeds; the std and seed count in `notes`). Written into the saved folder, uploaded with it by
`push_folder_to_hub`, and read back / validated with huggingface_hub's parser.

The entry schema has no metric field: the metric is part of `task_id` (`<label>-<metric>`, e.g.
`age-pearson_r`). The Hub shows an entry on a benchmark leaderboard only when `dataset_id` names a
Hub dataset; results on local folders keep the folder name (and "example" for the example cohort).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .metrics import METRICS, headline_metrics


EVAL_RESULTS_FOLDER = ".eval_results"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "dataset"


def default_dataset_id(dataset: str) -> str:
    """The dataset's Hub id when it is one (owner/name, not a local folder), else the folder name."""
    dataset = str(dataset)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", dataset) and not Path(dataset).exists():
        return dataset
    return Path(dataset).name or dataset


def eval_result_entries(
    results: dict, dataset_id: str | None = None, repo_id: str | None = None, mode: str | None = None
) -> list:
    """`EvalResultEntry` per headline test metric of a `results.json` dictionary (run_finetuning /
    run_sklearn_probe); the source is the model repository when `repo_id` is given."""
    from huggingface_hub import EvalResultEntry

    task = results["task"]
    mode = mode or results["model"].get("mode") or results["model"].get("engine") or "finetune"
    seeds = len(results["per_seed"])
    entries = []
    for metric in (name for name in headline_metrics(task["problem_type"]) if METRICS[name].eval_result):
        summary = results["test"].get(metric)
        if summary is None or summary["mean"] != summary["mean"]:  # absent or NaN
            continue
        source = {"source_url": f"https://huggingface.co/{repo_id}", "source_name": "brain-jepa-hf"} if repo_id else {}
        entries.append(
            EvalResultEntry(
                dataset_id=dataset_id or default_dataset_id(task["dataset"]),
                task_id=f"{task['label_column']}-{metric}",
                value=round(float(summary["mean"]), 6),
                notes=f"brain-jepa-hf {mode}; test split; mean of {seeds} seed(s), std {summary['std']:.6g}",
                **source,
            )
        )
    return entries


def write_eval_results(
    folder: str | Path,
    results: dict,
    dataset_id: str | None = None,
    repo_id: str | None = None,
    mode: str | None = None,
) -> Path | None:
    """Write `folder/.eval_results/<dataset>-<label>-<mode>.yaml`; returns its path (None without metrics)."""
    from huggingface_hub import eval_result_entries_to_yaml

    entries = eval_result_entries(results, dataset_id, repo_id, mode)
    if not entries:
        return None
    task = results["task"]
    mode = mode or results["model"].get("mode") or results["model"].get("engine") or "finetune"
    path = (
        Path(folder)
        / EVAL_RESULTS_FOLDER
        / f"{_slug(entries[0].dataset_id)}-{_slug(task['label_column'])}-{_slug(mode)}.yaml"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False))
    read_eval_results_file(path)  # what was written parses back
    return path


def read_eval_results_file(path: str | Path) -> list:
    """Parse one `.eval_results/*.yaml` file with huggingface_hub; ValueError naming the file otherwise."""
    from huggingface_hub import parse_eval_result_entries

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
        if not isinstance(data, list) or not data:
            raise ValueError(f"expected a non-empty list of entries, got {type(data).__name__}")
        return parse_eval_result_entries(data)
    except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as err:
        raise ValueError(f"{path.parent.name}/{path.name}: expected the Hub's eval results format ({err})") from None


def read_eval_results(folder: str | Path) -> list:
    """Every entry of `folder/.eval_results/*.yaml`, validated."""
    return [
        entry
        for path in sorted((Path(folder) / EVAL_RESULTS_FOLDER).glob("*.yaml"))
        for entry in read_eval_results_file(path)
    ]


__all__ = [
    "EVAL_RESULTS_FOLDER",
    "default_dataset_id",
    "eval_result_entries",
    "write_eval_results",
    "read_eval_results_file",
    "read_eval_results",
]
