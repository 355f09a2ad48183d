"""`brain-jepa build-dataset`: per-subject series files + labels table -> an Arrow dataset folder."""

from __future__ import annotations

import argparse
import sys

from .options import HelpFormatter, add_argument


EXAMPLES = """Examples:
  # ROI x time .npy files (from `brain-jepa parcellate`) and a participants table
  brain-jepa build-dataset rois/ --labels participants.tsv --subject-column participant_id \\
      --subject-regex '(sub-[^_]+)_' --output-dir data/cohort --num-rois 450 --compute-gradient

  # time x ROI CSV/TSV files named sub-XX_task-rest_timeseries.tsv, keeping two labels, first 490 volumes
  brain-jepa build-dataset timeseries/ --time-axis 0 --subject-regex '(sub-[^_]+)_' \\
      --labels labels.csv --label-columns age sex --num-timepoints 490 --output-dir data/cohort

  # the synthetic example cohort (with its gradient.csv), e.g. for pretraining
  brain-jepa build-dataset --example --num-subjects 1000 --output-dir data/example

The folder loads with datasets.load_from_disk: columns subject_id, fmri (ROI x time float32) and the labels.
Nothing is left at --output-dir if the build fails.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build-dataset",
        help="build an Arrow dataset from per-subject ROI time series and a labels table",
        description=(
            "Stream a folder of per-subject ROI time series (.npy, .csv, .tsv; subject ID = file name) and an "
            "optional labels table into a datasets folder (load_from_disk) with columns subject_id, fmri "
            "(ROI x time, float32) and the labels; memory stays flat however many subjects there are. "
            "Optionally stores a gradient.csv, which pretraining picks up."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input_dir", nargs="?", help="folder of per-subject series files")
    parser.add_argument("--example", action="store_true", help="write the synthetic example cohort instead")
    add_argument(parser, "--num-subjects", type=int, default=200, help="with --example: subjects (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="with --example: generator seed (default 0)")
    add_argument(parser, "--output-dir", required=True, help="dataset folder to create")
    parser.add_argument("--labels", help="CSV/TSV labels table with a subject column")
    add_argument(
        parser, "--subject-column", default="subject_id", help="subject column of --labels (default subject_id)"
    )
    add_argument(parser, "--label-columns", nargs="+", help="label columns to keep (default: all)")
    add_argument(
        parser,
        "--time-axis",
        type=int,
        default=-1,
        choices=(0, 1, -1, -2),
        help="-1 if file rows are ROIs (default, as parcellate writes), 0 if rows are time points",
    )
    add_argument(parser, "--num-rois", type=int, help="expected ROI count (checked for every file)")
    add_argument(parser, "--num-timepoints", type=int, help="crop every series to its first N volumes")
    add_argument(parser, "--subject-regex", help="regex whose first group is the subject ID in file names")
    gradient = parser.add_mutually_exclusive_group()
    gradient.add_argument("--gradient", help="gradient CSV to store as gradient.csv in the dataset folder")
    add_argument(
        gradient,
        "--compute-gradient",
        action="store_true",
        help="compute gradient.csv from the subjects' group FC (brainspace, 30 components)",
    )
    add_argument(
        parser,
        "--gradient-components",
        type=int,
        default=30,
        help="gradients computed (--compute-gradient) or expected in --gradient (default 30)",
    )
    add_argument(
        parser,
        "--gradient-sparsity",
        type=float,
        default=0.9,
        help="with --compute-gradient: fraction of each affinity row zeroed (default 0.9)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.example:
            if args.input_dir or args.labels:
                raise ValueError("--example: expected no input_dir or --labels with the synthetic cohort")
            from brain_jepa_hf.example_data import write_example_dataset

            folder = write_example_dataset(
                args.output_dir, num_subjects=args.num_subjects, seed=args.seed, overwrite=args.overwrite
            )
            print(f"wrote {args.num_subjects} example subjects (synthetic) to {folder}")
            return 0
        if not args.input_dir:
            raise ValueError("input_dir: expected a folder of series files (or --example), got none")
        from brain_jepa_hf.data import build_dataset

        dataset = build_dataset(
            args.input_dir,
            labels=args.labels,
            subject_column=args.subject_column,
            output_dir=args.output_dir,
            label_columns=args.label_columns,
            time_axis=args.time_axis,
            num_rois=args.num_rois,
            num_timepoints=args.num_timepoints,
            subject_regex=args.subject_regex,
            overwrite=args.overwrite,
            gradient=args.gradient,
            compute_gradient=args.compute_gradient,
            gradient_components=args.gradient_components,
            gradient_sparsity=args.gradient_sparsity,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"brain-jepa build-dataset: error: {err}", file=sys.stderr)
        return 1
    shape = dataset.features["fmri"].shape
    print(
        f"wrote {len(dataset)} subjects ({shape[0]} ROIs x {shape[1]} volumes), columns {dataset.column_names}, "
        f"to {args.output_dir}"
    )
    return 0
