"""Feature extractor turning ROI time series of any length and TR into Brain-JEPA inputs.

Remote-code safe: imports only numpy and transformers (and, lazily, the sibling configuration file).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import torch
from transformers import BatchFeature, FeatureExtractionMixin

from .configuration_brain_jepa import check_local_path


SCALINGS = ("robust", "zscore", "none")
SHORT_SERIES_STRATEGIES = ("error", "stretch", "pad")
_TIME_AXES = (0, 1, -1, -2)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else f"a {type(value).__name__}"


def _as_numeric_array(value: Any, name: str) -> np.ndarray:
    """numpy view of an array-like (numpy, torch, nested lists); rejects ragged or non-numeric data."""
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name}: expected a rectangular numeric array, got ragged nested lists ({err})") from None
    if (
        array.dtype == object
        or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating))
        or array.dtype == np.bool_
    ):
        raise ValueError(f"{name}: expected real numbers, got dtype {array.dtype}")
    return array


def _check_time_axis(time_axis: Any) -> int:
    if isinstance(time_axis, bool) or time_axis not in _TIME_AXES:
        raise ValueError(
            f"time_axis: expected 0 or -2 (series stored time x ROI) or 1 or -1 (ROI x time), got {time_axis!r}"
        )
    return 0 if time_axis in (0, -2) else 1


def linspace_frame_indices(start: int, clip_length: int, num_frames: int) -> np.ndarray:
    """The original's frame choice: `num_frames` indices of linspace(start, start+clip-1), truncated."""
    return np.linspace(start, start + clip_length - 1, num_frames).astype(np.int64)


def resample_to_tr(series: np.ndarray, tr: float, target_tr: float) -> np.ndarray:
    """Linear interpolation of an (R, T) series sampled every `tr` s onto a grid every `target_tr` s."""
    num_in = series.shape[-1]
    if abs(tr - target_tr) <= 1e-9 * target_tr or num_in < 2:
        return series
    num_out = int(np.floor((num_in - 1) * tr / target_tr + 1e-9)) + 1
    position = np.arange(num_out) * (target_tr / tr)
    left = np.minimum(np.floor(position).astype(np.int64), num_in - 2)
    weight = (position - left).astype(series.dtype)
    return series[..., left] * (1 - weight) + series[..., left + 1] * weight


class BrainJepaFeatureExtractor(FeatureExtractionMixin):
    r"""
    Prepares ROI time series for Brain-JEPA: (optional) TR resampling, clip selection, scaling, and
    stacking into `fmri_values` of shape (batch, 1, num_rois, num_frames), float32.

    Steps (all saved in `preprocessor_config.json`):

    1. Resampling (only when `target_tr` is set): each series, sampled every `tr` seconds (given per
       call), is linearly interpolated onto a grid every `target_tr` seconds.
    2. Clip selection, as in the original: a clip of `sampling_rate * num_frames` volumes, from which
       `num_frames` indices `linspace(start, start + clip - 1, num_frames)` (truncated) are taken.
       `start` is uniform in [0, T - clip] when `training=True` (reproducible with `seed`) and the
       centre `(T - clip) // 2` otherwise. Series shorter than the clip follow `short_series`:
       `"error"` raises; `"stretch"` spreads the `num_frames` indices over the whole series
       (needs T >= num_frames, i.e. a lower effective sampling rate); `"pad"` takes every
       `sampling_rate`-th volume from the start and fills the missing frames with zeros after
       scaling (the population median for robust scaling, the sample mean for z-score).
    3. Scaling: `"robust"` (pretraining): `(x - median_r) / iqr_r`, where median and IQR per ROI are
       taken across training subjects of each subject's temporal mean, learned by `fit`;
       `"zscore"` (downstream): one mean and one std over the selected frames of each sample;
       `"none"`.

    Args:
        num_rois: ROIs R every series must have.
        num_frames: frames per output sample.
        sampling_rate: stride of the clip (clip length = sampling_rate * num_frames).
        scaling: "robust", "zscore" or "none".
        gradient: optional (R, G) connectivity-gradient matrix, returned as `gradient` by each call.
        target_tr: TR in seconds to resample to; None disables resampling.
        short_series: "error", "stretch" or "pad" (see above).
        robust_median, robust_iqr: per-ROI statistics learned by `fit` (None until fitted).
    """

    model_input_names = ["fmri_values"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As in transformers; a local path that does not exist fails at once with "no such folder"."""
        check_local_path(pretrained_model_name_or_path, kwargs.get("subfolder"))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def __init__(
        self,
        num_rois: int = 450,
        num_frames: int = 160,
        sampling_rate: int = 3,
        scaling: str = "robust",
        gradient: Any = None,
        target_tr: float | None = None,
        short_series: str = "error",
        robust_median: Any = None,
        robust_iqr: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("num_rois", num_rois), ("num_frames", num_frames), ("sampling_rate", sampling_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if scaling not in SCALINGS:
            raise ValueError(f"scaling: expected one of {SCALINGS}, got {scaling!r}")
        if short_series not in SHORT_SERIES_STRATEGIES:
            raise ValueError(f"short_series: expected one of {SHORT_SERIES_STRATEGIES}, got {short_series!r}")
        if target_tr is not None and not (isinstance(target_tr, (int, float)) and target_tr > 0):
            raise ValueError(f"target_tr: expected a positive number of seconds or None, got {target_tr!r}")
        self.num_rois = int(num_rois)
        self.num_frames = int(num_frames)
        self.sampling_rate = int(sampling_rate)
        self.scaling = scaling
        self.target_tr = None if target_tr is None else float(target_tr)
        self.short_series = short_series
        self.gradient = None if gradient is None else self._checked_gradient(gradient)
        self.robust_median = None
        self.robust_iqr = None
        if (robust_median is None) != (robust_iqr is None):
            raise ValueError("robust_median, robust_iqr: expected both or neither, got only one")
        if robust_median is not None:
            self._set_robust_statistics(
                _as_numeric_array(robust_median, "robust_median"), _as_numeric_array(robust_iqr, "robust_iqr")
            )

    # ------------------------------------------------------------------ configuration checks
    @property
    def clip_length(self) -> int:
        """Volumes spanned by one clip, `sampling_rate * num_frames`."""
        return self.sampling_rate * self.num_frames

    @property
    def is_fitted(self) -> bool:
        return self.robust_median is not None

    def _checked_gradient(self, gradient: Any) -> np.ndarray:
        gradient = _as_numeric_array(gradient, "gradient").astype(np.float32)
        if gradient.ndim != 2 or gradient.shape[0] != self.num_rois:
            raise ValueError(
                f"gradient: expected shape ({self.num_rois}, gradient_dim) matching num_rois={self.num_rois}, "
                f"got shape {gradient.shape}"
            )
        if not np.isfinite(gradient).all():
            raise ValueError("gradient: expected finite values, got NaN or Inf")
        return gradient

    def _set_robust_statistics(self, median: np.ndarray, iqr: np.ndarray) -> None:
        for name, stat in (("robust_median", median), ("robust_iqr", iqr)):
            if stat.shape != (self.num_rois,):
                raise ValueError(
                    f"{name}: expected one value per ROI, shape ({self.num_rois},), got shape {stat.shape}"
                )
            if not np.isfinite(stat).all():
                raise ValueError(f"{name}: expected finite values, got NaN or Inf")
        zero = np.flatnonzero(iqr <= 0)
        if zero.size:
            raise ValueError(
                f"robust_iqr: expected a positive IQR for every ROI, got {zero.size} ROI(s) with IQR <= 0 "
                f"(indices {zero[:10].tolist()}{' ...' if zero.size > 10 else ''}); a constant ROI cannot be "
                "robust-scaled: drop it or use scaling='zscore'"
            )
        self.robust_median = median.astype(np.float32)
        self.robust_iqr = iqr.astype(np.float32)

    # ------------------------------------------------------------------ input normalisation
    def _series_list(self, series: Any, time_axis: int) -> tuple[list[np.ndarray] | np.ndarray, int]:
        """Returns the input as a (B, R, T) array when rectangular, else a list of (R, T) arrays."""
        roi_axis_name = "rows" if time_axis == 1 else "columns"
        if isinstance(series, (list, tuple)):
            if len(series) == 0:
                raise ValueError("series: expected at least one series, got an empty list")
            first = series[0]
            if (
                not isinstance(first, (list, tuple))
                and np.ndim(first) == 0
                or (isinstance(first, (list, tuple)) and len(first) and np.ndim(first[0]) == 0)
            ):
                items = [_as_numeric_array(series, "series")]  # one series written as nested lists
            else:
                items = [_as_numeric_array(item, f"series[{i}]") for i, item in enumerate(series)]
        else:
            array = _as_numeric_array(series, "series")
            if array.ndim == 3:
                items = array
            elif array.ndim == 2:
                items = array[None]
            else:
                raise ValueError(
                    f"series: expected one series (2-D) or a batch (3-D, batch first), got shape {array.shape}"
                )
        if isinstance(items, np.ndarray):
            if items.size == 0:
                raise ValueError(f"series: expected non-empty series, got shape {items.shape}")
            batch = items if time_axis == 1 else items.transpose(0, 2, 1)
            self._check_rois(batch.shape[1], batch.shape[2], "series", roi_axis_name, time_axis)
            self._check_finite(batch)
            return batch, batch.shape[0]
        oriented = []
        for i, item in enumerate(items):
            if item.ndim != 2:
                raise ValueError(f"series[{i}]: expected a 2-D series, got shape {item.shape}")
            if item.size == 0:
                raise ValueError(f"series[{i}]: expected a non-empty series, got shape {item.shape}")
            item = item if time_axis == 1 else item.T
            self._check_rois(item.shape[0], item.shape[1], f"series[{i}]", roi_axis_name, time_axis)
            self._check_finite(item[None], offset=i)
            oriented.append(item)
        if len(oriented) == 1:
            return oriented[0][None], 1
        return oriented, len(oriented)

    def _check_rois(self, num_rois: int, num_times: int, name: str, roi_axis_name: str, time_axis: int) -> None:
        if num_rois == self.num_rois:
            return
        hint = ""
        if num_times == self.num_rois:
            hint = f"; the other axis has {self.num_rois} entries: pass time_axis={-2 if time_axis == 1 else -1}"
        raise ValueError(
            f"{name}: expected {self.num_rois} ROIs along the {roi_axis_name} (time_axis={'-1' if time_axis == 1 else '0'}), "
            f"got {num_rois} ROIs x {num_times} time points{hint}"
        )

    @staticmethod
    def _check_scaled(frames: torch.Tensor, batch) -> None:
        """The frames are float32: values beyond its range (or whose scaling overflows) become Inf/NaN."""
        finite = torch.isfinite(frames).flatten(1).all(1)
        if bool(finite.all()):
            return
        sample = int((~finite).nonzero()[0])
        peak = float(np.abs(np.asarray(batch[sample], dtype=np.float64)).max())
        raise ValueError(
            f"series[{sample}]: expected values that stay finite in float32 once scaled, got |x| up to {peak:.4g} "
            "(overflow); rescale the series (e.g. to percent signal change or z-scores) first"
        )

    @staticmethod
    def _check_finite(batch: np.ndarray, offset: int = 0) -> None:
        if np.isfinite(batch.sum()) or np.isfinite(batch).all():  # fast path first: a finite sum
            return
        bad = np.argwhere(~np.isfinite(batch))[0]
        index = ", ".join(str(int(i)) for i in bad[1:])
        raise ValueError(
            f"series[{offset + int(bad[0])}]: expected finite values, got NaN or Inf at (roi, time) = ({index})"
        )

    def _trs(self, tr: Any, count: int) -> list[float] | None:
        if tr is None:
            return None
        if self.target_tr is None:
            raise ValueError(
                f"tr: got {tr!r} but target_tr is None, so there is nothing to resample to; "
                "create the extractor with target_tr=<seconds>"
            )
        trs = [tr] * count if np.ndim(tr) == 0 else list(np.asarray(tr, dtype=float).ravel())
        if len(trs) != count:
            raise ValueError(f"tr: expected one TR or one per series ({count}), got {len(trs)}")
        for value in trs:
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"tr: expected positive TRs in seconds, got {value!r}")
        return [float(value) for value in trs]

    # ------------------------------------------------------------------ fitting
    def fit(self, series: Iterable[Any], time_axis: int = -1, tr: Any = None) -> "BrainJepaFeatureExtractor":
        """
        Learns the robust-scaling statistics: for each ROI, the median and IQR across training series of
        each series' temporal mean. Series are read one at a time, so any iterable (a list, a generator,
        a `datasets` column) works. Returns self.
        """
        axis = _check_time_axis(time_axis)
        means = []
        for i, item in enumerate(series):
            array = _as_numeric_array(item, f"series[{i}]")
            if array.ndim != 2 or array.size == 0:
                raise ValueError(f"series[{i}]: expected a non-empty 2-D series, got shape {array.shape}")
            array = array if axis == 1 else array.T
            self._check_rois(array.shape[0], array.shape[1], f"series[{i}]", "rows" if axis == 1 else "columns", axis)
            self._check_finite(array[None], offset=i)
            means.append(array.astype(np.float64).mean(axis=1))
        if len(means) < 2:
            raise ValueError(f"series: expected at least 2 training series to fit robust scaling, got {len(means)}")
        means = np.stack(means)
        median = np.median(means, axis=0)
        q75, q25 = np.percentile(means, [75, 25], axis=0)
        self._set_robust_statistics(median, q75 - q25)
        return self

    # ------------------------------------------------------------------ transform
    def _draw_starts(self, lengths: Sequence[int], rng) -> np.ndarray:
        """Clip start per series: uniform in [0, T - clip] when training (rng given: one Generator, or one
        per series), else the centre."""
        lengths = np.asarray(lengths, dtype=np.int64)
        room = np.maximum(lengths - self.clip_length, 0)
        if rng is None:
            return room // 2
        draws = (
            rng.random(len(lengths)) if isinstance(rng, np.random.Generator) else np.array([r.random() for r in rng])
        )
        return np.minimum(np.floor(draws * (room + 1)).astype(np.int64), room)

    def _frame_indices(self, num_times: int, start: int, name: str) -> tuple[np.ndarray, int]:
        """Frame indices for one series of `num_times` volumes, and how many output frames they fill."""
        clip = self.clip_length
        if num_times >= clip:
            return linspace_frame_indices(int(start), clip, self.num_frames), self.num_frames
        if self.short_series == "stretch" and num_times >= self.num_frames:
            return linspace_frame_indices(0, num_times, self.num_frames), self.num_frames
        if self.short_series == "pad":
            indices = np.arange(0, num_times, self.sampling_rate)[: self.num_frames]
            return indices, len(indices)
        needed = (
            f"at least num_frames={self.num_frames} volumes for short_series='stretch'"
            if self.short_series == "stretch"
            else f"sampling_rate*num_frames={clip} volumes"
        )
        where = f" at target_tr={self.target_tr}" if self.target_tr is not None else ""
        other = "short_series='pad'" if self.short_series == "stretch" else "short_series='stretch' or 'pad'"
        raise ValueError(
            f"{name}: expected {needed}{where}, got {num_times}; use {other}, or a smaller sampling_rate/num_frames"
        )

    def _scale(self, frames: torch.Tensor, valid: np.ndarray | None, offset: int) -> torch.Tensor:
        """Scales (B, R, F) float32 frames in place; `valid` (B,) counts the real (unpadded) frames."""
        if self.scaling == "robust":
            if not self.is_fitted:
                raise ValueError(
                    "scaling: 'robust' needs per-ROI statistics, got an unfitted extractor; call "
                    "fit(training_series) first, or use scaling='zscore' or 'none'"
                )
            if np.shape(self.robust_median) != (frames.shape[1],) or np.shape(self.robust_iqr) != (frames.shape[1],):
                raise ValueError(
                    f"robust_median, robust_iqr: expected one value per ROI ({frames.shape[1]}), got shapes "
                    f"{np.shape(self.robust_median)} and {np.shape(self.robust_iqr)}; refit on series of this atlas"
                )
            median = torch.from_numpy(np.asarray(self.robust_median, dtype=np.float32))[None, :, None]
            inverse_iqr = torch.from_numpy(1.0 / np.asarray(self.robust_iqr, dtype=np.float32))[None, :, None]
            frames.sub_(median).mul_(inverse_iqr)
        elif self.scaling == "zscore":
            if valid is None:
                std, mean = torch.std_mean(frames.reshape(frames.shape[0], -1), dim=1, correction=0)
            else:
                pairs = [torch.std_mean(frames[b, :, :n], correction=0) for b, n in enumerate(valid)]
                std = torch.stack([p[0] for p in pairs])
                mean = torch.stack([p[1] for p in pairs])
            flat_rows = torch.nonzero(std <= 1e-12 * torch.clamp(mean.abs(), min=1.0)).flatten()
            if flat_rows.numel():
                first = int(flat_rows[0])
                raise ValueError(
                    f"series[{offset + first}]: expected a non-constant series for scaling='zscore', "
                    f"got a constant one (std {float(std[first])})"
                )
            frames.sub_(mean[:, None, None]).div_(std[:, None, None])
        if valid is not None:
            for b, n in enumerate(valid):
                frames[b, :, n:] = 0.0
        return frames

    def __call__(
        self,
        series: Any,
        time_axis: int = -1,
        training: bool = False,
        seed: int | np.random.Generator | Sequence[np.random.Generator] | None = None,
        tr: float | Sequence[float] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """
        Prepares one series or a batch.

        Args:
            series: one series (2-D numpy/torch/nested lists), a 3-D batch (batch first), or a list of
                2-D series (their lengths may differ).
            time_axis: axis of time within each series: -1/1 for (ROI, time) (the dataset layout),
                0/-2 for (time, ROI). Never inferred from the shape.
            training: random clip offsets (reproducible with `seed`) instead of the centre clip.
            seed: int or numpy Generator for the training offsets, or one Generator per series (each
                series' offset then depends on its own Generator only, whatever the batch).
            tr: TR in seconds of each series (one value or one per series); needs `target_tr`.
            return_tensors: "pt", "np" or None (numpy).

        Returns:
            `BatchFeature` with `fmri_values` (B, 1, R, num_frames) float32 and, when the extractor holds
            one, `gradient` (R, G).
        """
        if kwargs:
            raise ValueError(f"unexpected keyword arguments: {sorted(kwargs)}")
        axis = _check_time_axis(time_axis)
        batch, count = self._series_list(series, axis)
        trs = self._trs(tr, count)
        rng = None
        if training and isinstance(seed, (list, tuple)):
            if len(seed) != count or not all(isinstance(item, np.random.Generator) for item in seed):
                raise ValueError(
                    f"seed: expected an int, a Generator or {count} Generators (one per series), got {seed!r}"
                )
            rng = list(seed)
        elif training:
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if trs is not None:
            batch = [resample_to_tr(batch[i], trs[i], self.target_tr) for i in range(count)]
        if isinstance(batch, np.ndarray):
            frames, valid = self._select_rectangular(batch, rng)
        else:
            frames, valid = self._select_ragged(batch, rng)
        frames = self._scale(frames, valid, 0)
        self._check_scaled(frames, batch)
        frames = frames.numpy()
        data = {"fmri_values": frames[:, None]}
        if self.gradient is not None:
            data["gradient"] = self._checked_gradient(self.gradient)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _select_rectangular(self, batch: np.ndarray, rng) -> tuple[torch.Tensor, np.ndarray | None]:
        """Frames of a (B, R, T) batch of equal-length series, gathered with torch."""
        count, _, num_times = batch.shape
        source = torch.from_numpy(batch if batch.dtype.kind == "f" else batch.astype(np.float32))
        starts = self._draw_starts([num_times] * count, rng)
        indices, filled = self._frame_indices(num_times, int(starts[0]), "series[0]" if count == 1 else "series")
        # one 2-D index_select per series: much faster on CPU than one gather over a 3-D tensor
        frames = torch.empty((count, self.num_rois, filled), dtype=source.dtype)
        shared = torch.from_numpy(indices)
        base = torch.from_numpy(linspace_frame_indices(0, self.clip_length, self.num_frames))
        for b in range(count):
            chosen = shared if rng is None or num_times <= self.clip_length else base + int(starts[b])
            torch.index_select(source[b], 1, chosen, out=frames[b])
        frames = frames.to(torch.float32)
        if filled < self.num_frames:
            frames = torch.cat([frames, frames.new_zeros(count, self.num_rois, self.num_frames - filled)], dim=2)
            return frames, np.full(count, filled)
        return frames, None

    def _select_ragged(self, batch: list[np.ndarray], rng) -> tuple[torch.Tensor, np.ndarray | None]:
        """Frames of a list of (R, T_i) series, one at a time."""
        frames = torch.zeros((len(batch), self.num_rois, self.num_frames), dtype=torch.float32)
        valid = np.empty(len(batch), dtype=np.int64)
        starts = self._draw_starts([item.shape[1] for item in batch], rng)
        for i, item in enumerate(batch):
            indices, filled = self._frame_indices(item.shape[1], int(starts[i]), f"series[{i}]")
            frames[i, :, :filled] = torch.from_numpy(np.ascontiguousarray(item[:, indices], dtype=np.float32))
            valid[i] = filled
        return frames, (None if (valid == self.num_frames).all() else valid)


def register_feature_extractor() -> None:
    """Registers the extractor with `AutoFeatureExtractor` for model_type "brain_jepa" (idempotent)."""
    from transformers import AutoFeatureExtractor

    from .configuration_brain_jepa import BrainJepaConfig

    AutoFeatureExtractor.register(BrainJepaConfig, BrainJepaFeatureExtractor, exist_ok=True)
    BrainJepaFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")


__all__ = ["BrainJepaFeatureExtractor", "register_feature_extractor", "linspace_frame_indices", "resample_to_tr"]
