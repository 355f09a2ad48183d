"""ROI-pooled attention of a cohort: per subject and per class of a label column (`cohort_attention`),
summarised by network and contrasted between two classes (`CohortAttention.contrast`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .attention_pooling import ATTENTION_METHOD, attention_modules, find_encoder, record_roi_attention, select_layers
from .network_statistics import (
    attention_received,
    labels_of_rows,
    network_matrix,
    network_membership,
    permutation_test,
    sorted_labels,
)


@dataclass
class CohortAttention:
    """ROI-pooled attention of a cohort (see `cohort_attention`). Arrays are indexed [subject, layer, ...]
    or [layer, ...]; `networks` is the network order of every K axis."""

    layers: list[int]
    networks: list[str]
    roi_networks: list[str]
    roi_matrix: np.ndarray  # (L, R, R) cohort mean
    subject_network_matrix: np.ndarray  # (S, L, K, K), key_pooling "mean"
    subject_received: np.ndarray  # (S, L, K), size-normalised (attention_received)
    subject_roi_received: np.ndarray  # (S, L, R): attention each ROI receives, mean over query ROIs
    subject_ids: list | None = None
    labels: np.ndarray | None = None
    label_column: str | None = None
    method: str = ATTENTION_METHOD

    @property
    def num_subjects(self) -> int:
        return self.subject_received.shape[0]

    @property
    def network_matrix(self) -> np.ndarray:
        """(L, K, K) cohort mean of the subjects' network matrices."""
        return self.subject_network_matrix.mean(axis=0)

    @property
    def received(self) -> np.ndarray:
        """(L, K) cohort mean of the attention received per network."""
        return self.subject_received.mean(axis=0)

    @property
    def classes(self) -> list:
        if self.labels is None:
            raise ValueError(
                "label_column: this CohortAttention was computed without a label column; pass label_column=..."
            )
        return sorted_labels(self.labels)

    def _layer_view(self, array: np.ndarray, layer: int | None) -> np.ndarray:
        """Select one layer (by its model index) of axis 1, or average the selected layers (None)."""
        if layer is None:
            return array.mean(axis=1)
        if layer not in self.layers:
            raise ValueError(f"layer: expected one of the analysed layers {self.layers}, got {layer!r}")
        return array[:, self.layers.index(layer)]

    def received_by_class(self, layer: int | None = None) -> dict[Any, np.ndarray]:
        """Class -> (K,) mean attention received per network (one layer, or the mean of the analysed layers)."""
        values = self._layer_view(self.subject_received, layer)
        return {label: values[self.labels == label].mean(axis=0) for label in self.classes}

    def network_matrix_by_class(self, layer: int | None = None) -> dict[Any, np.ndarray]:
        """Class -> (K, K) mean network matrix (one layer, or the mean of the analysed layers)."""
        values = self._layer_view(self.subject_network_matrix, layer)
        return {label: values[self.labels == label].mean(axis=0) for label in self.classes}

    def contrast(
        self,
        layer: int | None = None,
        n_permutations: int = 5000,
        seed: int = 0,
        statistic: str = "mean_difference",
        order: Sequence | None = None,
    ):
        """`permutation_test` of the attention received per network between the two classes."""
        if self.labels is None:
            raise ValueError("label_column: a contrast needs labels; compute cohort_attention with label_column=...")
        values = self._layer_view(self.subject_received, layer)
        return permutation_test(
            values,
            self.labels,
            n_permutations=n_permutations,
            seed=seed,
            statistic=statistic,
            names=self.networks,
            order=order,
        )

    def received_table(self):
        """Long pandas table: one row per (subject, layer, network) with the attention received."""
        import pandas as pd

        subjects, layers, networks = self.subject_received.shape
        frame = pd.DataFrame(
            {
                "subject": np.repeat(np.arange(subjects), layers * networks),
                "layer": np.tile(np.repeat(self.layers, networks), subjects),
                "network": np.tile(self.networks, subjects * layers),
                "attention_received": self.subject_received.reshape(-1),
            }
        )
        if self.subject_ids is not None:
            frame.insert(1, "subject_id", np.repeat(np.asarray(self.subject_ids, dtype=object), layers * networks))
        if self.labels is not None:
            frame.insert(1, self.label_column or "label", np.repeat(self.labels, layers * networks))
        return frame


@torch.no_grad()
def cohort_attention(
    model,
    dataset,
    feature_extractor,
    networks: Sequence[str],
    layers=None,
    label_column: str | None = None,
    max_subjects: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
    fmri_column: str = "fmri",
    id_column: str | None = "subject_id",
    query_chunk_size: int | None = None,
    max_classes: int = 20,
) -> CohortAttention:
    """
    ROI-pooled attention of the first `max_subjects` rows (default all) of `dataset`, run through
    `feature_extractor` deterministically (centre clip, as `iter_embeddings`), with its gradient when it
    has one. Keeps per subject the network matrix (size-normalised, `network_matrix`), the attention
    received per network (`attention_received`) and per ROI; the ROI x ROI matrix as a cohort mean.
    `label_column` (categorical, at most `max_classes` values) enables per-class summaries and contrasts.
    """
    encoder = find_encoder(model)
    num_rois = encoder.config.num_rois
    network_membership(networks, num_rois)  # validates the labels before any work
    roi_networks = [str(label) for label in networks]
    chosen = select_layers(layers, len(attention_modules(encoder)))
    if getattr(feature_extractor, "num_rois", num_rois) != num_rois:
        raise ValueError(
            f"feature_extractor: produces {feature_extractor.num_rois} ROIs but the model expects num_rois={num_rois}"
        )
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    count = _rows_to_analyse(dataset, max_subjects)
    labels = _cohort_labels(dataset, label_column, count, max_classes)
    subject_ids = None
    if id_column is not None and id_column in dataset.column_names:
        subject_ids = list(dataset.select(range(count))[id_column])
    was_training = encoder.training
    encoder.eval()
    try:
        with record_roi_attention(
            encoder, num_rois, chosen, query_chunk_size, feature_extractor.num_frames // encoder.config.patch_size
        ) as recording:
            per_batch = _pooled_batches(
                encoder, recording, dataset, feature_extractor, count, batch_size, fmri_column, progress
            )
            roi_sum = np.zeros((len(chosen), num_rois, num_rois))
            subject_matrices, subject_received, subject_roi_received = [], [], []
            for pooled in per_batch:  # (B, L, R, R)
                roi_sum += pooled.sum(axis=0)
                matrices, order = network_matrix(pooled, roi_networks)
                subject_matrices.append(matrices)
                subject_received.append(attention_received(pooled, roi_networks)[0])
                subject_roi_received.append(pooled.mean(axis=-2))
    finally:
        encoder.train(was_training)
    return CohortAttention(
        layers=chosen,
        networks=order,
        roi_networks=roi_networks,
        roi_matrix=roi_sum / count,
        subject_network_matrix=np.concatenate(subject_matrices),
        subject_received=np.concatenate(subject_received),
        subject_roi_received=np.concatenate(subject_roi_received),
        subject_ids=subject_ids,
        labels=labels,
        label_column=label_column,
    )


def _rows_to_analyse(dataset, max_subjects: int | None) -> int:
    """How many of the first rows to analyse: all, or at most `max_subjects`; at least one."""
    count = len(dataset)
    if max_subjects is not None:
        if isinstance(max_subjects, bool) or not isinstance(max_subjects, int) or max_subjects < 1:
            raise ValueError(f"max_subjects: expected a positive integer or None, got {max_subjects!r}")
        count = min(count, max_subjects)
    if count == 0:
        raise ValueError("dataset: expected at least one row, got 0")
    return count


def _cohort_labels(dataset, label_column: str | None, count: int, max_classes: int) -> np.ndarray | None:
    """The categorical labels of the first `count` rows, or None without a label column."""
    if label_column is None:
        return None
    labels = np.asarray(labels_of_rows(dataset, label_column, count), dtype=object)
    distinct = len(set(labels.tolist()))
    if distinct > max_classes:
        raise ValueError(
            f"label_column: {label_column!r} has {distinct} distinct values, more than max_classes={max_classes}; "
            "per-class summaries need a categorical label (bin a continuous one first, e.g. with dataset.map)"
        )
    return labels


def _pooled_batches(
    encoder, recording, dataset, feature_extractor, count: int, batch_size: int, fmri_column: str, progress: bool
):
    """Yield the pooled attention (B, L, R, R) float64 of the first `count` rows, one batch at a time."""
    device = next(encoder.parameters()).device
    gradient = getattr(feature_extractor, "gradient", None)
    gradient = None if gradient is None else torch.as_tensor(gradient, device=device)
    view = dataset.with_format("numpy", columns=[fmri_column])
    with tqdm(total=count, desc="attention", unit="subject", disable=not progress) as bar:
        for first in range(0, count, batch_size):
            series = view[first : min(first + batch_size, count)][fmri_column]
            features = feature_extractor(series, time_axis=-1, training=False, return_tensors="pt")
            encoder(features["fmri_values"].to(device), gradient=gradient)
            pooled = recording.take().transpose(0, 1).double().cpu().numpy()
            yield pooled
            bar.update(pooled.shape[0])


__all__ = ["CohortAttention", "cohort_attention"]
