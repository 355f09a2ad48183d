"""The `brain-jepa` command line: one subcommand per module in `brain_jepa_hf.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each entry names a module `brain_jepa_hf.commands.<name>` exposing `register(subparsers)`,
# which adds its parser and sets `func(args) -> int` as the parser default. A module with
# `STANDALONE = True` parses its own arguments instead: `main(argv) -> int` gets everything after
# the command name (it also runs under `accelerate launch -m brain_jepa_hf.commands.<name>`).
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
        description="Brain-JEPA for fMRI: data preparation, pretraining, fine-tuning and Hub export.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"brain_jepa_hf.commands.{name}").register(subparsers)
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
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _dispatch(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):
        name = argv[0].replace("-", "_")
        if name in COMMANDS:
            module = importlib.import_module(f"brain_jepa_hf.commands.{name}")
            if getattr(module, "STANDALONE", False):
                return int(module.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
