"""`brain-jepa gradients`: connectivity gradients (brainspace) in the original CSV layout."""

from __future__ import annotations

import argparse
import sys

from .options import HelpFormatter, add_argument


EXAMPLES = """Examples:
  # from the group FC of a folder of ROI x time series (e.g. `brain-jepa parcellate` output)
  brain-jepa gradients --series-dir rois/ --output gradient.csv

  # from an FC matrix (CSV, R x R, no header), aligned to a reference gradient file
  brain-jepa gradients --fc group_fc.csv --reference gradient_mapping_450.csv --output gradient.csv

  # from a built dataset, or the synthetic example cohort's group FC
  brain-jepa gradients --dataset data/cohort --output data/cohort/gradient.csv
  brain-jepa gradients --example --output example_gradient.csv

  # brainspace's real Schaefer-400 group FC (main or holdout group)
  brain-jepa gradients --brainspace-group holdout --output holdout_gradient.csv

The CSV has one row per ROI and one column per gradient (30 by default), comma-separated, no header.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "gradients",
        help="compute connectivity gradients (brainspace) for brain gradient positioning",
        description=(
            "Compute functional-connectivity gradients with brainspace GradientMaps (cosine affinity keeping "
            "the top 10%% of each row, diffusion maps, 30 components by default), optionally Procrustes-aligned "
            "to a reference, and write them as a CSV with one row per ROI and no header."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fc", help="FC matrix CSV (R x R, comma-separated, no header) or .npy")
    add_argument(source, "--series-dir", help="folder of per-subject series (.npy/.csv/.tsv); their mean FC is used")
    source.add_argument("--dataset", help="dataset folder from `brain-jepa build-dataset` (column fmri)")
    source.add_argument("--example", action="store_true", help="the synthetic example cohort's group FC")
    add_argument(
        source, "--brainspace-group", choices=("main", "holdout"), help="brainspace's real Schaefer-400 group FC"
    )
    parser.add_argument("--output", required=True, help="gradient CSV to write")
    add_argument(
        parser,
        "--time-axis",
        type=int,
        default=-1,
        choices=(0, 1, -1, -2),
        help="for --series-dir: -1 if file rows are ROIs (default), 0 if rows are time points",
    )
    add_argument(parser, "--n-components", type=int, default=30, help="number of gradients (default 30)")
    parser.add_argument("--kernel", default="cosine", help="affinity kernel (default cosine)")
    parser.add_argument(
        "--approach",
        default="dm",
        choices=("dm", "le", "pca"),
        help="embedding: diffusion maps (default), Laplacian eigenmaps or PCA",
    )
    parser.add_argument(
        "--sparsity", type=float, default=0.9, help="fraction of each affinity row zeroed (default 0.9)"
    )
    parser.add_argument("--reference", help="gradient CSV to Procrustes-align to (same shape)")
    add_argument(parser, "--random-state", type=int, default=0, help="seed of the eigen-solver (default 0)")
    parser.set_defaults(func=run)


def load_fc(args):
    import numpy as np

    from brain_jepa_hf import gradients as g

    if args.fc:
        from pathlib import Path

        path = Path(args.fc)
        if not path.is_file():
            raise FileNotFoundError(f"--fc: {path} does not exist")
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError as err:
            raise ValueError(f"--fc {path}: expected an R x R comma-separated matrix without header ({err})") from None
    if args.brainspace_group:
        return g.load_brainspace_group_fc(args.brainspace_group)
    if args.example:
        from brain_jepa_hf.example_data import example_group_connectivity

        return example_group_connectivity()
    from tqdm.auto import tqdm

    if args.series_dir:
        from brain_jepa_hf.series_files import list_series_files, read_series

        files = list_series_files(args.series_dir)
        group = g.GroupConnectivity()
        for subject, path in tqdm(files, desc="connectivity", unit="subject"):
            group.add(read_series(path, args.time_axis), f"series file {path}")
        return group.result()
    from brain_jepa_hf.data import open_dataset

    dataset = open_dataset(args.dataset).with_format("numpy", columns=["fmri"])
    group = g.GroupConnectivity()
    for i in tqdm(range(len(dataset)), desc="connectivity", unit="subject"):
        group.add(dataset[i]["fmri"], f"dataset row {i}")
    return group.result()


def run(args: argparse.Namespace) -> int:
    from brain_jepa_hf import gradients as g

    try:
        fc = load_fc(args)
        reference = None if args.reference is None else g.load_gradient_csv(args.reference)
        gradients = g.compute_gradients(
            fc,
            n_components=args.n_components,
            kernel=args.kernel,
            approach=args.approach,
            sparsity=args.sparsity,
            random_state=args.random_state,
            reference=reference,
        )
        g.save_gradient_csv(args.output, gradients)
    except (ValueError, FileNotFoundError) as err:
        print(f"brain-jepa gradients: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {gradients.shape[0]} ROIs x {gradients.shape[1]} gradients to {args.output}")
    if reference is not None:
        agreement = g.gradient_agreement(gradients, reference, num=min(3, gradients.shape[1]))
        print("correlation with the reference, first gradients: " + ", ".join(f"{r:.3f}" for r in agreement))
    return 0
