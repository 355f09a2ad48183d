"""What the command modules share: the flag spelling rule, the help layout and the options several commands take.

Nothing here imports torch, transformers or brain_jepa_hf: building any parser (and so `--help`) stays fast.
"""

from __future__ import annotations

import argparse


# brain_jepa_hf.modeling_brain_jepa.INFERENCE_DTYPES and brain_jepa_hf.series_fit.SHORT_SERIES_CHOICES, spelled
# out so that building a parser imports neither; tests/test_cli_startup.py checks that they are equal.
DTYPE_CHOICES = ("auto", "float32", "bfloat16")
SHORT_SERIES_CHOICES = ("error", "stretch", "pad")

SHORT_SERIES_HELP = (
    "Series shorter than sampling_rate*num_frames volumes: error (default), stretch (the num_frames frames "
    "spread over the whole series; needs >= num_frames volumes) or pad (every sampling_rate-th volume, "
    "missing frames filled after scaling)."
)
SAMPLING_RATE_HELP = (
    "Clip stride in volumes: a clip spans sampling_rate*num_frames volumes (3 in the paper, at TR 0.735 s; "
    "about 1 for TR 2 s)."
)


def flag_spellings(name: str) -> list[str]:
    """'--output_dir' or '--output-dir' -> ['--output-dir', '--output_dir']: kebab-case first, snake_case as an
    alias. Positional names and short flags are returned as they are."""
    if not name.startswith("--"):
        return [name]
    kebab, snake = "--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")
    return [kebab] if kebab == snake else [kebab, snake]


def add_argument(container, *names: str, **kwargs) -> argparse.Action:
    """`container.add_argument` (a parser, group or mutually exclusive group) with every long flag in both
    spellings, kebab-case first; the destination is the snake_case name either way."""
    spellings = [spelling for name in names for spelling in flag_spellings(name)]
    return container.add_argument(*spellings, **kwargs)


def kebab_case_first(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Show the kebab-case spelling first in help (HfArgumentParser lists `--output_dir, --output-dir`)."""
    for action in parser._actions:
        action.option_strings.sort(key=lambda option: "_" in option)
    return parser


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; an option's spellings share one metavar:
    `--output-dir, --output_dir OUTPUT_DIR` instead of repeating it after each."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {metavar}"


def add_dtype_argument(parser, default: str) -> None:
    """`--dtype auto|float32|bfloat16`, the inference precision of the encoder."""
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default=default,
        help=f"encoder precision (default {default}); auto = bfloat16 on CPUs with AVX512-BF16/AMX and on GPUs "
        "with bfloat16, float32 otherwise",
    )


def add_series_fit_arguments(parser) -> None:
    """`--sampling-rate` and `--short-series`: override the feature extractor's clip stride and short-series rule."""
    add_argument(
        parser,
        "--sampling-rate",
        type=int,
        default=None,
        help="override the feature extractor's clip stride. " + SAMPLING_RATE_HELP,
    )
    add_argument(
        parser,
        "--short-series",
        choices=SHORT_SERIES_CHOICES,
        default=None,
        help="override the feature extractor's rule. " + SHORT_SERIES_HELP,
    )


def describe_precision(requested: str, used: str) -> str:
    """'bfloat16 (--dtype auto)' or 'float32'."""
    return f"{used} (--dtype auto)" if requested == "auto" else used
