"""`brain-jepa probe`: linear probing of a frozen encoder (scikit-learn fast path or torch BN + Linear)."""

from __future__ import annotations

import sys

from . import add_dtype_argument, describe_precision

STANDALONE = True  # parses its own arguments with HfArgumentParser (see brain_jepa_hf.cli)

DESCRIPTION = (
    "Linear probing of a frozen encoder. --engine sklearn (default) extracts pooled embeddings once and fits "
    "standardised ridge / logistic regression whose regularisation is chosen by --cv_folds cross-validation on "
    "train+validation, scored on test; --engine torch trains BatchNorm1d(affine=False) + Linear on the frozen "
    "encoder with the Trainer (options of `brain-jepa finetune`)."
)
EXAMPLES = """\
examples:
  # fast path: pooled embeddings once, CV-tuned ridge / logistic regression, 5 seeds
  brain-jepa probe --model_name_or_path runs/pretrain-tiny --label_column sex --output_dir runs/probe-sex

  # the original's probe: frozen encoder, BatchNorm1d(affine=False) + Linear, trained with the Trainer
  brain-jepa probe --engine torch --model_name_or_path runs/pretrain-tiny --label_column age \\
      --num_train_epochs 20 --output_dir runs/probe-age
"""
PROBE_DEFAULTS = {"mode": "linear_probe", "weight_decay": 0.0, "learning_rate": 1e-3, "drop_path_rate": 0.0}


def main(argv: list[str] | None = None) -> int:
    from ..downstream_arguments import build_argument_parser, parse_arguments
    from ..finetuning import run_finetuning
    from ..probing import run_sklearn_probe
    from ..run_results import print_summary

    parser = build_argument_parser("brain-jepa probe", DESCRIPTION, EXAMPLES)
    parser.add_argument("--engine", choices=("sklearn", "torch"), default="sklearn", help="probe engine")
    parser.add_argument("--cv_folds", type=int, default=5, help="cross-validation folds of the sklearn engine")
    add_dtype_argument(parser, default="float32")
    model_args, data_args, training_args, extra = parse_arguments(
        sys.argv[1:] if argv is None else argv, parser, defaults=PROBE_DEFAULTS
    )
    if extra.engine == "torch":
        if extra.dtype != "float32":
            raise ValueError(
                f"dtype: the torch engine runs through the Trainer, whose --bf16 / --bf16_full_eval set its precision; "
                f"--dtype applies to the sklearn engine, got --dtype {extra.dtype}"
            )
        results = run_finetuning(model_args, data_args, training_args)
    else:
        if not model_args.model_name_or_path:
            raise ValueError("model_name_or_path: expected a pretrained folder or Hub id for the sklearn probe, got none")
        results = run_sklearn_probe(
            model_args.model_name_or_path, data_args, output_dir=training_args.output_dir, seeds=training_args.seeds,
            seed=training_args.seed, cv=extra.cv_folds, batch_size=training_args.per_device_eval_batch_size,
            revision=model_args.revision, overwrite=training_args.overwrite_output_dir, dtype=extra.dtype,
        )
        if training_args.process_index == 0:
            print(f"embeddings in {describe_precision(extra.dtype, results['model']['dtype'])}", file=sys.stderr)
    if training_args.process_index == 0:  # once under `accelerate launch` (torch engine)
        print_summary(results, training_args.output_dir)
    return 0


def register(subparsers) -> None:
    subparsers.add_parser("probe", help="linear probe of a frozen encoder (sklearn CV fast path or torch)",
                          description=DESCRIPTION, epilog=EXAMPLES)


if __name__ == "__main__":  # e.g. `accelerate launch -m brain_jepa_hf.commands.probe`: one-line errors, --debug
    from brain_jepa_hf.cli import main as cli_main

    sys.exit(cli_main(["probe", *sys.argv[1:]]))
