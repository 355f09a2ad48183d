"""`--help` of the commands parsed by transformers' HfArgumentParser (pretrain, finetune, probe) without importing
transformers or torch.

Their options come from dataclasses (finetune's include every transformers TrainingArguments option), which only
exist once transformers is imported. So the help text rendered by the real parser is stored in
brain_jepa_cli/help/<command>.txt, headed by the transformers and Python versions it was rendered with, and printed
when those are the installed ones; otherwise the real parser renders it (correct, just slower).
tests/test_cli_startup.py fails while a stored text differs from what the real parser prints.

After changing an argument, regenerate:  python -m brain_jepa_cli.saved_help
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


HELP_DIR = Path(__file__).parent / "help"
SAVED_COMMANDS = ("pretrain", "finetune", "probe")
WIDTH = 120  # columns the stored texts are rendered for


def wants_help(argv: list[str]) -> bool:
    """Whether argparse would print the help for these arguments."""
    arguments = argv[: argv.index("--")] if "--" in argv else argv
    return "-h" in arguments or "--help" in arguments


def environment() -> str:
    """The first line of a stored help text: what the text depends on besides this package."""
    from importlib.metadata import version

    return f"# transformers {version('transformers')}, python {sys.version_info.major}.{sys.version_info.minor}"


def print_help(command: str, build_parser) -> None:
    """Print `brain-jepa <command> --help` (stored, or rendered by `build_parser()`) and exit 0, as argparse does."""
    path = HELP_DIR / f"{command}.txt"
    header, _, text = path.read_text().partition("\n") if path.is_file() else ("", "", "")
    if text and header == environment():
        sys.stdout.write(text)
    else:
        build_parser().print_help()
    raise SystemExit(0)


def render(command: str) -> str:
    """The help text of `brain-jepa <command>` as its real parser prints it at WIDTH columns (imports the package)."""
    parser = importlib.import_module(f"brain_jepa_cli.{command}").build_parser()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        return parser.format_help()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def write_saved_help() -> list[Path]:
    """(Re)write help/<command>.txt for every command in SAVED_COMMANDS."""
    HELP_DIR.mkdir(exist_ok=True)
    written = []
    for command in SAVED_COMMANDS:
        path = HELP_DIR / f"{command}.txt"
        path.write_text(f"{environment()}\n{render(command)}")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_saved_help():
        print(f"wrote {path}")
