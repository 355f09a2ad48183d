"""`brain-jepa demo`: the web demo of a model on this machine (needs the `demo` extra)."""

from __future__ import annotations

import sys

from .options import HelpFormatter, add_dtype_argument


EXAMPLES = """\
examples:
  # a fine-tuned folder, on http://127.0.0.1:7860 (or the next free port)
  brain-jepa demo --model runs/finetune-age

  # a Hub model, reachable from other machines of the network
  brain-jepa demo --model your-name/brain-jepa-base --host 0.0.0.0 --port 8080
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="web demo of a model: upload a scan, see embedding, prediction and figures",
        description="Start the gradio demo page of a Brain-JEPA model (folder or Hub id) and print its URL. "
        "Needs the demo extra: pip install 'brain-jepa-hf[demo]'.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: $BRAIN_JEPA_MODEL)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=None, help="port (default: 7860 or the next free one)")
    add_dtype_argument(parser, default="auto")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("brain-jepa demo: error: gradio is not installed; pip install 'brain-jepa-hf[demo]'", file=sys.stderr)
        return 1
    from brain_jepa_hf.demo import launch_demo

    if args.port is not None and not 0 < args.port < 65536:
        print(f"brain-jepa demo: error: --port: expected 1-65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        launch_demo(args.model, host=args.host, port=args.port, dtype=args.dtype)
    except (ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"brain-jepa demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
