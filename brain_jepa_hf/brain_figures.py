"""Figures of brain data and what a model makes of it: a carpet plot of one series, attention (or any
value) per network as bars or a network x network heatmap, per-ROI values on a glass brain, ROIs in
gradient space, and a PCA of embeddings.

Every function takes plain arrays and label lists and returns a `matplotlib.figure.Figure` (Agg, no
pyplot state); `figure_style.save_figure` writes it as a PNG and closes it. Bad input is a one-line
`ValueError` naming the argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from .figure_style import CLASS_COLORS, COLOR_LEVELS, OTHER_COLORS, WIDTH_IN, network_colors, new_figure


# ----------------------------------------------------------------------------------------------
# input checks


def _array(values, name: str, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__}") from None
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {array.shape}")
    if finite and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {bad} NaN/inf of {array.size} (they would not be drawn)"
        )
    return array


def _labels(labels, name: str, length: int, what: str) -> list[str]:
    if isinstance(labels, str):
        raise ValueError(f"{name}: expected one label per {what}, got the single string {labels!r}")
    labels = [str(label) for label in labels]
    if len(labels) != length:
        raise ValueError(f"{name}: expected {length} labels (one per {what}), got {len(labels)}")
    return labels


def _runs(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """Contiguous runs (label, start, stop) of a label list."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((labels[start], start, i))
            start = i
    return runs


def _legend_columns(names: Sequence[str], width: float) -> int:
    """Legend columns that fit in `width` inches at the small font size."""
    per_entry = 0.5 + 0.075 * max(len(name) for name in names)
    return max(1, min(len(names), int(width / per_entry)))


def _network_legend(figure: Figure, colors: Mapping[str, str], title: str = "network", **kwargs):
    handles = [Patch(facecolor=color, edgecolor="none", label=name) for name, color in colors.items()]
    return figure.legend(
        handles=handles, title=title, frameon=False, fontsize="small", title_fontsize="small", **kwargs
    )


# ----------------------------------------------------------------------------------------------
# drawing helpers


def _value_colormap(values: np.ndarray):
    """(colormap, vmin, vmax): diverging RdBu centred on 0 for values of both signs,
    sequential viridis over the data range otherwise (both colour-blind safe)."""
    low, high = float(values.min()), float(values.max())
    if low < 0 < high:
        limit = max(-low, high)
        return colormaps["RdBu_r"].resampled(COLOR_LEVELS), -limit, limit
    if low == high:
        low, high = low - 0.5, high + 0.5
    return colormaps["viridis"].resampled(COLOR_LEVELS), low, high


def _mark_networks(axes, names: Sequence[str], axis: str) -> None:
    """Tick labels with a coloured square per network just outside the axis."""
    colors = [network_colors(names)[n] for n in names]
    positions = np.arange(len(names))
    figure = axes.get_figure()
    if axis == "x":
        axes.set_xticks(positions, names, rotation=45, ha="right", rotation_mode="anchor")
        transform = blended_transform_factory(axes.transData, axes.transAxes)
        transform += ScaledTranslation(0, -7 / 72, figure.dpi_scale_trans)
        x, y = positions, np.zeros(len(names))
    else:
        axes.set_yticks(positions, names)
        transform = blended_transform_factory(axes.transAxes, axes.transData)
        transform += ScaledTranslation(-7 / 72, 0, figure.dpi_scale_trans)
        x, y = np.zeros(len(names)), positions
    axes.tick_params(axis=axis, length=0, pad=14)
    markers = axes.scatter(
        x,
        y,
        c=colors,
        marker="s",
        s=36,
        transform=transform,
        clip_on=False,
        edgecolors="#444444",
        linewidths=0.3,
        zorder=5,
    )
    markers.set_in_layout(False)


def _network_names(networks, name: str, length: int) -> list[str]:
    names = _labels(networks, name, length, "network")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{name}: expected distinct network names, got duplicates {duplicates}")
    return names


# ----------------------------------------------------------------------------------------------
# series


def plot_carpet(series, networks=None, tr=None, title=None, standardize: bool = True, limit: float = 2.0) -> Figure:
    """ROI x time carpet plot of one parcellated series `series` (R, T). Each ROI is z-scored over
    time when `standardize` (grey scale clipped at +-`limit`); `tr` (seconds) puts time in seconds;
    `networks` (R labels) draws a coloured band per network beside the ROI axis."""
    series = _array(series, "series", ndim=2)
    num_rois, num_frames = series.shape
    if tr is not None:
        tr = float(tr)
        if not np.isfinite(tr) or tr <= 0:
            raise ValueError(f"tr: expected a repetition time in seconds > 0, got {tr}")
    labels = None if networks is None else _labels(networks, "networks", num_rois, "ROI (row of series)")
    if standardize:
        centred = series - series.mean(axis=1, keepdims=True)
        scale = series.std(axis=1, keepdims=True)
        image = np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)
        vmin, vmax, unit = -limit, limit, "signal (z-score per ROI)"
    else:
        image = series
        vmin, vmax = np.percentile(series, [2, 98])
        unit = "signal"

    height = 5.0 if labels is None else 5.4 + 0.2 * np.ceil(len(set(labels)) / 6)
    figure = new_figure(WIDTH_IN + 1.0, height)
    if labels is None:
        axes = figure.add_subplot()
    else:
        band_axes, axes = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 40], "wspace": 0.01})
    duration = num_frames * tr if tr is not None else num_frames
    picture = axes.imshow(
        image,
        aspect="auto",
        cmap=colormaps["gray"].resampled(COLOR_LEVELS),
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        extent=(0, duration, num_rois - 0.5, -0.5),
    )
    axes.set_xlabel("time (s)" if tr is not None else "time (frames)")
    colorbar = figure.colorbar(picture, ax=axes, fraction=0.03, pad=0.01)
    colorbar.set_label(unit)
    if labels is None:
        axes.set_ylabel(f"ROI ({num_rois})")
    else:
        colors = network_colors(labels)
        order = list(colors)
        band = np.array([order.index(label) for label in labels])[:, None]
        band_axes.imshow(
            band,
            aspect="auto",
            cmap=ListedColormap([colors[name] for name in order]),
            vmin=-0.5,
            vmax=len(order) - 0.5,
            interpolation="nearest",
            extent=(0, 1, num_rois - 0.5, -0.5),
        )
        band_axes.set_xticks([])
        band_axes.set_ylabel(f"ROI ({num_rois}), coloured by network")
        axes.tick_params(axis="y", labelleft=False)
        for _, start, stop in _runs(labels)[1:]:
            axes.axhline(start - 0.5, color="white", linewidth=0.4, alpha=0.5)
        _network_legend(figure, colors, loc="outside lower center", ncol=_legend_columns(list(colors), WIDTH_IN + 0.6))
    axes.set_title(title or f"Carpet plot: {num_rois} ROIs x {num_frames} frames")
    return figure


# ----------------------------------------------------------------------------------------------
# network figures


def plot_network_bars(
    values: Mapping[str, np.ndarray],
    networks,
    errors: Mapping[str, np.ndarray] | None = None,
    ylabel: str = "attention received (size-normalised)",
    title: str = "Attention across brain networks",
    group_label: str = "class",
    reference: float | None = None,
    reference_label: str = "uniform",
) -> Figure:
    """Grouped bars: one group of bars per network, one bar per entry of `values` (group name ->
    (K,) values, e.g. one per class). A single group is coloured by network, several by group.
    `errors`: same keys, (K,) half-widths or (2, K) lower/upper lengths (e.g. a 95% interval).
    `reference` draws a dashed line (e.g. 1 = uniform attention for size-normalised values)."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(
            f"values: expected a non-empty mapping of group name -> (K,) values, got {type(values).__name__}"
        )
    if len(values) > len(CLASS_COLORS):
        raise ValueError(f"values: expected at most {len(CLASS_COLORS)} groups, got {len(values)}")
    groups = [str(g) for g in values]
    rows = [_array(v, f"values[{g!r}]", ndim=1) for g, v in zip(groups, values.values())]
    names = _network_names(networks, "networks", len(rows[0]))
    for group, row in zip(groups, rows):
        if row.shape != (len(names),):
            raise ValueError(
                f"values[{group!r}]: expected {len(names)} values (one per network), got shape {row.shape}"
            )
    data = np.stack(rows)
    if reference is not None and not np.isfinite(reference):
        raise ValueError(f"reference: expected a finite value for the dashed line, got {reference}")
    spans = None
    if errors is not None:
        if not isinstance(errors, Mapping) or set(map(str, errors)) != set(groups):
            got = sorted(map(str, errors)) if isinstance(errors, Mapping) else type(errors).__name__
            raise ValueError(f"errors: expected a mapping with the same groups as values {groups}, got {got}")
        by_name = {str(k): v for k, v in errors.items()}
        spans = []
        for group in groups:
            error = _array(by_name[group], f"errors[{group!r}]")
            if error.shape not in {(len(names),), (2, len(names))}:
                raise ValueError(
                    f"errors[{group!r}]: expected shape ({len(names)},) or (2, {len(names)}), got {error.shape}"
                )
            if (error < 0).any():
                raise ValueError(f"errors[{group!r}]: expected lengths >= 0, got a minimum of {error.min():g}")
            spans.append(error)

    num_groups, num_networks = data.shape
    width = float(np.clip(2.8 + num_networks * (0.28 + 0.14 * num_groups), 5.5, 12.0))
    figure = new_figure(width, 4.6)
    axes = figure.add_subplot()
    colors = network_colors(names)
    bar_width = 0.8 / num_groups
    for g, group in enumerate(groups):
        offsets = np.arange(num_networks) + (g - (num_groups - 1) / 2) * bar_width
        face = [colors[n] for n in names] if num_groups == 1 else CLASS_COLORS[g]
        axes.bar(
            offsets,
            data[g],
            bar_width * 0.92,
            color=face,
            edgecolor="#333333",
            linewidth=0.4,
            label=group if num_groups > 1 else None,
            yerr=None if spans is None else spans[g],
            error_kw={"elinewidth": 0.9, "capsize": 2.5, "ecolor": "#222222"},
        )
    if data.min() < 0 < data.max() or data.max() <= 0:
        axes.axhline(0, color="#333333", linewidth=0.8)
    if reference is not None:
        axes.axhline(reference, color="#555555", linewidth=1, linestyle="--", label=reference_label)
    axes.set_xlim(-0.6, num_networks - 0.4)
    _mark_networks(axes, names, "x")
    axes.set_xlabel("network")
    axes.set_ylabel(ylabel)
    axes.set_title(title if num_groups > 1 or not groups[0] else f"{title} ({groups[0]})")
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    if num_groups > 1 or reference is not None:
        axes.legend(
            title=group_label if num_groups > 1 else None,
            frameon=False,
            fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    return figure


def plot_network_matrix(
    matrix,
    networks,
    title: str = "Attention between brain networks",
    colorbar_label: str = "attention",
    row_label: str = "network",
    column_label: str = "network",
    annotate: bool | None = None,
) -> Figure:
    """K x K heatmap with network names on both axes: diverging (RdBu, centred on 0) for values of
    both signs, sequential (viridis) otherwise. Cells carry their value when K <= 12 (`annotate`)."""
    matrix = _array(matrix, "matrix", ndim=2)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix: expected a square (K, K) matrix, got shape {matrix.shape}")
    names = _network_names(networks, "networks", matrix.shape[0])
    size = len(names)
    figure = new_figure(float(np.clip(3.2 + 0.42 * size, 5.5, 11.0)), float(np.clip(2.6 + 0.4 * size, 4.5, 10.0)))
    axes = figure.add_subplot()
    cmap, vmin, vmax = _value_colormap(matrix)
    picture = axes.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    _mark_networks(axes, names, "x")
    _mark_networks(axes, names, "y")
    axes.set_xlabel(column_label)
    axes.set_ylabel(row_label)
    axes.set_title(title)
    colorbar = figure.colorbar(picture, ax=axes, fraction=0.046, pad=0.03)
    colorbar.set_label(colorbar_label)
    if annotate if annotate is not None else size <= 12:
        normalise = picture.norm
        colormap = picture.get_cmap()
        for (i, j), value in np.ndenumerate(matrix):
            red, green, blue, _ = colormap(normalise(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            axes.text(
                j,
                i,
                f"{value:.2g}",
                ha="center",
                va="center",
                fontsize=7 if size > 8 else 8,
                color="white" if dark else "black",
            )
    return figure


# ----------------------------------------------------------------------------------------------
# ROI figures


def _row_ranges(rows: np.ndarray) -> str:
    """'0-49, 60' from sorted row indices."""
    parts, start = [], rows[0]
    for previous, current in zip(rows, list(rows[1:]) + [None]):
        if current is None or current != previous + 1:
            parts.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(parts)


def plot_glass_brain(
    values,
    coords,
    networks=None,
    title: str = "Value per ROI",
    colorbar_label: str = "value",
    display_mode: str = "ortho",
) -> Figure:
    """Per-ROI `values` (R,) as markers at MNI `coords` (R, 3) on nilearn's glass brain (bundled
    MNI152 template, offline). ROIs whose coordinates are NaN (e.g. the released atlas's 50
    subcortical rows) are drawn in a strip underneath on the same colour scale, grouped by
    `networks` (R labels) when given."""
    from nilearn import plotting  # slow to import: only for this figure

    values = _array(values, "values", ndim=1)
    coords = _array(coords, "coords", ndim=2, finite=False)
    if coords.shape != (len(values), 3):
        raise ValueError(f"coords: expected shape ({len(values)}, 3) (x, y, z in MNI mm per ROI), got {coords.shape}")
    labels = None if networks is None else _labels(networks, "networks", len(values), "ROI")
    known = np.isfinite(coords).all(axis=1)
    partial = ~known & np.isfinite(coords).any(axis=1)
    if partial.any():
        raise ValueError(
            f"coords: expected all three or none of x, y, z per ROI, got partly NaN rows {_row_ranges(np.flatnonzero(partial))}"
        )
    if np.isinf(coords).any():
        raise ValueError("coords: expected finite MNI coordinates or NaN for unknown, got inf")
    if not known.any():
        raise ValueError("coords: expected MNI coordinates for at least one ROI, got NaN for all")
    missing = np.flatnonzero(~known)

    cmap, vmin, vmax = _value_colormap(values)
    figure = Figure(figsize=(9.0, 4.4 if missing.size else 3.6))
    FigureCanvasAgg(figure)
    bottom = 0.3 if missing.size else 0.04
    brain_rect = (0.0, bottom, 0.88, 0.86 - bottom)
    edge = "#555555" if cmap.name.startswith("RdBu") else "none"  # near-zero values are white on white otherwise
    plotting.plot_markers(
        values[known],
        coords[known],
        node_size=float(np.clip(4000 / known.sum(), 8, 60)),
        node_cmap=cmap,
        node_vmin=vmin,
        node_vmax=vmax,
        alpha=1.0,
        display_mode=display_mode,
        figure=figure,
        axes=brain_rect,
        colorbar=False,
        node_kwargs={"edgecolors": edge, "linewidths": 0.3},
    )
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=cmap)
    colorbar_axes = figure.add_axes((0.9, bottom + 0.06, 0.018, 0.86 - bottom - 0.12))
    figure.colorbar(mappable, cax=colorbar_axes).set_label(colorbar_label)
    figure.suptitle(title, y=0.97)
    if missing.size:
        strip = figure.add_axes((0.06, 0.1, 0.78, 0.07))
        strip.imshow(values[missing][None, :], aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        strip.set_yticks([])
        strip.set_title(
            f"{missing.size} ROIs without coordinates (rows {_row_ranges(missing)}), same colour scale",
            fontsize="small",
        )
        if labels is not None:
            runs = _runs([labels[i] for i in missing])
            strip.set_xticks(
                [(start + stop - 1) / 2 for _, start, stop in runs], [name for name, _, _ in runs], fontsize="small"
            )
            for _, start, _ in runs[1:]:
                strip.axvline(start - 0.5, color="white", linewidth=1)
        else:
            strip.set_xticks([0, missing.size - 1], [f"row {missing[0]}", f"row {missing[-1]}"], fontsize="small")
    return figure


def plot_gradient_space(gradient, networks, title: str = "Brain gradient positioning", components=(0, 1)) -> Figure:
    """ROIs in the space of two connectivity gradients (`gradient` (R, G >= 2), columns
    `components`), coloured by network (R labels): where each network sits along the
    sensory-to-association axes the model's positional embedding is built from."""
    gradient = _array(gradient, "gradient", ndim=2)
    if gradient.shape[1] < 2:
        raise ValueError(f"gradient: expected at least 2 gradient columns (R, G >= 2), got shape {gradient.shape}")
    first, second = (int(c) for c in components)
    if not (0 <= first < gradient.shape[1] and 0 <= second < gradient.shape[1]) or first == second:
        raise ValueError(
            f"components: expected two different columns in [0, {gradient.shape[1] - 1}], got {tuple(components)}"
        )
    labels = _labels(networks, "networks", gradient.shape[0], "ROI (row of gradient)")
    colors = network_colors(labels)
    figure = new_figure(7.6, 5.6)
    axes = figure.add_subplot()
    size = float(np.clip(3000 / gradient.shape[0], 10, 60))
    for name, color in colors.items():
        rows = np.array([label == name for label in labels])
        axes.scatter(
            gradient[rows, first],
            gradient[rows, second],
            s=size,
            color=color,
            label=f"{name} ({rows.sum()})",
            edgecolors="#333333",
            linewidths=0.3,
        )
    axes.axhline(0, color="#bbbbbb", linewidth=0.6, zorder=0)
    axes.axvline(0, color="#bbbbbb", linewidth=0.6, zorder=0)
    axes.set_xlabel(f"gradient {first + 1} (a.u.)")
    axes.set_ylabel(f"gradient {second + 1} (a.u.)")
    axes.set_title(title)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(
        title="network (ROIs)",
        frameon=False,
        fontsize="small",
        title_fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        markerscale=max(1.0, 30 / size) ** 0.5,
    )
    return figure


# ----------------------------------------------------------------------------------------------
# embeddings


def _is_categorical(labels: np.ndarray) -> bool:
    if labels.dtype.kind in "OUSb":
        return True
    if labels.dtype.kind in "iu":
        return len(np.unique(labels)) <= 12
    finite = labels[np.isfinite(labels)]
    return bool(np.all(finite == np.round(finite))) and len(np.unique(finite)) <= 12


def plot_embedding_scatter(
    embeddings,
    labels,
    label_name: str = "label",
    title: str = "Embeddings (PCA)",
    categorical: bool | None = None,
) -> Figure:
    """First two principal components of `embeddings` (N, D), points coloured by `labels` (N,):
    a legend for categories (strings, booleans, or at most 12 distinct integers; or `categorical`),
    a colour bar for continuous values."""
    embeddings = _array(embeddings, "embeddings", ndim=2)
    count, width = embeddings.shape
    if count < 3 or width < 2:
        raise ValueError(
            f"embeddings: expected at least 3 samples x 2 features for a 2-D PCA, got shape {embeddings.shape}"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"labels: expected one label per embedding ({count},), got shape {labels.shape}")
    is_categorical = _is_categorical(labels) if categorical is None else bool(categorical)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(
            f"labels: expected no NaN/inf, got {int((~np.isfinite(labels)).sum())} (those points would be dropped)"
        )
    if labels.dtype.kind == "O" and any(label is None for label in labels):
        raise ValueError("labels: expected no None, got some (those points would be dropped)")
    if not is_categorical and labels.dtype.kind not in "iuf":
        raise ValueError(f"labels: expected numbers for a continuous colour scale, got dtype {labels.dtype}")

    centred = embeddings - embeddings.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    variance = singular**2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)

    figure = new_figure(7.2, 5.4)
    axes = figure.add_subplot()
    size = float(np.clip(4000 / count, 8, 50))
    if is_categorical:
        categories = list(dict.fromkeys(labels.tolist()))
        try:
            categories = sorted(categories)
        except TypeError:
            pass
        if len(categories) > len(CLASS_COLORS) + len(OTHER_COLORS):
            raise ValueError(
                f"labels: expected at most {len(CLASS_COLORS) + len(OTHER_COLORS)} categories, got {len(categories)}"
            )
        palette = CLASS_COLORS + OTHER_COLORS
        for index, category in enumerate(categories):
            rows = labels == category
            axes.scatter(
                points[rows, 0],
                points[rows, 1],
                s=size,
                color=palette[index],
                edgecolors="#333333",
                linewidths=0.3,
                alpha=0.85,
                label=f"{category} ({int(rows.sum())})",
            )
        axes.legend(
            title=label_name,
            frameon=False,
            fontsize="small",
            title_fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    else:
        picture = axes.scatter(
            points[:, 0],
            points[:, 1],
            s=size,
            c=labels.astype(float),
            cmap=colormaps["viridis"].resampled(COLOR_LEVELS),
            edgecolors="#333333",
            linewidths=0.3,
            alpha=0.9,
        )
        figure.colorbar(picture, ax=axes, fraction=0.05, pad=0.02).set_label(label_name)
    axes.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of variance)")
    axes.set_ylabel(f"PC2 ({100 * explained[1]:.0f}% of variance)")
    axes.set_title(f"{title}: {count} samples, {width} dims")
    axes.spines[["top", "right"]].set_visible(False)
    return figure


__all__ = [
    "plot_carpet",
    "plot_embedding_scatter",
    "plot_glass_brain",
    "plot_gradient_space",
    "plot_network_bars",
    "plot_network_matrix",
]
