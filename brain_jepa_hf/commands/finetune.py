"""`brain-jepa finetune`: Trainer-based fine-tuning with the paper's downstream recipe, several seeds."""

from __future__ import annotations

import sys

STANDALONE = True  # parses its own arguments with HfArgumentParser (see brain_jepa_hf.cli)

DESCRIPTION = (
    "Fine-tune BrainJepaForSequenceClassification (regression or classification) with AdamW, layer-wise lr "
    "decay 0.75, drop path 0.1, warmup + cosine to 1e-6, best checkpoint on validation and test evaluation, "
    "repeated over --seeds seeds. Every transformers TrainingArguments option is accepted."
)
EXAMPLES = """\
examples:
  # age regression on the embedded example cohort, from a pretraining folder, 5 seeds
  brain-jepa finetune --model_name_or_path runs/pretrain-tiny --label_column age --output_dir runs/ft-age

  # sex classification, 3 seeds, YAML values overridden on the command line
  brain-jepa finetune --config finetune.yaml --label_column sex --seeds 3 --num_train_epochs 10 --output_dir runs/ft-sex

  # your own build-dataset folder, z-scored inputs (the paper's downstream scaling), push the best seed
  brain-jepa finetune --model_name_or_path your-name/brain-jepa-base --dataset data/hcp-aging \\
      --label_column flanker --scaling zscore --output_dir runs/flanker --push_to_hub --hub_model_id me/bj-flanker

  # several GPUs (data parallel; on a machine without GPUs the processes form a gloo CPU group)
  accelerate launch --multi_gpu --num_processes 4 -m brain_jepa_hf.commands.finetune \\
      --model_name_or_path runs/pretrain-tiny --output_dir runs/ft-4gpu

Writes OUTPUT_DIR/results.json (per seed + mean/std), results.md (paper-layout table), the best-validation
seed's model (config, weights, remote code, feature extractor) and a README.md model card with model-index.
"""


def main(argv: list[str] | None = None) -> int:
    from ..downstream_arguments import build_argument_parser, parse_arguments
    from ..finetuning import run_finetuning
    from ..run_results import print_summary

    parser = build_argument_parser("brain-jepa finetune", DESCRIPTION, EXAMPLES)
    model_args, data_args, training_args, _ = parse_arguments(sys.argv[1:] if argv is None else argv, parser)
    results = run_finetuning(model_args, data_args, training_args)
    if training_args.process_index == 0:  # once under `accelerate launch`
        print_summary(results, training_args.output_dir)
    return 0


def register(subparsers) -> None:
    subparsers.add_parser("finetune", help="fine-tune a pretrained encoder on labels (Trainer, layer decay, seeds)",
                          description=DESCRIPTION, epilog=EXAMPLES)


if __name__ == "__main__":  # e.g. `accelerate launch -m brain_jepa_hf.commands.finetune`: one-line errors, --debug
    from brain_jepa_hf.cli import main as cli_main

    sys.exit(cli_main(["finetune", *sys.argv[1:]]))
