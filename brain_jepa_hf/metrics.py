"""Evaluation metrics of the downstream tasks, as the paper reports them plus a few standard extras.

Regression: MSE, MAE, Pearson rho, R^2 (in the units the caller passes; `finetuning` passes original
units) and `normalized_mse` (MSE divided by the training-split variance of the target, i.e. the MSE of
standardised targets, the scale of the paper's MSE). Classification: accuracy, F1, balanced accuracy
and AUROC, as fractions in [0, 1] (tables show them in %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """How a metric is named, compared and shown: in results tables, model cards and the Hub's eval results."""

    group: str  # "regression" or "classification": the results-table block it heads a column of
    title: str  # column title of results tables
    card_name: str  # metric name in a model card's model-index
    hub_type: str  # metric type in model-index (the Hub's metric ids)
    greater_is_better: bool  # direction, for choosing the best checkpoint and the best seed
    percent: bool = False  # tables show 100 x the value
    eval_result: bool = True  # written to the Hub's .eval_results


# The one table of metric names, in results-table column order per group: the paper's columns (MSE,
# rho / ACC, F1) first, then the extras.
METRICS: dict[str, Metric] = {
    "mse": Metric("regression", "MSE", "MSE", "mse", False),
    "pearson_r": Metric("regression", "rho", "Pearson r", "pearsonr", True),
    "normalized_mse": Metric(
        "regression", "MSE (std. units)", "MSE (standardised units)", "mse", False, eval_result=False
    ),
    "mae": Metric("regression", "MAE", "MAE", "mae", False),
    "r2": Metric("regression", "R^2", "R^2", "r_squared", True),
    "accuracy": Metric("classification", "ACC (%)", "Accuracy", "accuracy", True, percent=True),
    "f1": Metric("classification", "F1 (%)", "F1", "f1", True, percent=True),
    "balanced_accuracy": Metric(
        "classification", "BACC (%)", "Balanced accuracy", "balanced_accuracy", True, percent=True
    ),
    "auroc": Metric("classification", "AUROC (%)", "AUROC", "roc_auc", True, percent=True),
}


def metric_group(problem_type: str) -> str:
    """ "regression" or "classification" (single- and multi-label)."""
    return "regression" if problem_type == "regression" else "classification"


def greater_is_better(metric: str) -> bool:
    """Direction of `metric` (with or without the Trainer's "eval_" prefix); losses are minimised."""
    metric = metric.removeprefix("eval_")
    return METRICS[metric].greater_is_better if metric in METRICS else not metric.endswith("loss")


def _as_1d_pair(predictions, targets, name: str = "predictions") -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=np.float64).reshape(len(predictions), -1)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
    if predictions.shape != targets.shape:
        raise ValueError(f"{name}: expected the shape of targets {targets.shape}, got {predictions.shape}")
    if predictions.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sample, got 0")
    return predictions, targets


def regression_metrics(predictions, targets, target_variance: float | None = None) -> dict[str, float]:
    """MSE, MAE, Pearson rho and R^2 of `predictions` against `targets` (both (N,) or (N, k); with k > 1
    outputs, rho and R^2 are averaged over outputs). With `target_variance` (the training-split variance)
    also `normalized_mse` = MSE / target_variance."""
    predictions, targets = _as_1d_pair(predictions, targets)
    error = predictions - targets
    mse = float(np.mean(error**2))
    result = {"mse": mse, "mae": float(np.mean(np.abs(error)))}
    rhos, r2s = [], []
    for column in range(targets.shape[1]):
        p, t = predictions[:, column], targets[:, column]
        p_centred, t_centred = p - p.mean(), t - t.mean()
        denominator = math.sqrt(float(np.sum(p_centred**2) * np.sum(t_centred**2)))
        rhos.append(float(np.sum(p_centred * t_centred) / denominator) if denominator > 0 else float("nan"))
        total = float(np.sum(t_centred**2))
        r2s.append(1.0 - float(np.sum((t - p) ** 2)) / total if total > 0 else float("nan"))
    result["pearson_r"] = float(np.mean(rhos))
    result["r2"] = float(np.mean(r2s))
    if target_variance is not None:
        result["normalized_mse"] = mse / float(target_variance)
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0


def _binary_auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve = Mann-Whitney U / (n_pos * n_neg), ties counted half (average ranks)."""
    from scipy.stats import rankdata

    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(logits, labels, num_labels: int | None = None) -> dict[str, float]:
    """Accuracy, F1, balanced accuracy and AUROC from logits (N, C) (or (N,) / (N, 1) binary scores)
    and integer labels (N,). F1 is that of class 1 for two classes (the paper's binary tasks) and the
    macro average otherwise; AUROC is one-vs-rest macro for more than two classes and NaN when the
    labels hold a single class."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        scores = logits.reshape(-1)
        logits = np.stack([-scores, scores], axis=1) / 2  # softmax of this = sigmoid(score)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits: expected shape ({labels.shape[0]}, num_classes), got {logits.shape}")
    if labels.shape[0] == 0:
        raise ValueError("labels: expected at least one sample, got 0")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(labels, np.round(labels))):
            raise ValueError(f"labels: expected integer class ids, got values like {labels[:3].tolist()}")
    labels = labels.astype(np.int64)
    num_classes = max(num_labels or 0, logits.shape[1])
    predictions = logits.argmax(axis=1)
    accuracy = float(np.mean(predictions == labels))
    f1s, recalls = [], []
    for cls in range(num_classes):
        tp = float(np.sum((predictions == cls) & (labels == cls)))
        fp = float(np.sum((predictions == cls) & (labels != cls)))
        fn = float(np.sum((predictions != cls) & (labels == cls)))
        f1s.append(_f1(tp, fp, fn))
        if np.any(labels == cls):
            recalls.append(tp / (tp + fn))
    probabilities = softmax(logits)
    if num_classes == 2:
        f1 = f1s[1]
        auroc = _binary_auroc(probabilities[:, 1], labels == 1)
    else:
        present = [c for c in range(num_classes) if np.any(labels == c)]
        f1 = float(np.mean([f1s[c] for c in present])) if present else 0.0
        aurocs = [_binary_auroc(probabilities[:, c], labels == c) for c in present]
        auroc = float(np.mean(aurocs)) if len(present) > 1 else float("nan")
    return {
        "accuracy": accuracy,
        "f1": float(f1),
        "balanced_accuracy": float(np.mean(recalls)),
        "auroc": float(auroc),
    }


def multilabel_metrics(logits, labels) -> dict[str, float]:
    """Subset accuracy, macro F1 and macro AUROC over labels, thresholding sigmoid(logit) at 0.5."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if logits.shape != labels.shape:
        raise ValueError(f"logits: expected the shape of labels {labels.shape}, got {logits.shape}")
    predictions = (logits > 0).astype(np.int64)
    f1s, aurocs, recalls = [], [], []
    for column in range(labels.shape[1]):
        p, t = predictions[:, column], labels[:, column]
        f1s.append(_f1(float(np.sum(p & t)), float(np.sum(p & (1 - t))), float(np.sum((1 - p) & t))))
        aurocs.append(_binary_auroc(logits[:, column], t == 1))
        recalls.append(float(np.mean(p[t == 1] == 1)) if np.any(t == 1) else float("nan"))
    return {
        "accuracy": float(np.mean(np.all(predictions == labels, axis=1))),
        "f1": float(np.mean(f1s)),
        "balanced_accuracy": float(np.nanmean(recalls)) if not np.all(np.isnan(recalls)) else float("nan"),
        "auroc": float(np.nanmean(aurocs)) if not np.all(np.isnan(aurocs)) else float("nan"),
    }


def task_metrics(
    problem_type: str,
    outputs,
    labels,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    num_labels: int | None = None,
) -> dict[str, float]:
    """Metrics of one task. For regression, `outputs` and `labels` are in standardised units and are
    mapped back to original units with `target_mean` / `target_std` before scoring."""
    if problem_type == "regression":
        outputs = np.asarray(outputs, dtype=np.float64) * target_std + target_mean
        labels = np.asarray(labels, dtype=np.float64) * target_std + target_mean
        return regression_metrics(outputs.reshape(labels.shape), labels, target_variance=target_std**2)
    if problem_type == "single_label_classification":
        return classification_metrics(outputs, labels, num_labels)
    if problem_type == "multi_label_classification":
        return multilabel_metrics(outputs, labels)
    raise ValueError(
        "problem_type: expected 'regression', 'single_label_classification' or 'multi_label_classification', "
        f"got {problem_type!r}"
    )


def make_compute_metrics(
    problem_type: str, target_mean: float = 0.0, target_std: float = 1.0, num_labels: int | None = None
):
    """A `compute_metrics(EvalPrediction) -> dict` for `transformers.Trainer`."""

    def compute_metrics(evaluation) -> dict[str, float]:
        logits = evaluation.predictions[0] if isinstance(evaluation.predictions, tuple) else evaluation.predictions
        return task_metrics(problem_type, logits, evaluation.label_ids, target_mean, target_std, num_labels)

    return compute_metrics


def headline_metrics(problem_type: str) -> tuple[str, ...]:
    """The paper's columns first (MSE, rho / ACC, F1), then the extras."""
    group = metric_group(problem_type)
    return tuple(name for name, metric in METRICS.items() if metric.group == group)


def default_metric_for_best_model(problem_type: str) -> str:
    return "mse" if problem_type == "regression" else "accuracy"


__all__ = [
    "METRICS",
    "Metric",
    "metric_group",
    "greater_is_better",
    "regression_metrics",
    "classification_metrics",
    "multilabel_metrics",
    "task_metrics",
    "make_compute_metrics",
    "headline_metrics",
    "default_metric_for_best_model",
]
