"""The Arrow layout of every dataset here: columns `subject_id` (string), `fmri` (float32 (R, T),
ROI-major, a fixed-shape `Array2D`) and one column per label; built in memory or streamed to a
`datasets.load_from_disk` folder."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .atomic_io import atomic_output_dir


FMRI_COLUMN = "fmri"
SUBJECT_COLUMN = "subject_id"
DEFAULT_SHARD_BYTES = 500 * 1024**2
DEFAULT_WRITER_BATCH_SIZE = 16


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


class _ShardWriter:
    """Arrow shards in `folder`: blocks of rows are appended to the current shard, a new one is started
    once it holds `max_shard_bytes`; `finish` closes the last and gives them the `save_to_disk` names."""

    def __init__(self, folder: Path, features, max_shard_bytes: int):
        self.folder, self.features, self.max_shard_bytes = folder, features, max_shard_bytes
        self.label_names = [name for name in features if name not in (SUBJECT_COLUMN, FMRI_COLUMN)]
        self.shards: list[str] = []
        self.writer, self.shard_bytes = None, 0

    def write(self, block: list[dict]) -> None:
        from datasets.arrow_writer import ArrowWriter

        if not block:
            return
        if self.writer is None or self.shard_bytes >= self.max_shard_bytes:
            self.close()
            self.shards.append(f"shard-{len(self.shards):05d}.arrow")
            self.writer = ArrowWriter(features=self.features, path=str(self.folder / self.shards[-1]))
            self.shard_bytes = 0
        table = arrow_table(
            [row[SUBJECT_COLUMN] for row in block],
            np.stack([row[FMRI_COLUMN] for row in block]),
            {name: [row[name] for row in block] for name in self.label_names},
            self.features,
        )
        self.writer.write_table(table)
        self.shard_bytes += table.nbytes

    def close(self) -> None:
        if self.writer is not None:
            self.writer.finalize()
            self.writer.close()
            self.writer = None

    def finish(self) -> list[str]:
        """Close the last shard; returns the data files' names (`data-00000-of-0000N.arrow`)."""
        if not self.shards:
            raise ValueError("rows: expected at least one subject, got none")
        self.close()
        names = [f"data-{i:05d}-of-{len(self.shards):05d}.arrow" for i in range(len(self.shards))]
        for old, new in zip(self.shards, names):
            (self.folder / old).rename(self.folder / new)
        return names


def _blocks(rows: Iterable[dict], shape: tuple, size: int) -> Iterable[list[dict]]:
    """`rows` in lists of `size`, each row's `fmri` checked to have `shape`."""
    block: list[dict] = []
    for row in rows:
        if tuple(np.shape(row[FMRI_COLUMN])) != tuple(shape):
            raise ValueError(
                f"{row.get(SUBJECT_COLUMN, 'row')}: expected fmri of shape {tuple(shape)} like the first subject, "
                f"got {tuple(np.shape(row[FMRI_COLUMN]))}"
            )
        block.append(row)
        if len(block) >= size:
            yield block
            block = []
    yield block


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

    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir, overwrite) as temp_dir:
        shards = _ShardWriter(temp_dir, features, max_shard_bytes)
        try:
            for block in _blocks(rows, features[FMRI_COLUMN].shape, writer_batch_size):
                shards.write(block)
            names = shards.finish()
            _write_dataset_metadata(temp_dir, names, DatasetInfo(features=features))
            if before_commit is not None:
                before_commit(temp_dir)
        finally:
            if shards.writer is not None:
                shards.writer.close()
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


__all__ = [
    "FMRI_COLUMN",
    "SUBJECT_COLUMN",
    "fmri_features",
    "arrow_table",
    "dataset_from_arrays",
    "write_dataset",
]
