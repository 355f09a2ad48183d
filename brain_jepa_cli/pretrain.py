"""`brain-jepa pretrain`: JEPA pretraining, single process or under `accelerate launch`."""

from __future__ import annotations

import argparse
import os
import sys

from .options import HelpFormatter, kebab_case_first
from .saved_help import print_help, wants_help


EXAMPLES = """examples:
  # a few minutes on CPU: tiny model on the embedded synthetic example dataset
  brain-jepa pretrain --preset example-tiny --output-dir runs/example

  # the released ViT-B recipe on your own `brain-jepa build-dataset` folder, 4 GPUs
  accelerate launch --num_processes 4 -m brain_jepa_cli.pretrain \\
      --preset released-vit-base --dataset data/ukb --output-dir runs/vit-base

  # resume after an interruption, then push the result to the Hub
  brain-jepa pretrain --config my_run.yaml --resume-from-checkpoint latest \\
      --push-to-hub --hub-model-id me/brain-jepa-mycohort

Precedence: defaults < --preset < --config YAML < flags on the command line."""

STANDALONE = True  # parses its own arguments (see brain_jepa_cli)
HELP = "Pretrain Brain-JEPA (spatiotemporal masking, EMA target encoder) with Accelerate."


def build_parser() -> argparse.ArgumentParser:
    from transformers import HfArgumentParser

    from brain_jepa_hf.pretraining_arguments import PretrainingArguments

    parser = HfArgumentParser(
        PretrainingArguments,
        prog="brain-jepa pretrain",
        description=HELP,
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--preset", default=None, help="A bundled recipe: example-tiny or released-vit-base.")
    parser.add_argument("--config", default=None, help="A YAML file of the arguments below.")
    return kebab_case_first(parser)


def parse_arguments(argv: list[str]):
    from brain_jepa_hf.pretraining_arguments import load_yaml_arguments, preset_path

    parser = build_parser()
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset")
    first.add_argument("--config")
    known, _ = first.parse_known_args(argv)
    defaults = {}
    if known.preset:
        defaults.update(load_yaml_arguments(preset_path(known.preset)))
    if known.config:
        defaults.update(load_yaml_arguments(known.config))
    parser.set_defaults(**defaults)
    # -> (PretrainingArguments, Namespace(preset, config), remaining strings)
    outputs = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    args, extra = outputs[0], outputs[-1]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print_help("pretrain", build_parser)
    from brain_jepa_hf.console import setup_console
    from brain_jepa_hf.pretraining import pretrain

    setup_console()
    args = parse_arguments(argv)
    output = pretrain(args)  # errors become one line in brain_jepa_cli.main (--debug: the traceback)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"pretrained model saved to {output}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help=HELP, add_help=False)
    parser.set_defaults(func=lambda args: main(args.rest), rest=[])


if __name__ == "__main__":  # e.g. `accelerate launch -m brain_jepa_cli.pretrain`: one-line errors, --debug
    from brain_jepa_cli import run_standalone

    run_standalone("pretrain")
