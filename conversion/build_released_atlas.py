#!/usr/bin/env python
"""Build `brain_jepa_hf/atlas_data/released_450.csv`, the ROI table of the released 450-ROI layout.

Input: the shared atlas facts (`shared/atlas/README.md` and `schaefer400_17networks_centroids.csv`).
Output rows, in model-input order (column `index`, 0-based):

- 0-49: Tian subcortex Scale III (3T). The released label table lists 25 right-hemisphere ROIs, then
  the same 25 in the left hemisphere; their real names are not in the shared facts, so they get generic
  names (`Tian_S3_RH_01` .. `Tian_S3_RH_25`, `Tian_S3_LH_01` .. `Tian_S3_LH_25`, LH_k being RH_k's
  homologue), network "Subcortical" and no coordinates (empty x/y/z).
- 50-449: Schaefer-400 in 17-network order: the parcel name as the atlas spells it, its hemisphere,
  17-network label (`network`), 7-network label (`coarse_network`, Yeo 2011's correspondence, TempPar ->
  Default) and MNI152 centroid in mm (x = R, y = A, z = S).

Run it again to check: it rewrites the file byte for byte (`--check` only compares).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_NAME = "schaefer400_17networks_centroids.csv"
DEFAULT_OUTPUT = REPO_ROOT / "brain_jepa_hf" / "atlas_data" / "released_450.csv"

NUM_SUBCORTICAL_PER_HEMISPHERE = 25
NUM_CORTICAL = 400
# 17 -> 7 networks as in shared/atlas/README.md (Yeo 2011); TempPar stays visible in `network`.
SEVENTEEN_TO_SEVEN = {
    "VisCent": "Vis",
    "VisPeri": "Vis",
    "SomMotA": "SomMot",
    "SomMotB": "SomMot",
    "DorsAttnA": "DorsAttn",
    "DorsAttnB": "DorsAttn",
    "SalVentAttnA": "SalVentAttn",
    "SalVentAttnB": "SalVentAttn",
    "LimbicA": "Limbic",
    "LimbicB": "Limbic",
    "ContA": "Cont",
    "ContB": "Cont",
    "ContC": "Cont",
    "DefaultA": "Default",
    "DefaultB": "Default",
    "DefaultC": "Default",
    "TempPar": "Default",
}
HEMISPHERES = {"LH": "L", "RH": "R"}
COLUMNS = ("index", "name", "network", "coarse_network", "hemisphere", "x", "y", "z")


def subcortical_rows() -> list[list[str]]:
    rows = []
    for hemisphere in ("R", "L"):  # the released order: right hemisphere first
        for k in range(1, NUM_SUBCORTICAL_PER_HEMISPHERE + 1):
            rows.append([f"Tian_S3_{hemisphere}H_{k:02d}", "Subcortical", "Subcortical", hemisphere, "", "", ""])
    return rows


def cortical_rows(source: Path) -> list[list[str]]:
    with open(source, newline="") as handle:
        records = list(csv.DictReader(handle))
    if [int(r["ROI Label"]) for r in records] != list(range(1, NUM_CORTICAL + 1)):
        raise ValueError(f"{source}: expected ROI Label 1..{NUM_CORTICAL} in order")
    rows = []
    for record in records:
        name = record["ROI Name"]
        parts = name.split("_")  # 17Networks_<hemi>_<network>_<region...>_<n>
        if (
            len(parts) < 4
            or parts[0] != "17Networks"
            or parts[1] not in HEMISPHERES
            or parts[2] not in SEVENTEEN_TO_SEVEN
        ):
            raise ValueError(f"{source}: unexpected parcel name {name!r}")
        coords = [record[axis].strip() for axis in ("R", "A", "S")]  # copied as written (whole mm)
        for value in coords:
            float(value)  # a non-numeric coordinate stops the build
        rows.append([name, parts[2], SEVENTEEN_TO_SEVEN[parts[2]], HEMISPHERES[parts[1]], *coords])
    return rows


def render(source: Path) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for index, row in enumerate(subcortical_rows() + cortical_rows(source)):
        writer.writerow([index, *row])
    return buffer.getvalue()


def default_source() -> Path:
    """The shared CSV: $BRAIN_JEPA_SHARED_DIR/atlas, else shared/atlas beside or inside the repository."""
    candidates = [REPO_ROOT.parent / "shared", REPO_ROOT / "shared"]
    if os.environ.get("BRAIN_JEPA_SHARED_DIR"):
        candidates.insert(0, Path(os.environ["BRAIN_JEPA_SHARED_DIR"]))
    for folder in candidates:
        if (folder / "atlas" / SOURCE_NAME).is_file():
            return folder / "atlas" / SOURCE_NAME
    return candidates[0] / "atlas" / SOURCE_NAME


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=None, help=f"the shared {SOURCE_NAME} (default: found as default_source() says)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="only check that --output is up to date")
    args = parser.parse_args(argv)
    args.source = args.source or default_source()
    if not args.source.is_file():
        print(f"build_released_atlas: error: source: {args.source} does not exist", file=sys.stderr)
        return 1
    text = render(args.source)
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != text:
            print(f"build_released_atlas: {args.output} is out of date; run without --check", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({text.count(chr(10)) - 1} ROIs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
