"""ROI-pooled attention of a Brain-JEPA encoder, computed as a by-product of one forward.

- `roi_attention`: per layer, head-averaged attention pooled to ROI x ROI (row = query ROI, mean over
  its time-patch tokens; column = key ROI, sum over its time-patch tokens). The analysed layers run a
  chunked attention (`roi_pooled_attention`) that returns the usual output and accumulates the pooled
  weights, so no (heads, N, N) matrix is ever held.
- `record_roi_attention`: the same inside any forward of a model (e.g. a classifier's), as a context.

Attention weights show where the model looks, not why it decides (docs/analysis.md).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .modeling_brain_jepa import eager_attention_forward


ATTENTION_METHOD = (
    "attention weights: head-averaged softmax attention of the encoder, pooled to ROIs (query ROI: mean "
    "over its time patches; key ROI: sum over its time patches); shows where the model looks, not why it decides"
)

# Name under which the pooled-attention function is registered in transformers' attention interface.
ROI_POOLED_ATTENTION = "brain_jepa_roi_pooled"
# Default work buffer of the chunked attention (per thread): query rows per chunk = this many scores / tokens.
_CHUNK_SCORES = 1 << 19
# Scores whose row maxima lie in this range are exponentiated without subtracting the maximum
# (exp cannot overflow or underflow there, also summed over 1e12 keys); outside it, it is subtracted.
_SAFE_EXP_RANGE = (-30.0, 60.0)


# ----------------------------------------------------------------------------------------------
# Model access (shared with cohort_attention)
# ----------------------------------------------------------------------------------------------


def find_encoder(model) -> torch.nn.Module:
    """The BrainJepaModel inside `model`: its `base_model` (itself for an encoder)."""
    inner = getattr(model, "base_model", None)
    encoder = inner if isinstance(inner, torch.nn.Module) else model
    if not isinstance(encoder, torch.nn.Module) or not attention_modules(encoder):
        raise ValueError(
            "model: expected a BrainJepaModel or a model holding one as `.brain_jepa` "
            f"(BrainJepaForSequenceClassification, BrainJepaForPreTraining), got {type(model).__name__}"
        )
    return encoder


def _is_attention(module: torch.nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("num_heads", "head_dim", "scaling", "qkv"))


def attention_modules(encoder: torch.nn.Module) -> list[torch.nn.Module]:
    """Self-attention modules of the encoder, in layer order."""
    return [module for module in encoder.modules() if _is_attention(module)]


def select_layers(layers, num_layers: int) -> list[int]:
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
        if (
            isinstance(layer, bool)
            or not isinstance(layer, (int, np.integer))
            or not -num_layers <= layer < num_layers
        ):
            raise ValueError(
                f"layers: expected indices in [{-num_layers}, {num_layers - 1}] (the model has {num_layers} layers), got {layer!r}"
            )
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
                f"attn_implementation={ROI_POOLED_ATTENTION!r} only works inside brain_jepa_hf.attention_pooling."
                "record_roi_attention(...); set the model's attn_implementation to 'sdpa' or 'eager'"
            )
        function = ALL_ATTENTION_FUNCTIONS.get_interface(_FALLBACKS[id(config)] or "eager", eager_attention_forward)
        return function(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if attention_mask is not None:
        raise ValueError("attention_mask: the ROI-pooled attention supports no attention mask, got one")
    if dropout:
        raise ValueError(
            f"dropout: the ROI-pooled attention needs the model in eval mode, got attention dropout {dropout}"
        )
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
    output, recorder.pooled = roi_pooled_attention(
        query, key, value, scaling, recorder.num_rois, recorder.query_chunk_size
    )
    return output, None


AttentionInterface.register(ROI_POOLED_ATTENTION, _pooled_attention_forward)


def roi_pooled_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float,
    num_rois: int,
    query_chunk_size: int | None = None,
    num_workers: int | None = None,
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
        values = (
            value[b, h].reshape(num_rois, time_patches, head_dim).transpose(0, 1).reshape(tokens, head_dim).to(work)
        )
        queries = query[b, h].to(work) * scaling
        if check_range:  # |score| <= |query| * max |key| (Cauchy-Schwarz): where that is small, exp is safe as is
            bounds = (
                torch.linalg.vector_norm(queries, dim=-1) * torch.linalg.vector_norm(keys, dim=-1).max()
            ).tolist()
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
def record_roi_attention(
    model, num_rois: int, layers=None, query_chunk_size: int | None = None, num_time_patches: int | None = None
):
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
    encoder = find_encoder(model)
    modules = attention_modules(encoder)
    chosen = select_layers(layers, len(modules))
    if isinstance(num_rois, bool) or not isinstance(num_rois, (int, np.integer)) or num_rois < 1:
        raise ValueError(f"num_rois: expected a positive integer, got {num_rois!r}")
    if query_chunk_size is not None and (
        isinstance(query_chunk_size, bool)
        or not isinstance(query_chunk_size, (int, np.integer))
        or query_chunk_size < 1
    ):
        raise ValueError(f"query_chunk_size: expected a positive integer or None, got {query_chunk_size!r}")
    configs = {
        id(c): c
        for c in [getattr(model, "config", None), getattr(encoder, "config", None)]
        + [getattr(m, "config", None) for m in modules]
        if c is not None
    }
    recording = RoiAttentionRecording(
        [_Recorder(layer, int(num_rois), num_time_patches, query_chunk_size) for layer in chosen]
    )
    with _SESSIONS_LOCK:
        if any(id(m) in _RECORDERS for m in modules) or any(key in _FALLBACKS for key in configs):
            raise RuntimeError(
                "model: already inside record_roi_attention; nested recordings of one model are not supported"
            )
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
def roi_attention(
    model, fmri_values, gradient=None, layers=None, query_chunk_size: int | None = None, return_outputs: bool = False
):
    """
    Head-averaged attention of the selected `layers` (default all; negative indices count from the end)
    pooled to ROIs: a float32 tensor (num_layers, B, R, R) whose row i is query ROI i (mean over its Tp
    query tokens) and column j key ROI j (sum over its Tp key tokens); every row sums to 1. One forward
    of the encoder in eval mode; `return_outputs=True` also returns that forward's outputs (the same as
    a plain forward's). `model`: a BrainJepaModel or a model holding one as `.brain_jepa`.
    """
    encoder = find_encoder(model)
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


__all__ = [
    "ATTENTION_METHOD",
    "ROI_POOLED_ATTENTION",
    "RoiAttentionRecording",
    "attention_modules",
    "find_encoder",
    "record_roi_attention",
    "roi_attention",
    "roi_pooled_attention",
    "select_layers",
]
