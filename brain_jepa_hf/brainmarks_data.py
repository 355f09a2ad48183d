"""Brainmarks' Arrow layout of fMRI datasets, read and written, so cohorts move between the two suites.

Brainmarks (PyPI `brainmarks`) stores one row per scan with `bold` (T, D) time-major and z-scored per
ROI over time, `mean` (1, D) and `std` (1, D) (the per-ROI statistics that undo it: bold * std + mean),
`tr` (seconds) and any metadata / target columns; a dataset is a folder `<name>.<space>.arrow` with one
sub-folder per split (`train`, `validation`, `test`) of `*.arrow` shards (`DatasetDict.save_to_disk`).
This package's layout is `fmri` (R, T) ROI-major float32 plus label columns (see `data.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic_io import atomic_output_dir


BRAINMARKS_COLUMNS = ("bold", "mean", "std", "tr")
SPLITS = ("train", "validation", "test")
# Brainmarks' ROI spaces by their number of ROIs (its `readers.DATA_DIMS`). 450 is the released
# Brain-JEPA layout: Tian S3 subcortex first, then Schaefer 400 in 17-network order.
SPACES_BY_NUM_ROIS = {400: "schaefer400", 424: "a424", 450: "schaefer400_tians3", 457: "schaefer400_tians3_buckner7"}
STD_EPSILON = 1e-6  # ROIs whose temporal std is at most this are stored as zeros (mean and std too)


def space_for_num_rois(num_rois: int) -> str:
    """Brainmarks' space name for series with `num_rois` ROIs."""
    if num_rois not in SPACES_BY_NUM_ROIS:
        raise ValueError(
            f"num_rois: expected one of Brainmarks' ROI spaces {SPACES_BY_NUM_ROIS}, got {num_rois}; pass space=... explicitly"
        )
    return SPACES_BY_NUM_ROIS[num_rois]


def is_brainmarks_layout(dataset) -> bool:
    """Whether a Dataset (or every split of a DatasetDict) has Brainmarks' `bold`, `mean`, `std` columns."""
    splits = list(dataset.values()) if isinstance(dataset, dict) else [dataset]  # a DatasetDict is a dict
    return all({"bold", "mean", "std"} <= set(split.column_names) for split in splits)


def normalise_per_roi(series: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, D) series -> (bold, mean (1, D), std (1, D)): each ROI z-scored over time, the convention of
    Brainmarks' data; a constant ROI (std <= 1e-6) becomes zeros, with zero mean and std."""
    series = np.asarray(series, dtype=np.float32)
    mean = series.mean(axis=0, keepdims=True)
    std = series.std(axis=0, keepdims=True)
    valid = std > STD_EPSILON
    bold = (series - mean) / np.maximum(std, STD_EPSILON) * valid
    return bold, mean * valid, std * valid


def unnormalise(bold, mean, std) -> np.ndarray:
    """The raw (T, D) float32 series of a Brainmarks sample: bold * std + mean."""
    return np.asarray(bold, dtype=np.float32) * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)


def to_brainmarks(
    dataset,
    tr: float | None = None,
    fmri_column: str = "fmri",
    tr_column: str | None = None,
    bold_dtype: str = "float16",
    batch_size: int = 16,
):
    """This package's layout (`fmri` (R, T)) -> Brainmarks' (`bold` (T, R) z-scored per ROI, `mean`,
    `std`, `tr`); other columns are kept. The TR comes from `tr_column` (per row) or `tr` (seconds)."""
    from datasets import Array2D, Features, Value

    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    if (tr is None) == (tr_column is None):
        raise ValueError(
            f"tr, tr_column: expected exactly one (a TR in seconds, or a column holding it), got tr={tr!r}, tr_column={tr_column!r}"
        )
    if tr is not None and not (isinstance(tr, (int, float)) and tr > 0):
        raise ValueError(f"tr: expected a positive number of seconds, got {tr!r}")
    if tr_column is not None and tr_column not in dataset.column_names:
        raise ValueError(f"tr_column: expected a column {tr_column!r}, got columns {dataset.column_names}")
    if bold_dtype not in ("float16", "float32"):
        raise ValueError(f"bold_dtype: expected 'float16' (Brainmarks' own) or 'float32', got {bold_dtype!r}")
    num_rois = int(np.shape(dataset.with_format("numpy", columns=[fmri_column])[0][fmri_column])[0])
    kept = {name: feature for name, feature in dataset.features.items() if name not in (fmri_column, "tr")}
    features = Features(
        {
            **kept,
            "tr": Value("float32"),
            "bold": Array2D(shape=(None, num_rois), dtype=bold_dtype),
            "mean": Array2D(shape=(1, num_rois), dtype="float32"),
            "std": Array2D(shape=(1, num_rois), dtype="float32"),
        }
    )

    def convert(batch):
        out = {"bold": [], "mean": [], "std": [], "tr": []}
        trs = batch[tr_column] if tr_column is not None else [tr] * len(batch[fmri_column])
        for series, row_tr in zip(batch[fmri_column], trs):
            series = np.asarray(series, dtype=np.float32)
            if series.ndim != 2 or series.shape[0] != num_rois:
                raise ValueError(
                    f"{fmri_column}: expected (ROI, time) series with {num_rois} ROIs, got shape {series.shape}"
                )
            bold, mean, std = normalise_per_roi(series.T)
            out["bold"].append(bold.astype(bold_dtype))
            out["mean"].append(mean)
            out["std"].append(std)
            out["tr"].append(float(row_tr))
        return out

    removed = [fmri_column] + (["tr"] if "tr" in dataset.column_names and tr_column != "tr" else [])
    return (
        dataset.with_format(
            "numpy", columns=[fmri_column] + ([tr_column] if tr_column else []), output_all_columns=True
        )
        .map(
            convert,
            batched=True,
            batch_size=batch_size,
            remove_columns=removed,
            features=features,
            desc="to Brainmarks layout",
        )
        .with_format(None)
    )


def from_brainmarks(dataset, fmri_column: str = "fmri", batch_size: int = 16):
    """Brainmarks' layout -> this package's: `fmri` (R, T) float32 = (bold * std + mean) transposed; `tr`
    and the other columns are kept. Fixed-length series become an `Array2D`, ragged ones nested lists."""
    from datasets import Array2D, Features, List, Value

    if not is_brainmarks_layout(dataset):
        raise ValueError(
            f"dataset: expected Brainmarks' columns 'bold', 'mean', 'std', got columns {dataset.column_names}"
        )
    bold_shape = getattr(dataset.features["bold"], "shape", None)
    if bold_shape is None or len(bold_shape) != 2 or bold_shape[1] is None:
        raise ValueError(f"bold: expected an Array2D of shape (time, ROI), got feature {dataset.features['bold']}")
    num_rois = int(bold_shape[1])
    lengths = None if bold_shape[0] is not None else _series_lengths(dataset)
    if bold_shape[0] is not None:
        fmri_feature = Array2D(shape=(num_rois, int(bold_shape[0])), dtype="float32")
    elif len(set(lengths)) == 1:
        fmri_feature = Array2D(shape=(num_rois, lengths[0]), dtype="float32")
    else:
        fmri_feature = List(List(Value("float32")))
    kept = {name: feature for name, feature in dataset.features.items() if name not in ("bold", "mean", "std")}
    features = Features({**kept, fmri_column: fmri_feature})

    def convert(batch):
        return {
            fmri_column: [
                np.ascontiguousarray(unnormalise(b, m, s).T)
                for b, m, s in zip(batch["bold"], batch["mean"], batch["std"])
            ]
        }

    return (
        dataset.with_format("numpy", columns=["bold", "mean", "std"], output_all_columns=True)
        .map(
            convert,
            batched=True,
            batch_size=batch_size,
            remove_columns=["bold", "mean", "std"],
            features=features,
            desc="from Brainmarks layout",
        )
        .with_format(None)
    )


def _series_lengths(dataset) -> list[int]:
    """Time points of each row's `bold`, read from the Arrow list offsets (no values decoded)."""
    column = dataset.data.column("bold")
    lengths = []
    for chunk in column.chunks:
        storage = getattr(chunk, "storage", chunk)
        offsets = np.asarray(storage.offsets)
        lengths.extend((offsets[1:] - offsets[:-1]).tolist())
    return [int(n) for n in lengths]


def save_brainmarks_dataset(splits, folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write {split: Dataset in Brainmarks' layout} as Brainmarks stores it: `folder/<split>/*.arrow`
    (`DatasetDict.save_to_disk`), atomically. Name the folder `<name>.<space>.arrow` for Brainmarks'
    loaders (e.g. `hcpya-rest1lr.schaefer400_tians3.arrow`)."""
    from datasets import DatasetDict

    splits = DatasetDict(dict(splits))
    for name, split in splits.items():
        if not is_brainmarks_layout(split):
            raise ValueError(
                f"splits[{name!r}]: expected Brainmarks' columns 'bold', 'mean', 'std', 'tr'; convert with to_brainmarks first"
            )
    with atomic_output_dir(folder, overwrite=overwrite) as staging:
        splits.save_to_disk(str(staging))
    return Path(folder)


def load_brainmarks_dataset(folder: str | os.PathLike):
    """A Brainmarks dataset folder as a DatasetDict, still in Brainmarks' layout: a `save_to_disk`
    folder, or split sub-folders of bare `*.arrow` shards (what Brainmarks' own loader reads)."""
    from datasets import DatasetDict, load_from_disk

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset: no such folder {str(folder)!r}")
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        dataset = load_from_disk(str(folder))
    else:
        splits = {
            p.name: _load_arrow_shards(p) for p in sorted(folder.iterdir()) if p.is_dir() and list(p.glob("*.arrow"))
        }
        if not splits:
            if not list(folder.glob("*.arrow")):
                raise ValueError(
                    f"dataset: expected split folders of *.arrow shards (or a save_to_disk folder) in {folder}, found none"
                )
            return _load_arrow_shards(folder)
        dataset = DatasetDict(splits)
    return dataset


def _load_arrow_shards(folder: Path):
    from datasets import Dataset, concatenate_datasets

    shards = sorted(folder.glob("*.arrow"))
    return (
        concatenate_datasets([Dataset.from_file(str(path)) for path in shards])
        if len(shards) > 1
        else Dataset.from_file(str(shards[0]))
    )


def load_dataset_folder(folder: str | os.PathLike, fmri_column: str = "fmri"):
    """A dataset folder in either layout (this package's `save_to_disk` / build-dataset folder, or a
    Brainmarks folder) as a Dataset / DatasetDict in this package's layout (`fmri_column` (R, T))."""
    from datasets import DatasetDict

    try:
        dataset = load_brainmarks_dataset(folder)  # any save_to_disk folder, or Brainmarks' bare *.arrow shards
    except (OSError, ValueError) as err:
        if not type(err).__module__.startswith(("pyarrow", "json")):
            raise
        raise ValueError(
            f"dataset: {folder} holds an unreadable Arrow or JSON file ({err}); rebuild it with "
            "`brain-jepa build-dataset` or copy it again"
        ) from err
    if not is_brainmarks_layout(dataset):
        return dataset
    if isinstance(dataset, DatasetDict):
        return DatasetDict({name: from_brainmarks(split, fmri_column) for name, split in dataset.items()})
    return from_brainmarks(dataset, fmri_column)


__all__ = [
    "BRAINMARKS_COLUMNS",
    "SPACES_BY_NUM_ROIS",
    "space_for_num_rois",
    "is_brainmarks_layout",
    "normalise_per_roi",
    "unnormalise",
    "to_brainmarks",
    "from_brainmarks",
    "save_brainmarks_dataset",
    "load_brainmarks_dataset",
    "load_dataset_folder",
]
