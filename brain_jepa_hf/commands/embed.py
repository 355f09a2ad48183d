"""`brain-jepa embed`: pooled or per-token embeddings of a dataset into .npy or Parquet (resumable)."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  # pooled (N, D) embeddings of the example cohort
  brain-jepa embed --model runs/pretrain-tiny --dataset example --output emb.npy

  # per-token (N, R*Tp, D) embeddings of a build-dataset folder into Parquet with subject ids
  brain-jepa embed --model your-name/brain-jepa-base --dataset data/ukb --pooling tokens --output ukb_tokens.parquet

  # interrupted? run the same command again: finished chunks in OUTPUT.partial/ are kept
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed", help="embeddings of a dataset (pooled or per token) into .npy / .parquet",
        description="Run a Brain-JEPA encoder (a pretraining folder's target encoder, a fine-tuned model's "
        "encoder, or a Hub id) over every series of a dataset with the deterministic centre clip.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--dataset", default="example", help="'example' or a save_to_disk / build-dataset folder")
    parser.add_argument("--split", default=None, help="split of a DatasetDict (default: all splits, in order)")
    parser.add_argument("--output", required=True, help="output file ending in .npy or .parquet")
    parser.add_argument("--pooling", choices=("mean", "tokens"), default="mean")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--chunk_size", type=int, default=256, help="rows per resumable chunk")
    parser.add_argument("--fmri_column", default="fmri")
    parser.add_argument("--id_column", default="subject_id")
    parser.add_argument("--feature_extractor", default=None, help="default: the model's preprocessor_config.json")
    parser.add_argument("--example_subjects", type=int, default=200)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..embedding import embed, load_encoder
    from ..feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    encoder = load_encoder(args.model, device=args.device)  # first: a wrong model path fails at once
    if args.dataset == "example":
        from ..example_data import load_example_dataset

        dataset = load_example_dataset(num_subjects=args.example_subjects)
    else:
        from pathlib import Path

        from datasets import DatasetDict, concatenate_datasets, load_from_disk

        if not Path(args.dataset).exists():
            raise FileNotFoundError(f"dataset: no such folder {args.dataset!r}")
        dataset = load_from_disk(args.dataset)
        if isinstance(dataset, DatasetDict):
            if args.split is not None:
                if args.split not in dataset:
                    raise ValueError(f"split: expected one of {sorted(dataset)}, got {args.split!r}")
                dataset = dataset[args.split]
            else:
                dataset = concatenate_datasets([dataset[name] for name in dataset])
    extractor = BrainJepaFeatureExtractor.from_pretrained(args.feature_extractor or args.model)
    path = embed(encoder, dataset, args.output, feature_extractor=extractor, pooling=args.pooling,
                 batch_size=args.batch_size, chunk_size=args.chunk_size, fmri_column=args.fmri_column,
                 id_column=args.id_column, overwrite=args.overwrite)
    print(path)
    return 0
