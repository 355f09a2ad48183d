"""The `brain-jepa` command line starts at once: `--help` of every command imports neither torch, transformers nor
brain_jepa_hf; what it shows without them (static choices, the stored help of the HfArgumentParser commands) equals
what the library defines; every flag has its kebab-case spelling first and its snake_case one as an alias."""

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from brain_jepa_cli import COMMANDS, build_parser, main
from brain_jepa_cli.options import DTYPE_CHOICES, SHORT_SERIES_CHOICES, flag_spellings
from brain_jepa_cli.saved_help import HELP_DIR, SAVED_COMMANDS, environment, render


HEAVY = ("torch", "transformers", "brain_jepa_hf")
HELP_CALLS = [["--help"], *([name.replace("_", "-"), "--help"] for name in COMMANDS), ["space", "create", "--help"]]


def test_help_imports_no_heavy_module():
    """Each `--help` in a fresh interpreter, as the console script runs it; sys.modules read after it."""
    script = (
        "import json, sys\n"
        "from brain_jepa_cli import main\n"
        "argv = json.loads(sys.argv[1])\n"
        "try:\n"
        "    main(argv)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    for argv in HELP_CALLS:
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, (argv, result.stderr[-2000:])
        assert "usage: brain-jepa" in result.stdout, argv
        heavy = json.loads(result.stdout.strip().splitlines()[-1])
        assert heavy == [], f"brain-jepa {' '.join(argv)} imported {heavy}"


@pytest.mark.parametrize("command", SAVED_COMMANDS)
def test_stored_help_is_what_the_parser_prints(command):
    """brain_jepa_cli/help/<command>.txt equals the HfArgumentParser help; regenerate: python -m brain_jepa_cli.saved_help"""
    header, _, stored = (HELP_DIR / f"{command}.txt").read_text().partition("\n")
    assert header == environment(), (
        f"stored help rendered elsewhere ({header}); run python -m brain_jepa_cli.saved_help"
    )
    assert stored == render(command), f"the {command} arguments changed; run python -m brain_jepa_cli.saved_help"


def test_standalone_help_prints_the_stored_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--output_dir", "x", "-h"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == render("finetune")


def test_static_choices_equal_the_library():
    from brain_jepa_hf.modeling_brain_jepa import INFERENCE_DTYPES
    from brain_jepa_hf.series_fit import SHORT_SERIES_CHOICES as LIBRARY_SHORT_SERIES

    assert DTYPE_CHOICES == INFERENCE_DTYPES
    assert SHORT_SERIES_CHOICES == LIBRARY_SHORT_SERIES


def _parsers():
    """(name, parser) of every command, the HfArgumentParser ones included."""
    found = []

    def walk(parser, name):
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")

    walk(build_parser(), "brain-jepa")
    for command in SAVED_COMMANDS:
        found.append((f"brain-jepa {command}", importlib.import_module(f"brain_jepa_cli.{command}").build_parser()))
    return found


def test_every_flag_kebab_case_first_with_snake_case_alias():
    checked = 0
    for name, parser in _parsers():
        for action in parser._actions:
            long_options = [option for option in action.option_strings if option.startswith("--")]
            if isinstance(action, argparse.BooleanOptionalAction):  # argparse adds --no-<flag> itself
                long_options = [option for option in long_options if not option.startswith("--no-")]
            for option in long_options:
                if "_" in option or "-" in option[2:]:
                    expected = flag_spellings(option)
                    assert all(spelling in long_options for spelling in expected), (name, action.option_strings)
            if long_options and ("_" in long_options[0] or "-" in long_options[0][2:]):
                first = long_options[0]
                assert first == flag_spellings(first)[0], f"{name}: {action.option_strings} shows snake_case first"
                checked += 1
    assert checked > 150  # the argparse commands' and the dataclasses' multi-word flags


def test_both_spellings_parse_alike():
    parser = build_parser()
    kebab = parser.parse_args(
        ["embed", "--model", "m", "--output", "o.npy", "--batch-size", "3", "--short-series", "pad"]
    )
    snake = parser.parse_args(
        ["embed", "--model", "m", "--output", "o.npy", "--batch_size", "3", "--short_series", "pad"]
    )
    assert vars(kebab) == vars(snake) and kebab.batch_size == 3 and kebab.short_series == "pad"
