"""Datasets of ROI time series: build one from per-subject files (`build_dataset`), open the one a
command line names (`open_dataset`). The Arrow layout lives in `brain_jepa_hf.arrow_data` and the
file reading in `brain_jepa_hf.series_files`; model-ready
samples are `brain_jepa_hf.samples.FmriSamples`.

Every dataset here (and the example dataset) has the same columns: `subject_id` (string), `fmri`
(float32 (R, T), ROI-major, a fixed-shape `Array2D`) and one column per label. Pretraining and
fine-tuning therefore accept any of them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .arrow_data import (
    DEFAULT_WRITER_BATCH_SIZE,
    FMRI_COLUMN,
    SUBJECT_COLUMN,
    fmri_features,
    write_dataset,
)
from .brainmarks_data import load_dataset_folder
from .example_data import EXAMPLE_NUM_SUBJECTS, load_example_dataset
from .gradients import (
    GRADIENT_FILE,
    GroupConnectivity,
    check_gradient,
    compute_gradients,
    resolve_gradient,
    save_gradient_csv,
)
from .series_files import (
    check_label_values,
    label_features,
    list_series_files,
    read_labels,
    read_series,
)


RELEASED_NUM_ROIS = 450  # the released model's atlas (Tian S3 + Schaefer-400)


def open_dataset(
    dataset,
    split: str | None = None,
    example_subjects: int | None = None,
    progress: bool = False,
    fmri_column: str = FMRI_COLUMN,
):
    """The dataset a command line names: "example" (the embedded example cohort, its first
    `example_subjects` subjects, default all 200), a `save_to_disk` / `build-dataset` folder or a
    Brainmarks folder (converted to this package's layout). A
    DatasetDict gives its `split`, or all splits concatenated in order. A `datasets.Dataset` passes through."""
    from datasets import Dataset, DatasetDict, concatenate_datasets

    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, str) and dataset == "example":
        return load_example_dataset(num_subjects=example_subjects or EXAMPLE_NUM_SUBJECTS, progress=progress)
    if not isinstance(dataset, (str, os.PathLike)) or not Path(dataset).is_dir():
        raise FileNotFoundError(
            f"dataset: expected 'example' or a save_to_disk / build-dataset folder, got {str(dataset)!r} (no such folder)"
        )
    loaded = load_dataset_folder(dataset, fmri_column)
    if isinstance(loaded, DatasetDict):
        if split is not None:
            if split not in loaded:
                raise ValueError(f"split: expected one of {sorted(loaded)}, got {split!r}")
            return loaded[split]
        return concatenate_datasets([loaded[name] for name in loaded])
    if split is not None:
        raise ValueError(f"split: {dataset} holds a single dataset, not splits; got split={split!r}")
    return loaded


def build_dataset(
    input_dir: str | os.PathLike,
    labels: Any = None,
    subject_column: str = SUBJECT_COLUMN,
    output_dir: str | os.PathLike | None = None,
    label_columns: list[str] | None = None,
    time_axis: int = -1,
    num_rois: int | None = None,
    num_timepoints: int | None = None,
    subject_regex: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    writer_batch_size: int = DEFAULT_WRITER_BATCH_SIZE,
    gradient: Any = None,
    compute_gradient: bool = False,
    gradient_components: int = 30,
    gradient_sparsity: float = 0.9,
):
    """
    Builds an Arrow dataset from a folder of per-subject series files (.npy, .csv, .tsv) and an
    optional labels table, streaming subjects to disk so memory stays flat.

    Args:
        input_dir: folder with one file per subject; the subject ID is the file name without suffix
            (or the first group of `subject_regex`).
        labels: CSV/TSV path or DataFrame with a `subject_column`; every subject with a file must
            have a row (rows without a file are ignored). None builds an unlabelled dataset.
        output_dir: where to save (`datasets.load_from_disk` format); None keeps it in a temporary
            folder and only returns the dataset.
        label_columns: label columns to keep (default: all but the subject column).
        time_axis: -1 when rows of the files are ROIs, 0 when rows are time points.
        num_rois: expected ROI count (checked for every file when given).
        num_timepoints: crop every series to its first `num_timepoints` volumes (they must all be
            at least that long); without it, all files must have the same length.
        gradient: (R, gradient_components) array or gradient CSV to store as `gradient.csv` in the
            dataset folder (pretraining picks it up from there).
        compute_gradient: instead, compute `gradient.csv` from the group FC of the subjects being
            written (brainspace, `gradient_components` components, `gradient_sparsity`), in the same
            streaming pass.

    Returns:
        The dataset, memory-mapped from `output_dir`.
    """
    from datasets import load_from_disk

    if label_columns and labels is None:
        raise ValueError(
            f"label_columns: expected a labels table (--labels) to take {list(label_columns)} from, got none"
        )
    files = list_series_files(input_dir, subject_regex)
    table = _label_table(files, labels, subject_column, label_columns)
    if num_timepoints is not None and (isinstance(num_timepoints, bool) or int(num_timepoints) < 1):
        raise ValueError(f"num_timepoints: expected a positive integer, got {num_timepoints!r}")
    first = _first_series(files[0][1], time_axis, num_rois)
    rois, length = first.shape[0], num_timepoints or first.shape[1]
    features = fmri_features(rois, length, label_features(table) if table is not None else {})
    if gradient is not None and compute_gradient:
        raise ValueError("gradient, compute_gradient: expected at most one, got both")
    gradient = None if gradient is None else _given_gradient(gradient, rois, gradient_components)
    group = GroupConnectivity() if compute_gradient else None

    def add_gradient(folder: Path) -> None:
        values = (
            gradient
            if group is None
            else compute_gradients(group.result(), n_components=gradient_components, sparsity=gradient_sparsity)
        )
        if values is not None:
            save_gradient_csv(folder / GRADIENT_FILE, values)

    rows = _subject_rows(files, first, time_axis, length, num_timepoints is None, table, group, progress)
    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix="brain-jepa-dataset-")) / "dataset"
    path = write_dataset(
        rows,
        output_dir,
        features,
        overwrite=overwrite,
        writer_batch_size=writer_batch_size,
        before_commit=add_gradient,
    )
    return load_from_disk(str(path))


def _label_table(files: list[tuple[str, Path]], labels: Any, subject_column: str, label_columns: list[str] | None):
    """The labels of the subjects with a file (None without `labels`); every one of them needs a row."""
    if labels is None:
        return None
    table = read_labels(labels, subject_column, label_columns)
    missing = [subject for subject, _ in files if subject not in table.index]
    if missing:
        raise ValueError(
            f"labels: expected a row for every subject with a file, got {len(missing)} missing "
            f"({missing[:10]}{' ...' if len(missing) > 10 else ''}) in column {subject_column!r}"
        )
    check_label_values(table.loc[[subject for subject, _ in files]])
    return table


def _first_series(path: Path, time_axis: int, num_rois: int | None) -> np.ndarray:
    """The first file's series, whose ROI count the others must match; a transposed file is refused."""
    first = read_series(path, time_axis)
    rois = first.shape[0]
    if num_rois is not None and rois != num_rois:
        raise ValueError(
            f"series file {path}: expected {num_rois} ROIs (time_axis={time_axis}), got shape {first.shape}"
            + (
                f"; the other axis has {num_rois} entries: pass time_axis={0 if time_axis in (1, -1) else -1}"
                if first.shape[1] == num_rois
                else ""
            )
        )
    if num_rois is None and rois != RELEASED_NUM_ROIS and first.shape[1] == RELEASED_NUM_ROIS:
        raise ValueError(
            f"series file {path}: time_axis={time_axis} reads {rois} ROIs x {first.shape[1]} volumes, but the "
            f"other axis has {RELEASED_NUM_ROIS} entries, the released model's ROI count; pass "
            f"time_axis={0 if time_axis in (1, -1) else -1} (--time-axis) if the file is transposed, or "
            f"num_rois={rois} (--num-rois {rois}) if it really has {rois} ROIs"
        )
    return first


def _given_gradient(gradient: Any, rois: int, gradient_components: int) -> np.ndarray:
    """A gradient array or CSV to store with the dataset, checked against its ROIs and components."""
    gradient = resolve_gradient(gradient)
    columns = gradient.shape[1] if gradient.ndim == 2 else None
    hint = (
        f"; pass gradient_components={columns} (--gradient-components) if the model is built for that many"
        if gradient.ndim == 2 and gradient.shape[0] == rois and columns != gradient_components
        else ""
    )
    return check_gradient(
        gradient,
        rois,
        gradient_components,
        columns="gradient_components, the model's gradient_dim",
        hint=hint,
        dtype=np.float64,
    )


def _subject_rows(
    files: list[tuple[str, Path]],
    first: np.ndarray,
    time_axis: int,
    length: int,
    same_length: bool,
    table,
    group: GroupConnectivity | None,
    progress: bool,
) -> Iterator[dict]:
    """One dataset row per file, its series checked against the first file's and cropped to `length`."""
    from tqdm.auto import tqdm

    for subject, path in tqdm(files, desc="build dataset", unit="subject", disable=not progress):
        series = first if path == files[0][1] else read_series(path, time_axis)
        _check_like_first(path, series, files[0][1].name, first.shape, time_axis, length, same_length)
        row = {SUBJECT_COLUMN: subject, FMRI_COLUMN: series[:, :length]}
        if group is not None:
            group.add(row[FMRI_COLUMN], f"series file {path}")
        if table is not None:
            for name in table.columns:
                row[name] = table.at[subject, name]
        yield row


def _check_like_first(
    path: Path, series: np.ndarray, first_name: str, first_shape: tuple, time_axis: int, length: int, same_length: bool
) -> None:
    """A series with the first file's ROIs and (unless cropping to `length`) its number of volumes."""
    rois = first_shape[0]
    if series.shape[0] != rois:
        hint = (
            f"; one of the two files is transposed (time_axis={time_axis} reads rows as "
            f"{'ROIs' if time_axis in (1, -1) else 'volumes'}): save them alike, and pass "
            f"num_rois=<R> (--num-rois) so every file is checked against the atlas"
        )
        raise ValueError(
            f"series file {path}: expected {rois} ROIs like the first file {first_name} (shape "
            f"{first_shape}), got shape {series.shape}"
            + (hint if series.shape[1] == rois else "; pass num_rois=<R> (--num-rois) to check every file")
        )
    if same_length and series.shape[1] != length:
        raise ValueError(
            f"series file {path}: expected {length} time points like {first_name}, got {series.shape[1]}; "
            f"pass num_timepoints=<n> to crop every series to its first n volumes"
        )
    if series.shape[1] < length:
        raise ValueError(
            f"series file {path}: expected at least num_timepoints={length} volumes, got {series.shape[1]}"
        )


__all__ = ["open_dataset", "build_dataset"]
