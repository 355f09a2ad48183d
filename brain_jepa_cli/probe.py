"""`brain-jepa probe`: linear probing of a frozen encoder (scikit-learn fast path or torch BN + Linear)."""

from __future__ import annotations

import sys

from .options import (
    HelpFormatter,
    add_argument,
    add_dtype_argument,
    describe_precision,
    kebab_case_first,
)
from .saved_help import print_help, wants_help


STANDALONE = True  # parses its own arguments with HfArgumentParser (see brain_jepa_cli)

DESCRIPTION = (
    "Linear probing of a frozen encoder. --engine sklearn (default) extracts pooled embeddings once and fits "
    "standardised ridge / logistic regression whose regularisation is chosen by --cv-folds cross-validation on "
    "train+validation, scored on test; --engine torch trains BatchNorm1d(affine=False) + Linear on the frozen "
    "encoder with the Trainer (options of `brain-jepa finetune`)."
)
EXAMPLES = """\
examples:
  # fast path: pooled embeddings once, CV-tuned ridge / logistic regression, 5 seeds
  brain-jepa probe --model-name-or-path runs/pretrain-tiny --label-column sex --output-dir runs/probe-sex

  # the original's probe: frozen encoder, BatchNorm1d(affine=False) + Linear, trained with the Trainer
  brain-jepa probe --engine torch --model-name-or-path runs/pretrain-tiny --label-column age \\
      --num-train-epochs 20 --output-dir runs/probe-age
"""
PROBE_DEFAULTS = {"mode": "linear_probe", "weight_decay": 0.0, "learning_rate": 1e-3, "drop_path_rate": 0.0}


def build_parser():
    from brain_jepa_hf.downstream_arguments import build_argument_parser

    parser = build_argument_parser("brain-jepa probe", DESCRIPTION, EXAMPLES)
    parser.formatter_class = HelpFormatter
    parser.add_argument("--engine", choices=("sklearn", "torch"), default="sklearn", help="probe engine")
    add_argument(parser, "--cv-folds", type=int, default=5, help="cross-validation folds of the sklearn engine")
    add_dtype_argument(parser, default="float32")
    return kebab_case_first(parser)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print_help("probe", build_parser)
    from brain_jepa_hf.console import setup_console
    from brain_jepa_hf.downstream_arguments import parse_arguments
    from brain_jepa_hf.finetuning import run_finetuning
    from brain_jepa_hf.probing import run_sklearn_probe
    from brain_jepa_hf.run_results import print_summary

    setup_console()
    model_args, data_args, training_args, extra = parse_arguments(argv, build_parser(), defaults=PROBE_DEFAULTS)
    if extra.engine == "torch":
        if extra.dtype != "float32":
            raise ValueError(
                f"dtype: the torch engine runs through the Trainer, whose --bf16 / --bf16-full-eval set its precision; "
                f"--dtype applies to the sklearn engine, got --dtype {extra.dtype}"
            )
        results = run_finetuning(model_args, data_args, training_args)
    else:
        if not model_args.model_name_or_path:
            raise ValueError(
                "model_name_or_path: expected a pretrained folder or Hub id for the sklearn probe, got none"
            )
        results = run_sklearn_probe(
            model_args.model_name_or_path,
            data_args,
            output_dir=training_args.output_dir,
            seeds=training_args.seeds,
            seed=training_args.seed,
            cv=extra.cv_folds,
            batch_size=training_args.per_device_eval_batch_size,
            revision=model_args.revision,
            overwrite=training_args.overwrite_output_dir,
            dtype=extra.dtype,
        )
        if training_args.process_index == 0:
            print(f"embeddings in {describe_precision(extra.dtype, results['model']['dtype'])}", file=sys.stderr)
    if training_args.process_index == 0:  # once under `accelerate launch` (torch engine)
        print_summary(results, training_args.output_dir)
    return 0


def register(subparsers) -> None:
    subparsers.add_parser(
        "probe",
        help="linear probe of a frozen encoder (sklearn CV fast path or torch)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        add_help=False,
    )


if __name__ == "__main__":  # e.g. `accelerate launch -m brain_jepa_cli.probe`: one-line errors, --debug
    from brain_jepa_cli import run_standalone

    run_standalone("probe")
