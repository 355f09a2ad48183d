"""`brain-jepa plot-training`: pretraining curves of a run folder as a PNG."""

from __future__ import annotations

import argparse
import sys

from .options import HelpFormatter


EXAMPLES = """Examples:
  # writes runs/example/pretraining_curves.png
  brain-jepa plot-training runs/example

  # from the log file itself, to a chosen PNG
  brain-jepa plot-training runs/example/pretraining_log.jsonl --output docs/figures/pretraining.png

The figure shows the loss, the target features' std per dimension (and the pooled std across subjects),
their effective rank, and the learning rate per optimizer step; steps where the collapse monitor warned
are shaded. A resumed run's re-logged steps count once (the latest record).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot-training",
        help="plot a pretraining run's loss, collapse statistics and learning rate (PNG)",
        description="Plot the curves in RUN_DIR/pretraining_log.jsonl, written by `brain-jepa pretrain`.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a `brain-jepa pretrain` output folder, or its pretraining_log.jsonl"
    )
    parser.add_argument("--output", default=None, help="PNG to write (default: pretraining_curves.png beside the log)")
    parser.add_argument("--title", default=None, help="figure title (default: the run folder's name)")
    parser.add_argument("--dpi", type=int, default=120, help="resolution of the PNG (default 120)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from brain_jepa_hf.figure_style import save_figure
    from brain_jepa_hf.training_figures import plot_training_curves, read_training_log, training_log_path

    try:
        log = training_log_path(args.run_dir, name="RUN_DIR")
        output = Path(args.output) if args.output else log.parent / "pretraining_curves.png"
        if args.dpi < 20:
            raise ValueError(f"--dpi: expected at least 20, got {args.dpi}")
        records = read_training_log(log)
        save_figure(plot_training_curves(log, title=args.title), output, dpi=args.dpi)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"brain-jepa plot-training: error: {err}", file=sys.stderr)
        return 1
    last = records[-1]
    print(
        f"wrote {output} ({len(records)} logged steps; step {last['step']}: loss {last['loss']:.4f}, "
        f"target std {last['target_std']:.4f}, effective rank {last['target_effective_rank']:.1f})"
    )
    return 0
