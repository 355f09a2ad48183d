"""Brainmarks plugin: any brain-jepa-hf model (Hub id or folder) as a Brainmarks model, with this
package's own preprocessing.

Brainmarks finds this module as a namespace-package plugin (`brainmarks/models/*.py`, no
`__init__.py`), shipped in the brain-jepa-hf wheel. It registers `brain_jepa_hf`:

    transform, model = brainmarks.models.registry.create_model("brain_jepa_hf", model="<Hub id or folder>")
    python -m brainmarks.main_logistic brain_jepa_hf patch <dataset> --overrides model_kwargs.model=<id>

Without `model=` the model comes from the environment variable BRAIN_JEPA_HF_MODEL (so that
`python -m brainmarks.models.test_models brain_jepa_hf` runs). The transform undoes Brainmarks'
per-ROI z-scoring (bold * std + mean) and then applies the model's `BrainJepaFeatureExtractor`
(TR resampling when the extractor has a target_tr, the original's clip of sampling_rate * num_frames
volumes, its scaling); the wrapper returns the pooled output as `cls_embeds` (B, 1, D) and the
tokens as `patch_embeds` (B, R * Tp, D).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn

from brainmarks.models.base import Embeddings
from brainmarks.models.registry import register_model


MODEL_ENVIRONMENT_VARIABLE = "BRAIN_JEPA_HF_MODEL"


class BrainJepaHfTransform:
    """Brainmarks sample (`bold` (T, D) z-scored per ROI, `mean`, `std` (1, D), `tr`) -> `fmri_values`
    (1, D, num_frames) from the model's feature extractor; `bold`, `mean` and `std` are dropped and the
    other keys (targets, metadata) are kept."""

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    @staticmethod
    def raw_series(sample: dict) -> np.ndarray:
        """The un-normalised (T, D) float32 series: bold * std + mean."""
        bold = torch.as_tensor(sample["bold"]).float()
        return (bold * torch.as_tensor(sample["std"]).float() + torch.as_tensor(sample["mean"]).float()).numpy()

    def __call__(self, sample: dict) -> dict:
        extractor = self.feature_extractor
        tr = float(sample["tr"]) if extractor.target_tr is not None else None
        features = extractor(self.raw_series(sample), time_axis=0, tr=tr, training=False, return_tensors="pt")
        out = {key: value for key, value in sample.items() if key not in ("bold", "mean", "std")}
        out["fmri_values"] = features["fmri_values"][0]
        return out

    def fit(self, train_dataset) -> None:
        """Learns robust-scaling statistics from the training split, only when the model's extractor
        uses robust scaling and has none (a pretrained model's own statistics are kept)."""
        extractor = self.feature_extractor
        if extractor.scaling != "robust" or extractor.is_fitted:
            return
        extractor.fit((self.raw_series(sample) for sample in train_dataset), time_axis=0)


class BrainJepaHfWrapper(nn.Module):
    """Frozen Brain-JEPA encoder: batch `fmri_values` (B, 1, D, F) -> Embeddings(pooled (B, 1, H), None,
    tokens (B, D * F / patch_size, H))."""

    __space__: str = "schaefer400_tians3"

    def __init__(self, encoder: nn.Module, gradient: np.ndarray | None, space: str):
        super().__init__()
        self.encoder = encoder
        self.__space__ = space
        self.register_buffer(
            "gradient", None if gradient is None else torch.as_tensor(gradient, dtype=torch.float32), persistent=False
        )

    def forward(self, batch: dict[str, Tensor]) -> Embeddings:
        fmri = batch["fmri_values"]
        output = self.encoder(fmri.to(next(self.encoder.parameters()).dtype), gradient=self.gradient)
        return Embeddings(
            cls_embeds=output.pooler_output[:, None], reg_embeds=None, patch_embeds=output.last_hidden_state
        )


@register_model("brain_jepa_hf")
def brain_jepa_hf(
    model: str | None = None,
    revision: str | None = None,
    target_tr: float | None = None,
    short_series: str = "pad",
    space: str | None = None,
    **kwargs,
):
    """(transform, wrapper) for the brain-jepa-hf model `model` (Hub id or folder; default: the
    BRAIN_JEPA_HF_MODEL environment variable). `target_tr` sets the extractor's resampling TR (default:
    the model's own, None = series used at their stored TR); `short_series` says what the extractor does
    with series shorter than its clip ("pad" by default: Brainmarks has short clips; "stretch",
    "error"); `space` overrides the Brainmarks space inferred from the number of ROIs."""
    from brain_jepa_hf.brainmarks_data import space_for_num_rois
    from brain_jepa_hf.embedding import load_encoder
    from brain_jepa_hf.feature_extraction_brain_jepa import SHORT_SERIES_STRATEGIES, BrainJepaFeatureExtractor

    if kwargs:
        raise ValueError(
            f"model_kwargs: unexpected {sorted(kwargs)}; expected model, revision, target_tr, short_series, space"
        )
    model = model or os.environ.get(MODEL_ENVIRONMENT_VARIABLE)
    if not model:
        raise ValueError(
            f"model: expected a brain-jepa-hf Hub id or folder (model_kwargs.model=... or {MODEL_ENVIRONMENT_VARIABLE}), got none"
        )
    encoder = load_encoder(str(model), revision=revision).requires_grad_(False)
    if short_series not in SHORT_SERIES_STRATEGIES:
        raise ValueError(f"short_series: expected one of {SHORT_SERIES_STRATEGIES}, got {short_series!r}")
    if target_tr is not None and not (isinstance(target_tr, (int, float)) and target_tr > 0):
        raise ValueError(f"target_tr: expected a positive number of seconds or None, got {target_tr!r}")
    extractor = BrainJepaFeatureExtractor.from_pretrained(str(model), revision=revision)
    extractor.short_series = short_series
    if target_tr is not None:
        extractor.target_tr = float(target_tr)
    if extractor.num_rois != encoder.config.num_rois or extractor.num_frames != encoder.config.num_frames:
        raise ValueError(
            f"model: its feature extractor gives ({extractor.num_rois} ROIs, {extractor.num_frames} frames) but the "
            f"encoder expects ({encoder.config.num_rois}, {encoder.config.num_frames})"
        )
    wrapper = BrainJepaHfWrapper(encoder, extractor.gradient, space or space_for_num_rois(encoder.config.num_rois))
    return BrainJepaHfTransform(extractor), wrapper
