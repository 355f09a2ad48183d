"""Results of fine-tuning and probing runs: the mean (std) over seeds, the paper-layout table, the
`results.json` / `results.md` files and the console summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .metrics import METRICS, headline_metrics, metric_group


RESULTS_JSON = "results.json"
RESULTS_MARKDOWN = "results.md"


def summarise(per_seed: list[dict], split: str = "test") -> dict:
    """{metric: {"mean", "std"}} over seeds (std with ddof=1 when several seeds, 0 for one)."""
    names = sorted({name for result in per_seed for name in result[split]})
    summary = {}
    for name in names:
        values = np.array([result[split][name] for result in per_seed if name in result[split]], dtype=np.float64)
        summary[name] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        }
    return summary


def format_metric(name: str, mean: float, std: float) -> str:
    """ "mean (std)", in % for accuracy-type metrics."""
    if name in METRICS and METRICS[name].percent:
        return f"{100 * mean:.2f} ({100 * std:.2f})"
    return f"{mean:.3f} ({std:.3f})"


def results_table(rows: list[tuple[str, str, dict]]) -> str:
    """Markdown table in the paper's layout: one row per (model, task), mean (std) over seeds; the
    paper's columns (MSE, rho / ACC, F1) first, then the extra metrics."""
    lines = []
    by_group: dict[str, list] = {}
    for name, problem_type, summary in rows:
        by_group.setdefault(metric_group(problem_type), []).append((name, summary))
    for group, entries in by_group.items():
        columns = headline_metrics("regression" if group == "regression" else "single_label_classification")
        lines.append("| Model / task | " + " | ".join(METRICS[c].title for c in columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for name, summary in entries:
            cells = [
                format_metric(c, summary[c]["mean"], summary[c]["std"]) if c in summary else "n/a" for c in columns
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def task_table(results: dict, name: str | None = None) -> str:
    """`results_table` of one run's test results; the row is named `name` (default: the label column)."""
    task = results["task"]
    return results_table([(name or task["label_column"], task["problem_type"], results["test"])])


def write_results(folder: str | Path, results: dict, name: str) -> None:
    """`folder/results.json` (everything) and `folder/results.md` (the test table, row `name`)."""
    folder = Path(folder)
    (folder / RESULTS_JSON).write_text(json.dumps(results, indent=2))
    (folder / RESULTS_MARKDOWN).write_text(
        f"Test results over {len(results['per_seed'])} seed(s), mean (std); metrics in original units.\n\n"
        f"{task_table(results, name)}"
    )


def print_summary(results: dict, output_dir) -> None:
    """The test table on stdout; where the results went on stderr."""
    print(task_table(results))
    if output_dir:
        print(f"results written to {output_dir}/{RESULTS_JSON} and {RESULTS_MARKDOWN}", file=sys.stderr)


__all__ = [
    "RESULTS_JSON",
    "RESULTS_MARKDOWN",
    "summarise",
    "format_metric",
    "results_table",
    "task_table",
    "write_results",
    "print_summary",
]
