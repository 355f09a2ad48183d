"""What a Brain-JEPA model attends to, in the brain's own networks, and what drives a fine-tuned head.

- `roi_attention`: per layer, head-averaged attention pooled to ROI x ROI (row = query ROI, mean over
  its time-patch tokens; column = key ROI, sum over its time-patch tokens), computed as a by-product
  of ONE forward: the analysed layers run a chunked attention that returns the usual output and
  accumulates the pooled weights, so no (heads, N, N) matrix is ever held.
- `network_matrix`, `attention_received`: the same at the level of networks (any per-ROI labels).
- `cohort_attention`: over a `datasets.Dataset`, per subject and per class of a label column.
- `permutation_test`: a two-group contrast per network, label permutations, Benjamini-Hochberg FDR.
- `roi_attribution`: integrated gradients or input x gradient of a fine-tuned classification head,
  summed over time per ROI.

Attention weights show where the model looks, not why it decides; the attributions are sensitivities
of one output to the input, not causal effects. docs/analysis.md says what each can and cannot tell.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

ATTENTION_METHOD = (
    "attention weights: head-averaged softmax attention of the encoder, pooled to ROIs (query ROI: mean "
    "over its time patches; key ROI: sum over its time patches); shows where the model looks, not why it decides"
)
ATTRIBUTION_METHODS = {
    "integrated_gradients": (
        "integrated gradients: (x - baseline) times the gradient of the chosen output averaged along the straight "
        "path from the baseline to x, summed over time per ROI; a sensitivity of that output to the input, "
        "not a causal effect"
    ),
    "input_x_gradient": (
        "input x gradient: x times the gradient of the chosen output at x, summed over time per ROI; a local, "
        "first-order sensitivity, not a causal effect"
    ),
}
KEY_POOLINGS = ("mean", "sum")
STATISTICS = ("mean_difference", "t")

# Name under which the pooled-attention function is registered in transformers' attention interface.
ROI_POOLED_ATTENTION = "brain_jepa_roi_pooled"
# Default work buffer of the chunked attention (per thread): query rows per chunk = this many scores / tokens.
_CHUNK_SCORES = 1 << 19
# Scores whose row maxima lie in this range are exponentiated without subtracting the maximum
# (exp cannot overflow or underflow there, also summed over 1e12 keys); outside it, it is subtracted.
_SAFE_EXP_RANGE = (-30.0, 60.0)


# ----------------------------------------------------------------------------------------------
# Model access
# ----------------------------------------------------------------------------------------------


def _encoder(model) -> torch.nn.Module:
    """The BrainJepaModel inside `model`: its `base_model` (itself for an encoder)."""
    inner = getattr(model, "base_model", None)
    encoder = inner if isinstance(inner, torch.nn.Module) else model
    if not isinstance(encoder, torch.nn.Module) or not _attention_modules(encoder):
        raise ValueError(
            "model: expected a BrainJepaModel or a model holding one as `.brain_jepa` "
            f"(BrainJepaForSequenceClassification, BrainJepaForPreTraining), got {type(model).__name__}"
        )
    return encoder


def _is_attention(module: torch.nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("num_heads", "head_dim", "scaling", "qkv"))


def _attention_modules(encoder: torch.nn.Module) -> list[torch.nn.Module]:
    """Self-attention modules of the encoder, in layer order."""
    return [module for module in encoder.modules() if _is_attention(module)]


def _selected_layers(layers, num_layers: int) -> list[int]:
    """Validated layer indices (negative ones count from the end), in the given order."""
    if layers is None:
        return list(range(num_layers))
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        layers = [layers]
    try:
        chosen = list(layers)
    except TypeError:
        raise ValueError(f"layers: expected None, an int or a sequence of ints, got {type(layers).__name__}") from None
    if not chosen:
        raise ValueError("layers: expected at least one layer index, got an empty sequence")
    resolved = []
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -num_layers <= layer < num_layers:
            raise ValueError(f"layers: expected indices in [{-num_layers}, {num_layers - 1}] (the model has {num_layers} layers), got {layer!r}")
        resolved.append(int(layer) % num_layers)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"layers: expected distinct layers, got {chosen}")
    return resolved


# ----------------------------------------------------------------------------------------------
# Chunked attention that also pools the weights to ROI x ROI
# ----------------------------------------------------------------------------------------------


class _Recorder:
    """Pooled attention of one attention module for the latest forward: (B, R, R) float32."""

    def __init__(self, layer: int, num_rois: int, num_time_patches: int | None, query_chunk_size: int | None):
        self.layer = layer
        self.num_rois = num_rois
        self.num_time_patches = num_time_patches
        self.query_chunk_size = query_chunk_size
        self.pooled: torch.Tensor | None = None


_SESSIONS_LOCK = threading.Lock()
_RECORDERS: dict[int, _Recorder] = {}  # id(attention module) -> recorder, while a session is open
_FALLBACKS: dict[int, str | None] = {}  # id(config) -> the implementation it had before the session


def _pooled_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Attention-interface function: analysed modules get the chunked attention that records pooled
    weights; every other module (and every call outside a session) gets its usual implementation."""
    recorder = _RECORDERS.get(id(module))
    if recorder is None:
        config = getattr(module, "config", None)
        if id(config) not in _FALLBACKS:
            raise RuntimeError(
                f"attn_implementation={ROI_POOLED_ATTENTION!r} only works inside brain_jepa_hf.analysis."
                "record_roi_attention(...); set the model's attn_implementation to 'sdpa' or 'eager'"
            )
        from .modeling_brain_jepa import eager_attention_forward

        function = ALL_ATTENTION_FUNCTIONS.get_interface(_FALLBACKS[id(config)] or "eager", eager_attention_forward)
        return function(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if attention_mask is not None:
        raise ValueError("attention_mask: the ROI-pooled attention supports no attention mask, got one")
    if dropout:
        raise ValueError(f"dropout: the ROI-pooled attention needs the model in eval mode, got attention dropout {dropout}")
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
        raise RuntimeError(
            "record_roi_attention: the ROI-pooled attention computes no gradients; run the forward under torch.no_grad()"
        )
    expected = None if recorder.num_time_patches is None else recorder.num_rois * recorder.num_time_patches
    if expected is not None and query.shape[2] != expected:
        raise ValueError(
            f"fmri_values: expected all {expected} tokens ({recorder.num_rois} ROIs x {recorder.num_time_patches} time "
            f"patches) in the attention, got {query.shape[2]}; the ROI-pooled attention needs every token (no context_indices)"
        )
    output, recorder.pooled = roi_pooled_attention(query, key, value, scaling, recorder.num_rois, recorder.query_chunk_size)
    return output, None


AttentionInterface.register(ROI_POOLED_ATTENTION, _pooled_attention_forward)


def roi_pooled_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float, num_rois: int,
    query_chunk_size: int | None = None, num_workers: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Softmax attention over (B, heads, N, d) inputs with ROI-major tokens (n = r * Tp + t), one
    (sample, head) pair and one chunk of whole query ROIs at a time. Returns the attention output
    (B, N, heads, d), as every attention-interface function does, and the head-averaged weights pooled
    to (B, R, R) float32: row i = mean over ROI i's Tp query tokens, column j = sum over ROI j's Tp key
    tokens (rows sum to 1).

    `query_chunk_size` (tokens, rounded down to whole ROIs, at least one ROI) bounds the work buffer to
    chunk x N scores; None picks about 2**19 scores (2 MiB, within a core's L2 cache). On CPU the
    (sample, head) pairs are shared among `num_workers` threads (default torch.get_num_threads()), each
    running its small operations single-threaded: many tiny multi-threaded operations would spend their
    time in thread synchronisation. Half-precision inputs are computed in float32.
    """
    batch, heads, tokens, head_dim = query.shape
    if tokens % num_rois:
        raise ValueError(
            f"num_rois: the sequence has {tokens} tokens, not a multiple of {num_rois} ROIs; the ROI-pooled "
            "attention needs every token of every ROI (no context_indices)"
        )
    time_patches = tokens // num_rois
    if query_chunk_size is None:
        query_chunk_size = max(1, _CHUNK_SCORES // tokens)
    rois_per_chunk = max(1, int(query_chunk_size) // time_patches)
    output = query.new_empty(batch, tokens, heads, head_dim)
    pairs = [(b, h) for b in range(batch) for h in range(heads)]
    geometry = (num_rois, time_patches, rois_per_chunk, scaling)
    workers = min(len(pairs), num_workers or torch.get_num_threads()) if query.device.type == "cpu" else 1
    if workers <= 1:
        pooled = _attend_pairs(pairs, query, key, value, output, *geometry)
    else:
        threads = torch.get_num_threads()
        # Grad and inference modes are per thread: the workers take the caller's (e.g. the demo's
        # inference_mode, whose tensors may only be written inside it).
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def work(first: int) -> torch.Tensor:
            torch.set_num_threads(1)
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return _attend_pairs(pairs[first::workers], query, key, value, output, *geometry)

        try:
            with ThreadPoolExecutor(workers) as pool:
                pooled = sum(pool.map(work, range(workers)))
        finally:
            torch.set_num_threads(threads)
    return output, pooled / (heads * time_patches)


def _attend_pairs(pairs, query, key, value, output, num_rois, time_patches, rois_per_chunk, scaling) -> torch.Tensor:
    """Attention of the given (sample, head) pairs written into `output`; returns their pooled weights
    summed over heads, (B, R, R) float32."""
    tokens, head_dim = query.shape[2], query.shape[3]
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    check_range = query.device.type == "cpu"
    low, high = _SAFE_EXP_RANGE
    pooled = torch.zeros(query.shape[0], num_rois, num_rois, dtype=torch.float32, device=query.device)
    scores_buffer = torch.empty(rois_per_chunk * time_patches, tokens, dtype=work, device=query.device)
    for b, h in pairs:
        # Keys and values in time-major order (t * R + r): pooling keys by ROI is then a sum of Tp
        # contiguous blocks; the output does not depend on the order of the keys.
        keys = key[b, h].reshape(num_rois, time_patches, head_dim).transpose(0, 1).reshape(tokens, head_dim).to(work)
        values = value[b, h].reshape(num_rois, time_patches, head_dim).transpose(0, 1).reshape(tokens, head_dim).to(work)
        queries = query[b, h].to(work) * scaling
        if check_range:  # |score| <= |query| * max |key| (Cauchy-Schwarz): where that is small, exp is safe as is
            bounds = (torch.linalg.vector_norm(queries, dim=-1) * torch.linalg.vector_norm(keys, dim=-1).max()).tolist()
        for first_roi in range(0, num_rois, rois_per_chunk):
            last_roi = min(first_roi + rois_per_chunk, num_rois)
            start, stop = first_roi * time_patches, last_roi * time_patches
            scores = torch.matmul(queries[start:stop], keys.t(), out=scores_buffer[: stop - start])
            if not check_range or max(bounds[start:stop]) >= -low:
                row_max = scores.amax(dim=-1, keepdim=True)
                if not check_range or not bool(((row_max > low) & (row_max < high)).all()):
                    scores.sub_(row_max)
            scores.exp_()
            by_key_roi = scores.view(stop - start, time_patches, num_rois).sum(dim=1)
            normaliser = by_key_roi.sum(dim=-1, keepdim=True)
            output[b, start:stop, h] = torch.matmul(scores, values).div_(normaliser).to(output.dtype)
            by_key_roi = by_key_roi.div_(normaliser).view(last_roi - first_roi, time_patches, num_rois).sum(dim=1)
            pooled[b, first_roi:last_roi] += by_key_roi.float()
    return pooled


@contextlib.contextmanager
def record_roi_attention(model, num_rois: int, layers=None, query_chunk_size: int | None = None,
                         num_time_patches: int | None = None):
    """
    Context manager: inside it, every forward of `model` (a BrainJepaModel, or a model holding one as
    `.brain_jepa`) also records the ROI-pooled attention of the selected `layers` (default all), which
    `take()` on the yielded object returns as (num_layers, B, R, R). The model's outputs are unchanged;
    its attention implementation is swapped for the duration and restored afterwards, even on error.
    Every token must reach the attention (no `context_indices`); give `num_time_patches` to have that checked.

        with record_roi_attention(classifier, num_rois=450) as recording:
            logits = classifier(fmri_values).logits
        pooled = recording.take()
    """
    encoder = _encoder(model)
    modules = _attention_modules(encoder)
    chosen = _selected_layers(layers, len(modules))
    if isinstance(num_rois, bool) or not isinstance(num_rois, (int, np.integer)) or num_rois < 1:
        raise ValueError(f"num_rois: expected a positive integer, got {num_rois!r}")
    if query_chunk_size is not None and (
        isinstance(query_chunk_size, bool) or not isinstance(query_chunk_size, (int, np.integer)) or query_chunk_size < 1
    ):
        raise ValueError(f"query_chunk_size: expected a positive integer or None, got {query_chunk_size!r}")
    configs = {id(c): c for c in [getattr(model, "config", None), getattr(encoder, "config", None)]
               + [getattr(m, "config", None) for m in modules] if c is not None}
    recording = RoiAttentionRecording([_Recorder(layer, int(num_rois), num_time_patches, query_chunk_size) for layer in chosen])
    with _SESSIONS_LOCK:
        if any(id(m) in _RECORDERS for m in modules) or any(key in _FALLBACKS for key in configs):
            raise RuntimeError("model: already inside record_roi_attention; nested recordings of one model are not supported")
        previous = {key: config._attn_implementation for key, config in configs.items()}
        _FALLBACKS.update(previous)
        for recorder in recording.recorders:
            _RECORDERS[id(modules[recorder.layer])] = recorder
        for config in configs.values():
            config._attn_implementation = ROI_POOLED_ATTENTION
    try:
        yield recording
    finally:
        with _SESSIONS_LOCK:
            for key, config in configs.items():
                config._attn_implementation = previous[key]
                _FALLBACKS.pop(key, None)
            for recorder in recording.recorders:
                _RECORDERS.pop(id(modules[recorder.layer]), None)


class RoiAttentionRecording:
    """What `record_roi_attention` yields: the selected layers and, after a forward, their pooled weights."""

    def __init__(self, recorders: list[_Recorder]):
        self.recorders = recorders

    @property
    def layers(self) -> list[int]:
        return [recorder.layer for recorder in self.recorders]

    def take(self) -> torch.Tensor:
        """(num_layers, B, R, R) pooled attention of the latest forward; clears it."""
        missing = [recorder.layer for recorder in self.recorders if recorder.pooled is None]
        if missing:
            raise RuntimeError(
                f"layers {missing}: no attention was recorded; run a forward of the model inside the context "
                "(a model whose attention does not dispatch through config._attn_implementation cannot be recorded)"
            )
        pooled = torch.stack([recorder.pooled for recorder in self.recorders])
        for recorder in self.recorders:
            recorder.pooled = None
        return pooled


@torch.no_grad()
def roi_attention(model, fmri_values, gradient=None, layers=None, query_chunk_size: int | None = None,
                  return_outputs: bool = False):
    """
    Head-averaged attention of the selected `layers` (default all; negative indices count from the end)
    pooled to ROIs: a float32 tensor (num_layers, B, R, R) whose row i is query ROI i (mean over its Tp
    query tokens) and column j key ROI j (sum over its Tp key tokens); every row sums to 1. One forward
    of the encoder in eval mode; `return_outputs=True` also returns that forward's outputs (the same as
    a plain forward's). `model`: a BrainJepaModel or a model holding one as `.brain_jepa`.
    """
    encoder = _encoder(model)
    if not isinstance(fmri_values, torch.Tensor) or fmri_values.dim() != 4:
        shape = tuple(fmri_values.shape) if hasattr(fmri_values, "shape") else type(fmri_values).__name__
        raise ValueError(f"fmri_values: expected a tensor of shape (batch, channels, rois, frames), got {shape}")
    was_training = encoder.training
    encoder.eval()
    try:
        time_patches = fmri_values.shape[3] // encoder.config.patch_size
        with record_roi_attention(encoder, fmri_values.shape[2], layers, query_chunk_size, time_patches) as recording:
            outputs = encoder(fmri_values, gradient=gradient)
            pooled = recording.take()
    finally:
        encoder.train(was_training)
    return (pooled, outputs) if return_outputs else pooled


# ----------------------------------------------------------------------------------------------
# From ROIs to networks
# ----------------------------------------------------------------------------------------------


def _as_numpy(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(array)).sum())} NaN/Inf entries")
    return array


def network_membership(networks: Sequence[str], num_rois: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(R, K) 0/1 membership matrix and the K network names in order of first appearance."""
    if isinstance(networks, str) or not hasattr(networks, "__iter__"):
        raise ValueError(f"networks: expected a sequence of network names, one per ROI, got {type(networks).__name__}")
    labels = [str(label) for label in networks]
    if num_rois is not None and len(labels) != num_rois:
        raise ValueError(f"networks: expected {num_rois} labels (one per ROI), got {len(labels)}")
    order = list(dict.fromkeys(labels))
    index = {name: k for k, name in enumerate(order)}
    membership = np.zeros((len(labels), len(order)))
    membership[np.arange(len(labels)), [index[label] for label in labels]] = 1.0
    return membership, order


def network_matrix(roi_matrix, networks: Sequence[str], key_pooling: str = "mean") -> tuple[np.ndarray, list[str]]:
    """
    Network x network attention (..., K, K) from ROI-pooled attention (..., R, R) and one network name
    per ROI; networks in order of first appearance. Entry (a, b): mean over the query ROIs of network a
    of the attention they pay to the key ROIs of network b, averaged over those key ROIs
    (`key_pooling="mean"`, size-normalised: uniform attention gives 1/R everywhere, so a large network
    is not favoured for its size) or summed (`"sum"`: the share of attention, rows sum to 1).
    """
    if key_pooling not in KEY_POOLINGS:
        raise ValueError(f"key_pooling: expected one of {KEY_POOLINGS}, got {key_pooling!r}")
    matrix = _as_numpy(roi_matrix, "roi_matrix")
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"roi_matrix: expected shape (..., R, R), got {matrix.shape}")
    membership, order = network_membership(networks, matrix.shape[-1])
    sizes = membership.sum(axis=0)
    by_key = matrix @ membership  # (..., R, K): summed over key ROIs of each network
    if key_pooling == "mean":
        by_key = by_key / sizes
    result = np.swapaxes(np.swapaxes(by_key, -1, -2) @ membership, -1, -2) / sizes[:, None]
    return result, order


def attention_received(roi_matrix, networks: Sequence[str], relative_to_uniform: bool = False) -> tuple[np.ndarray, list[str]]:
    """
    Attention received per network (..., K), size-normalised: for each key ROI, the attention it receives
    averaged over all query ROIs; then the mean over the ROIs of the network. Uniform attention gives 1/R
    for every network whatever its size (`relative_to_uniform=True` multiplies by R, so 1 = uniform).
    """
    matrix = _as_numpy(roi_matrix, "roi_matrix")
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"roi_matrix: expected shape (..., R, R), got {matrix.shape}")
    membership, order = network_membership(networks, matrix.shape[-1])
    per_roi = matrix.mean(axis=-2)
    result = per_roi @ membership / membership.sum(axis=0)
    return (result * matrix.shape[-1] if relative_to_uniform else result), order


def network_attribution(roi_values, networks: Sequence[str], reduction: str = "mean") -> tuple[np.ndarray, list[str]]:
    """Per-network attribution (..., K) from per-ROI values (..., R): the mean over the network's ROIs
    (size-normalised) or their sum (`reduction="sum"`: network totals add up to the ROI total)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    values = _as_numpy(roi_values, "roi_values")
    membership, order = network_membership(networks, values.shape[-1])
    total = values @ membership
    return (total / membership.sum(axis=0) if reduction == "mean" else total), order


# ----------------------------------------------------------------------------------------------
# A cohort
# ----------------------------------------------------------------------------------------------


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
            raise ValueError("label_column: this CohortAttention was computed without a label column; pass label_column=...")
        return _sorted_labels(self.labels)

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

    def contrast(self, layer: int | None = None, n_permutations: int = 5000, seed: int = 0,
                 statistic: str = "mean_difference", order: Sequence | None = None):
        """`permutation_test` of the attention received per network between the two classes."""
        if self.labels is None:
            raise ValueError("label_column: a contrast needs labels; compute cohort_attention with label_column=...")
        values = self._layer_view(self.subject_received, layer)
        return permutation_test(values, self.labels, n_permutations=n_permutations, seed=seed,
                                statistic=statistic, names=self.networks, order=order)

    def received_table(self):
        """Long pandas table: one row per (subject, layer, network) with the attention received."""
        import pandas as pd

        subjects, layers, networks = self.subject_received.shape
        frame = pd.DataFrame({
            "subject": np.repeat(np.arange(subjects), layers * networks),
            "layer": np.tile(np.repeat(self.layers, networks), subjects),
            "network": np.tile(self.networks, subjects * layers),
            "attention_received": self.subject_received.reshape(-1),
        })
        if self.subject_ids is not None:
            frame.insert(1, "subject_id", np.repeat(np.asarray(self.subject_ids, dtype=object), layers * networks))
        if self.labels is not None:
            frame.insert(1, self.label_column or "label", np.repeat(self.labels, layers * networks))
        return frame


def _is_missing(label) -> bool:
    return label is None or (isinstance(label, (float, np.floating)) and math.isnan(label))


def _sorted_labels(labels) -> list:
    distinct = list(dict.fromkeys(np.asarray(labels, dtype=object).tolist()))
    try:
        return sorted(distinct)
    except TypeError:
        return sorted(distinct, key=str)


@torch.no_grad()
def cohort_attention(model, dataset, feature_extractor, networks: Sequence[str], layers=None,
                     label_column: str | None = None, max_subjects: int | None = None, batch_size: int = 4,
                     progress: bool = True, fmri_column: str = "fmri", id_column: str | None = "subject_id",
                     query_chunk_size: int | None = None, max_classes: int = 20) -> CohortAttention:
    """
    ROI-pooled attention of the first `max_subjects` rows (default all) of `dataset`, run through
    `feature_extractor` deterministically (centre clip, as `iter_embeddings`), with its gradient when it
    has one. Keeps per subject the network matrix (size-normalised, `network_matrix`), the attention
    received per network (`attention_received`) and per ROI; the ROI x ROI matrix as a cohort mean.
    `label_column` (categorical, at most `max_classes` values) enables per-class summaries and contrasts.
    """
    from tqdm.auto import tqdm

    encoder = _encoder(model)
    num_rois = encoder.config.num_rois
    network_membership(networks, num_rois)  # validates the labels before any work
    roi_networks = [str(label) for label in networks]
    chosen = _selected_layers(layers, len(_attention_modules(encoder)))
    if getattr(feature_extractor, "num_rois", num_rois) != num_rois:
        raise ValueError(f"feature_extractor: produces {feature_extractor.num_rois} ROIs but the model expects num_rois={num_rois}")
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    count = len(dataset)
    if max_subjects is not None:
        if isinstance(max_subjects, bool) or not isinstance(max_subjects, int) or max_subjects < 1:
            raise ValueError(f"max_subjects: expected a positive integer or None, got {max_subjects!r}")
        count = min(count, max_subjects)
    if count == 0:
        raise ValueError("dataset: expected at least one row, got 0")
    labels = None
    if label_column is not None:
        if label_column not in dataset.column_names:
            raise ValueError(f"label_column: expected one of the dataset's columns {dataset.column_names}, got {label_column!r}")
        raw = dataset.select(range(count))[label_column]
        missing = sum(_is_missing(label) for label in raw)
        if missing:
            raise ValueError(f"label_column: {missing} of the {count} rows have no {label_column!r} value; drop them first (dataset.filter)")
        labels = np.asarray(raw, dtype=object)
        distinct = len(set(labels.tolist()))
        if distinct > max_classes:
            raise ValueError(
                f"label_column: {label_column!r} has {distinct} distinct values, more than max_classes={max_classes}; "
                "per-class summaries need a categorical label (bin a continuous one first, e.g. with dataset.map)"
            )
    subject_ids = None
    if id_column is not None and id_column in dataset.column_names:
        subject_ids = list(dataset.select(range(count))[id_column])

    device = next(encoder.parameters()).device
    gradient = getattr(feature_extractor, "gradient", None)
    gradient = None if gradient is None else torch.as_tensor(gradient, device=device)
    view = dataset.with_format("numpy", columns=[fmri_column])
    roi_sum = np.zeros((len(chosen), num_rois, num_rois))
    subject_matrices, subject_received, subject_roi_received = [], [], []
    was_training = encoder.training
    encoder.eval()
    try:
        with tqdm(total=count, desc="attention", unit="subject", disable=not progress) as bar, \
                record_roi_attention(encoder, num_rois, chosen, query_chunk_size,
                                     feature_extractor.num_frames // encoder.config.patch_size) as recording:
            for first in range(0, count, batch_size):
                series = view[first: min(first + batch_size, count)][fmri_column]
                features = feature_extractor(series, time_axis=-1, training=False, return_tensors="pt")
                encoder(features["fmri_values"].to(device), gradient=gradient)
                pooled = recording.take().transpose(0, 1).double().cpu().numpy()  # (B, L, R, R)
                roi_sum += pooled.sum(axis=0)
                matrices, order = network_matrix(pooled, roi_networks)
                subject_matrices.append(matrices)
                subject_received.append(attention_received(pooled, roi_networks)[0])
                subject_roi_received.append(pooled.mean(axis=-2))
                bar.update(pooled.shape[0])
    finally:
        encoder.train(was_training)
    return CohortAttention(
        layers=chosen, networks=order, roi_networks=roi_networks, roi_matrix=roi_sum / count,
        subject_network_matrix=np.concatenate(subject_matrices), subject_received=np.concatenate(subject_received),
        subject_roi_received=np.concatenate(subject_roi_received), subject_ids=subject_ids, labels=labels,
        label_column=label_column,
    )


# ----------------------------------------------------------------------------------------------
# Group contrast
# ----------------------------------------------------------------------------------------------


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), same order as the input."""
    p = np.asarray(p_values, dtype=np.float64)
    count = p.size
    order = np.argsort(p)
    scaled = p[order] * count / np.arange(1, count + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    result = np.empty(count)
    result[order] = np.minimum(adjusted, 1.0)
    return result


def _group_statistic(sums, squares, counts_a, total_sum, total_squares, total_count, statistic):
    """Statistic (second group minus first) from the first group's sums (P, K), given the totals."""
    counts_b = total_count - counts_a
    mean_a = sums / counts_a
    mean_b = (total_sum - sums) / counts_b
    difference = mean_b - mean_a
    if statistic == "mean_difference":
        return difference
    var_a = (squares - counts_a * mean_a**2) / (counts_a - 1)
    var_b = (total_squares - squares - counts_b * mean_b**2) / (counts_b - 1)
    spread = np.sqrt(np.maximum(var_a, 0) / counts_a + np.maximum(var_b, 0) / counts_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = difference / spread
    return np.where(spread > 0, t, 0.0)


def permutation_test(values, groups, n_permutations: int = 5000, seed: int = 0, statistic: str = "mean_difference",
                     names: Sequence[str] | None = None, order: Sequence | None = None):
    """
    Two-group contrast per column of `values` (subjects x networks; a pandas DataFrame names the columns):
    the difference of group means (second minus first group; `statistic="t"`: Welch's t), two-sided
    p-values from `n_permutations` random relabellings of the subjects (fixed `seed`), with the +1
    correction p = (1 + #{|T_perm| >= |T_obs|}) / (1 + n_permutations), and Benjamini-Hochberg
    adjusted p-values over the columns (`p_fdr`). Groups are in sorted order unless `order=(first, second)`.
    Returns a pandas DataFrame indexed by network.
    """
    import pandas as pd

    if statistic not in STATISTICS:
        raise ValueError(f"statistic: expected one of {STATISTICS}, got {statistic!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(f"n_permutations: expected a positive integer, got {n_permutations!r}")
    if isinstance(values, pd.DataFrame):
        names = [str(c) for c in values.columns] if names is None else names
        values = values.to_numpy()
    matrix = _as_numpy(values, "values")
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(f"values: expected shape (subjects, networks), got {matrix.shape}")
    subjects, columns = matrix.shape
    names = [str(k) for k in range(columns)] if names is None else [str(n) for n in names]
    if len(names) != columns:
        raise ValueError(f"names: expected {columns} names (one per column of values), got {len(names)}")
    labels = np.asarray(list(groups), dtype=object)
    if labels.shape != (subjects,):
        raise ValueError(f"groups: expected {subjects} labels (one per row of values), got {labels.size}")
    missing = sum(_is_missing(label) for label in labels)
    if missing:
        raise ValueError(f"groups: expected a label for every subject, got {missing} missing (None/NaN); drop those subjects first")
    distinct = _sorted_labels(labels)
    if len(distinct) == 1:
        raise ValueError(
            f"groups: expected two groups to contrast, got one ({distinct[0]!r}) for all {subjects} subjects; "
            "the label needs subjects of two classes"
        )
    if len(distinct) > 2:
        raise ValueError(
            f"groups: expected exactly two groups, got {len(distinct)} ({distinct}); contrast two at a time: keep = "
            "np.isin(groups, [first, second]); permutation_test(values[keep], groups[keep]) (or merge classes)"
        )
    if order is not None:
        order = list(order)
        if len(order) != 2 or set(order) != set(distinct):
            raise ValueError(f"order: expected the two groups {distinct} in the order to compare, got {order}")
        distinct = order
    first = np.array([label == distinct[0] for label in labels])
    counts = {distinct[0]: int(first.sum()), distinct[1]: int((~first).sum())}
    if min(counts.values()) < 2:
        raise ValueError(f"groups: expected at least 2 subjects per group, got {counts}")

    squares = matrix**2
    total_sum, total_squares = matrix.sum(axis=0), squares.sum(axis=0)
    count_a = counts[distinct[0]]
    indicator = first.astype(np.float64)
    observed = _group_statistic(indicator @ matrix, indicator @ squares, count_a, total_sum, total_squares, subjects, statistic)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(columns)
    tolerance = 1e-10 * np.maximum(np.abs(observed), 1e-300)
    block = max(1, int(4e6 // max(subjects, 1)))
    for start in range(0, n_permutations, block):
        size = min(block, n_permutations - start)
        shuffled = rng.permuted(np.tile(first, (size, 1)), axis=1).astype(np.float64)
        permuted = _group_statistic(shuffled @ matrix, shuffled @ squares, count_a, total_sum, total_squares, subjects, statistic)
        exceed += (np.abs(permuted) >= np.abs(observed) - tolerance).sum(axis=0)
    p_values = (1.0 + exceed) / (1.0 + n_permutations)
    mean_a = matrix[first].mean(axis=0)
    mean_b = matrix[~first].mean(axis=0)
    return pd.DataFrame({
        "group_a": [distinct[0]] * columns, "group_b": [distinct[1]] * columns,
        "n_a": count_a, "n_b": subjects - count_a,
        "mean_a": mean_a, "mean_b": mean_b, "difference": mean_b - mean_a,
        "statistic": observed, "p_value": p_values, "p_fdr": benjamini_hochberg(p_values),
    }, index=pd.Index(names, name="network"))


# ----------------------------------------------------------------------------------------------
# Attribution of a fine-tuned head
# ----------------------------------------------------------------------------------------------


@dataclass
class RoiAttribution:
    """Per-ROI attribution with what it is: `values` (B, R), the method's honest description, the target
    output per sample, the model output at x and at the baseline, and for integrated gradients the
    completeness gap sum(values) - (f(x) - f(baseline)) per sample (small when `steps` suffices)."""

    values: np.ndarray
    method: str
    description: str
    target: np.ndarray
    output: np.ndarray
    baseline_output: np.ndarray | None
    completeness_gap: np.ndarray | None


def _check_classifier(model) -> None:
    head = getattr(model, "classifier", None)
    if head is None or isinstance(head, torch.nn.Identity) or not hasattr(model, "brain_jepa"):
        raise ValueError(
            f"model: expected a fine-tuned model with a classification head (BrainJepaForSequenceClassification, "
            f"num_labels >= 1), got {type(model).__name__}"
            + (" without a head (num_labels=0)" if head is not None else "")
            + "; pass e.g. BrainJepaForSequenceClassification.from_pretrained(<fine-tuned folder>)"
        )


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    batch, num_outputs = logits.shape
    if target is None:
        return logits.argmax(dim=-1) if num_outputs > 1 else torch.zeros(batch, dtype=torch.long, device=logits.device)
    chosen = torch.as_tensor(target, device=logits.device)
    if chosen.is_floating_point() or chosen.dtype == torch.bool or chosen.dim() > 1:
        raise ValueError(f"target: expected an output index or one index per sample, got {target!r}")
    chosen = chosen.long().expand(batch) if chosen.dim() == 0 else chosen.long()
    if chosen.shape != (batch,):
        raise ValueError(f"target: expected one index per sample ({batch}), got {chosen.numel()}")
    if int(chosen.min()) < 0 or int(chosen.max()) >= num_outputs:
        raise ValueError(f"target: expected output indices in [0, {num_outputs - 1}], got {chosen.tolist()}")
    return chosen


def roi_attribution(model, fmri_values, target=None, method: str = "integrated_gradients", steps: int = 32,
                    gradient=None, baseline: str | torch.Tensor = "zero", internal_batch_size: int | None = None,
                    return_details: bool = False):
    """
    Per-ROI attribution (B, R) of one output of a fine-tuned classification head to the input, summed over
    channels and time. `method`: "integrated_gradients" ((x - baseline) x the gradient averaged over
    `steps` midpoints of the straight path from the baseline to x; attributions add up to
    f(x) - f(baseline)) or "input_x_gradient" (x x the gradient at x). `baseline`: "zero", "mean" (each
    ROI's own time average, i.e. the signal without its fluctuations) or a tensor like `fmri_values`.
    `target`: output index (int or one per sample); default the predicted class (output 0 for regression).
    `internal_batch_size`: samples per forward along the path (default B: one path point at a time).
    `return_details=True` returns a `RoiAttribution` (method description, outputs, completeness gap).
    """
    _check_classifier(model)
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"method: expected one of {sorted(ATTRIBUTION_METHODS)}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, (int, np.integer)) or internal_batch_size < 1
    ):
        raise ValueError(f"internal_batch_size: expected a positive integer or None, got {internal_batch_size!r}")
    if not isinstance(fmri_values, torch.Tensor) or fmri_values.dim() != 4 or not fmri_values.is_floating_point():
        shape = tuple(fmri_values.shape) if hasattr(fmri_values, "shape") else type(fmri_values).__name__
        raise ValueError(f"fmri_values: expected a float tensor of shape (batch, channels, rois, frames), got {shape}")
    x = fmri_values.detach()
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != x.shape:
            raise ValueError(f"baseline: expected a tensor of shape {tuple(x.shape)} like fmri_values, got {tuple(baseline.shape)}")
        reference = baseline.detach().to(x)
    elif baseline == "zero":
        reference = torch.zeros_like(x)
    elif baseline == "mean":
        reference = x.mean(dim=-1, keepdim=True).expand_as(x).clone()
    else:
        raise ValueError(f"baseline: expected 'zero', 'mean' or a tensor like fmri_values, got {baseline!r}")

    was_training = model.training
    model.eval()
    try:
        def selected_output(inputs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
            """The chosen output of each of k * B inputs (k path points of the B samples)."""
            repeats = inputs.shape[0] // x.shape[0]
            sample_gradient = gradient
            if isinstance(gradient, torch.Tensor) and gradient.dim() == 3 and repeats > 1:
                sample_gradient = gradient.repeat(repeats, 1, 1)
            logits = model(inputs, gradient=sample_gradient).logits
            return logits.gather(1, chosen.repeat(repeats)[:, None])[:, 0]

        with torch.no_grad():
            logits = model(x, gradient=gradient).logits
        chosen = _targets(target, logits)
        output = logits.gather(1, chosen[:, None])[:, 0]
        baseline_output, gap = None, None
        if method == "input_x_gradient":
            point = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(selected_output(point, chosen).sum(), point)
            attribution = x * grad
        else:
            total = torch.zeros_like(x)
            alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
            per_forward = max(1, (internal_batch_size or x.shape[0]) // x.shape[0])
            for first in range(0, steps, per_forward):
                chunk = alphas[first: first + per_forward].view(-1, 1, 1, 1, 1)
                points = (reference + chunk * (x - reference)).reshape(-1, *x.shape[1:]).requires_grad_(True)
                (grad,) = torch.autograd.grad(selected_output(points, chosen).sum(), points)
                total += grad.view(-1, *x.shape).sum(dim=0)
            attribution = (x - reference) * total / steps
            with torch.no_grad():
                baseline_output = selected_output(reference, chosen)
    finally:
        model.train(was_training)
    per_roi = attribution.sum(dim=(1, 3)).detach().float().cpu().numpy()
    if not return_details:
        return per_roi
    if baseline_output is not None:
        gap = per_roi.sum(axis=1) - (output - baseline_output).float().cpu().numpy()
    description = ATTRIBUTION_METHODS[method]
    if method == "integrated_gradients":
        description += f" (baseline {baseline if isinstance(baseline, str) else 'given'}, {steps} steps)"
    return RoiAttribution(
        values=per_roi, method=method, description=description, target=chosen.cpu().numpy(),
        output=output.float().cpu().numpy(),
        baseline_output=None if baseline_output is None else baseline_output.float().cpu().numpy(),
        completeness_gap=gap,
    )


__all__ = [
    "ATTENTION_METHOD",
    "ATTRIBUTION_METHODS",
    "CohortAttention",
    "RoiAttribution",
    "RoiAttentionRecording",
    "attention_received",
    "benjamini_hochberg",
    "cohort_attention",
    "network_attribution",
    "network_matrix",
    "network_membership",
    "permutation_test",
    "record_roi_attention",
    "roi_attention",
    "roi_attribution",
    "roi_pooled_attention",
]
