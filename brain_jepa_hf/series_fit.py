"""Do a dataset's series fit the feature extractor's clip? Checked before any work starts, so a scan
shorter than `sampling_rate * num_frames` volumes stops a command at once, naming the option to use."""

from __future__ import annotations

from typing import Sequence

import numpy as np


SHORT_SERIES_CHOICES = ("error", "stretch", "pad")


def series_lengths(dataset, column: str) -> np.ndarray:
    """Time points of every row's (ROI, time) series, from the Arrow list lengths where possible."""
    if column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {column!r}, got columns {dataset.column_names}")
    shape = getattr(dataset.features[column], "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] is not None:
        return np.full(len(dataset), int(shape[1]), dtype=np.int64)
    if getattr(dataset, "_indices", None) is None:  # rows in table order: read the lengths only
        try:
            import pyarrow.compute as pc

            first_rois = pc.list_element(dataset.data.column(column), 0)
            return np.asarray(pc.list_value_length(first_rois).to_numpy(zero_copy_only=False), dtype=np.int64)
        except Exception:  # noqa: BLE001 - another storage layout: read the series below
            pass
    view = dataset.with_format("numpy", columns=[column])
    return np.array([np.shape(view[i][column])[-1] for i in range(len(view))], dtype=np.int64)


def check_series_fit(
    lengths: Sequence[int],
    feature_extractor,
    column: str = "fmri",
    cli: bool = True,
    names: Sequence | None = None,
    where: str = "",
) -> None:
    """Raise a ValueError naming the shortest series and the options that would fit it (`--short_series`,
    `--sampling_rate` when `cli`, else the feature extractor's `short_series` / `sampling_rate`)."""
    if getattr(feature_extractor, "target_tr", None) is not None:
        return  # lengths change with resampling to target_tr; the extractor checks each series itself
    lengths = np.asarray(lengths, dtype=np.int64)
    frames, rate, mode = feature_extractor.num_frames, feature_extractor.sampling_rate, feature_extractor.short_series
    needed = {"error": rate * frames, "stretch": frames}.get(mode, 1)
    short = np.flatnonzero(lengths < needed)
    if short.size == 0:
        return
    row = int(short[np.argmin(lengths[short])])
    shortest = int(lengths[row])
    label = f"row {row}" + (f" ({names[row]!r})" if names is not None else "")

    def option(name: str, value) -> str:
        return f"--{name} {value}" if cli else f"{name}={value!r}"

    fixes = []
    if mode != "stretch" and shortest >= frames:
        fixes.append(f"{option('short_series', 'stretch')} (the {frames} frames spread over each whole series)")
    if mode != "pad":
        fixes.append(f"{option('short_series', 'pad')} (missing frames filled)")
    if 1 <= shortest // frames < rate:
        fixes.append(
            f"{option('sampling_rate', shortest // frames)} (a clip of {shortest // frames * frames} volumes)"
        )
    if not fixes:
        fixes.append(f"a model with fewer frames than num_frames={frames}")
    raise ValueError(
        f"{column}: {short.size} of {lengths.size} series{where} have fewer than the {needed} volumes the feature "
        f"extractor needs (sampling_rate={rate} x num_frames={frames}, short_series={mode!r}); the shortest, "
        f"{label}, has {shortest}; pass " + " or ".join(fixes)
    )


def set_series_options(feature_extractor, sampling_rate: int | None = None, short_series: str | None = None):
    """Apply command-line overrides of the clip stride and the short-series rule to a feature extractor."""
    if sampling_rate is not None:
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate < 1:
            raise ValueError(f"sampling_rate: expected a positive integer, got {sampling_rate!r}")
        feature_extractor.sampling_rate = int(sampling_rate)
    if short_series is not None:
        if short_series not in SHORT_SERIES_CHOICES:
            raise ValueError(f"short_series: expected one of {SHORT_SERIES_CHOICES}, got {short_series!r}")
        feature_extractor.short_series = short_series
    return feature_extractor


__all__ = ["SHORT_SERIES_CHOICES", "check_series_fit", "series_lengths", "set_series_options"]
