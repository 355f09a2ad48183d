"""Figures for Brain-JEPA analyses (matplotlib, headless Agg, no pyplot state).

Every function takes plain arrays and label lists and returns a `matplotlib.figure.Figure`;
`save_figure` writes it as a PNG and closes it.

Network colours: each family of the Yeo/Schaefer networks (Vis, SomMot, DorsAttn, SalVentAttn,
Limbic, Cont, Default, TempPar, Subcortical) has one hue from Paul Tol's colour-blind-safe "muted"
palette, chosen near the usual Yeo hues; the 17-network members of a family (VisCent/VisPeri,
ContA/B/C, ...) are lighter and darker shades of that hue, so they stay distinguishable by
lightness alone. A name's colour depends only on the name, so it is the same in every figure.
Other names (a user atlas) get colours from Tol's "light" and Okabe-Ito palettes by a stable hash.
Classes (bar groups) use the Okabe-Ito palette.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

# Family hues (Tol "muted", Cont in Okabe-Ito orange), near the Yeo 2011 colours.
FAMILY_COLORS: dict[str, str] = {
    "Vis": "#332288",  # indigo
    "SomMot": "#88CCEE",  # cyan
    "DorsAttn": "#117733",  # green
    "SalVentAttn": "#AA4499",  # purple
    "Limbic": "#DDCC77",  # sand
    "Cont": "#C87800",  # orange
    "Default": "#CC6677",  # rose
    "TempPar": "#44AA99",  # teal
    "Subcortical": "#BBBBBB",  # light grey
}
# 17-network members: lighter/darker shades of their family's hue (distinguishable by lightness).
MEMBER_COLORS: dict[str, str] = {
    "VisCent": "#332288", "VisPeri": "#7E70C2",
    "SomMotA": "#3F88B5", "SomMotB": "#88CCEE",
    "DorsAttnA": "#117733", "DorsAttnB": "#66BB88",
    "SalVentAttnA": "#AA4499", "SalVentAttnB": "#DDA0D2",
    "LimbicA": "#DDCC77", "LimbicB": "#A89B4A",
    "ContA": "#7A4A00", "ContB": "#C87800", "ContC": "#F0B040",
    "DefaultA": "#7A2838", "DefaultB": "#CC6677", "DefaultC": "#EBA9A0",
}
# Common spellings of the families (compared lower-case without punctuation).
FAMILY_ALIASES: dict[str, str] = {
    "visual": "Vis", "somatomotor": "SomMot", "smn": "SomMot", "dorsalattention": "DorsAttn", "dan": "DorsAttn",
    "ventralattention": "SalVentAttn", "salience": "SalVentAttn", "salienceventralattention": "SalVentAttn",
    "van": "SalVentAttn", "control": "Cont", "frontoparietal": "Cont", "fpn": "Cont", "fpcn": "Cont",
    "defaultmode": "Default", "dmn": "Default", "temporalparietal": "TempPar", "subcortex": "Subcortical",
}
# Names outside the Yeo vocabulary: Tol "light" then Okabe-Ito hues not already used above.
OTHER_COLORS: tuple[str, ...] = (
    "#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00",
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#882255",
)
# Bar groups (classes): Okabe-Ito, black left out.
CLASS_COLORS: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442", "#999999")

COLOR_LEVELS = 64  # levels of continuous colour maps: smooth to the eye, few colours in the PNG
WIDTH_IN = 8.0  # default figure width in inches; at dpi 120, 960 px


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_KNOWN: dict[str, str] = {}


def _build_known() -> None:
    for name, color in {**FAMILY_COLORS, **MEMBER_COLORS}.items():
        _KNOWN[_key(name)] = color
    for alias, family in FAMILY_ALIASES.items():
        _KNOWN.setdefault(alias, FAMILY_COLORS[family])


_build_known()


def network_colors(names: Sequence[str]) -> dict[str, str]:
    """Hex colour per distinct network name (order of first appearance). Yeo/Schaefer names
    (7 and 17 networks, TempPar, Subcortical, common long forms) always get the same colour;
    other names get one by a stable hash, distinct within the call while the palette lasts."""
    if isinstance(names, str):
        raise TypeError(f"names: expected a sequence of network names, got the string {names!r}")
    distinct = list(dict.fromkeys(str(name) for name in names))
    colors = {name: _KNOWN[_key(name)] for name in distinct if _key(name) in _KNOWN}
    used = set(colors.values())
    for name in distinct:
        if name in colors:
            continue
        start = zlib.crc32(name.encode()) % len(OTHER_COLORS)
        for step in range(len(OTHER_COLORS)):
            candidate = OTHER_COLORS[(start + step) % len(OTHER_COLORS)]
            if candidate not in used:
                break
        else:  # more than the palette holds: reuse, hashed
            candidate = OTHER_COLORS[start]
        colors[name] = candidate
        used.add(candidate)
    return colors


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
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf of {array.size} (they would not be drawn)")
    return array


def _labels(labels, name: str, length: int, what: str) -> list[str]:
    if isinstance(labels, str):
        raise ValueError(f"{name}: expected one label per {what}, got the single string {labels!r}")
    labels = [str(label) for label in labels]
    if len(labels) != length:
        raise ValueError(f"{name}: expected {length} labels (one per {what}), got {len(labels)}")
    return labels


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


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
    return figure.legend(handles=handles, title=title, frameon=False, fontsize="small", title_fontsize="small", **kwargs)


# ----------------------------------------------------------------------------------------------
# figures


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
    figure = _new_figure(WIDTH_IN + 1.0, height)
    if labels is None:
        axes = figure.add_subplot()
    else:
        band_axes, axes = figure.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 40], "wspace": 0.01})
    duration = num_frames * tr if tr is not None else num_frames
    picture = axes.imshow(
        image, aspect="auto", cmap=colormaps["gray"].resampled(COLOR_LEVELS), vmin=vmin, vmax=vmax, interpolation="nearest",
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
        band_axes.imshow(band, aspect="auto", cmap=ListedColormap([colors[name] for name in order]),
                         vmin=-0.5, vmax=len(order) - 0.5, interpolation="nearest", extent=(0, 1, num_rois - 0.5, -0.5))
        band_axes.set_xticks([])
        band_axes.set_ylabel(f"ROI ({num_rois}), coloured by network")
        axes.tick_params(axis="y", labelleft=False)
        for _, start, stop in _runs(labels)[1:]:
            axes.axhline(start - 0.5, color="white", linewidth=0.4, alpha=0.5)
        _network_legend(figure, colors, loc="outside lower center", ncol=_legend_columns(list(colors), WIDTH_IN + 0.6))
    axes.set_title(title or f"Carpet plot: {num_rois} ROIs x {num_frames} frames")
    return figure


def save_figure(figure: Figure, path, dpi: int = 120, max_colors: int | None = 256) -> Path:
    """Write `figure` as a PNG at `path` (written beside it and renamed into place) and close it.
    `max_colors` (<= 256) makes a small palette PNG (see `_palette_image`); None keeps full RGB."""
    from .atomic_io import reporting_full_disk, staged_file, usual_mode

    path = Path(path)
    if max_colors is not None and not 2 <= int(max_colors) <= 256:
        raise ValueError(f"max_colors: expected None or a number of colours in [2, 256], got {max_colors}")
    if path.suffix.lower() != ".png":
        raise ValueError(f"path: expected a file name ending in .png, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path: expected a file name, got the folder {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rendered = io.BytesIO()
    try:
        figure.savefig(rendered, format="png", dpi=dpi)
        exact = _exact_colors(figure)
    finally:
        _close(figure)
    image = _palette_image(rendered, max_colors, exact)
    handle, temporary = staged_file(path)
    try:
        with reporting_full_disk(path, "path"), os.fdopen(handle, "wb") as stream:
            image.save(stream, format="png", optimize=True)
        os.chmod(temporary, usual_mode(directory=False))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _exact_colors(figure: Figure) -> np.ndarray:
    """8-bit RGB the palette reduction must keep: every level of the (<= 256-level) colour maps in
    `figure` (colour bars, images) and the opaque face colours of its patches and markers (network
    and class colours)."""
    from matplotlib.collections import Collection

    colors = []
    for artist in figure.findobj(lambda a: hasattr(a, "get_cmap") and hasattr(a, "norm")):
        cmap = artist.get_cmap()
        if cmap is not None and cmap.N <= 256:
            colors.append(cmap(np.arange(cmap.N)))
    for artist in figure.findobj(lambda a: isinstance(a, (Collection, Patch))):
        faces = np.atleast_2d(artist.get_facecolor())
        if faces.size:
            colors.append(faces)
    if not colors:
        return np.zeros((0, 3), dtype=np.int32)
    rgba = np.concatenate(colors)
    rgba = rgba[rgba[:, 3] == 1.0]  # translucent fills are blended, not drawn as given
    return np.unique(np.round(rgba[:, :3] * 255).astype(np.int32), axis=0)


def _palette_image(png: io.BytesIO, max_colors: int | None, keep: np.ndarray):
    """The rendered figure as an 8-bit palette image (about 3x smaller than RGB): the colours in
    `keep` (colour-map levels, fills) and then the most frequent others (fills, markers, text) are kept
    exactly, up to `max_colors`; rarer anti-aliasing shades at edges become their nearest kept
    colour. Exact when the figure has at most `max_colors` colours; plain RGB when None."""
    from PIL import Image

    png.seek(0)
    with Image.open(png) as opened:
        image = opened.convert("RGB")  # the figure background is opaque white
    if max_colors is None:
        return image
    pixels = np.asarray(image).reshape(-1, 3).astype(np.int32)
    codes, inverse, counts = np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2], return_inverse=True,
                                       return_counts=True)
    kept = np.isin(codes, keep[:, 0] << 16 | keep[:, 1] << 8 | keep[:, 2])
    priority = np.where(kept, counts.max() + 1, counts)  # `keep` first, then by frequency
    chosen = np.argsort(-priority, kind="stable")[:max_colors]
    colors = np.stack([codes >> 16, codes >> 8 & 255, codes & 255], axis=1)
    palette = colors[chosen]
    nearest = np.empty(len(colors), dtype=np.uint8)
    for start in range(0, len(colors), 4096):  # bounded memory for figures with many shades
        chunk = colors[start : start + 4096]
        nearest[start : start + 4096] = ((chunk[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    indexed = Image.frombytes("P", image.size, nearest[inverse.ravel()].tobytes())
    indexed.putpalette(palette.astype(np.uint8).ravel().tolist())
    return indexed


def _close(figure: Figure) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)  # a figure made with pyplot; no-op for ours
    figure.clear()


# ----------------------------------------------------------------------------------------------
# shared drawing helpers


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
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

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
    markers = axes.scatter(x, y, c=colors, marker="s", s=36, transform=transform, clip_on=False,
                           edgecolors="#444444", linewidths=0.3, zorder=5)
    markers.set_in_layout(False)


def _network_names(networks, name: str, length: int) -> list[str]:
    names = _labels(networks, name, length, "network")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{name}: expected distinct network names, got duplicates {duplicates}")
    return names


# ----------------------------------------------------------------------------------------------
# network figures


def plot_network_bars(
    values: Mapping[str, np.ndarray], networks, errors: Mapping[str, np.ndarray] | None = None,
    ylabel: str = "attention received (size-normalised)", title: str = "Attention across brain networks",
    group_label: str = "class", reference: float | None = None, reference_label: str = "uniform",
) -> Figure:
    """Grouped bars: one group of bars per network, one bar per entry of `values` (group name ->
    (K,) values, e.g. one per class). A single group is coloured by network, several by group.
    `errors`: same keys, (K,) half-widths or (2, K) lower/upper lengths (e.g. a 95% interval).
    `reference` draws a dashed line (e.g. 1 = uniform attention for size-normalised values)."""
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"values: expected a non-empty mapping of group name -> (K,) values, got {type(values).__name__}")
    if len(values) > len(CLASS_COLORS):
        raise ValueError(f"values: expected at most {len(CLASS_COLORS)} groups, got {len(values)}")
    groups = [str(g) for g in values]
    rows = [_array(v, f"values[{g!r}]", ndim=1) for g, v in zip(groups, values.values())]
    names = _network_names(networks, "networks", len(rows[0]))
    for group, row in zip(groups, rows):
        if row.shape != (len(names),):
            raise ValueError(f"values[{group!r}]: expected {len(names)} values (one per network), got shape {row.shape}")
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
                raise ValueError(f"errors[{group!r}]: expected shape ({len(names)},) or (2, {len(names)}), got {error.shape}")
            if (error < 0).any():
                raise ValueError(f"errors[{group!r}]: expected lengths >= 0, got a minimum of {error.min():g}")
            spans.append(error)

    num_groups, num_networks = data.shape
    width = float(np.clip(2.8 + num_networks * (0.28 + 0.14 * num_groups), 5.5, 12.0))
    figure = _new_figure(width, 4.6)
    axes = figure.add_subplot()
    colors = network_colors(names)
    bar_width = 0.8 / num_groups
    for g, group in enumerate(groups):
        offsets = np.arange(num_networks) + (g - (num_groups - 1) / 2) * bar_width
        face = [colors[n] for n in names] if num_groups == 1 else CLASS_COLORS[g]
        axes.bar(offsets, data[g], bar_width * 0.92, color=face, edgecolor="#333333", linewidth=0.4,
                 label=group if num_groups > 1 else None, yerr=None if spans is None else spans[g],
                 error_kw={"elinewidth": 0.9, "capsize": 2.5, "ecolor": "#222222"})
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
        axes.legend(title=group_label if num_groups > 1 else None, frameon=False, fontsize="small",
                    loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def plot_network_matrix(
    matrix, networks, title: str = "Attention between brain networks", colorbar_label: str = "attention",
    row_label: str = "network", column_label: str = "network", annotate: bool | None = None,
) -> Figure:
    """K x K heatmap with network names on both axes: diverging (RdBu, centred on 0) for values of
    both signs, sequential (viridis) otherwise. Cells carry their value when K <= 12 (`annotate`)."""
    matrix = _array(matrix, "matrix", ndim=2)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix: expected a square (K, K) matrix, got shape {matrix.shape}")
    names = _network_names(networks, "networks", matrix.shape[0])
    size = len(names)
    figure = _new_figure(float(np.clip(3.2 + 0.42 * size, 5.5, 11.0)), float(np.clip(2.6 + 0.4 * size, 4.5, 10.0)))
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
            axes.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7 if size > 8 else 8,
                      color="white" if dark else "black")
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
    values, coords, networks=None, title: str = "Value per ROI", colorbar_label: str = "value",
    display_mode: str = "ortho",
) -> Figure:
    """Per-ROI `values` (R,) as markers at MNI `coords` (R, 3) on nilearn's glass brain (bundled
    MNI152 template, offline). ROIs whose coordinates are NaN (e.g. the released atlas's 50
    subcortical rows) are drawn in a strip underneath on the same colour scale, grouped by
    `networks` (R labels) when given."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import plotting

    values = _array(values, "values", ndim=1)
    coords = _array(coords, "coords", ndim=2, finite=False)
    if coords.shape != (len(values), 3):
        raise ValueError(f"coords: expected shape ({len(values)}, 3) (x, y, z in MNI mm per ROI), got {coords.shape}")
    labels = None if networks is None else _labels(networks, "networks", len(values), "ROI")
    known = np.isfinite(coords).all(axis=1)
    partial = ~known & np.isfinite(coords).any(axis=1)
    if partial.any():
        raise ValueError(f"coords: expected all three or none of x, y, z per ROI, got partly NaN rows {_row_ranges(np.flatnonzero(partial))}")
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
        values[known], coords[known], node_size=float(np.clip(4000 / known.sum(), 8, 60)), node_cmap=cmap,
        node_vmin=vmin, node_vmax=vmax, alpha=1.0, display_mode=display_mode, figure=figure, axes=brain_rect,
        colorbar=False, node_kwargs={"edgecolors": edge, "linewidths": 0.3},
    )
    mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=cmap)
    colorbar_axes = figure.add_axes((0.9, bottom + 0.06, 0.018, 0.86 - bottom - 0.12))
    figure.colorbar(mappable, cax=colorbar_axes).set_label(colorbar_label)
    figure.suptitle(title, y=0.97)
    if missing.size:
        strip = figure.add_axes((0.06, 0.1, 0.78, 0.07))
        strip.imshow(values[missing][None, :], aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        strip.set_yticks([])
        strip.set_title(f"{missing.size} ROIs without coordinates (rows {_row_ranges(missing)}), same colour scale",
                        fontsize="small")
        if labels is not None:
            runs = _runs([labels[i] for i in missing])
            strip.set_xticks([(start + stop - 1) / 2 for _, start, stop in runs], [name for name, _, _ in runs],
                             fontsize="small")
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
        raise ValueError(f"components: expected two different columns in [0, {gradient.shape[1] - 1}], got {tuple(components)}")
    labels = _labels(networks, "networks", gradient.shape[0], "ROI (row of gradient)")
    colors = network_colors(labels)
    figure = _new_figure(7.6, 5.6)
    axes = figure.add_subplot()
    size = float(np.clip(3000 / gradient.shape[0], 10, 60))
    for name, color in colors.items():
        rows = np.array([label == name for label in labels])
        axes.scatter(gradient[rows, first], gradient[rows, second], s=size, color=color, label=f"{name} ({rows.sum()})",
                     edgecolors="#333333", linewidths=0.3)
    axes.axhline(0, color="#bbbbbb", linewidth=0.6, zorder=0)
    axes.axvline(0, color="#bbbbbb", linewidth=0.6, zorder=0)
    axes.set_xlabel(f"gradient {first + 1} (a.u.)")
    axes.set_ylabel(f"gradient {second + 1} (a.u.)")
    axes.set_title(title)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(title="network (ROIs)", frameon=False, fontsize="small", title_fontsize="small",
                loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=max(1.0, 30 / size) ** 0.5)
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
    embeddings, labels, label_name: str = "label", title: str = "Embeddings (PCA)", categorical: bool | None = None,
) -> Figure:
    """First two principal components of `embeddings` (N, D), points coloured by `labels` (N,):
    a legend for categories (strings, booleans, or at most 12 distinct integers; or `categorical`),
    a colour bar for continuous values."""
    embeddings = _array(embeddings, "embeddings", ndim=2)
    count, width = embeddings.shape
    if count < 3 or width < 2:
        raise ValueError(f"embeddings: expected at least 3 samples x 2 features for a 2-D PCA, got shape {embeddings.shape}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"labels: expected one label per embedding ({count},), got shape {labels.shape}")
    is_categorical = _is_categorical(labels) if categorical is None else bool(categorical)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"labels: expected no NaN/inf, got {int((~np.isfinite(labels)).sum())} (those points would be dropped)")
    if labels.dtype.kind == "O" and any(label is None for label in labels):
        raise ValueError("labels: expected no None, got some (those points would be dropped)")
    if not is_categorical and labels.dtype.kind not in "iuf":
        raise ValueError(f"labels: expected numbers for a continuous colour scale, got dtype {labels.dtype}")

    centred = embeddings - embeddings.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    variance = singular**2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)

    figure = _new_figure(7.2, 5.4)
    axes = figure.add_subplot()
    size = float(np.clip(4000 / count, 8, 50))
    if is_categorical:
        categories = list(dict.fromkeys(labels.tolist()))
        try:
            categories = sorted(categories)
        except TypeError:
            pass
        if len(categories) > len(CLASS_COLORS) + len(OTHER_COLORS):
            raise ValueError(f"labels: expected at most {len(CLASS_COLORS) + len(OTHER_COLORS)} categories, got {len(categories)}")
        palette = CLASS_COLORS + OTHER_COLORS
        for index, category in enumerate(categories):
            rows = labels == category
            axes.scatter(points[rows, 0], points[rows, 1], s=size, color=palette[index], edgecolors="#333333",
                         linewidths=0.3, alpha=0.85, label=f"{category} ({int(rows.sum())})")
        axes.legend(title=label_name, frameon=False, fontsize="small", title_fontsize="small",
                    loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        picture = axes.scatter(points[:, 0], points[:, 1], s=size, c=labels.astype(float), cmap=colormaps["viridis"].resampled(COLOR_LEVELS),
                               edgecolors="#333333", linewidths=0.3, alpha=0.9)
        figure.colorbar(picture, ax=axes, fraction=0.05, pad=0.02).set_label(label_name)
    axes.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of variance)")
    axes.set_ylabel(f"PC2 ({100 * explained[1]:.0f}% of variance)")
    axes.set_title(f"{title}: {count} samples, {width} dims")
    axes.spines[["top", "right"]].set_visible(False)
    return figure


# ----------------------------------------------------------------------------------------------
# pretraining curves

REQUIRED_LOG_FIELDS = ("step", "loss", "lr", "target_std", "target_effective_rank")


def training_log_path(run_dir_or_log, name: str = "run_dir_or_log") -> Path:
    """The log file of a run folder, or the file itself; FileNotFoundError naming what is missing."""
    from .run_folder import LOG_FILE

    path = Path(run_dir_or_log)
    if path.is_dir():
        path = path / LOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{name}: no {LOG_FILE} in {path.parent} (is it a `brain-jepa pretrain` output folder?)")
    elif not path.is_file():
        raise FileNotFoundError(f"{name}: {path} does not exist")
    return path


def read_training_log(run_dir_or_log) -> list[dict]:
    """Records of a run's `pretraining_log.jsonl` (a folder or the file), one per logged step, in
    step order. A resumed run re-logs the steps after its checkpoint: the last record of a step
    wins. An unfinished last line (a run killed mid-write) is skipped; any other bad line is an error."""
    path = training_log_path(run_dir_or_log)
    text = path.read_text()
    lines = text.split("\n")
    by_step: dict[int, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # no newline after it: cut off while being written
                continue
            raise ValueError(f"{path}: line {number} is not JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
        absent = [field for field in REQUIRED_LOG_FIELDS if field not in record]
        if absent:
            raise ValueError(f"{path}: line {number}: expected fields {list(REQUIRED_LOG_FIELDS)}, missing {absent}")
        by_step[int(record["step"])] = record
    if not by_step:
        raise ValueError(f"{path}: no records (empty log); pretraining writes one every logging_steps steps")
    return [by_step[step] for step in sorted(by_step)]


def _hidden_size(log_path: Path) -> int | None:
    config = log_path.parent / "config.json"
    try:
        return int(json.loads(config.read_text())["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot_training_curves(run_dir_or_log, title: str | None = None) -> Figure:
    """Pretraining curves from a run folder's `pretraining_log.jsonl` (or the file): loss, target
    feature std (and pooled std across samples), effective rank of the target features, learning
    rate; steps flagged by the collapse monitor are shaded in every panel."""
    path = training_log_path(run_dir_or_log)
    records = read_training_log(path)
    steps = np.array([r["step"] for r in records], dtype=float)

    def column(field):
        return np.array([np.nan if r.get(field) is None else float(r[field]) for r in records])

    marker = "o" if len(records) <= 40 else None
    style = {"marker": marker, "markersize": 3, "linewidth": 1.4}
    figure = _new_figure(9.0, 6.2)
    (loss_axes, std_axes), (rank_axes, lr_axes) = figure.subplots(2, 2, sharex=True)
    loss_axes.plot(steps, column("loss"), color="#0072B2", **style)
    loss_axes.set_ylabel("loss (smooth L1)")
    loss_axes.set_title("Prediction loss (mean over the logging window)", fontsize="medium")
    stds = [column("target_std")]
    std_axes.plot(steps, stds[0], color="#009E73", label="across target tokens", **style)
    pooled = column("pooled_sample_std")
    if np.isfinite(pooled).any():
        stds.append(pooled)
        std_axes.plot(steps, pooled, color="#E69F00", linestyle="--", label="pooled, across subjects", **style)
        std_axes.legend(frameon=False, fontsize="small")
    finite = np.concatenate(stds)[np.isfinite(np.concatenate(stds))]
    if finite.size and finite.min() > 0:
        std_axes.set_yscale("log")  # the two stds differ by orders of magnitude; collapse shows as a plunge
        std_axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        std_axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        std_axes.yaxis.set_minor_formatter(NullFormatter())
    std_axes.set_ylabel("std per dimension")
    std_axes.set_title("Target feature std (falls to 0 on collapse)", fontsize="medium")
    rank_axes.plot(steps, column("target_effective_rank"), color="#CC79A7", **style)
    width = _hidden_size(path)
    rank_axes.set_ylabel("effective rank" + (f" (of {width} dims)" if width else ""))
    rank_axes.set_title("Target feature effective rank (falls to 1 on collapse)", fontsize="medium")
    lr_axes.plot(steps, column("lr"), color="#D55E00", **style)
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_title("Learning rate", fontsize="medium")
    lr_axes.yaxis.set_major_formatter(FormatStrFormatter("%.1e"))
    flagged = [r["step"] for r in records if r.get("collapse_warning")]
    for axes in (loss_axes, std_axes, rank_axes, lr_axes):
        axes.spines[["top", "right"]].set_visible(False)
        axes.grid(color="#e5e5e5", linewidth=0.6)
        for step in flagged:
            axes.axvspan(step - 0.5, step + 0.5, color="#D55E00", alpha=0.15, linewidth=0)
    for axes in (rank_axes, lr_axes):
        axes.set_xlabel("optimizer step")
    heading = title or f"Pretraining: {path.parent.name}"
    summary = f"{len(records)} logged steps, last step {int(steps[-1])}"
    if flagged:
        summary += f"; collapse warnings at {len(flagged)} steps (shaded)"
    figure.suptitle(f"{heading}\n{summary}", fontsize="large")
    return figure
