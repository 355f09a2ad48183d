"""`brain-jepa analyze`: attention by network, group contrasts, attribution and embeddings of a cohort,
as figures, tables and a report (brain_jepa_hf.analysis_report)."""

from __future__ import annotations

import argparse

from .options import HelpFormatter, add_argument, add_dtype_argument, add_series_fit_arguments


EXAMPLES = """\
examples:
  # a model pretrained on the embedded example cohort, contrast by sex, 40 subjects
  brain-jepa analyze --model runs/pretrain-tiny --dataset example --label-column sex --max-subjects 40 --output-dir analysis

  # the released layout, two layers, a fine-tuned classifier (adds the attribution figures)
  brain-jepa analyze --model runs/finetune-dx --dataset data/adni --label-column dx --layers 0,-1 --output-dir out

  # a model that carries no atlas: name one
  brain-jepa analyze --model converted --dataset data/ukb --atlas my_atlas.csv --output-dir out
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="figures, tables and a report of what a model attends to, by brain network",
        description="Run a Brain-JEPA model over a cohort and write figures/*.png, tables/*.csv and report.md: attention "
        "received per network (per class of a label, with a permutation test), network x network attention, a glass "
        "brain per ROI, the gradient space, a PCA of the embeddings, pretraining curves, and attribution for a "
        "fine-tuned classifier. The output folder appears whole or not at all.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="model folder (pretraining, fine-tuning or converted) or Hub id"
    )
    parser.add_argument("--dataset", default="example", help="'example' or a save_to_disk / build-dataset folder")
    parser.add_argument("--split", default=None, help="split of a DatasetDict (default: all splits, in order)")
    add_argument(
        parser, "--output-dir", required=True, help="folder to write (must not exist or be empty, unless --overwrite)"
    )
    add_argument(
        parser, "--label-column", default=None, help="label for per-class figures and contrasts (e.g. dx, sex)"
    )
    parser.add_argument(
        "--atlas", default=None, help="PATH (CSV/TSV table), 'released' or 'example' (default: the model's own)"
    )
    parser.add_argument(
        "--level",
        choices=("coarse", "fine"),
        default="coarse",
        help="network level: coarse (7 networks + Subcortical) or fine (17 networks)",
    )
    parser.add_argument("--layers", default="all", help="encoder layers, e.g. 0,5,11 or -1 (default: all)")
    add_argument(parser, "--max-subjects", type=int, default=None, help="analyse the first N subjects (default: all)")
    add_argument(parser, "--batch-size", type=int, default=4)
    parser.add_argument(
        "--permutations", type=int, default=5000, help="label permutations per contrast (0: no contrast)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutation test")
    parser.add_argument(
        "--attribution",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gradient attribution of the classification head (default: when the model has one; "
        "--attribution requires one)",
    )
    add_argument(
        parser,
        "--attribution-method",
        choices=("integrated_gradients", "input_x_gradient"),
        default="integrated_gradients",
    )
    add_argument(parser, "--attribution-steps", type=int, default=32, help="integrated-gradients path steps")
    add_argument(parser, "--fmri-column", default="fmri")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_dtype_argument(parser, default="float32")
    add_series_fit_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output_dir")
    parser.set_defaults(func=run)


def run(args) -> int:
    """Errors (ValueError, OSError) become one line in `brain_jepa_cli.main`; `--debug` shows the traceback."""
    from brain_jepa_hf.analysis_report import analyze_model

    result = analyze_model(
        args.model,
        args.dataset,
        args.output_dir,
        label_column=args.label_column,
        atlas=args.atlas,
        level=args.level,
        layers=args.layers,
        max_subjects=args.max_subjects,
        batch_size=args.batch_size,
        permutations=args.permutations,
        seed=args.seed,
        device=args.device,
        attribution=args.attribution,
        attribution_method=args.attribution_method,
        attribution_steps=args.attribution_steps,
        fmri_column=args.fmri_column,
        split=args.split,
        overwrite=args.overwrite,
        dtype=args.dtype,
        sampling_rate=args.sampling_rate,
        short_series=args.short_series,
    )
    print(f"wrote {result.report} ({len(result.figures)} figures, {len(result.tables)} tables)")
    return 0
