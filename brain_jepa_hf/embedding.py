"""Embeddings of a whole dataset with a Brain-JEPA encoder: pooled (N, D) or per-token (N, R*Tp, D),
written to .npy or Parquet, batched, with a progress bar, and resumable for large cohorts.

Work in progress lives in `<output>.partial/` beside the target: one file per finished chunk of rows
plus `meta.json`. Running the same command again skips finished chunks; the target file appears
(atomically, by rename) only when every row is done, and the partial folder is then removed.
Evaluation is deterministic: encoder in eval mode, centre clip of every series.

Under `accelerate launch --num_processes N` (or torchrun) the pending chunks are dealt out to the
processes in turn; each writes its chunks into the same partial folder, the main process shows the one
progress bar and writes the target, so the output is the same file one process writes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .atomic_io import DiskFullError, remove_stale, reporting_full_disk, save_npy, write_atomic
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from .modeling_brain_jepa import BrainJepaModel, check_device, resolve_dtype
from .runtime import has_accelerator
from .series_fit import check_series_fit, series_lengths


POOLINGS = ("mean", "tokens")
FORMATS = {".npy": "npy", ".parquet": "parquet"}


def load_encoder(
    name_or_path,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
):
    """The encoder (`BrainJepaModel`) of any Brain-JEPA folder / Hub id, in eval mode on `device`: a
    pretraining folder yields its EMA target encoder, a fine-tuned classifier its encoder; a model
    instance is used as is. `dtype` ("auto", "float32", "bfloat16", see `resolve_dtype`) casts it;
    None keeps the stored dtype."""
    check_device(device)
    if isinstance(name_or_path, torch.nn.Module):
        model = getattr(name_or_path, "base_model", name_or_path)
    else:
        model = BrainJepaModel.from_pretrained(str(name_or_path), revision=revision)
    model = model.to(device)
    if dtype is not None:
        model = model.to(resolve_dtype(dtype, device))
    return model.eval()


def model_fingerprint(model: torch.nn.Module) -> str:
    """Short hash of the config and weights: a resumed run must use the same model."""
    digest = hashlib.sha1(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def distributed_state():
    """The `accelerate.PartialState` of a multi-process launch (WORLD_SIZE > 1), else None. Without a
    GPU (or other accelerator) the processes form a gloo CPU group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState  # slow to import (~0.7 s): only for a multi-process launch

    if has_accelerator() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes"):
        return PartialState()
    return PartialState(cpu=True, backend="gloo")  # accelerate would pick MPI where torch has it


@torch.no_grad()
def iter_embeddings(
    model,
    dataset,
    feature_extractor,
    pooling: str = "mean",
    batch_size: int = 16,
    fmri_column: str = "fmri",
    start: int = 0,
    stop: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 embeddings of rows [start, stop) of `dataset`, one batch at a time."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    view = dataset.with_format("numpy", columns=[fmri_column])
    stop = len(dataset) if stop is None else stop
    device = next(model.parameters()).device
    gradient = getattr(feature_extractor, "gradient", None)
    gradient = None if gradient is None else torch.as_tensor(gradient, device=device)
    for first in range(start, stop, batch_size):
        series = view[first : min(first + batch_size, stop)][fmri_column]
        features = feature_extractor(series, time_axis=-1, training=False, return_tensors="pt")
        output = model(features["fmri_values"].to(device), gradient=gradient)
        values = output.pooler_output if pooling == "mean" else output.last_hidden_state
        yield values.float().cpu().numpy()


def compute_embeddings(
    model,
    dataset,
    feature_extractor,
    pooling: str = "mean",
    batch_size: int = 16,
    fmri_column: str = "fmri",
    progress: bool = True,
    state=None,
) -> np.ndarray:
    """All embeddings in memory: (N, D) for "mean", (N, R*Tp, D) for "tokens". With a multi-process
    `state` (accelerate) the batches are dealt out to the processes in turn and every process gets the
    whole array back, identical to one process's; the main process shows the progress bar."""
    world = 1 if state is None else state.num_processes
    rank = 0 if state is None else state.process_index
    starts = list(range(0, len(dataset), batch_size))[rank::world]
    batches = {}
    with tqdm(total=len(dataset), desc="embedding", unit="sample", disable=not progress or rank != 0) as bar:
        for start in starts:
            (batch,) = iter_embeddings(
                model,
                dataset,
                feature_extractor,
                pooling,
                batch_size,
                fmri_column,
                start,
                min(start + batch_size, len(dataset)),
            )
            batches[start] = batch
            bar.update(min(len(batch) * world, bar.total - bar.n))  # the other processes advance alike
        bar.n = len(dataset)
        bar.refresh()
    if world > 1:
        from accelerate.utils import gather_object  # only for a multi-process launch

        batches = dict(pair for part in gather_object([list(batches.items())]) for pair in part)
    return np.concatenate([batches[start] for start in sorted(batches)])


def _check_model_fits(model, feature_extractor, dataset, fmri_column: str) -> None:
    config = model.config
    if feature_extractor.num_rois != config.num_rois or feature_extractor.num_frames != config.num_frames:
        raise ValueError(
            f"feature_extractor: produces ({feature_extractor.num_rois} ROIs, {feature_extractor.num_frames} frames) "
            f"but the model expects num_rois={config.num_rois}, num_frames={config.num_frames}"
        )
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one row to embed, got 0")
    shape = getattr(dataset.features[fmri_column], "shape", None)
    if shape is not None and shape[0] is not None and shape[0] != config.num_rois:
        raise ValueError(
            f"{fmri_column}: the dataset has {shape[0]} ROIs per series but the model expects num_rois={config.num_rois}"
        )


def _save_npy(path: Path, array: np.ndarray) -> None:
    save_npy(path, array)  # raises on a full disk (np.save on a file handle may leave a short file silently)


def embed(
    model,
    dataset,
    output: str | os.PathLike,
    feature_extractor=None,
    pooling: str = "mean",
    batch_size: int = 16,
    chunk_size: int = 256,
    fmri_column: str = "fmri",
    id_column: str | None = "subject_id",
    overwrite: bool = False,
    progress: bool = True,
    max_chunks: int | None = None,
    state=None,
    dtype: str | torch.dtype | None = None,
    stats: dict | None = None,
) -> Path | None:
    """
    Embed every row of `dataset` (columns `fmri` (R, T) and optionally `subject_id`) into `output`:
    a `.npy` array ((N, D) for pooling="mean", (N, R*Tp, D) for "tokens"), or a `.parquet` table with
    `id_column` and an `embedding` column (list of D floats, or of R*Tp lists of D floats).
    Finished chunks of `chunk_size` rows are kept in `<output>.partial/`, so an interrupted run resumes
    where it stopped; `max_chunks` stops after that many new chunks (returns None: not finished yet).
    `model` is a BrainJepa model or a folder / Hub id; `feature_extractor` defaults to the folder's;
    `dtype` as in `load_encoder` (the embeddings are written as float32 either way).
    `state` (an `accelerate.PartialState`; default: `distributed_state()`) shares the chunks among the
    processes of a launch; every process returns the path once the target is written.
    A `stats` dict is filled with what this call did: "rows" embedded by all processes (finished chunks
    of an earlier run not counted), "seconds" spent on them (the slowest process's features and forward
    passes) and the "dtype" used.
    """
    output = Path(output)
    partial = _check_embed_arguments(output, overwrite, pooling, batch_size, chunk_size)
    if feature_extractor is None:
        if isinstance(model, torch.nn.Module):
            raise ValueError(
                "feature_extractor: expected a BrainJepaFeatureExtractor when model is an instance, got None"
            )
        feature_extractor = BrainJepaFeatureExtractor.from_pretrained(str(model))
    encoder = load_encoder(model, dtype=dtype)
    _check_model_fits(encoder, feature_extractor, dataset, fmri_column)
    check_series_fit(series_lengths(dataset, fmri_column), feature_extractor, fmri_column, cli=False)
    if id_column is not None and id_column not in dataset.column_names:
        if id_column != "subject_id":  # the default may be absent; a column asked for by name may not
            raise ValueError(f"id_column: expected a column {id_column!r}, got columns {dataset.column_names}")
        id_column = None

    meta = {
        "model": model_fingerprint(encoder),
        "feature_extractor": hashlib.sha1(feature_extractor.to_json_string().encode()).hexdigest()[:16],
        "num_rows": len(dataset),
        "pooling": pooling,
        "chunk_size": chunk_size,
        "fmri_column": fmri_column,
        "dtype": str(encoder.dtype).removeprefix("torch."),
    }
    state = distributed_state() if state is None else state
    processes = _Processes(state)
    chunks = _ChunkFolder(partial, len(dataset), chunk_size)
    if stats is not None:  # also when a rerun finds the work done
        stats.update(rows=0, seconds=0.0, dtype=str(encoder.dtype).removeprefix("torch."))
    if _prepare_partial(output, chunks, meta, overwrite, processes):
        return output  # a kill fell between writing the output and removing the chunks: the output is complete
    with tqdm(
        total=len(dataset),
        initial=chunks.rows_on_disk(),
        desc="embedding",
        unit="sample",
        disable=not (progress and processes.is_main),
    ) as bar:
        finished = _embed_chunks(
            encoder,
            dataset,
            feature_extractor,
            pooling,
            batch_size,
            fmri_column,
            chunks,
            processes,
            bar,
            max_chunks,
            stats,
        )
    if processes.world > 1:
        from accelerate.utils import gather_object  # only for a multi-process launch

        finished = all(gather_object([finished]))
        if stats is not None:
            shares = gather_object([(stats["rows"], stats["seconds"])])
            stats.update(rows=sum(rows for rows, _ in shares), seconds=max(seconds for _, seconds in shares))
    if not finished:
        return None
    if processes.is_main:
        embeddings = np.concatenate([np.load(chunks.path(start)) for start in chunks.starts])
        if FORMATS[output.suffix] == "npy":
            write_atomic(output, lambda path: _save_npy(path, embeddings))
        else:
            ids = list(dataset[id_column]) if id_column is not None else None
            write_atomic(output, lambda path: _save_parquet(path, embeddings, ids, id_column, pooling))
        shutil.rmtree(partial)
    processes.wait()  # the target exists when any process returns
    return output


def _check_embed_arguments(output: Path, overwrite: bool, pooling: str, batch_size, chunk_size) -> Path:
    """The partial folder beside `output`, once the output name and the sizes are valid."""
    if output.suffix not in FORMATS:
        raise ValueError(f"output: expected a file name ending in {sorted(FORMATS)}, got {str(output)!r}")
    partial = output.with_name(output.name + ".partial")
    if output.exists() and not overwrite and not partial.exists():
        raise FileExistsError(f"output: {output} already exists; pass overwrite=True (--overwrite) to replace it")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return partial


class _Processes:
    """This process's place in a launch (one process without a multi-process `state`)."""

    def __init__(self, state):
        self.state = state
        if state is None:
            self.rank, self.world, self.is_main = 0, 1, True
        else:
            self.rank, self.world, self.is_main = state.process_index, state.num_processes, state.is_main_process

    def wait(self) -> None:
        """Wait for every process (nothing to wait for alone)."""
        if self.world > 1:
            self.state.wait_for_everyone()


class _ChunkFolder:
    """`<output>.partial/`: one .npy file per finished chunk of `chunk_size` rows, and `meta.json`."""

    def __init__(self, folder: Path, num_rows: int, chunk_size: int):
        self.folder, self.num_rows, self.chunk_size = folder, num_rows, chunk_size
        self.meta_path = folder / "meta.json"
        self.starts = list(range(0, num_rows, chunk_size))

    def path(self, start: int) -> Path:
        return self.folder / f"chunk-{start:010d}.npy"

    def rows_on_disk(self) -> int:
        return sum(min(self.chunk_size, self.num_rows - s) for s in self.starts if self.path(s).is_file())

    def pending(self) -> list[int]:
        return [start for start in self.starts if not self.path(start).is_file()]


def _prepare_partial(output: Path, chunks: _ChunkFolder, meta: dict, overwrite: bool, processes: _Processes) -> bool:
    """Resume the partial folder of a run with the same settings, or start it afresh; True when `output` is
    already complete (the partial folder is then removed)."""
    partial = chunks.folder
    if partial.exists():
        previous = json.loads(chunks.meta_path.read_text()) if chunks.meta_path.is_file() else None
        if output.exists() and not overwrite:
            if previous != meta or not _output_holds_chunks(output, [chunks.path(start) for start in chunks.starts]):
                raise FileExistsError(
                    f"output: {output} already exists; pass overwrite=True (--overwrite) to replace it"
                )
            processes.wait()
            if processes.is_main:
                remove_stale(output.parent.glob(f".{glob.escape(output.name)}.tmp-*"))
                shutil.rmtree(partial, ignore_errors=True)
            processes.wait()
            return True
        if previous != meta:
            if not overwrite:
                raise ValueError(
                    f"output: {partial} holds a run with other settings {previous} than this one {meta}; "
                    "pass overwrite=True (--overwrite) to start again"
                )
            if processes.is_main:
                shutil.rmtree(partial)
    processes.wait()  # every process has read the old meta.json before it is replaced
    if processes.is_main:
        # Half-written files of a killed run: the output's and the chunks' temporary files.
        remove_stale(output.parent.glob(f".{glob.escape(output.name)}.tmp-*"))
        remove_stale(partial.glob(".chunk-*.tmp-*"))
        with reporting_full_disk(partial, "output"):
            partial.mkdir(parents=True, exist_ok=True)
            chunks.meta_path.write_text(json.dumps(meta, indent=2))
    processes.wait()
    return False


def _embed_chunks(
    encoder,
    dataset,
    feature_extractor,
    pooling,
    batch_size,
    fmri_column,
    chunks: _ChunkFolder,
    processes: _Processes,
    bar,
    max_chunks: int | None,
    stats: dict | None,
) -> bool:
    """Embed this process's share of the pending chunks (dealt out in turn), each written as it finishes;
    False when `max_chunks` stopped it early."""
    mine = chunks.pending()[processes.rank :: processes.world]  # the same list on every process
    new_chunks = 0
    finished = True
    for start in mine:
        if max_chunks is not None and new_chunks >= max_chunks:
            finished = False
            break
        stop = min(start + chunks.chunk_size, len(dataset))
        parts = []
        began = time.perf_counter()
        for batch in iter_embeddings(
            encoder, dataset, feature_extractor, pooling, batch_size, fmri_column, start, stop
        ):
            parts.append(batch)
            if processes.is_main:  # the bar counts every process's finished chunks plus this chunk so far
                bar.n = chunks.rows_on_disk() + sum(len(part) for part in parts)
                bar.refresh()
        if stats is not None:
            stats["rows"] += stop - start
            stats["seconds"] += time.perf_counter() - began
        chunk = np.concatenate(parts)
        try:
            write_atomic(chunks.path(start), lambda path: _save_npy(path, chunk))
        except DiskFullError:
            if processes.is_main and not any(chunks.folder.glob("chunk-*.npy")):  # nothing finished to resume from
                shutil.rmtree(chunks.folder, ignore_errors=True)
            raise
        new_chunks += 1
    processes.wait()
    bar.n = chunks.rows_on_disk()
    bar.refresh()
    return finished


def _output_holds_chunks(output: Path, chunks: list[Path]) -> bool:
    """Whether `output` is exactly the concatenation of the finished `chunks`."""
    if not all(chunk.is_file() for chunk in chunks):
        return False
    try:
        written = read_embeddings(output)
    except Exception:  # an unreadable file is not the finished output
        return False
    expected = np.concatenate([np.load(chunk) for chunk in chunks])
    return written.shape == expected.shape and np.array_equal(written, expected)


def _save_parquet(path: Path, embeddings: np.ndarray, ids, id_column: str | None, pooling: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(embeddings.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, embeddings.shape[-1])
    if pooling == "tokens":
        column = pa.FixedSizeListArray.from_arrays(column, embeddings.shape[1])
    columns = {}
    if ids is not None:
        columns[id_column] = pa.array([str(i) for i in ids], type=pa.string())
    columns["embedding"] = column
    table = pa.table(columns)
    table = table.replace_schema_metadata(
        {"brain_jepa.pooling": pooling, "brain_jepa.shape": json.dumps(list(embeddings.shape))}
    )
    pq.write_table(table, path)


def read_embeddings(path: str | os.PathLike) -> np.ndarray:
    """Read back an `embed` output (.npy or .parquet) as a float32 array."""
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    shape = json.loads(table.schema.metadata[b"brain_jepa.shape"])
    column = table.column("embedding").combine_chunks()
    while hasattr(column, "flatten") and not isinstance(column, pa.FloatArray):
        column = column.flatten()
    return column.to_numpy(zero_copy_only=False).astype(np.float32).reshape(shape)


__all__ = [
    "POOLINGS",
    "distributed_state",
    "load_encoder",
    "iter_embeddings",
    "compute_embeddings",
    "embed",
    "read_embeddings",
    "model_fingerprint",
]
