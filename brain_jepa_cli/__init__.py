"""The `brain-jepa` command line: one subcommand per module of this package.

This package is kept light: building the parsers (and so any `--help`) imports neither torch, transformers nor
brain_jepa_hf; each command imports its implementation from brain_jepa_hf when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .options import HelpFormatter


# Each entry names a module `brain_jepa_cli.<name>` exposing `register(subparsers)`, which adds its parser and sets
# `func(args) -> int` as the parser default. A module with `STANDALONE = True` parses its own arguments instead:
# `main(argv) -> int` gets everything after the command name (it also runs as `accelerate launch -m
# brain_jepa_cli.<name>`).
COMMANDS: list[str] = [
    "convert",
    "pretrain",
    "finetune",
    "probe",
    "embed",
    "parcellate",
    "gradients",
    "build_dataset",
    "plot_training",
    "demo",
    "space",
    "analyze",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brain-jepa",
        description="Brain-JEPA for fMRI: data preparation, pretraining, fine-tuning and Hub export.\n"
        "Flags are spelled kebab-case (--output-dir); the snake_case spelling (--output_dir) is accepted too.",
        formatter_class=HelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"brain_jepa_cli.{name}").register(subparsers)
    return parser


# What a user's mistake or the machine raises (bad argument, absent or existing path, full disk):
# one line, no traceback, unless `--debug` (anywhere on the command line) asks for the traceback.
USER_ERRORS = (ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    command = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        return _dispatch(argv)
    except USER_ERRORS as err:
        if debug:
            raise
        _close_progress_bars()
        print(f"brain-jepa {command}: error: {err}", file=sys.stderr)
        return 1


def _close_progress_bars() -> None:
    """End any progress bar the failed command left open, so the error starts on its own line."""
    tqdm = getattr(sys.modules.get("tqdm"), "tqdm", None)  # no bar can be open if tqdm was never imported
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _dispatch(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):
        name = argv[0].replace("-", "_")
        if name in COMMANDS:
            module = importlib.import_module(f"brain_jepa_cli.{name}")
            if getattr(module, "STANDALONE", False):
                return int(module.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def run_standalone(name: str) -> None:
    """`python -m brain_jepa_cli.<name> ...` (e.g. under `accelerate launch`): as `brain-jepa <name> ...`, with
    one-line errors and --debug."""
    sys.exit(main([name, *sys.argv[1:]]))
