"""Arrow datasets of ROI time series: build them from per-subject files, and feed them to models.

Every dataset here (and the example dataset) has the same columns: `subject_id` (string), `fmri`
(float32 (R, T), ROI-major, a fixed-shape `Array2D`) and one column per label. Pretraining and
fine-tuning therefore accept any of them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .atomic_io import atomic_output_dir

SERIES_SUFFIXES = (".npy", ".csv", ".tsv")
RELEASED_NUM_ROIS = 450  # the released model's atlas (Tian S3 + Schaefer-400)
FMRI_COLUMN = "fmri"
SUBJECT_COLUMN = "subject_id"
DEFAULT_SHARD_BYTES = 500 * 1024**2
DEFAULT_WRITER_BATCH_SIZE = 16


# ---------------------------------------------------------------------------------------- files
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
        raise ValueError(f"series file {path}: expected numbers in row 0 (or a header row of names), got "
                         f"{tokens[bad]!r} in column {bad} among numbers")
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
        raise ValueError(f"subject_regex: expected a Python regular expression, got {subject_regex!r} ({err})") from None
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
            raise ValueError(f"input_dir: expected one file per subject, got {seen[subject].name} and {path.name} for {subject!r}")
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
        raise ValueError(f"subject_column: expected a column {subject_column!r} in the labels table, got columns {list(table.columns)}")
    table[subject_column] = table[subject_column].astype(str)
    duplicated = table[subject_column][table[subject_column].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"labels: expected one row per subject, got repeated subjects {list(duplicated[:10])}")
    if label_columns is None:
        label_columns = [c for c in table.columns if c != subject_column]
    missing = [c for c in label_columns if c not in table.columns]
    if missing:
        raise ValueError(f"label_columns: expected columns of the labels table {list(table.columns)}, got unknown {missing}")
    reserved = [c for c in label_columns if c in (FMRI_COLUMN, SUBJECT_COLUMN)]
    if reserved:
        raise ValueError(f"label_columns: {reserved} collide with the dataset's own columns {FMRI_COLUMN!r}/{SUBJECT_COLUMN!r}")
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


def _label_features(table) -> dict:
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


# ---------------------------------------------------------------------------------------- arrow
def fmri_features(num_rois: int, num_timepoints: int, label_features: dict | None = None):
    """`datasets.Features` with `subject_id`, `fmri` (Array2D (R, T) float32) and the label columns."""
    from datasets import Array2D, Features, Value

    return Features(
        {
            SUBJECT_COLUMN: Value("string"),
            FMRI_COLUMN: Array2D(shape=(num_rois, num_timepoints), dtype="float32"),
            **(label_features or {}),
        }
    )


def arrow_table(subject_ids: list, fmri: np.ndarray, labels: dict, features):
    """pyarrow Table of a (N, R, T) block with the given features, built without per-row conversion."""
    import pyarrow as pa
    from datasets.features.features import Array2DExtensionType, numpy_to_pyarrow_listarray

    fmri = np.ascontiguousarray(fmri, dtype=np.float32)
    storage = numpy_to_pyarrow_listarray(fmri)
    columns = {
        SUBJECT_COLUMN: pa.array([str(s) for s in subject_ids], type=pa.string()),
        FMRI_COLUMN: pa.ExtensionArray.from_storage(Array2DExtensionType(fmri.shape[1:], "float32"), storage),
    }
    for name, values in labels.items():
        columns[name] = pa.array(list(values) if features[name].dtype == "string" else np.asarray(values)).cast(
            features[name].pa_type
        )
    return pa.table({name: columns[name] for name in features})


def dataset_from_arrays(subject_ids: list, fmri: np.ndarray, labels: dict | None = None, features=None):
    """In-memory `datasets.Dataset` from a (N, R, T) array, subject IDs and label lists."""
    from datasets import Dataset, DatasetInfo, Value
    from datasets.table import InMemoryTable

    labels = labels or {}
    if features is None:
        label_features = {
            name: Value("int64" if np.issubdtype(np.asarray(v).dtype, np.integer) else "float32")
            for name, v in labels.items()
        }
        features = fmri_features(fmri.shape[1], fmri.shape[2], label_features)
    table = arrow_table(subject_ids, fmri, labels, features)
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=features))


def write_dataset(
    rows: Iterable[dict],
    output_dir: str | os.PathLike,
    features,
    overwrite: bool = False,
    writer_batch_size: int = DEFAULT_WRITER_BATCH_SIZE,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    before_commit: Callable[[Path], None] | None = None,
) -> Path:
    """
    Streams `rows` (dicts with the feature columns, `fmri` a (R, T) array) into a dataset folder that
    `datasets.load_from_disk` reads. At most `writer_batch_size` rows are held in memory. Everything
    is written to a temporary folder beside `output_dir` and renamed into place at the end, so a
    failure leaves nothing behind. `before_commit(temp_folder)` may add files (e.g. gradient.csv)
    just before the rename.
    """
    from datasets import DatasetInfo
    from datasets.arrow_writer import ArrowWriter

    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir, overwrite) as temp_dir:
        label_names = [name for name in features if name not in (SUBJECT_COLUMN, FMRI_COLUMN)]
        shape = features[FMRI_COLUMN].shape
        shards: list[str] = []
        writer, shard_bytes, total = None, 0, 0

        def flush(block: list[dict]):
            nonlocal writer, shard_bytes
            if not block:
                return
            if writer is None or shard_bytes >= max_shard_bytes:
                if writer is not None:
                    writer.finalize()
                    writer.close()
                shards.append(f"shard-{len(shards):05d}.arrow")
                writer = ArrowWriter(features=features, path=str(temp_dir / shards[-1]))
                shard_bytes = 0
            table = arrow_table(
                [row[SUBJECT_COLUMN] for row in block],
                np.stack([row[FMRI_COLUMN] for row in block]),
                {name: [row[name] for row in block] for name in label_names},
                features,
            )
            writer.write_table(table)
            shard_bytes += table.nbytes

        try:
            block: list[dict] = []
            for row in rows:
                if tuple(np.shape(row[FMRI_COLUMN])) != tuple(shape):
                    raise ValueError(
                        f"{row.get(SUBJECT_COLUMN, 'row')}: expected fmri of shape {tuple(shape)} like the first subject, "
                        f"got {tuple(np.shape(row[FMRI_COLUMN]))}"
                    )
                block.append(row)
                total += 1
                if len(block) >= writer_batch_size:
                    flush(block)
                    block = []
            flush(block)
            if writer is None:
                raise ValueError("rows: expected at least one subject, got none")
            writer.finalize()
            writer.close()
            writer = None
            names = [f"data-{i:05d}-of-{len(shards):05d}.arrow" for i in range(len(shards))]
            for old, new in zip(shards, names):
                (temp_dir / old).rename(temp_dir / new)
            _write_dataset_metadata(temp_dir, names, DatasetInfo(features=features))
            if before_commit is not None:
                before_commit(temp_dir)
        finally:
            if writer is not None:
                writer.close()
    return output_dir


def _write_dataset_metadata(folder: Path, data_files: list[str], info) -> None:
    """state.json and dataset_info.json in the layout of `Dataset.save_to_disk`."""
    from dataclasses import asdict

    state = {
        "_data_files": [{"filename": name} for name in data_files],
        "_fingerprint": uuid.uuid4().hex[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    info_dict = asdict(info)
    (folder / "dataset_info.json").write_text(
        json.dumps({key: info_dict[key] for key in sorted(info_dict)}, indent=2), encoding="utf-8"
    )


def open_dataset(dataset, split: str | None = None, example_subjects: int | None = None, progress: bool = False,
                 fmri_column: str = FMRI_COLUMN):
    """The dataset a command line names: "example" (the embedded example cohort, its first
    `example_subjects` subjects, default all 200), a `save_to_disk` / `build-dataset` folder or a
    Brainmarks folder (converted to this package's layout). A
    DatasetDict gives its `split`, or all splits concatenated in order. A `datasets.Dataset` passes through."""
    from datasets import Dataset, DatasetDict, concatenate_datasets

    from .brainmarks_data import load_dataset_folder

    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, str) and dataset == "example":
        from .example_data import EXAMPLE_NUM_SUBJECTS, load_example_dataset

        return load_example_dataset(num_subjects=example_subjects or EXAMPLE_NUM_SUBJECTS, progress=progress)
    if not isinstance(dataset, (str, os.PathLike)) or not Path(dataset).is_dir():
        raise FileNotFoundError(f"dataset: expected 'example' or a save_to_disk / build-dataset folder, got {str(dataset)!r} (no such folder)")
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
        raise ValueError(f"label_columns: expected a labels table (--labels) to take {list(label_columns)} from, got none")
    files = list_series_files(input_dir, subject_regex)
    table = None
    label_features: dict = {}
    if labels is not None:
        table = read_labels(labels, subject_column, label_columns)
        missing = [subject for subject, _ in files if subject not in table.index]
        if missing:
            raise ValueError(
                f"labels: expected a row for every subject with a file, got {len(missing)} missing "
                f"({missing[:10]}{' ...' if len(missing) > 10 else ''}) in column {subject_column!r}"
            )
        check_label_values(table.loc[[subject for subject, _ in files]])
        label_features = _label_features(table)
    if num_timepoints is not None and (isinstance(num_timepoints, bool) or int(num_timepoints) < 1):
        raise ValueError(f"num_timepoints: expected a positive integer, got {num_timepoints!r}")

    first = read_series(files[0][1], time_axis)
    rois = first.shape[0]
    if num_rois is not None and rois != num_rois:
        raise ValueError(
            f"series file {files[0][1]}: expected {num_rois} ROIs (time_axis={time_axis}), got shape {first.shape}"
            + (f"; the other axis has {num_rois} entries: pass time_axis={0 if time_axis in (1, -1) else -1}"
               if first.shape[1] == num_rois else "")
        )
    if num_rois is None and rois != RELEASED_NUM_ROIS and first.shape[1] == RELEASED_NUM_ROIS:
        raise ValueError(
            f"series file {files[0][1]}: time_axis={time_axis} reads {rois} ROIs x {first.shape[1]} volumes, but the "
            f"other axis has {RELEASED_NUM_ROIS} entries, the released model's ROI count; pass "
            f"time_axis={0 if time_axis in (1, -1) else -1} (--time-axis) if the file is transposed, or "
            f"num_rois={rois} (--num-rois {rois}) if it really has {rois} ROIs"
        )
    length = num_timepoints or first.shape[1]
    features = fmri_features(rois, length, label_features)
    from .gradients import GroupConnectivity, compute_gradients, load_gradient_csv, save_gradient_csv

    if gradient is not None and compute_gradient:
        raise ValueError("gradient, compute_gradient: expected at most one, got both")
    if gradient is not None:
        gradient = (load_gradient_csv(gradient, num_rois=rois) if isinstance(gradient, (str, os.PathLike))
                    else np.asarray(gradient, dtype=np.float64))
        if gradient.ndim != 2 or gradient.shape[0] != rois:
            raise ValueError(f"gradient: expected shape ({rois}, gradient_dim), one row per ROI, got {gradient.shape}")
        if gradient.shape[1] != gradient_components:
            raise ValueError(
                f"gradient: expected {gradient_components} columns (gradient_components, the model's gradient_dim), "
                f"got {gradient.shape[1]}; pass gradient_components={gradient.shape[1]} (--gradient-components) if "
                "the model is built for that many"
            )
        if not np.isfinite(gradient).all():
            raise ValueError("gradient: expected finite values, got NaN or Inf")
    group = GroupConnectivity() if compute_gradient else None

    def add_gradient(folder: Path) -> None:
        values = gradient if group is None else compute_gradients(group.result(), n_components=gradient_components,
                                                                  sparsity=gradient_sparsity)
        if values is not None:
            save_gradient_csv(folder / "gradient.csv", values)

    def rows() -> Iterator[dict]:
        from tqdm.auto import tqdm

        for subject, path in tqdm(files, desc="build dataset", unit="subject", disable=not progress):
            series = first if path == files[0][1] else read_series(path, time_axis)
            if series.shape[0] != rois:
                hint = (f"; one of the two files is transposed (time_axis={time_axis} reads rows as "
                        f"{'ROIs' if time_axis in (1, -1) else 'volumes'}): save them alike, and pass "
                        f"num_rois=<R> (--num-rois) so every file is checked against the atlas")
                raise ValueError(
                    f"series file {path}: expected {rois} ROIs like the first file {files[0][1].name} (shape "
                    f"{first.shape}), got shape {series.shape}" + (hint if series.shape[1] == rois else
                                                                   "; pass num_rois=<R> (--num-rois) to check every file")
                )
            if num_timepoints is None and series.shape[1] != length:
                raise ValueError(
                    f"series file {path}: expected {length} time points like {files[0][1].name}, got {series.shape[1]}; "
                    f"pass num_timepoints=<n> to crop every series to its first n volumes"
                )
            if series.shape[1] < length:
                raise ValueError(f"series file {path}: expected at least num_timepoints={length} volumes, got {series.shape[1]}")
            row = {SUBJECT_COLUMN: subject, FMRI_COLUMN: series[:, :length]}
            if group is not None:
                group.add(row[FMRI_COLUMN], f"series file {path}")
            if table is not None:
                for name in table.columns:
                    row[name] = table.at[subject, name]
            yield row

    if output_dir is None:
        output_dir = Path(tempfile.mkdtemp(prefix="brain-jepa-dataset-")) / "dataset"
    path = write_dataset(rows(), output_dir, features, overwrite=overwrite, writer_batch_size=writer_batch_size,
                         before_commit=add_gradient)
    return load_from_disk(str(path))


# ---------------------------------------------------------------------------------------- model inputs
class FeatureExtractorTransform:
    """Batch transform: `fmri` -> `fmri_values` (B, 1, R, num_frames) with a feature extractor;
    other columns pass through (numeric ones as arrays/tensors), `label_column` is also copied to `labels`."""

    def __init__(self, feature_extractor, training=False, seed=None, fmri_column=FMRI_COLUMN, time_axis=-1,
                 label_column=None, return_tensors="pt"):
        self.feature_extractor = feature_extractor
        self.training = training
        self.seed = seed
        self.fmri_column = fmri_column
        self.time_axis = time_axis
        self.label_column = label_column
        self.return_tensors = return_tensors
        self._rng = None
        self._worker = None

    def _generator(self):
        if not self.training:
            return None
        worker = None
        try:
            import torch.utils.data

            info = torch.utils.data.get_worker_info()
            worker = None if info is None else info.id
        except ImportError:
            pass
        if self._rng is None or worker != self._worker:  # each DataLoader worker gets its own stream
            self._worker = worker
            seed = self.seed if worker is None or self.seed is None else [self.seed, worker]
            self._rng = np.random.default_rng(seed)
        return self._rng

    def __call__(self, batch: dict) -> dict:
        if self.fmri_column not in batch:
            raise ValueError(f"fmri_column: expected a column {self.fmri_column!r}, got columns {sorted(batch)}")
        series = batch[self.fmri_column]
        if not isinstance(series, np.ndarray):
            series = [np.asarray(item, dtype=np.float32) for item in series]
        features = self.feature_extractor(
            series, time_axis=self.time_axis, training=self.training, seed=self._generator(),
            return_tensors=self.return_tensors,
        )
        output = {"fmri_values": features["fmri_values"]}
        for name, values in batch.items():
            if name == self.fmri_column:
                continue
            output[name] = self._column(values)
        if self.label_column is not None:
            if self.label_column not in batch:
                raise ValueError(f"label_column: expected a column {self.label_column!r}, got columns {sorted(batch)}")
            output["labels"] = output[self.label_column]
        return output

    def _column(self, values):
        array = np.asarray(values)
        if self.return_tensors != "pt" or array.dtype.kind not in "iufb":
            return values if array.dtype.kind not in "iufb" else array
        import torch

        return torch.from_numpy(array.astype(np.float32 if array.dtype.kind == "f" else np.int64))


def _register_numpy_transform_format() -> str | None:
    """Registers a datasets format that hands the transform numpy arrays instead of nested lists
    (~50x faster for (450, 490) series). Returns its name, or None if this datasets version lacks the hook."""
    try:
        from datasets.formatting import NumpyFormatter, _register_formatter
    except ImportError:
        return None

    class NumpyTransformFormatter(NumpyFormatter):
        def __init__(self, transform: Callable | None = None, **kwargs):
            super().__init__(**kwargs)
            self.transform = transform

        def format_batch(self, pa_table):
            return self.transform(super().format_batch(pa_table))

        def format_row(self, pa_table):
            return {key: value[0] for key, value in self.format_batch(pa_table).items()}

    _register_formatter(NumpyTransformFormatter, "brain_jepa_numpy_transform")
    return "brain_jepa_numpy_transform"


_NUMPY_TRANSFORM_FORMAT = _register_numpy_transform_format()


def apply_feature_extractor(
    dataset,
    feature_extractor,
    training: bool = False,
    seed: int | None = None,
    fmri_column: str = FMRI_COLUMN,
    time_axis: int = -1,
    label_column: str | None = None,
    return_tensors: str = "pt",
):
    """
    A view of `dataset` whose examples carry `fmri_values` (1, R, num_frames) made on the fly by
    `feature_extractor` (like `Dataset.with_transform`), plus the other columns; `label_column`,
    when given, is also exposed as `labels`. Training mode draws a new random clip at every access
    (reproducible with `seed`, per DataLoader worker). With `transformers.Trainer`, pass
    `remove_unused_columns=False` so the raw `fmri` column reaches the transform.
    """
    transform = FeatureExtractorTransform(
        feature_extractor, training=training, seed=seed, fmri_column=fmri_column, time_axis=time_axis,
        label_column=label_column, return_tensors=return_tensors,
    )
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    if _NUMPY_TRANSFORM_FORMAT is not None:
        return dataset.with_format(_NUMPY_TRANSFORM_FORMAT, transform=transform)
    return dataset.with_transform(transform)


__all__ = [
    "SERIES_SUFFIXES",
    "open_dataset",
    "read_series",
    "subject_from_filename",
    "list_series_files",
    "read_labels",
    "fmri_features",
    "arrow_table",
    "dataset_from_arrays",
    "write_dataset",
    "build_dataset",
    "FeatureExtractorTransform",
    "apply_feature_extractor",
]
