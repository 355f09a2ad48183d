"""`brain-jepa convert`: the authors' pretraining checkpoint -> a Hub-ready transformers folder."""

from __future__ import annotations

import argparse
import sys

from .options import HelpFormatter, add_argument


EXAMPLES = """Examples:
  # the released ViT-B checkpoint (target encoder) with its 450 x 30 gradient CSV
  brain-jepa convert logs/jepa-ep300.pth.tar --gradient-csv data/gradient_mapping_450.csv \\
      --output-dir brain-jepa-base --repo-id your-name/brain-jepa-base

  # keep the predictor and both encoders (to continue pretraining)
  brain-jepa convert jepa-ep300.pth.tar --gradient-csv gradient_mapping_450.csv \\
      --output-dir brain-jepa-base-pretraining --with-predictor

  # convert, then upload (needs a token: `hf auth login` or HF_TOKEN)
  brain-jepa convert jepa-ep300.pth.tar --gradient-csv gradient_mapping_450.csv \\
      --output-dir brain-jepa-base --push-to-hub your-name/brain-jepa-base
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="original checkpoint (.pth.tar) with encoder/target_encoder/predictor")
    add_argument(parser, "--gradient-csv", required=True, help="gradient matrix CSV: one row per ROI, no header")
    add_argument(parser, "--output-dir", required=True, help="folder to create (refused if it exists)")
    parser.add_argument(
        "--source",
        choices=("target_encoder", "encoder"),
        default="target_encoder",
        help="state dict the encoder comes from (default: target_encoder, as fine-tuning uses)",
    )
    add_argument(
        parser,
        "--with-predictor",
        action="store_true",
        help="save BrainJepaForPreTraining: both encoders and the predictor",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    add_argument(parser, "--repo-id", help="Hub id the model card's quick start loads (default: the folder)")
    add_argument(
        parser,
        "--num-attention-heads",
        type=int,
        help="heads per layer: required unless the checkpoint is a paper size (ViT-S/B/L)",
    )
    add_argument(parser, "--sampling-rate", type=int, default=3, help="feature extractor clip stride (default 3)")
    parser.add_argument(
        "--scaling",
        choices=("zscore", "robust", "none"),
        default="zscore",
        help="feature extractor scaling (default zscore: robust needs UK Biobank statistics)",
    )
    parser.add_argument(
        "--atlas",
        default="auto",
        metavar="PATH|released|none",
        help="ROI names and networks stored with the model: an atlas table (CSV/TSV with index, name, "
        "network[, coarse_network, hemisphere, x, y, z]), 'released' (the released 450-ROI "
        "layout) or 'none' (default: 'released' for 450-ROI checkpoints, else none)",
    )
    add_argument(parser, "--push-to-hub", metavar="REPO_ID", help="upload the folder to this Hub repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository as private")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert the authors' Brain-JEPA checkpoint into a Hub-ready folder",
        description=(
            "Read an original Brain-JEPA pretraining checkpoint (torch.load weights_only) and its gradient CSV, "
            "check every key and shape and the saved time positions, and write a Hub-ready folder: config with "
            "auto_map, model.safetensors, remote-code files, preprocessor_config.json, pipelines and a model card."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brain_jepa_hf.conversion import convert_original_checkpoint

    try:
        folder = convert_original_checkpoint(
            args.checkpoint,
            args.gradient_csv,
            args.output_dir,
            source=args.source,
            with_predictor=args.with_predictor,
            overwrite=args.overwrite,
            repo_id=args.repo_id or args.push_to_hub,
            num_attention_heads=args.num_attention_heads,
            sampling_rate=args.sampling_rate,
            scaling=args.scaling,
            atlas=args.atlas,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"brain-jepa convert: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {folder}")
    if args.push_to_hub:
        from brain_jepa_hf.hub import push_folder_to_hub

        commit = push_folder_to_hub(folder, args.push_to_hub, private=args.private or None)
        print(f"pushed {commit.commit_url}")
    return 0
