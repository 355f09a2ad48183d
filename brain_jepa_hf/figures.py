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
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

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
        image, aspect="auto", cmap=colormaps["gray"].resampled(64), vmin=vmin, vmax=vmax, interpolation="nearest",
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


def save_figure(figure: Figure, path, dpi: int = 120) -> Path:
    """Write `figure` as a PNG at `path` (written beside it and renamed into place) and close it."""
    from .atomic_io import usual_mode

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path: expected a file name ending in .png, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path: expected a file name, got the folder {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rendered = io.BytesIO()
    try:
        figure.savefig(rendered, format="png", dpi=dpi)
    finally:
        _close(figure)
    image = _palette_image(rendered)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            image.save(stream, format="png", optimize=True)
        os.chmod(temporary, usual_mode(directory=False))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _palette_image(png: io.BytesIO):
    """The rendered figure as an 8-bit palette image: exact when it has at most 256 colours (most
    figures), else median-cut to 256 (visually the same, about 3x smaller)."""
    from PIL import Image

    png.seek(0)
    with Image.open(png) as opened:
        image = opened.convert("RGB")  # the figure background is opaque white
    return image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def _close(figure: Figure) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)  # a figure made with pyplot; no-op for ours
    figure.clear()
