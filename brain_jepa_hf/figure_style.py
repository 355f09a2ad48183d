"""What every Brain-JEPA figure shares: the network and class colours, a headless figure, and `save_figure`.

Network colours: each family of the Yeo/Schaefer networks (Vis, SomMot, DorsAttn, SalVentAttn,
Limbic, Cont, Default, TempPar, Subcortical) has one hue from Paul Tol's colour-blind-safe "muted"
palette, chosen near the usual Yeo hues; the 17-network members of a family (VisCent/VisPeri,
ContA/B/C, ...) are lighter and darker shades of that hue, so they stay distinguishable by
lightness alone. A name's colour depends only on the name, so it is the same in every figure.
Other names (a user atlas) get colours from Tol's "light" and Okabe-Ito palettes by a stable hash.
Classes (bar groups) use the Okabe-Ito palette.

Figures are matplotlib `Figure`s on the Agg canvas (no pyplot state); `save_figure` writes one as a
small palette PNG and closes it.
"""

from __future__ import annotations

import io
import re
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from .atomic_io import write_atomic


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
    "VisCent": "#332288",
    "VisPeri": "#7E70C2",
    "SomMotA": "#3F88B5",
    "SomMotB": "#88CCEE",
    "DorsAttnA": "#117733",
    "DorsAttnB": "#66BB88",
    "SalVentAttnA": "#AA4499",
    "SalVentAttnB": "#DDA0D2",
    "LimbicA": "#DDCC77",
    "LimbicB": "#A89B4A",
    "ContA": "#7A4A00",
    "ContB": "#C87800",
    "ContC": "#F0B040",
    "DefaultA": "#7A2838",
    "DefaultB": "#CC6677",
    "DefaultC": "#EBA9A0",
}
# Common spellings of the families (compared lower-case without punctuation).
FAMILY_ALIASES: dict[str, str] = {
    "visual": "Vis",
    "somatomotor": "SomMot",
    "smn": "SomMot",
    "dorsalattention": "DorsAttn",
    "dan": "DorsAttn",
    "ventralattention": "SalVentAttn",
    "salience": "SalVentAttn",
    "salienceventralattention": "SalVentAttn",
    "van": "SalVentAttn",
    "control": "Cont",
    "frontoparietal": "Cont",
    "fpn": "Cont",
    "fpcn": "Cont",
    "defaultmode": "Default",
    "dmn": "Default",
    "temporalparietal": "TempPar",
    "subcortex": "Subcortical",
}
# Names outside the Yeo vocabulary: Tol "light" then Okabe-Ito hues not already used above.
OTHER_COLORS: tuple[str, ...] = (
    "#77AADD",
    "#EE8866",
    "#EEDD88",
    "#FFAABB",
    "#99DDFF",
    "#44BB99",
    "#BBCC33",
    "#AAAA00",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#882255",
)
# Bar groups (classes): Okabe-Ito, black left out.
CLASS_COLORS: tuple[str, ...] = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#D55E00",
    "#0072B2",
    "#CC79A7",
    "#F0E442",
    "#999999",
)

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


def new_figure(width: float, height: float) -> Figure:
    """An empty constrained-layout figure of `width` x `height` inches on the Agg canvas."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path, dpi: int = 120, max_colors: int | None = 256) -> Path:
    """Write `figure` as a PNG at `path` (written beside it and renamed into place) and close it.
    `max_colors` (<= 256) makes a small palette PNG (see `_palette_image`); None keeps full RGB."""
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
    return write_atomic(path, lambda temporary: image.save(temporary, format="png", optimize=True))


def _exact_colors(figure: Figure) -> np.ndarray:
    """8-bit RGB the palette reduction must keep: every level of the (<= 256-level) colour maps in
    `figure` (colour bars, images) and the opaque face colours of its patches and markers (network
    and class colours)."""
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
    png.seek(0)
    with Image.open(png) as opened:
        image = opened.convert("RGB")  # the figure background is opaque white
    if max_colors is None:
        return image
    pixels = np.asarray(image).reshape(-1, 3).astype(np.int32)
    codes, inverse, counts = np.unique(
        pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2], return_inverse=True, return_counts=True
    )
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


__all__ = [
    "CLASS_COLORS",
    "COLOR_LEVELS",
    "FAMILY_ALIASES",
    "FAMILY_COLORS",
    "MEMBER_COLORS",
    "OTHER_COLORS",
    "WIDTH_IN",
    "network_colors",
    "new_figure",
    "save_figure",
]
