"""A synthetic, deterministic example cohort of BOLD-like ROI time series with planted labels.

THE DATA ARE SYNTHETIC. They stand in for a real cohort so that pretraining, fine-tuning and the
tests have something learnable without downloading anything:

- 450 ROIs, 50 "subcortical" first, then 400 cortical, like the released model's atlas (Tian III +
  Schaefer 400). The cortical block's correlation is brainspace's real Schaefer-400 group FC
  (`main_group`); the 50 subcortical ROIs are synthetic mixtures of cortical ROIs (symmetric pairs
  r and r + 25 share their mixture), so the whole 450 x 450 group correlation is positive definite.
- Time courses: white noise convolved with the canonical double-gamma haemodynamic response at
  TR = 0.735 s (the UK Biobank TR), mixed by the Cholesky factor of the group correlation, plus 20%
  white measurement noise, on top of a per-subject, per-ROI baseline (like raw BOLD intensities).
- Labels planted in connectivity, not amplitude (each ROI keeps unit signal variance):
  `age` (years, uniform 45-80) scales a shared slow signal in 60 cortical ROIs, so their mutual
  correlation grows with age; `sex` (0/1) does the same for 20 subcortical and 40 cortical ROIs.
  Subject-level noise on both effects keeps the labels predictable but not perfectly.

Subject i depends only on (seed, i), so a larger cohort extends a smaller one.
"""

from __future__ import annotations

import functools
import math
from typing import Iterator

import numpy as np

from .arrow_data import dataset_from_arrays, fmri_features, write_dataset
from .gradients import compute_gradients, load_brainspace_group_fc, save_gradient_csv


EXAMPLE_TR = 0.735
EXAMPLE_NUM_ROIS = 450
EXAMPLE_NUM_SUBCORTICAL = 50
EXAMPLE_NUM_CORTICAL = 400
EXAMPLE_NUM_TIMEPOINTS = 490
EXAMPLE_NUM_SUBJECTS = 200
EXAMPLE_LABELS = ("age", "sex")
EXAMPLE_AGE_RANGE = (45.0, 80.0)
EXAMPLE_MEASUREMENT_NOISE = 0.2

_STRUCTURE_SEED = 20240926  # fixes the atlas-level structure; `seed` only changes subjects
_AGE_ROIS = np.r_[
    EXAMPLE_NUM_SUBCORTICAL + 170 : EXAMPLE_NUM_SUBCORTICAL + 200,
    EXAMPLE_NUM_SUBCORTICAL + 370 : EXAMPLE_NUM_SUBCORTICAL + 400,
]
_SEX_ROIS = np.r_[
    0:10,
    25:35,
    EXAMPLE_NUM_SUBCORTICAL + 40 : EXAMPLE_NUM_SUBCORTICAL + 60,
    EXAMPLE_NUM_SUBCORTICAL + 240 : EXAMPLE_NUM_SUBCORTICAL + 260,
]


def canonical_hrf(tr: float, duration: float = 32.0) -> np.ndarray:
    """SPM's canonical double-gamma haemodynamic response sampled every `tr` seconds, unit sum."""
    t = np.arange(0.0, duration, tr)
    response = t**5 * np.exp(-t) / math.gamma(6) - t**15 * np.exp(-t) / (6 * math.gamma(16))
    return response / response.sum()


@functools.lru_cache(maxsize=1)
def _group_structure() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(correlation 450x450, its Cholesky factor, age loadings, sex loadings, ROI baselines)."""

    rng = np.random.default_rng(_STRUCTURE_SEED)
    cortical = load_brainspace_group_fc("main", 400)
    half = EXAMPLE_NUM_SUBCORTICAL // 2
    weights = np.zeros((half, EXAMPLE_NUM_CORTICAL))
    for row in range(half):
        chosen = rng.choice(EXAMPLE_NUM_CORTICAL, size=8, replace=False)
        weights[row, chosen] = rng.uniform(0.5, 1.0, size=8)
    weights = np.vstack([weights, weights])  # left/right homologues share their cortical drivers
    weights /= np.sqrt(np.einsum("ij,jk,ik->i", weights, cortical, weights))[:, None]
    own_noise = 0.6
    sub_cortex = (1 - own_noise) ** 0.5 * weights @ cortical
    sub_sub = (1 - own_noise) * weights @ cortical @ weights.T
    np.fill_diagonal(sub_sub, 1.0)
    corr = np.block([[sub_sub, sub_cortex], [sub_cortex.T, cortical]])
    corr = (corr + corr.T) / 2
    cholesky = np.linalg.cholesky(corr)
    age_loadings = np.zeros(EXAMPLE_NUM_ROIS)
    age_loadings[_AGE_ROIS] = rng.uniform(0.6, 1.0, size=_AGE_ROIS.size)
    sex_loadings = np.zeros(EXAMPLE_NUM_ROIS)
    sex_loadings[_SEX_ROIS] = rng.uniform(0.6, 1.0, size=_SEX_ROIS.size)
    baselines = rng.uniform(400.0, 1200.0, size=EXAMPLE_NUM_ROIS)
    return corr, cholesky, age_loadings, sex_loadings, baselines


def example_group_connectivity() -> np.ndarray:
    """The 450 x 450 group correlation the example subjects are drawn around (a copy)."""
    return _group_structure()[0].copy()


@functools.lru_cache(maxsize=4)
def _example_gradient(n_components: int) -> np.ndarray:

    return compute_gradients(_group_structure()[0], n_components=n_components, random_state=0).astype(np.float32)


def example_gradient(n_components: int = 30) -> np.ndarray:
    """Brainspace gradients (cosine affinity, diffusion maps) of the example's group FC: (450, n_components)."""
    return _example_gradient(int(n_components)).copy()


@functools.lru_cache(maxsize=4)
def _hrf_filter(tr: float, num_timepoints: int) -> np.ndarray:
    """(num_timepoints + K, num_timepoints) matrix convolving white noise with the HRF (K taps, burn-in
    dropped), scaled so that the filtered noise keeps unit variance."""
    hrf = canonical_hrf(tr)
    taps = hrf.size
    matrix = np.zeros((num_timepoints + taps, num_timepoints), dtype=np.float64)
    columns = np.arange(num_timepoints)
    for k in range(taps):
        matrix[columns + taps - k, columns] = hrf[k]
    return (matrix / np.sqrt((hrf**2).sum())).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _float32_structure() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    _, cholesky, age_loadings, sex_loadings, baselines = _group_structure()
    return (
        cholesky.astype(np.float32),
        age_loadings[:, None].astype(np.float32),
        sex_loadings[:, None].astype(np.float32),
        baselines,
    )


def _subject(seed: int, index: int, num_timepoints: int, tr: float) -> dict:
    cholesky, age_loadings, sex_loadings, baselines = _float32_structure()
    hrf_filter = _hrf_filter(tr, num_timepoints)
    rng = np.random.default_rng([seed, index])
    age = float(rng.uniform(*EXAMPLE_AGE_RANGE))
    sex = int(rng.integers(0, 2))
    age_effect = 0.2 + 1.0 * (age - EXAMPLE_AGE_RANGE[0]) / (EXAMPLE_AGE_RANGE[1] - EXAMPLE_AGE_RANGE[0])
    age_effect = max(0.0, age_effect + 0.12 * rng.standard_normal())
    sex_effect = max(0.0, 0.35 + 0.55 * sex + 0.15 * rng.standard_normal())
    noise = rng.standard_normal((EXAMPLE_NUM_ROIS + 2, hrf_filter.shape[0]), dtype=np.float32)
    latent = noise @ hrf_filter  # slow BOLD-like time courses, unit variance
    signal = cholesky @ latent[:EXAMPLE_NUM_ROIS]
    signal += np.float32(age_effect) * age_loadings * latent[-2][None]
    signal += np.float32(sex_effect) * sex_loadings * latent[-1][None]
    variance = 1.0 + (age_effect * age_loadings[:, 0]) ** 2 + (sex_effect * sex_loadings[:, 0]) ** 2
    amplitude = baselines * 0.01 * rng.uniform(0.8, 1.2)  # ~1% BOLD fluctuations
    offset = baselines * (1.0 + 0.02 * rng.standard_normal(EXAMPLE_NUM_ROIS))
    signal *= (np.sqrt(1 - EXAMPLE_MEASUREMENT_NOISE) * amplitude / np.sqrt(variance)).astype(np.float32)[:, None]
    measurement = rng.standard_normal(signal.shape, dtype=np.float32)
    measurement *= (np.sqrt(EXAMPLE_MEASUREMENT_NOISE) * amplitude).astype(np.float32)[:, None]
    signal += measurement
    signal += offset.astype(np.float32)[:, None]
    return {"subject_id": f"sub-{index:05d}", "fmri": signal, "age": age, "sex": sex}


def iter_example_subjects(
    num_subjects: int = EXAMPLE_NUM_SUBJECTS,
    num_timepoints: int = EXAMPLE_NUM_TIMEPOINTS,
    seed: int = 0,
    tr: float = EXAMPLE_TR,
    start: int = 0,
) -> Iterator[dict]:
    """Yields example subjects `start` .. `start + num_subjects - 1` as dicts of the dataset's columns."""
    if isinstance(num_subjects, bool) or not isinstance(num_subjects, (int, np.integer)) or num_subjects < 1:
        raise ValueError(f"num_subjects: expected a positive integer, got {num_subjects!r}")
    if isinstance(num_timepoints, bool) or not isinstance(num_timepoints, (int, np.integer)) or num_timepoints < 3:
        raise ValueError(f"num_timepoints: expected an integer >= 3, got {num_timepoints!r}")
    if not (isinstance(tr, (int, float)) and tr > 0):
        raise ValueError(f"tr: expected a positive number of seconds, got {tr!r}")
    for index in range(start, start + num_subjects):
        yield _subject(int(seed), index, int(num_timepoints), float(tr))


def example_features(num_timepoints: int = EXAMPLE_NUM_TIMEPOINTS):
    """`datasets.Features` of the example dataset (the same columns `build_dataset` writes)."""
    from datasets import Value

    return fmri_features(EXAMPLE_NUM_ROIS, num_timepoints, {"age": Value("float32"), "sex": Value("int64")})


def load_example_dataset(
    num_subjects: int = EXAMPLE_NUM_SUBJECTS,
    num_timepoints: int = EXAMPLE_NUM_TIMEPOINTS,
    seed: int = 0,
    tr: float = EXAMPLE_TR,
    progress: bool = False,
):
    """
    The synthetic example cohort as an in-memory `datasets.Dataset` with columns `subject_id` (str),
    `fmri` (float32 (450, num_timepoints), ROI-major), `age` (float, years) and `sex` (int 0/1).
    Deterministic in (seed, subject index). See the module docstring for how it is generated.
    """
    from tqdm.auto import tqdm

    subjects = iter_example_subjects(num_subjects, num_timepoints, seed, tr)
    if progress:
        subjects = tqdm(subjects, total=num_subjects, desc="example subjects", unit="subject")
    fmri = np.empty((num_subjects, EXAMPLE_NUM_ROIS, num_timepoints), dtype=np.float32)
    columns = {"subject_id": [], "age": [], "sex": []}
    for i, subject in enumerate(subjects):
        fmri[i] = subject["fmri"]
        for key in columns:
            columns[key].append(subject[key])
    return dataset_from_arrays(
        columns["subject_id"],
        fmri,
        {"age": columns["age"], "sex": columns["sex"]},
        features=example_features(num_timepoints),
    )


def write_example_dataset(
    output_dir,
    num_subjects: int = EXAMPLE_NUM_SUBJECTS,
    num_timepoints: int = EXAMPLE_NUM_TIMEPOINTS,
    seed: int = 0,
    tr: float = EXAMPLE_TR,
    overwrite: bool = False,
    progress: bool = True,
):
    """Streams the example cohort to `output_dir` (`datasets.load_from_disk` format) with flat memory,
    with its `gradient.csv` (`example_gradient()`) beside the data."""
    from tqdm.auto import tqdm

    subjects = tqdm(
        iter_example_subjects(num_subjects, num_timepoints, seed, tr),
        total=num_subjects,
        desc="example subjects",
        unit="subject",
        disable=not progress,
    )

    return write_dataset(
        subjects,
        output_dir,
        example_features(num_timepoints),
        overwrite=overwrite,
        before_commit=lambda folder: save_gradient_csv(folder / "gradient.csv", example_gradient()),
    )


__all__ = [
    "EXAMPLE_TR",
    "EXAMPLE_NUM_ROIS",
    "EXAMPLE_NUM_SUBCORTICAL",
    "EXAMPLE_NUM_CORTICAL",
    "EXAMPLE_NUM_TIMEPOINTS",
    "EXAMPLE_NUM_SUBJECTS",
    "EXAMPLE_LABELS",
    "canonical_hrf",
    "example_group_connectivity",
    "example_gradient",
    "example_features",
    "iter_example_subjects",
    "load_example_dataset",
    "write_example_dataset",
]
