"""Count the bad-input kinds the test suite checks (issue 13): every collected test of the bad-input
and fault test modules is one kind (a parametrized case per kind, one test per unparametrized kind).

    python tests/count_bad_input_kinds.py    # prints one line per module and the total
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path


MODULES = [
    "test_bad_inputs.py",
    "test_bad_inputs_api.py",
    "test_bad_inputs_cli.py",
    "test_bad_inputs_files.py",
    "test_faults.py",
]


def count_kinds(tests_dir: Path) -> Counter:
    paths = [str(tests_dir / name) for name in MODULES if (tests_dir / name).is_file()]
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *paths],
        capture_output=True,
        text=True,
        cwd=tests_dir.parent,
        check=True,
    ).stdout
    return Counter(line.split("::", 1)[0].rsplit("/", 1)[-1] for line in listing.splitlines() if "::" in line)


def main() -> int:
    counts = count_kinds(Path(__file__).resolve().parent)
    for module in MODULES:
        print(f"{module}: {counts.get(module, 0)}")
    print(f"total bad-input kinds: {sum(counts.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
