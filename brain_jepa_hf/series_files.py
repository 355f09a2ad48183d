"""Per-subject ROI time-series files (.npy, .csv, .tsv) and labels tables: read and checked, before
they become an Arrow dataset (`brain_jepa_hf.data.build_dataset`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .arrow_data import FMRI_COLUMN, SUBJECT_COLUMN


SERIES_SUFFIXES = (".npy", ".csv", ".tsv")


def read_series(path: str | os.PathLike, time_axis: int = -1) -> np.ndarray:
    """
    Reads one ROI time series from .npy, .csv or .tsv and returns it ROI-major, float32 (R, T).
    Text files hold numbers only, optionally under one header row (e.g. ROI names).

    Args:
        time_axis: axis of time in the file: -1/1 when rows are ROIs, 0/-2 when rows are time points.
    """
    path = Path(path)
    if time_axis not in (0, 1, -1, -2):
        raise ValueError(f"time_axis: expected 0/-2 (rows are time points) or 1/-1 (rows are ROIs), got {time_axis!r}")
    if not path.is_file():
        raise FileNotFoundError(f"series file: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(f"series file {path}: expected a complete numeric .npy array ({err})") from None
    elif suffix in (".csv", ".tsv"):
        array = _read_text_table(path, "\t" if suffix == ".tsv" else ",")
    else:
        raise ValueError(f"series file {path}: expected one of {SERIES_SUFFIXES}, got {suffix or 'no suffix'!r}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"series file {path}: expected real numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"series file {path}: expected a non-empty 2-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        row, column = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"series file {path}: expected finite values, got NaN or Inf at row {row}, column {column}")
    _refuse_index_or_header(path, array)
    with np.errstate(over="ignore"):
        stored = np.asarray(array, dtype=np.float32)  # the dataset's dtype
    if not np.isfinite(stored).all():
        row, column = np.argwhere(~np.isfinite(stored))[0]
        raise ValueError(
            f"series file {path}: expected values within float32 range (|x| <= 3.4e38), got {array[row, column]:.4g} at "
            f"row {row}, column {column}; rescale the series first"
        )
    stored = stored if time_axis in (1, -1) else stored.T
    return np.ascontiguousarray(stored)


def _is_counter(values: np.ndarray) -> int | None:
    """The start (0 or 1) when `values` are exactly start, start+1, ...; else None."""
    if values.size < 3:
        return None
    for start in (0, 1):
        if np.array_equal(values, np.arange(start, start + values.size)):
            return start
    return None


def _refuse_index_or_header(path: Path, array: np.ndarray) -> None:
    """A first column or row counting 0, 1, 2, ... is a row index or numbered header (pandas `to_csv`
    writes both by default), not a series: kept, it would add a ROI or a volume silently."""
    start = _is_counter(array[:, 0]) if array.shape[1] > 1 else None
    if start is not None:
        raise ValueError(
            f"series file {path}: its first column counts {start}, {start + 1}, ..., {start + array.shape[0] - 1}: "
            "a row index, not data (it would become an extra ROI or volume); save the file without it "
            "(pandas: DataFrame.to_csv(..., index=False))"
        )
    start = _is_counter(array[0, :]) if array.shape[0] > 1 else None
    if start is not None:
        raise ValueError(
            f"series file {path}: its first row counts {start}, {start + 1}, ..., {start + array.shape[1] - 1}: "
            "numbered column headers, not data (they would become an extra ROI or volume); save the file "
            "without them (pandas: DataFrame.to_csv(..., header=False)) or with ROI names as the header"
        )


def _read_text_table(path: Path, delimiter: str) -> np.ndarray:
    with open(path, encoding="utf-8", errors="replace") as stream:
        first = stream.readline()
        if not first.strip() and not stream.read().strip():
            raise ValueError(f"series file {path}: expected '{delimiter}'-separated numbers, got an empty file")
    tokens = first.strip().split(delimiter)
    numeric = []
    for token in tokens:
        try:
            float(token)
            numeric.append(True)
        except ValueError:
            numeric.append(False)
    skip = 0 if all(numeric) else 1  # a header row
    # Mostly numbers with a non-empty text cell: a data row with a bad cell, not a header (pandas'
    # numbered header over an index column starts with an empty cell, and is refused below as such).
    bad = [i for i, (token, is_number) in enumerate(zip(tokens, numeric)) if not is_number and token.strip()]
    if skip and bad and sum(numeric) > len(tokens) // 2:
        bad = bad[0]
        raise ValueError(
            f"series file {path}: expected numbers in row 0 (or a header row of names), got "
            f"{tokens[bad]!r} in column {bad} among numbers"
        )
    try:
        return np.loadtxt(path, delimiter=delimiter, skiprows=skip, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(
            f"series file {path}: expected {'one header row then ' if skip else ''}'{delimiter}'-separated numbers ({err})"
        ) from None


def subject_from_filename(path: str | os.PathLike, subject_regex: str | None = None) -> str:
    """Subject ID of a file: its name without suffix, or the first group of `subject_regex` in its name."""
    name = Path(path).name
    if subject_regex is None:
        return name[: -len(Path(name).suffix)] if Path(name).suffix else name
    try:
        match = re.search(subject_regex, name)
    except re.error as err:
        raise ValueError(
            f"subject_regex: expected a Python regular expression, got {subject_regex!r} ({err})"
        ) from None
    if match is None:
        raise ValueError(f"subject_regex: expected {subject_regex!r} to match file name {name!r}, it does not")
    return match.group(1) if match.groups() else match.group(0)


def list_series_files(input_dir: str | os.PathLike, subject_regex: str | None = None) -> list[tuple[str, Path]]:
    """(subject_id, path) of every .npy/.csv/.tsv file directly in `input_dir`, sorted by file name."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input_dir: {input_dir} is not a directory")
    files = sorted(p for p in input_dir.iterdir() if p.is_file() and p.suffix.lower() in SERIES_SUFFIXES)
    if not files:
        raise ValueError(f"input_dir: expected {'/'.join(SERIES_SUFFIXES)} files in {input_dir}, found none")
    pairs = [(subject_from_filename(p, subject_regex), p) for p in files]
    seen: dict[str, Path] = {}
    for subject, path in pairs:
        if subject in seen:
            raise ValueError(
                f"input_dir: expected one file per subject, got {seen[subject].name} and {path.name} for {subject!r}"
            )
        seen[subject] = path
    return pairs


def read_labels(labels: Any, subject_column: str = SUBJECT_COLUMN, label_columns: list[str] | None = None):
    """Labels table (CSV/TSV path or pandas DataFrame) indexed by subject ID as strings."""
    import pandas as pd

    if isinstance(labels, pd.DataFrame):
        table = labels.copy()
    else:
        path = Path(labels)
        if not path.is_file():
            raise FileNotFoundError(f"labels: {path} does not exist")
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype={subject_column: str})
    if subject_column not in table.columns:
        raise ValueError(
            f"subject_column: expected a column {subject_column!r} in the labels table, got columns {list(table.columns)}"
        )
    table[subject_column] = table[subject_column].astype(str)
    duplicated = table[subject_column][table[subject_column].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"labels: expected one row per subject, got repeated subjects {list(duplicated[:10])}")
    if label_columns is None:
        label_columns = [c for c in table.columns if c != subject_column]
    missing = [c for c in label_columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"label_columns: expected columns of the labels table {list(table.columns)}, got unknown {missing}"
        )
    reserved = [c for c in label_columns if c in (FMRI_COLUMN, SUBJECT_COLUMN)]
    if reserved:
        raise ValueError(
            f"label_columns: {reserved} collide with the dataset's own columns {FMRI_COLUMN!r}/{SUBJECT_COLUMN!r}"
        )
    return table.set_index(subject_column)[label_columns]


def check_label_values(table) -> None:
    """Labels the dataset would store wrongly: NaN/Inf (as float32 NaN) or numbers mixed with text in
    one column (as strings). `table` holds the rows of the subjects being written."""
    import pandas as pd

    for name in table.columns:
        column = table[name]
        empty = column.isna()
        if column.dtype.kind == "f":
            empty |= ~np.isfinite(column.to_numpy(dtype=np.float64, na_value=np.nan))
        if empty.any():
            bad = column.index[empty].tolist()
            raise ValueError(
                f"labels: expected a value in column {name!r} for every subject, got {len(bad)} empty/NaN/Inf "
                f"(subjects {bad[:5]}); fill them in or drop those subjects' files"
            )
        if column.dtype.kind == "O":
            text = column.index[pd.to_numeric(column, errors="coerce").isna()].tolist()
            if 0 < len(text) < len(column):
                raise ValueError(
                    f"labels: expected numbers or text in column {name!r}, got both: text {column[text[0]]!r} for "
                    f"subject {text[0]!r} ({len(text)} such cells) among numbers; fix those cells"
                )


def label_features(table) -> dict:
    from datasets import Value

    features = {}
    for name in table.columns:
        dtype = table[name].dtype
        if dtype.kind in "iub":
            features[name] = Value("int64")
        elif dtype.kind == "f":
            features[name] = Value("float32")
        else:
            features[name] = Value("string")
    return features


__all__ = [
    "SERIES_SUFFIXES",
    "read_series",
    "subject_from_filename",
    "list_series_files",
    "read_labels",
    "check_label_values",
    "label_features",
]
