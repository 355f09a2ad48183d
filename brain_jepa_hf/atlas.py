"""ROI atlas metadata: each ROI's name, network (fine and coarse), hemisphere and MNI centroid.

The released Brain-JEPA model reads 450 ROIs: 50 Tian S3 subcortical ROIs (25 right hemisphere, then
the same 25 left), then Schaefer-400 in **17-network order**. That table ships with the package
(`released_atlas()`, built by `conversion/build_released_atlas.py` from the shared atlas facts). The
subcortical ROIs have generic names (`Tian_S3_RH_01` ...), network "Subcortical" and no coordinates,
because their real names and centroids are not part of those facts.

Networks: `networks` holds the finest label (the 17-network name, e.g. "VisCent"), `coarse_networks`
the 7-network name. TempPar is "Default" at the coarse level, as in Yeo 2011's 17 -> 7
correspondence, and stays separable through `networks` (`network_labels("fine")`).

Where a model keeps its atlas: in its config (`BrainJepaConfig.atlas`), as the name "released" or as
the user table in columns. config.json is written by `save_pretrained`, `brain-jepa convert`, every
pretraining checkpoint and final folder, fine-tuning outputs (which load the pretrained config) and
uploads to the Hub, so the atlas travels with every copy of the model without an extra file; the
config does not import this module (it is remote code), it only checks the table's shape.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .configuration_brain_jepa import ATLAS_TABLE_KEYS, BUILTIN_ATLAS_ROIS, BrainJepaConfig


RELEASED = "released"
EXAMPLE = "example"
RELEASED_TABLE = "released_450.csv"
SUBCORTICAL = "Subcortical"
LEVELS = ("coarse", "fine")
REQUIRED_COLUMNS = ("index", "name", "network")
OPTIONAL_COLUMNS = ("coarse_network", "hemisphere", "x", "y", "z")
_HEMISPHERES = {"l": "L", "lh": "L", "left": "L", "r": "R", "rh": "R", "right": "R", "": ""}


@dataclass(frozen=True, eq=False)
class Atlas:
    """Per-ROI metadata in model-input order (row i describes ROI i)."""

    name: str
    roi_names: tuple[str, ...]
    networks: tuple[str, ...]
    coarse_networks: tuple[str, ...]
    hemispheres: tuple[str, ...]
    coords: np.ndarray

    def __post_init__(self):
        count = len(self.roi_names)
        for field in ("roi_names", "networks", "coarse_networks", "hemispheres"):
            value = tuple(str(v) for v in getattr(self, field))
            if len(value) != count:
                raise ValueError(f"{field}: expected {count} entries (one per ROI), got {len(value)}")
            object.__setattr__(self, field, value)
        bad = sorted({h for h in self.hemispheres if h not in ("L", "R", "")})
        if bad:
            raise ValueError(f"hemispheres: expected 'L', 'R' or '', got {bad}")
        coords = np.array(self.coords, dtype=np.float64).reshape(-1, 3) if count else np.zeros((0, 3))
        if coords.shape != (count, 3):
            raise ValueError(f"coords: expected shape ({count}, 3), got {coords.shape}")
        coords.setflags(write=False)
        object.__setattr__(self, "coords", coords)

    @property
    def num_rois(self) -> int:
        return len(self.roi_names)

    def network_labels(self, level: str = "coarse") -> list[str]:
        """One network name per ROI: "coarse" (7 networks + Subcortical) or "fine" (17 networks)."""
        if level not in LEVELS:
            raise ValueError(f"level: expected one of {LEVELS}, got {level!r}")
        return list(self.coarse_networks if level == "coarse" else self.networks)

    def network_order(self, level: str = "coarse") -> list[str]:
        """The distinct network names at `level`, in order of first appearance."""
        return list(dict.fromkeys(self.network_labels(level)))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Atlas):
            return NotImplemented
        return (self.name, self.roi_names, self.networks, self.coarse_networks, self.hemispheres) == (
            other.name,
            other.roi_names,
            other.networks,
            other.coarse_networks,
            other.hemispheres,
        ) and np.array_equal(self.coords, other.coords, equal_nan=True)

    __hash__ = None


@functools.lru_cache(maxsize=1)
def released_atlas() -> Atlas:
    """The released 450-ROI layout: Tian S3 subcortex (R then L), then Schaefer-400 17-network order."""
    text = resources.files(__package__).joinpath("atlas_data", RELEASED_TABLE).read_text()
    return _parse_table(text, ",", RELEASED_TABLE, BUILTIN_ATLAS_ROIS[RELEASED], RELEASED)


def read_atlas_table(path, num_rois: int | None = None, name: str | None = None) -> Atlas:
    """A user's atlas table (CSV, or TSV for .tsv/.tab files or tab-separated text).

    Columns (header row, case-insensitive): `index` (the ROI's row in the model input; 0- or 1-based,
    contiguous, any row order), `name`, `network`; optional `coarse_network` (defaults to `network`),
    `hemisphere` (L/R/LH/RH/left/right or empty) and `x`, `y`, `z` (MNI mm; empty where unknown).
    `num_rois`: the model's ROI count, checked against the number of rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"atlas: {path} does not exist or is not a file")
    text = path.read_text(encoding="utf-8-sig")
    first_line = text.split("\n", 1)[0]
    tabbed = path.suffix.lower() in (".tsv", ".tab") or ("\t" in first_line and "," not in first_line)
    return _parse_table(text, "\t" if tabbed else ",", str(path), num_rois, name or path.stem)


def _parse_table(text: str, delimiter: str, source: str, num_rois: int | None, name: str) -> Atlas:
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"atlas: expected a header row and one row per ROI, got an empty table in {source}")
    header = _checked_header(rows[0], source)
    body = rows[1:]
    if num_rois is not None and len(body) != num_rois:
        raise ValueError(f"atlas: expected {num_rois} rows (the model's num_rois), got {len(body)} in {source}")
    if not body:
        raise ValueError(f"atlas: expected one row per ROI, got none in {source}")
    column = {c: header.index(c) for c in header if c}
    records = [_parse_row(row, line, column, len(header), source) for line, row in enumerate(body, start=2)]
    _check_indices([r[0] for r in records], source)
    records.sort(key=lambda r: r[0])
    return Atlas(
        name=name,
        roi_names=tuple(r[1] for r in records),
        networks=tuple(r[2] for r in records),
        coarse_networks=tuple(r[3] for r in records),
        hemispheres=tuple(r[4] for r in records),
        coords=np.array([r[5] for r in records], dtype=np.float64),
    )


def _checked_header(first_row: list[str], source: str) -> list[str]:
    """The header's column names, normalised (lower case, `_` for spaces and dashes), or a one-line error."""
    header = [cell.strip().lower().replace(" ", "_").replace("-", "_") for cell in first_row]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"atlas: expected columns {list(REQUIRED_COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)}), "
            f"missing {missing} in {source} (found {first_row})"
        )
    duplicated = sorted({c for c in header if c and header.count(c) > 1})
    if duplicated:
        raise ValueError(f"atlas: expected each column once, got {duplicated} more than once in {source}")
    coordinate_columns = [c for c in ("x", "y", "z") if c in header]
    if coordinate_columns and len(coordinate_columns) != 3:
        raise ValueError(f"atlas: expected all of x, y, z or none, got only {coordinate_columns} in {source}")
    return header


def _parse_row(row: list[str], line: int, column: dict[str, int], width: int, source: str) -> tuple:
    """(index, name, network, coarse network, hemisphere, [x, y, z]) of one table line."""

    def cell(key, default=""):
        if key not in column:
            return default
        if column[key] >= len(row):
            raise ValueError(f"atlas: line {line} of {source} has {len(row)} fields, expected {width}")
        return row[column[key]].strip()

    index_text = cell("index")
    try:
        index = int(index_text)
    except ValueError:
        raise ValueError(f"atlas: expected an integer index, got {index_text!r} on line {line} of {source}") from None
    roi_name, network = cell("name"), cell("network")
    for key, value in (("name", roi_name), ("network", network)):
        if not value:
            raise ValueError(f"atlas: expected a non-empty {key}, got an empty one on line {line} of {source}")
    hemisphere_text = cell("hemisphere")
    hemisphere = _HEMISPHERES.get(hemisphere_text.lower())
    if hemisphere is None:
        raise ValueError(
            f"atlas: expected hemisphere L, R, LH, RH, left, right or empty, got {hemisphere_text!r} "
            f"on line {line} of {source}"
        )
    xyz = []
    for axis in ("x", "y", "z"):
        value = cell(axis)
        try:
            number = float(value) if value else math.nan
        except ValueError:
            raise ValueError(
                f"atlas: expected a number (or empty) for {axis}, got {value!r} on line {line} of {source}"
            ) from None
        if math.isinf(number):
            raise ValueError(f"atlas: expected a finite {axis}, got {value!r} on line {line} of {source}")
        xyz.append(number)
    return index, roi_name, network, cell("coarse_network") or network, hemisphere, xyz


def _check_indices(indices: list[int], source: str) -> None:
    repeated = sorted({i for i in indices if indices.count(i) > 1})
    if repeated:
        raise ValueError(f"atlas: expected each index once, got {repeated[:10]} more than once in {source}")
    start = min(indices)
    if start not in (0, 1) or sorted(indices) != list(range(start, start + len(indices))):
        absent = sorted(set(range(start, start + len(indices))) - set(indices))[:10]
        raise ValueError(
            f"atlas: expected indices 0..{len(indices) - 1} or 1..{len(indices)} without gaps, got "
            f"{min(indices)}..{max(indices)}" + (f" missing {absent}" if absent else "") + f" in {source}"
        )


def released_rows_of_brainspace_schaefer400() -> np.ndarray:
    """For each Schaefer-400 parcel in brainspace's order (its conte69 surface labels and group FC
    matrices, **7-network order**), its row in `released_atlas()` (50..449, 17-network order).

    The 7- and 17-network versions number the same 400 parcels differently; the parcels are matched
    within each hemisphere by centroid (the surface centroid on conte69 against the table's MNI
    centroid; optimal one-to-one assignment, median distance about 3 mm).
    """
    from brainspace.datasets import load_conte69, load_parcellation
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    left, right = load_conte69()
    labels = np.asarray(load_parcellation("schaefer", scale=400, join=True))
    points = np.vstack([left.points, right.points])
    counts = np.bincount(labels, minlength=401)[1:]
    centroids = np.stack([np.bincount(labels, weights=points[:, k], minlength=401)[1:] for k in range(3)], 1)
    centroids /= counts[:, None]
    atlas = released_atlas()
    cortical = np.flatnonzero(np.array(atlas.coarse_networks) != SUBCORTICAL)
    hemispheres = np.array(atlas.hemispheres)[cortical]
    rows = np.empty(400, dtype=np.int64)
    for hemisphere, parcels in (("L", np.arange(200)), ("R", np.arange(200, 400))):  # brainspace: left first
        candidates = cortical[hemispheres == hemisphere]
        chosen_parcels, chosen_rows = linear_sum_assignment(cdist(centroids[parcels], atlas.coords[candidates]))
        rows[parcels[chosen_parcels]] = candidates[chosen_rows]
    return rows


@functools.lru_cache(maxsize=1)
def example_atlas() -> Atlas:
    """The atlas of the embedded synthetic example cohort (`brain_jepa_hf.example_data`).

    Its 50 subcortical rows are laid out like the released ones (R/L homologues r and r + 25), but its
    400 cortical rows follow brainspace's Schaefer-400 order (the 7-network order of the group FC it is
    built from), not the released 17-network order: the released table's cortical rows, reordered by
    `released_rows_of_brainspace_schaefer400()`.
    """
    released = released_atlas()
    rows = np.r_[np.arange(50), released_rows_of_brainspace_schaefer400()]
    return Atlas(
        name=EXAMPLE,
        roi_names=tuple(released.roi_names[r] for r in rows),
        networks=tuple(released.networks[r] for r in rows),
        coarse_networks=tuple(released.coarse_networks[r] for r in rows),
        hemispheres=tuple(released.hemispheres[r] for r in rows),
        coords=released.coords[rows],
    )


_BUILTIN = {RELEASED: released_atlas, EXAMPLE: example_atlas}


def resolve_atlas(spec, num_rois: int | None = None) -> Atlas | None:
    """An `Atlas` from what a user passes: an Atlas, "released", "example", "none"/None, or a table path.
    `num_rois` (the model's) is checked."""
    if spec is None or (isinstance(spec, str) and spec.lower() == "none"):
        return None
    if isinstance(spec, Atlas):
        atlas = spec
    elif isinstance(spec, str) and spec in _BUILTIN:
        atlas = _BUILTIN[spec]()
    elif isinstance(spec, (str, os.PathLike)):
        if not Path(spec).is_file():
            raise FileNotFoundError(
                f"atlas: expected a table file, {RELEASED!r}, {EXAMPLE!r} or 'none', got {str(spec)!r} (no such file)"
            )
        return read_atlas_table(spec, num_rois=num_rois)
    else:
        raise ValueError(
            f"atlas: expected an Atlas, {RELEASED!r}, {EXAMPLE!r}, 'none' or a table path, got {type(spec).__name__}"
        )
    if num_rois is not None and atlas.num_rois != num_rois:
        raise ValueError(
            f"atlas: expected {num_rois} ROIs (the model's num_rois), got {atlas.num_rois} in {atlas.name!r}"
        )
    return atlas


def default_atlas(num_rois: int) -> str | None:
    """The atlas assumed for a converted checkpoint: the released layout for 450 ROIs, else none."""
    return RELEASED if num_rois == BUILTIN_ATLAS_ROIS[RELEASED] else None


def atlas_config_value(atlas: Atlas | None) -> str | dict | None:
    """What `BrainJepaConfig.atlas` stores for `atlas`: "released" for the shipped table, else its columns."""
    if atlas is None:
        return None
    if atlas.num_rois == BUILTIN_ATLAS_ROIS[RELEASED] and atlas == released_atlas():
        return RELEASED
    if atlas.name == EXAMPLE and atlas == example_atlas():
        return EXAMPLE
    return {
        "name": atlas.name,
        "roi_names": list(atlas.roi_names),
        "networks": list(atlas.networks),
        "coarse_networks": list(atlas.coarse_networks),
        "hemispheres": list(atlas.hemispheres),
        "coords": [[None if math.isnan(v) else float(v) for v in row] for row in atlas.coords.tolist()],
    }


def atlas_from_config_value(value) -> Atlas | None:
    """The `Atlas` a `BrainJepaConfig.atlas` value describes (inverse of `atlas_config_value`)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _BUILTIN:
            raise ValueError(f"atlas: expected None, one of {sorted(_BUILTIN)} or a table, got {value!r}")
        return _BUILTIN[value]()
    if not isinstance(value, dict) or sorted(value) != sorted(ATLAS_TABLE_KEYS):
        raise ValueError(f"atlas: expected a table with keys {list(ATLAS_TABLE_KEYS)}, got {value!r:.80}")
    coords = [[math.nan if v is None else v for v in row] for row in value["coords"]]
    return Atlas(
        name=value["name"],
        roi_names=tuple(value["roi_names"]),
        networks=tuple(value["networks"]),
        coarse_networks=tuple(value["coarse_networks"]),
        hemispheres=tuple(value["hemispheres"]),
        coords=np.array(coords, dtype=np.float64).reshape(-1, 3),
    )


def set_atlas(model_or_config, atlas) -> Atlas | None:
    """Store `atlas` (an Atlas, "released", "none"/None or a table path) in the config of a model or
    config, checked against its num_rois; `save_pretrained` then writes it. Returns the atlas set."""
    config = _config_of(model_or_config)
    resolved = resolve_atlas(atlas, num_rois=config.num_rois)
    config.atlas = atlas_config_value(resolved)
    config._check_atlas()
    return resolved


def atlas_for(model_or_config_or_folder) -> Atlas | None:
    """The atlas a model, config or saved folder (or Hub id) carries; None if it carries none."""
    source = model_or_config_or_folder
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise ValueError(f"model: expected a model folder with config.json, got {folder} without one")
        config = BrainJepaConfig.from_pretrained(str(source))
    else:
        config = _config_of(source)
    return atlas_from_config_value(getattr(config, "atlas", None))


def _config_of(model_or_config):
    from transformers import PreTrainedConfig

    if isinstance(model_or_config, PreTrainedConfig):
        return model_or_config
    for path in ("config", "base_model.config"):
        target = model_or_config
        for part in path.split("."):
            target = getattr(target, part, None)
        if isinstance(target, PreTrainedConfig):
            return target
    raise ValueError(
        f"model: expected a Brain-JEPA model, config or model folder, got {type(model_or_config).__name__}"
    )


__all__ = [
    "Atlas",
    "RELEASED",
    "EXAMPLE",
    "SUBCORTICAL",
    "released_atlas",
    "example_atlas",
    "read_atlas_table",
    "resolve_atlas",
    "default_atlas",
    "atlas_config_value",
    "atlas_from_config_value",
    "set_atlas",
    "atlas_for",
    "released_rows_of_brainspace_schaefer400",
]
