"""`brain-jepa embed`: pooled or per-token embeddings of a dataset into .npy or Parquet (resumable)."""

from __future__ import annotations

from pathlib import Path

from .options import HelpFormatter, add_argument, add_dtype_argument, add_series_fit_arguments, describe_precision


EXAMPLES = """\
examples:
  # pooled (N, D) embeddings of the example cohort
  brain-jepa embed --model runs/pretrain-tiny --dataset example --output emb.npy

  # per-token (N, R*Tp, D) embeddings of a build-dataset folder into Parquet with subject ids
  brain-jepa embed --model your-name/brain-jepa-base --dataset data/ukb --pooling tokens --output ukb_tokens.parquet

  # a Brainmarks dataset folder (bold / mean / std / tr columns) is converted on the fly
  brain-jepa embed --model runs/pretrain-tiny --dataset data/hcpya-rest1lr.schaefer400_tians3.arrow --output hcp.npy

  # all GPUs of a machine: the chunks are shared out, the output is the file one process writes
  accelerate launch --num_processes 4 -m brain_jepa_cli.embed --model your-name/brain-jepa-base \
      --dataset data/ukb --device cuda --output ukb.npy

  # a 300-volume scan at TR 2 s (the default clip is 3 x 160 = 480 volumes)
  brain-jepa embed --model runs/pretrain-tiny --dataset data/tr2 --sampling-rate 1 --output tr2.npy

  # interrupted? run the same command again: finished chunks in OUTPUT.partial/ are kept

  # float32 whatever the hardware (default auto: bfloat16 where the CPU / GPU has fast bfloat16 matmul)
  brain-jepa embed --model runs/pretrain-tiny --dataset example --output emb.npy --dtype float32
"""
DESCRIPTION = (
    "Run a Brain-JEPA encoder (a pretraining folder's target encoder, a fine-tuned model's encoder, or a Hub id) "
    "over every series of a dataset with the deterministic centre clip."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embeddings of a dataset (pooled or per token) into .npy / .parquet",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument(
        "--dataset",
        default="example",
        help="'example', a save_to_disk / build-dataset folder or a Brainmarks dataset folder",
    )
    parser.add_argument("--split", default=None, help="split of a DatasetDict (default: all splits, in order)")
    parser.add_argument("--output", required=True, help="output file ending in .npy or .parquet")
    parser.add_argument("--pooling", choices=("mean", "tokens"), default="mean")
    add_argument(parser, "--batch-size", type=int, default=16)
    add_argument(parser, "--chunk-size", type=int, default=256, help="rows per resumable chunk")
    add_argument(parser, "--fmri-column", default="fmri")
    add_argument(parser, "--id-column", default="subject_id")
    add_argument(parser, "--feature-extractor", default=None, help="default: the model's preprocessor_config.json")
    add_series_fit_arguments(parser)
    add_argument(parser, "--example-subjects", type=int, default=200)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (under accelerate launch: each process's GPU)")
    add_dtype_argument(parser, default="auto")
    parser.add_argument("--overwrite", action="store_true")


def run(args) -> int:
    from brain_jepa_hf.console import setup_console

    setup_console()
    path = _embed(args)
    if path is not None:
        print(path)
    return 0


def _embed(args):
    from brain_jepa_hf.data import open_dataset
    from brain_jepa_hf.embedding import distributed_state, embed, load_encoder
    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
    from brain_jepa_hf.series_fit import check_series_fit, series_lengths, set_series_options

    state = distributed_state()
    device = state.device if state is not None and args.device != "cpu" else args.device
    encoder = load_encoder(args.model, device=device, dtype=args.dtype)  # first: a wrong model path fails at once
    dataset = open_dataset(
        args.dataset, split=args.split, example_subjects=args.example_subjects, fmri_column=args.fmri_column
    )
    if args.feature_extractor and Path(args.feature_extractor).is_dir():
        if not (Path(args.feature_extractor) / "preprocessor_config.json").is_file():
            raise ValueError(
                f"feature_extractor: expected a folder holding preprocessor_config.json, got {args.feature_extractor}"
            )
    extractor = BrainJepaFeatureExtractor.from_pretrained(args.feature_extractor or args.model)
    set_series_options(extractor, sampling_rate=args.sampling_rate, short_series=args.short_series)
    check_series_fit(series_lengths(dataset, args.fmri_column), extractor, args.fmri_column)  # before the bar
    stats = {}
    path = embed(
        encoder,
        dataset,
        args.output,
        feature_extractor=extractor,
        pooling=args.pooling,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        fmri_column=args.fmri_column,
        id_column=args.id_column,
        overwrite=args.overwrite,
        state=state,
        stats=stats,
    )
    if state is not None and not state.is_main_process:
        return None
    print_summary(stats, args.dtype, device)
    return path


def print_summary(stats: dict, requested_dtype: str, device) -> None:
    """One line: rows embedded, precision (as asked and as used) and the measured speed."""
    import torch

    from brain_jepa_hf.modeling_brain_jepa import cpu_has_fast_bf16

    precision = describe_precision(requested_dtype, stats["dtype"])
    if stats["rows"]:
        seconds = stats["seconds"]
        print(
            f"embedded {stats['rows']} subjects on {device} in {precision}: {seconds:.1f} s, "
            f"{stats['rows'] / max(seconds, 1e-9):.2f} subjects/s, {seconds / stats['rows']:.3f} s/subject"
        )
    else:
        print(f"nothing left to embed ({precision}): every chunk was finished by an earlier run")
    if stats["dtype"] == "bfloat16" and torch.device(device).type == "cpu" and not cpu_has_fast_bf16():
        print(
            "note: this CPU has no bfloat16 matrix instructions (AVX512-BF16/AMX), so bfloat16 is emulated "
            "and slower than float32 here; --dtype auto picks float32 on it"
        )


if __name__ == "__main__":  # e.g. `accelerate launch -m brain_jepa_cli.embed`: one-line errors, --debug
    from brain_jepa_cli import run_standalone

    run_standalone("embed")
