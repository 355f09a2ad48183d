"""`python -m brain_jepa_hf ...`: the `brain-jepa` command line (brain_jepa_cli)."""

import sys

from brain_jepa_cli import main


sys.exit(main())
