"""4-D NIfTI scans -> ROI time series with nilearn's `NiftiLabelsMasker`.

Several label atlases can be combined in a given order; Brain-JEPA's atlas is the 50 subcortical
ROIs (Tian Scale III) first, then the 400 cortical ROIs (Schaefer 2018), i.e.
`atlases=[tian_s3, schaefer_400]`. Output series are ROI-major (R, T) float32, the dataset layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic_io import atomic_output_dir, save_npy


NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$")


def _load_image(img: Any, name: str):
    import nibabel as nib

    if isinstance(img, (str, os.PathLike)):
        path = Path(img)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} does not exist")
        try:
            return nib.load(str(path))
        except Exception as err:  # nibabel raises several types for unreadable files
            raise ValueError(f"{name}: {path} is not a readable NIfTI image ({err})") from None
    if not hasattr(img, "affine") or not hasattr(img, "shape"):
        raise ValueError(f"{name}: expected a NIfTI path or nibabel image, got {type(img).__name__}")
    return img


def atlas_labels(atlas: Any) -> np.ndarray:
    """Sorted non-zero label values of a label atlas image (one ROI each)."""
    atlas = _load_image(atlas, "atlas")
    data = np.asarray(atlas.dataobj)
    if data.ndim != 3:
        raise ValueError(f"atlas: expected a 3-D label image, got shape {data.shape}")
    values = np.unique(data)
    if not np.allclose(values, np.round(values)):
        raise ValueError("atlas: expected integer labels, got non-integer values")
    return values[values != 0].astype(np.int64)


def read_confounds(confounds: Any, num_timepoints: int, columns: Sequence[str] | None = None) -> np.ndarray:
    """
    Confound regressors as a (T, C) array, from an array or a CSV/TSV file with a header row (as
    fMRIPrep writes them). Missing values (e.g. the first row of derivative columns) become 0.
    """
    import pandas as pd

    if isinstance(confounds, (str, os.PathLike)):
        path = Path(confounds)
        if not path.is_file():
            raise FileNotFoundError(f"confounds: {path} does not exist")
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        if columns is not None:
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise ValueError(
                    f"confound_columns: expected columns of {path.name} {list(table.columns)[:20]}, got unknown {missing}"
                )
            table = table[list(columns)]
        try:
            array = table.apply(pd.to_numeric).to_numpy(dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"confounds: expected numeric columns in {path} ({err})") from None
    else:
        array = np.asarray(confounds, dtype=np.float64)
        if array.ndim == 1:
            array = array[:, None]
    if array.ndim != 2 or array.shape[0] != num_timepoints:
        raise ValueError(f"confounds: expected {num_timepoints} rows (one per volume), got shape {array.shape}")
    if np.isinf(array).any():
        raise ValueError("confounds: expected finite values, got Inf")
    return np.nan_to_num(array, nan=0.0)


def parcellate(
    img: Any,
    atlases: Sequence[Any],
    confounds: Any = None,
    confound_columns: Sequence[str] | None = None,
    detrend: bool = False,
    standardize: bool = False,
    t_r: float | None = None,
    low_pass: float | None = None,
    high_pass: float | None = None,
) -> np.ndarray:
    """
    Mean signal of every labelled region of every atlas, atlases in the given order and labels in
    increasing order within each: returns float32 (R, T), R the total label count.

    Args:
        img: 4-D NIfTI path or image (x, y, z, t).
        atlases: label images (paths or images); resampled to the scan's grid (nearest neighbour).
        confounds: (T, C) array or CSV/TSV path of regressors to remove (`confound_columns` picks columns).
        detrend, standardize: remove linear trends / z-score each ROI (sample std), after extraction.
        t_r: repetition time in seconds; defaults to the scan header's 4th zoom. Needed for filtering.
        low_pass, high_pass: Butterworth cut-offs in Hz (None: no filter).
    """
    from nilearn.maskers import NiftiLabelsMasker

    img = _load_image(img, "img")
    if len(img.shape) != 4 or img.shape[3] < 2:
        raise ValueError(f"img: expected a 4-D image with at least 2 volumes, got shape {tuple(img.shape)}")
    if isinstance(atlases, (str, os.PathLike)) or hasattr(atlases, "affine"):
        atlases = [atlases]
    if len(atlases) == 0:
        raise ValueError("atlases: expected at least one label atlas, got none")
    num_timepoints = img.shape[3]
    if t_r is None:
        zooms = img.header.get_zooms()
        t_r = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    if (low_pass or high_pass) and t_r is None:
        raise ValueError(
            "t_r: expected the repetition time in seconds for filtering, got None (and none in the header)"
        )
    confound_array = None if confounds is None else read_confounds(confounds, num_timepoints, confound_columns)
    data = np.asarray(img.dataobj)
    if not np.isfinite(data).all():
        raise ValueError("img: expected finite voxel values, got NaN or Inf")
    blocks = []
    for k, atlas in enumerate(atlases):
        atlas_img = _load_image(atlas, f"atlases[{k}]")
        expected = atlas_labels(atlas_img)
        if expected.size == 0:
            raise ValueError(f"atlases[{k}]: expected at least one non-zero label, got an empty atlas")
        masker = NiftiLabelsMasker(
            labels_img=atlas_img,
            detrend=detrend,
            standardize="zscore_sample" if standardize else None,
            t_r=t_r,
            low_pass=low_pass,
            high_pass=high_pass,
            resampling_target="data",
            strategy="mean",
            keep_masked_labels=False,
        )
        try:
            signals = masker.fit_transform(img, confounds=confound_array)
        except ValueError as err:
            if "padlen" not in str(err):
                raise
            raise ValueError(
                f"low_pass, high_pass: the scan's {num_timepoints} volumes are too few for the Butterworth filter "
                "(scipy needs more than its padding); drop --low-pass/--high-pass or parcellate a longer scan"
            ) from None
        if signals.shape[1] != expected.size:
            raise ValueError(
                f"atlases[{k}]: expected {expected.size} ROI signals (labels {expected[:10].tolist()}...), got "
                f"{signals.shape[1]}; some labels vanish on the scan's grid (check the atlas' space and resolution)"
            )
        blocks.append(np.asarray(signals, dtype=np.float32).T)
    return np.concatenate(blocks, axis=0)


def subject_from_image(path: str | os.PathLike) -> str:
    """File name without `.nii`/`.nii.gz`."""
    return NIFTI_SUFFIX.sub("", Path(path).name)


def parcellate_files(
    images: Sequence[str | os.PathLike],
    atlases: Sequence[Any],
    output_dir: str | os.PathLike,
    confounds: Sequence[Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **kwargs,
) -> list[Path]:
    """
    Parcellates each image into `output_dir/<subject>.npy` (ROI-major (R, T) float32), ready for
    `build_dataset`. `confounds`, when given, has one entry per image. All files are written to a
    temporary folder beside `output_dir` and moved into place only if every image succeeds.
    """
    from tqdm.auto import tqdm

    images = [Path(p) for p in images]
    if not images:
        raise ValueError("images: expected at least one 4-D NIfTI image, got none")
    if confounds is not None and len(confounds) != len(images):
        raise ValueError(f"confounds: expected one entry per image ({len(images)}), got {len(confounds)}")
    subjects = [subject_from_image(p) for p in images]
    repeated = sorted({s for s in subjects if subjects.count(s) > 1})
    if repeated:
        raise ValueError(f"images: expected one image per subject name, got repeated {repeated}")
    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir, overwrite) as temp_dir:
        for i, (subject, image) in enumerate(
            tqdm(list(zip(subjects, images)), desc="parcellate", unit="scan", disable=not progress)
        ):
            series = parcellate(image, atlases, confounds=None if confounds is None else confounds[i], **kwargs)
            save_npy(temp_dir / f"{subject}.npy", series)  # raises on a full disk, unlike np.save
    return [output_dir / f"{s}.npy" for s in subjects]


__all__ = ["atlas_labels", "read_confounds", "parcellate", "subject_from_image", "parcellate_files"]
