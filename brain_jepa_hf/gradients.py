"""Connectivity gradients (the ROI coordinates behind brain gradient positioning) with BrainSpace.

Gradients are the diffusion-map embedding of a cosine-similarity affinity of a functional
connectivity (FC) matrix, as the original computed them; this module also builds group FC from ROI
time series, aligns gradients to a reference with Procrustes, and reads/writes the original CSV
layout (R rows x n_components columns, comma-separated, no header).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .atomic_io import write_atomic


DEFAULT_NUM_COMPONENTS = 30
GRADIENT_FILE = "gradient.csv"  # the atlas gradient inside a `build-dataset` folder


# Affinity kernels of brainspace's GradientMaps.
AFFINITY_KERNELS = ("cosine", "pearson", "spearman", "normalized_angle", "gaussian")


def _square_matrix(fc: Any, name: str = "fc") -> np.ndarray:
    fc = np.asarray(fc, dtype=np.float64)
    if fc.ndim != 2 or fc.shape[0] != fc.shape[1]:
        raise ValueError(f"{name}: expected a square (R, R) connectivity matrix, got shape {fc.shape}")
    if not np.isfinite(fc).all():
        bad = np.argwhere(~np.isfinite(fc))[0]
        raise ValueError(f"{name}: expected finite values, got NaN or Inf at row {bad[0]}, column {bad[1]}")
    if not np.allclose(fc, fc.T, atol=1e-6):
        raise ValueError(f"{name}: expected a symmetric matrix, got max |fc - fc.T| = {np.abs(fc - fc.T).max():.3g}")
    return fc


class GroupConnectivity:
    """Running group FC: `add` one (R, T) series at a time, `result()` the average correlation
    (averaged on Fisher z = arctanh(r) when `fisher_z`, then mapped back)."""

    def __init__(self, fisher_z: bool = True):
        self.fisher_z = fisher_z
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, series: Any, name: str | None = None) -> None:
        name = name or f"series[{self.count}]"
        item = np.asarray(series, dtype=np.float64)
        if item.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D series, got shape {item.shape}")
        if self.total is not None and item.shape[0] != self.total.shape[0]:
            raise ValueError(f"{name}: expected {self.total.shape[0]} ROIs like series[0], got {item.shape[0]}")
        if item.shape[1] < 3:
            raise ValueError(f"{name}: expected at least 3 time points, got {item.shape[1]}")
        if not np.isfinite(item).all():
            raise ValueError(f"{name}: expected finite values, got NaN or Inf")
        flat = np.flatnonzero(item.std(axis=1) == 0)
        if flat.size:
            raise ValueError(
                f"{name}: expected every ROI to vary over time, got {flat.size} constant ROI(s) "
                f"(indices {flat[:10].tolist()}); their correlation is undefined"
            )
        corr = np.corrcoef(item)
        if self.fisher_z:
            corr = np.arctanh(np.clip(corr, -1 + 1e-7, 1 - 1e-7))
        self.total = corr if self.total is None else self.total + corr
        self.count += 1

    def result(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("series: expected at least one series, got none")
        mean = self.total / self.count
        if self.fisher_z:
            mean = np.tanh(mean)
            np.fill_diagonal(mean, 1.0)
        return mean


def functional_connectivity(series: Iterable[Any], time_axis: int = -1, fisher_z: bool = True) -> np.ndarray:
    """
    Group FC: the average over subjects of each subject's Pearson correlation between ROIs.
    With `fisher_z` the average is taken on arctanh(r) and mapped back. Series are read one at a time.

    Args:
        series: iterable of 2-D series (or one 2-D series).
        time_axis: -1/1 for (ROI, time) series, 0/-2 for (time, ROI).
    """
    if time_axis not in (0, 1, -1, -2):
        raise ValueError(f"time_axis: expected 0/-2 (time x ROI) or 1/-1 (ROI x time), got {time_axis!r}")
    if isinstance(series, np.ndarray) and series.ndim == 2:
        series = [series]
    group = GroupConnectivity(fisher_z)
    for i, item in enumerate(series):
        item = np.asarray(item)
        group.add(item if time_axis in (1, -1) or item.ndim != 2 else item.T, f"series[{i}]")
    return group.result()


def compute_gradients(
    fc: Any,
    n_components: int = DEFAULT_NUM_COMPONENTS,
    kernel: str = "cosine",
    approach: str = "dm",
    sparsity: float = 0.9,
    random_state: int = 0,
    reference: Any = None,
) -> np.ndarray:
    """
    Connectivity gradients of an (R, R) FC matrix with `brainspace.gradient.GradientMaps`: affinity
    `kernel` (cosine similarity by default, keeping the top 10% of each row), embedding `approach`
    (diffusion maps by default). Returns an (R, n_components) float64 array; with `reference`
    (R, n_components) the result is Procrustes-aligned to it.
    """
    from brainspace.gradient import GradientMaps

    fc = _square_matrix(fc)
    if (
        isinstance(n_components, bool)
        or not isinstance(n_components, (int, np.integer))
        or not (1 <= n_components < fc.shape[0])
    ):
        raise ValueError(
            f"n_components: expected an integer in [1, {fc.shape[0] - 1}] for {fc.shape[0]} ROIs, got {n_components!r}"
        )
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity: expected a fraction in [0, 1), got {sparsity!r}")
    if sparsity > 0 and int(fc.shape[0] * (1 - sparsity)) < 1:
        raise ValueError(
            f"sparsity: {sparsity} keeps int({fc.shape[0]} * (1 - {sparsity})) = 0 entries of each affinity row "
            f"for {fc.shape[0]} ROIs; expected sparsity <= {1 - 1 / fc.shape[0]:.3g} (or 0 for no sparsification)"
        )
    if not (kernel is None or callable(kernel) or kernel in AFFINITY_KERNELS):
        raise ValueError(f"kernel: expected one of {AFFINITY_KERNELS}, None or a callable, got {kernel!r}")
    if isinstance(random_state, (int, np.integer)) and not 0 <= random_state < 2**32:
        raise ValueError(f"random_state: expected an integer in [0, 2**32 - 1], got {random_state!r}")
    maps = GradientMaps(n_components=int(n_components), approach=approach, kernel=kernel, random_state=random_state)
    maps.fit(fc, sparsity=sparsity)
    gradients = np.asarray(maps.gradients_, dtype=np.float64)
    if gradients.shape != (fc.shape[0], n_components):
        raise ValueError(
            f"fc: expected {n_components} gradients of {fc.shape[0]} ROIs, brainspace returned shape "
            f"{gradients.shape} (is the affinity graph disconnected? try a lower sparsity)"
        )
    if reference is not None:
        gradients = align_gradients(gradients, reference)
    return np.ascontiguousarray(gradients)  # brainspace returns a reversed (negative-stride) view


def gradients_from_timeseries(series: Iterable[Any], time_axis: int = -1, **kwargs) -> np.ndarray:
    """Gradients of the group FC of `series` (see `functional_connectivity` and `compute_gradients`)."""
    return compute_gradients(functional_connectivity(series, time_axis=time_axis), **kwargs)


def align_gradients(gradients: Any, reference: Any) -> np.ndarray:
    """Procrustes (rotation + reflection) alignment of (R, K) `gradients` onto (R, K) `reference`."""
    from brainspace.gradient.alignment import procrustes

    gradients = np.asarray(gradients, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if gradients.ndim != 2 or reference.shape != gradients.shape:
        raise ValueError(f"reference: expected the shape of gradients {gradients.shape}, got shape {reference.shape}")
    return np.ascontiguousarray(procrustes(gradients, reference))


def gradient_agreement(gradients: Any, reference: Any, num: int = 3) -> np.ndarray:
    """Pearson correlation of each of the first `num` gradients with the same column of `reference`."""
    gradients, reference = np.asarray(gradients), np.asarray(reference)
    return np.array([np.corrcoef(gradients[:, k], reference[:, k])[0, 1] for k in range(num)])


def save_gradient_csv(path: str | os.PathLike, gradients: Any) -> Path:
    """Writes (R, K) gradients in the original layout: R rows, K comma-separated columns, no header.
    The file appears whole or not at all."""
    gradients = np.asarray(gradients, dtype=np.float64)
    if gradients.ndim != 2 or not np.isfinite(gradients).all():
        raise ValueError(f"gradients: expected a finite 2-D (R, K) array, got shape {gradients.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda temporary: np.savetxt(temporary, gradients, delimiter=",", fmt="%.10g"))


def load_gradient_csv(path: str | os.PathLike, num_rois: int | None = None) -> np.ndarray:
    """Reads gradients in the original CSV layout (no header); checks the row count when `num_rois` is given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gradient file: {path} does not exist")
    if not path.read_text(errors="replace").strip():
        raise ValueError(
            f"gradient file {path}: expected comma-separated numbers (one row per ROI), got an empty file"
        )
    try:
        gradients = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"gradient file {path}: expected comma-separated numbers without a header ({err})") from None
    if not np.isfinite(gradients).all():
        raise ValueError(f"gradient file {path}: expected finite values, got NaN or Inf")
    if num_rois is not None and gradients.shape[0] != num_rois:
        raise ValueError(f"gradient file {path}: expected {num_rois} rows (one per ROI), got {gradients.shape[0]}")
    return gradients


def resolve_gradient(
    gradient: Any = None,
    dataset_folder: str | os.PathLike | None = None,
    feature_extractor: Any = None,
    example: Callable[[], Any] | None = None,
) -> np.ndarray | None:
    """The atlas gradient a run uses, the first found of: `gradient` (a CSV path or an (R, K) array), the
    `gradient.csv` of a `build-dataset` folder `dataset_folder`, the feature extractor's, and `example()`
    (the example cohort's, computed only when reached). None when there is none; check the result
    against the model with `check_gradient`."""
    if gradient is not None:
        if isinstance(gradient, (str, os.PathLike)):
            return load_gradient_csv(gradient)
        return np.asarray(gradient)
    if dataset_folder is not None and (Path(dataset_folder) / GRADIENT_FILE).is_file():
        return load_gradient_csv(Path(dataset_folder) / GRADIENT_FILE)
    if getattr(feature_extractor, "gradient", None) is not None:
        return np.asarray(feature_extractor.gradient)
    return None if example is None else np.asarray(example())


def check_gradient(
    gradient: Any,
    num_rois: int,
    gradient_dim: int | None = None,
    *,
    name: str = "gradient",
    columns: str = "gradient_dim",
    hint: str = "",
    dtype=np.float32,
) -> np.ndarray:
    """`gradient` as a `dtype` (num_rois, gradient_dim) array of finite values, or a one-line ValueError
    naming `name`, the expected and the given shape (`columns` says what the columns are; `hint` ends
    the message). `gradient_dim=None` accepts any number of columns."""
    array = np.asarray(gradient, dtype=dtype)
    wanted = "gradient_dim" if gradient_dim is None else gradient_dim
    if array.ndim != 2 or array.shape[0] != num_rois or gradient_dim not in (None, array.shape[1]):
        got = f"{array.shape[0]} x {array.shape[1]}" if array.ndim == 2 else f"shape {array.shape}"
        raise ValueError(f"{name}: expected {num_rois} rows x {wanted} columns (ROIs x {columns}), got {got}{hint}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    return array


def load_brainspace_group_fc(group: str = "main", scale: int = 400) -> np.ndarray:
    """A real Schaefer group FC matrix shipped with brainspace (`group` "main" or "holdout")."""
    from brainspace.datasets import load_group_fc

    if group not in ("main", "holdout"):
        raise ValueError(f"group: expected 'main' or 'holdout', got {group!r}")
    return load_group_fc("schaefer", scale=scale, group=group)


__all__ = [
    "DEFAULT_NUM_COMPONENTS",
    "GroupConnectivity",
    "functional_connectivity",
    "compute_gradients",
    "gradients_from_timeseries",
    "align_gradients",
    "gradient_agreement",
    "save_gradient_csv",
    "load_gradient_csv",
    "resolve_gradient",
    "check_gradient",
    "load_brainspace_group_fc",
]
