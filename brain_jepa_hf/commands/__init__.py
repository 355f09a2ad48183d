"""Subcommands of the `brain-jepa` CLI; each module exposes `register(subparsers)`."""


# modeling_brain_jepa.INFERENCE_DTYPES, spelled out so that building the parser does not import torch.
DTYPE_CHOICES = ("auto", "float32", "bfloat16")


def add_dtype_argument(parser, default: str) -> None:
    """`--dtype auto|float32|bfloat16`, the inference precision of the encoder."""
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default=default,
        help=f"encoder precision (default {default}); auto = bfloat16 on CPUs with AVX512-BF16/AMX and on GPUs "
        "with bfloat16, float32 otherwise",
    )


def describe_precision(requested: str, used: str) -> str:
    """'bfloat16 (--dtype auto)' or 'float32'."""
    return f"{used} (--dtype auto)" if requested == "auto" else used
