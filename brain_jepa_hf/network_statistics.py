"""Statistics over per-ROI and per-network values: ROIs pooled to networks (any per-ROI labels) and a
two-group permutation contrast per network with Benjamini-Hochberg FDR.

- `network_matrix`, `attention_received`: ROI-pooled attention (..., R, R) at the level of networks.
- `network_attribution`: per-ROI values (..., R) at the level of networks.
- `permutation_test`: a two-group contrast per network, label permutations, Benjamini-Hochberg FDR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


KEY_POOLINGS = ("mean", "sum")
STATISTICS = ("mean_difference", "t")


# ----------------------------------------------------------------------------------------------
# From ROIs to networks
# ----------------------------------------------------------------------------------------------


def _as_numpy(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(array)).sum())} NaN/Inf entries")
    return array


def network_membership(networks: Sequence[str], num_rois: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(R, K) 0/1 membership matrix and the K network names in order of first appearance."""
    if isinstance(networks, str) or not hasattr(networks, "__iter__"):
        raise ValueError(f"networks: expected a sequence of network names, one per ROI, got {type(networks).__name__}")
    labels = [str(label) for label in networks]
    if num_rois is not None and len(labels) != num_rois:
        raise ValueError(f"networks: expected {num_rois} labels (one per ROI), got {len(labels)}")
    order = list(dict.fromkeys(labels))
    index = {name: k for k, name in enumerate(order)}
    membership = np.zeros((len(labels), len(order)))
    membership[np.arange(len(labels)), [index[label] for label in labels]] = 1.0
    return membership, order


def network_matrix(roi_matrix, networks: Sequence[str], key_pooling: str = "mean") -> tuple[np.ndarray, list[str]]:
    """
    Network x network attention (..., K, K) from ROI-pooled attention (..., R, R) and one network name
    per ROI; networks in order of first appearance. Entry (a, b): mean over the query ROIs of network a
    of the attention they pay to the key ROIs of network b, averaged over those key ROIs
    (`key_pooling="mean"`, size-normalised: uniform attention gives 1/R everywhere, so a large network
    is not favoured for its size) or summed (`"sum"`: the share of attention, rows sum to 1).
    """
    if key_pooling not in KEY_POOLINGS:
        raise ValueError(f"key_pooling: expected one of {KEY_POOLINGS}, got {key_pooling!r}")
    matrix = _as_numpy(roi_matrix, "roi_matrix")
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"roi_matrix: expected shape (..., R, R), got {matrix.shape}")
    membership, order = network_membership(networks, matrix.shape[-1])
    sizes = membership.sum(axis=0)
    by_key = matrix @ membership  # (..., R, K): summed over key ROIs of each network
    if key_pooling == "mean":
        by_key = by_key / sizes
    result = np.swapaxes(np.swapaxes(by_key, -1, -2) @ membership, -1, -2) / sizes[:, None]
    return result, order


def attention_received(
    roi_matrix, networks: Sequence[str], relative_to_uniform: bool = False
) -> tuple[np.ndarray, list[str]]:
    """
    Attention received per network (..., K), size-normalised: for each key ROI, the attention it receives
    averaged over all query ROIs; then the mean over the ROIs of the network. Uniform attention gives 1/R
    for every network whatever its size (`relative_to_uniform=True` multiplies by R, so 1 = uniform).
    """
    matrix = _as_numpy(roi_matrix, "roi_matrix")
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"roi_matrix: expected shape (..., R, R), got {matrix.shape}")
    membership, order = network_membership(networks, matrix.shape[-1])
    per_roi = matrix.mean(axis=-2)
    result = per_roi @ membership / membership.sum(axis=0)
    return (result * matrix.shape[-1] if relative_to_uniform else result), order


def network_attribution(roi_values, networks: Sequence[str], reduction: str = "mean") -> tuple[np.ndarray, list[str]]:
    """Per-network attribution (..., K) from per-ROI values (..., R): the mean over the network's ROIs
    (size-normalised) or their sum (`reduction="sum"`: network totals add up to the ROI total)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    values = _as_numpy(roi_values, "roi_values")
    membership, order = network_membership(networks, values.shape[-1])
    total = values @ membership
    return (total / membership.sum(axis=0) if reduction == "mean" else total), order


# ----------------------------------------------------------------------------------------------
# Group labels and contrast
# ----------------------------------------------------------------------------------------------


def is_missing_label(label) -> bool:
    """None or NaN: a subject without a label."""
    return label is None or (isinstance(label, (float, np.floating)) and math.isnan(label))


def labels_of_rows(dataset, label_column: str, count: int) -> list:
    """The `label_column` values of the first `count` rows, or a one-line error when the column is absent
    or a row has none."""
    if label_column not in dataset.column_names:
        raise ValueError(
            f"label_column: expected one of the dataset's columns {dataset.column_names}, got {label_column!r}"
        )
    raw = dataset.select(range(count))[label_column]
    missing = sum(is_missing_label(label) for label in raw)
    if missing:
        raise ValueError(
            f"label_column: {missing} of the {count} analysed rows have no {label_column!r} value; "
            "drop them first (dataset.filter)"
        )
    return raw


def sorted_labels(labels) -> list:
    """Distinct labels, sorted (by their text when they do not compare)."""
    distinct = list(dict.fromkeys(np.asarray(labels, dtype=object).tolist()))
    try:
        return sorted(distinct)
    except TypeError:
        return sorted(distinct, key=str)


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), same order as the input."""
    p = np.asarray(p_values, dtype=np.float64)
    count = p.size
    order = np.argsort(p)
    scaled = p[order] * count / np.arange(1, count + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    result = np.empty(count)
    result[order] = np.minimum(adjusted, 1.0)
    return result


def _group_statistic(sums, squares, counts_a, total_sum, total_squares, total_count, statistic):
    """Statistic (second group minus first) from the first group's sums (P, K), given the totals."""
    counts_b = total_count - counts_a
    mean_a = sums / counts_a
    mean_b = (total_sum - sums) / counts_b
    difference = mean_b - mean_a
    if statistic == "mean_difference":
        return difference
    var_a = (squares - counts_a * mean_a**2) / (counts_a - 1)
    var_b = (total_squares - squares - counts_b * mean_b**2) / (counts_b - 1)
    spread = np.sqrt(np.maximum(var_a, 0) / counts_a + np.maximum(var_b, 0) / counts_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = difference / spread
    return np.where(spread > 0, t, 0.0)


def _two_groups(groups, subjects: int, order: Sequence | None) -> tuple[np.ndarray, list]:
    """(mask of the first group's subjects, [first, second]) of one label per subject, two classes."""
    labels = np.asarray(list(groups), dtype=object)
    if labels.shape != (subjects,):
        raise ValueError(f"groups: expected {subjects} labels (one per row of values), got {labels.size}")
    missing = sum(is_missing_label(label) for label in labels)
    if missing:
        raise ValueError(
            f"groups: expected a label for every subject, got {missing} missing (None/NaN); drop those subjects first"
        )
    distinct = sorted_labels(labels)
    if len(distinct) == 1:
        raise ValueError(
            f"groups: expected two groups to contrast, got one ({distinct[0]!r}) for all {subjects} subjects; "
            "the label needs subjects of two classes"
        )
    if len(distinct) > 2:
        raise ValueError(
            f"groups: expected exactly two groups, got {len(distinct)} ({distinct}); contrast two at a time: keep = "
            "np.isin(groups, [first, second]); permutation_test(values[keep], groups[keep]) (or merge classes)"
        )
    if order is not None:
        order = list(order)
        if len(order) != 2 or set(order) != set(distinct):
            raise ValueError(f"order: expected the two groups {distinct} in the order to compare, got {order}")
        distinct = order
    first = np.array([label == distinct[0] for label in labels])
    return first, distinct


def permutation_test(
    values,
    groups,
    n_permutations: int = 5000,
    seed: int = 0,
    statistic: str = "mean_difference",
    names: Sequence[str] | None = None,
    order: Sequence | None = None,
):
    """
    Two-group contrast per column of `values` (subjects x networks; a pandas DataFrame names the columns):
    the difference of group means (second minus first group; `statistic="t"`: Welch's t), two-sided
    p-values from `n_permutations` random relabellings of the subjects (fixed `seed`), with the +1
    correction p = (1 + #{|T_perm| >= |T_obs|}) / (1 + n_permutations), and Benjamini-Hochberg
    adjusted p-values over the columns (`p_fdr`). Groups are in sorted order unless `order=(first, second)`.
    Returns a pandas DataFrame indexed by network.
    """
    import pandas as pd

    if statistic not in STATISTICS:
        raise ValueError(f"statistic: expected one of {STATISTICS}, got {statistic!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations: expected a positive integer, got {n_permutations!r}")
    if isinstance(values, pd.DataFrame):
        names = [str(c) for c in values.columns] if names is None else names
        values = values.to_numpy()
    matrix = _as_numpy(values, "values")
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(f"values: expected shape (subjects, networks), got {matrix.shape}")
    subjects, columns = matrix.shape
    names = [str(k) for k in range(columns)] if names is None else [str(n) for n in names]
    if len(names) != columns:
        raise ValueError(f"names: expected {columns} names (one per column of values), got {len(names)}")
    first, distinct = _two_groups(groups, subjects, order)
    counts = {distinct[0]: int(first.sum()), distinct[1]: int((~first).sum())}
    if min(counts.values()) < 2:
        raise ValueError(f"groups: expected at least 2 subjects per group, got {counts}")

    squares = matrix**2
    total_sum, total_squares = matrix.sum(axis=0), squares.sum(axis=0)
    count_a = counts[distinct[0]]
    indicator = first.astype(np.float64)
    observed = _group_statistic(
        indicator @ matrix, indicator @ squares, count_a, total_sum, total_squares, subjects, statistic
    )
    rng = np.random.default_rng(seed)
    exceed = np.zeros(columns)
    tolerance = 1e-10 * np.maximum(np.abs(observed), 1e-300)
    block = max(1, int(4e6 // max(subjects, 1)))
    for start in range(0, n_permutations, block):
        size = min(block, n_permutations - start)
        shuffled = rng.permuted(np.tile(first, (size, 1)), axis=1).astype(np.float64)
        permuted = _group_statistic(
            shuffled @ matrix, shuffled @ squares, count_a, total_sum, total_squares, subjects, statistic
        )
        exceed += (np.abs(permuted) >= np.abs(observed) - tolerance).sum(axis=0)
    p_values = (1.0 + exceed) / (1.0 + n_permutations)
    mean_a = matrix[first].mean(axis=0)
    mean_b = matrix[~first].mean(axis=0)
    return pd.DataFrame(
        {
            "group_a": [distinct[0]] * columns,
            "group_b": [distinct[1]] * columns,
            "n_a": count_a,
            "n_b": subjects - count_a,
            "mean_a": mean_a,
            "mean_b": mean_b,
            "difference": mean_b - mean_a,
            "statistic": observed,
            "p_value": p_values,
            "p_fdr": benjamini_hochberg(p_values),
        },
        index=pd.Index(names, name="network"),
    )


__all__ = [
    "KEY_POOLINGS",
    "STATISTICS",
    "attention_received",
    "benjamini_hochberg",
    "is_missing_label",
    "network_attribution",
    "network_matrix",
    "network_membership",
    "permutation_test",
    "sorted_labels",
]
