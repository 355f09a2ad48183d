#!/usr/bin/env python
"""Convert the authors' Brain-JEPA checkpoint into a Hub-ready folder (same as `brain-jepa convert`)."""

import argparse
import sys

from brain_jepa_cli.convert import EXAMPLES, add_arguments, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="convert_original_checkpoint.py",
        description="Convert an original Brain-JEPA pretraining checkpoint + gradient CSV into a Hub-ready folder.",
        epilog=EXAMPLES.replace("brain-jepa convert", "python conversion/convert_original_checkpoint.py"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
