"""Model-ready samples of a dataset: the one wrapper both trainers use to turn `fmri` series into
`fmri_values` with a feature extractor (and, optionally, `labels`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .arrow_data import FMRI_COLUMN


class FmriSamples(torch.utils.data.Dataset):
    """`{"fmri_values": (1, R, num_frames) float32, "labels": ...}` per row of a `datasets.Dataset`.

    `fmri_values` come from `feature_extractor`: a random clip when `training`, drawn from
    (seed, epoch, row index) alone, so any batch order, worker count or resume gives the same clip;
    the centre clip otherwise (deterministic). `labels` (optional) is a column name or one value per
    row (e.g. standardised targets); each sample gets `torch.as_tensor` of its value, so the label's
    dtype is the column's or array's. A DataLoader fetches whole batches through `__getitems__`: one
    dataset read and one feature-extractor call per batch (per series length in a ragged dataset).
    """

    def __init__(
        self,
        dataset,
        feature_extractor,
        fmri_column: str = FMRI_COLUMN,
        labels: Any = None,
        training: bool = False,
        seed: int = 0,
    ):
        if fmri_column not in dataset.column_names:
            raise ValueError(
                f"fmri_column: expected a column of the dataset {dataset.column_names}, got {fmri_column!r}"
            )
        if isinstance(labels, str):
            if labels not in dataset.column_names:
                raise ValueError(f"labels: expected a column of the dataset {dataset.column_names}, got {labels!r}")
            labels = dataset.with_format("numpy", columns=[labels])[labels]
        if labels is not None and len(labels) != len(dataset):
            raise ValueError(f"labels: expected one value per row ({len(dataset)}), got {len(labels)}")
        self.dataset = dataset.with_format("numpy", columns=[fmri_column])
        self.feature_extractor, self.fmri_column = feature_extractor, fmri_column
        self.labels, self.training, self.seed, self.epoch = labels, training, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Training clips of another epoch (a DataLoader sampler's `set_epoch` does the same for order)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        indices = [int(index) for index in indices]
        rows = self.dataset[indices][self.fmri_column]
        if isinstance(rows, np.ndarray) and rows.dtype != object:
            values = self._extract(rows, indices)
        else:  # series of several lengths: one call per length, each a rectangular batch
            rows = [np.asarray(row) for row in rows]
            values = [None] * len(indices)
            for length in sorted({row.shape[-1] for row in rows}):
                where = [i for i, row in enumerate(rows) if row.shape[-1] == length]
                extracted = self._extract(np.stack([rows[i] for i in where]), [indices[i] for i in where])
                for i, value in zip(where, extracted):
                    values[i] = value
        samples = [{"fmri_values": value} for value in values]
        if self.labels is not None:
            for sample, index in zip(samples, indices):
                sample["labels"] = torch.as_tensor(self.labels[index])
        return samples

    def _extract(self, series: np.ndarray, indices: list[int]) -> list[torch.Tensor]:
        """(1, R, num_frames) tensors of a (B, R, T) batch; training clips from one generator per row."""
        generators = (
            [np.random.default_rng([self.seed, self.epoch, index]) for index in indices] if self.training else None
        )
        features = self.feature_extractor(
            series, time_axis=-1, training=self.training, seed=generators, return_tensors="np"
        )
        return list(torch.from_numpy(np.ascontiguousarray(features["fmri_values"])).unbind(0))


__all__ = ["FmriSamples"]
