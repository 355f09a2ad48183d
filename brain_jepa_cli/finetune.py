"""`brain-jepa finetune`: Trainer-based fine-tuning with the paper's downstream recipe, several seeds."""

from __future__ import annotations

import sys

from .options import HelpFormatter, kebab_case_first
from .saved_help import print_help, wants_help


STANDALONE = True  # parses its own arguments with HfArgumentParser (see brain_jepa_cli)

DESCRIPTION = (
    "Fine-tune BrainJepaForSequenceClassification (regression or classification) with AdamW, layer-wise lr "
    "decay 0.75, drop path 0.1, warmup + cosine to 1e-6, best checkpoint on validation and test evaluation, "
    "repeated over --seeds seeds. Every transformers TrainingArguments option is accepted."
)
EXAMPLES = """\
examples:
  # age regression on the embedded example cohort, from a pretraining folder, 5 seeds
  brain-jepa finetune --model-name-or-path runs/pretrain-tiny --label-column age --output-dir runs/ft-age

  # sex classification, 3 seeds, YAML values overridden on the command line
  brain-jepa finetune --config finetune.yaml --label-column sex --seeds 3 --num-train-epochs 10 --output-dir runs/ft-sex

  # your own build-dataset folder, z-scored inputs (the paper's downstream scaling), push the best seed
  brain-jepa finetune --model-name-or-path your-name/brain-jepa-base --dataset data/hcp-aging \\
      --label-column flanker --scaling zscore --output-dir runs/flanker --push-to-hub --hub-model-id me/bj-flanker

  # several GPUs (data parallel; on a machine without GPUs the processes form a gloo CPU group)
  accelerate launch --multi_gpu --num_processes 4 -m brain_jepa_cli.finetune \\
      --model-name-or-path runs/pretrain-tiny --output-dir runs/ft-4gpu

Writes OUTPUT_DIR/results.json (per seed + mean/std), results.md (paper-layout table), the best-validation
seed's model (config, weights, remote code, feature extractor) and a README.md model card with model-index.
"""


def build_parser():
    from brain_jepa_hf.downstream_arguments import build_argument_parser

    parser = build_argument_parser("brain-jepa finetune", DESCRIPTION, EXAMPLES)
    parser.formatter_class = HelpFormatter
    return kebab_case_first(parser)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print_help("finetune", build_parser)
    from brain_jepa_hf.console import setup_console
    from brain_jepa_hf.downstream_arguments import parse_arguments
    from brain_jepa_hf.finetuning import run_finetuning
    from brain_jepa_hf.run_results import print_summary

    setup_console()
    model_args, data_args, training_args, _ = parse_arguments(argv, build_parser())
    results = run_finetuning(model_args, data_args, training_args)
    if training_args.process_index == 0:  # once under `accelerate launch`
        print_summary(results, training_args.output_dir)
    return 0


def register(subparsers) -> None:
    subparsers.add_parser(
        "finetune",
        help="fine-tune a pretrained encoder on labels (Trainer, layer decay, seeds)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        add_help=False,
    )


if __name__ == "__main__":  # e.g. `accelerate launch -m brain_jepa_cli.finetune`: one-line errors, --debug
    from brain_jepa_cli import run_standalone

    run_standalone("finetune")
