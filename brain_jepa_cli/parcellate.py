"""`brain-jepa parcellate`: 4-D NIfTI scans -> ROI time series files (.npy, ROI x time) with nilearn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import HelpFormatter, add_argument


EXAMPLES = """Examples:
  # Brain-JEPA's atlas order: 50 subcortical ROIs (Tian S3) first, then 400 cortical (Schaefer)
  brain-jepa parcellate scans/sub-*_bold.nii.gz \\
      --atlas Tian_Subcortex_S3_3T.nii.gz --atlas Schaefer2018_400Parcels_17Networks_order_FSLMNI152_2mm.nii.gz \\
      --output-dir rois/

  # a whole folder, removing fMRIPrep confounds (one file per scan, same order), detrending
  brain-jepa parcellate scans/ --atlas tian.nii.gz --atlas schaefer400.nii.gz --output-dir rois/ \\
      --confounds conf/sub-01.tsv conf/sub-02.tsv --confound-columns global_signal csf white_matter \\
      --detrend --t-r 0.735

Each scan becomes rois/<scan name>.npy of shape (ROIs, volumes); then run `brain-jepa build-dataset rois/`.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "parcellate",
        help="extract ROI time series from 4-D NIfTI scans with label atlases (nilearn)",
        description=(
            "Average the voxels of every labelled region of one or more atlases (in the given order) in each "
            "4-D scan with nilearn's NiftiLabelsMasker, optionally removing confounds, detrending, filtering "
            "and z-scoring, and save one ROI x time .npy file per scan. The output folder appears only when "
            "every scan succeeded."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("images", nargs="+", help="4-D NIfTI files, or folders of .nii/.nii.gz files")
    parser.add_argument(
        "--atlas",
        action="append",
        required=True,
        help="label atlas NIfTI; repeat for several, in ROI order (subcortical first for Brain-JEPA)",
    )
    add_argument(parser, "--output-dir", required=True, help="folder to create with one <scan>.npy per scan")
    parser.add_argument("--confounds", nargs="+", help="confound CSV/TSV files with a header row, one per scan")
    add_argument(parser, "--confound-columns", nargs="+", help="confound columns to use (default: all)")
    parser.add_argument("--detrend", action="store_true", help="remove linear trends")
    parser.add_argument("--standardize", action="store_true", help="z-score each ROI time series")
    add_argument(parser, "--t-r", type=float, help="repetition time in seconds (default: from the NIfTI header)")
    add_argument(parser, "--low-pass", type=float, help="low-pass cut-off in Hz")
    add_argument(parser, "--high-pass", type=float, help="high-pass cut-off in Hz")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.set_defaults(func=run)


def expand_images(entries: list[str]) -> list[Path]:
    images: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".nii", ".nii.gz")))
            if not found:
                raise ValueError(f"images: expected .nii/.nii.gz files in folder {path}, found none")
            images.extend(found)
        else:
            images.append(path)
    return images


def run(args: argparse.Namespace) -> int:
    from brain_jepa_hf.parcellation import parcellate_files

    try:
        images = expand_images(args.images)
        written = parcellate_files(
            images,
            args.atlas,
            args.output_dir,
            confounds=args.confounds,
            overwrite=args.overwrite,
            confound_columns=args.confound_columns,
            detrend=args.detrend,
            standardize=args.standardize,
            t_r=args.t_r,
            low_pass=args.low_pass,
            high_pass=args.high_pass,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"brain-jepa parcellate: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} ROI time series to {args.output_dir}")
    return 0
