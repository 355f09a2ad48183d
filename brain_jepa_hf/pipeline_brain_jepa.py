"""Inference pipelines for Brain-JEPA: ROI time series (arrays or .npy/.csv/.tsv files) in, subject
embeddings or head predictions out. Remote-code safe: imports only numpy, torch, transformers and the
modeling file saved beside it, so the copy next to the weights runs with
`pipeline(..., trust_remote_code=True)`.

Precision: `pipeline(..., dtype=...)` takes "auto" (transformers' default), "float32", "bfloat16" or a
torch dtype; "auto" is the hardware's fast precision (`resolve_dtype`: bfloat16 on CPUs with
AVX512-BF16/AMX and on GPUs with bfloat16, else float32), and the model is cast to it (in place,
as the pipeline moves it to its device)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from .modeling_brain_jepa import resolve_dtype, resolve_problem_type


SERIES_FILE_SUFFIXES = (".npy", ".csv", ".tsv", ".txt")


def read_series_file(path: str | os.PathLike) -> np.ndarray:
    """A 2-D float array from .npy, or from .csv/.tsv/.txt text (one optional header line is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inputs: {path} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in SERIES_FILE_SUFFIXES:
        raise ValueError(f"inputs: expected a file ending in one of {SERIES_FILE_SUFFIXES}, got {path.name!r}")
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            raise ValueError(f"inputs: {path} is not a numeric .npy array ({err})") from None
    else:
        delimiter = {".csv": ",", ".tsv": "\t"}.get(suffix)
        array = None
        for skip in (0, 1):  # a header line is tolerated, anything else non-numeric is an error
            try:
                array = np.loadtxt(path, delimiter=delimiter, ndmin=2, dtype=np.float64, skiprows=skip)
                break
            except ValueError as err:
                message = str(err)
        if array is None:
            raise ValueError(f"inputs: {path} is not a numeric table ({message})")
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"inputs: expected a 2-D numeric series in {path}, got dtype {array.dtype} shape {array.shape}"
        )
    return array


def as_series(inputs: Any) -> np.ndarray:
    """One series from a numpy array, a torch tensor, nested lists or a file path."""
    if isinstance(inputs, (str, os.PathLike)):
        return read_series_file(inputs)
    if isinstance(inputs, torch.Tensor):
        inputs = inputs.detach().cpu().numpy()
    array = np.asarray(inputs)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"inputs: expected a numeric (ROI, time) series or a file path, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"inputs: expected one 2-D series (ROI x time or time x ROI), got shape {array.shape}")
    return array


class _BrainJepaPipeline(Pipeline):
    """Shared preprocessing: series -> `fmri_values` (and `gradient`) via the feature extractor."""

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_tokenizer = False
    _load_feature_extractor = None  # used when the repository has one

    def __init__(self, *args, dtype: str | torch.dtype | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if dtype is not None:
            target = resolve_dtype(dtype, self.device)
            if self.model.dtype != target:
                self.model.to(target)

    def _sanitize_parameters(self, time_axis=None, tr=None, **kwargs):
        preprocess = {key: value for key, value in (("time_axis", time_axis), ("tr", tr)) if value is not None}
        return preprocess, {}, self._postprocess_parameters(**kwargs)

    def _postprocess_parameters(self, **kwargs) -> dict:
        if kwargs:
            raise ValueError(f"unexpected keyword arguments: {sorted(kwargs)}")
        return {}

    def preprocess(self, inputs, time_axis: int = -1, tr: float | None = None):
        series = as_series(inputs)
        if time_axis not in (0, 1, -1, -2):
            raise ValueError(f"time_axis: expected 0/-2 (time x ROI) or 1/-1 (ROI x time), got {time_axis!r}")
        if self.feature_extractor is not None:
            extra = {} if tr is None else {"tr": tr}  # resampled to the extractor's target_tr
            features = self.feature_extractor(series, time_axis=time_axis, return_tensors="pt", **extra)
            return {k: v for k, v in features.items() if k in ("fmri_values", "gradient")}
        if tr is not None:
            raise ValueError(f"tr: got {tr!r} but the model has no feature extractor to resample with; omit tr")
        config = self.model.config
        series = series.T if time_axis in (0, -2) else series
        expected = (config.num_rois, config.num_frames)
        if series.shape != expected:
            raise ValueError(
                f"inputs: without a feature extractor the series must already be (ROI, time) = {expected}, got "
                f"{series.shape}; save a BrainJepaFeatureExtractor with the model to crop and scale longer series"
            )
        return {"fmri_values": torch.as_tensor(series, dtype=torch.float32)[None, None]}

    def _forward(self, model_inputs):
        # The model casts to its dtype itself (and rejects values that overflow there).
        return self.model(fmri_values=model_inputs["fmri_values"], gradient=model_inputs.get("gradient"))


class BrainJepaFeatureExtractionPipeline(_BrainJepaPipeline):
    """Subject embeddings: the mean over output tokens (`pooler_output`), shape (hidden_size,), or all
    tokens with `pooling="none"`, shape (num_patches, hidden_size). Numpy by default; torch with
    `return_tensors=True`."""

    def _postprocess_parameters(self, pooling=None, return_tensors=None, **kwargs) -> dict:
        super()._postprocess_parameters(**kwargs)
        params = {}
        if pooling is not None:
            if pooling not in ("mean", "none"):
                raise ValueError(f"pooling: expected 'mean' or 'none', got {pooling!r}")
            params["pooling"] = pooling
        if return_tensors is not None:
            params["return_tensors"] = bool(return_tensors)
        return params

    def postprocess(self, model_outputs, pooling: str = "mean", return_tensors: bool = False):
        output = model_outputs.pooler_output[0] if pooling == "mean" else model_outputs.last_hidden_state[0]
        output = output.float()
        return output if return_tensors else output.numpy()


def regression_in_original_units(config, values: torch.Tensor) -> torch.Tensor:
    """Undo the standardisation of fine-tuning's regression targets (`regression_target_mean` / `_std`
    in the config); values of a head trained on raw targets are returned unchanged."""
    mean = getattr(config, "regression_target_mean", None)
    std = getattr(config, "regression_target_std", None)
    if mean is None or std is None:
        return values
    return values.double() * float(std) + float(mean)


class BrainJepaClassificationPipeline(_BrainJepaPipeline):
    """Predictions of a fine-tuned head as `[{"label", "score"}]`: class probabilities (softmax for
    single-label, sigmoid for multi-label, sorted, `top_k` best) or the regression value(s) in the
    target's original units under the target's name (`id2label`, e.g. `[{"label": "age", "score": 63.2}]`)."""

    def _postprocess_parameters(self, top_k=None, **kwargs) -> dict:
        super()._postprocess_parameters(**kwargs)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k: expected a positive integer or None, got {top_k!r}")
        return {} if top_k is None else {"top_k": top_k}

    def postprocess(self, model_outputs, top_k: int | None = None):
        config = self.model.config
        logits = model_outputs.logits[0].float()
        problem_type = resolve_problem_type(config.problem_type, config.num_labels)
        labels = [config.id2label.get(i, f"LABEL_{i}") for i in range(logits.shape[-1])]
        if problem_type == "regression":
            values = regression_in_original_units(config, logits)
            return [{"label": label, "score": float(value)} for label, value in zip(labels, values.tolist())]
        scores = torch.sigmoid(logits) if problem_type == "multi_label_classification" else torch.softmax(logits, -1)
        ranked = sorted(zip(labels, scores.tolist()), key=lambda item: item[1], reverse=True)
        return [{"label": label, "score": score} for label, score in ranked[:top_k]]


__all__ = [
    "BrainJepaFeatureExtractionPipeline",
    "BrainJepaClassificationPipeline",
    "read_series_file",
    "as_series",
    "regression_in_original_units",
]
