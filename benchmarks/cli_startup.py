"""Start-up time of the command line: `brain-jepa --help` and every command's `--help` vs `python -c pass`.

Goal: each `--help` under 1 s wall time. Every measurement is a fresh interpreter; the runs are interleaved
(one round of every command, then the next round) and the median of the rounds is reported, so the shared
machine's load affects all alike. `brain-jepa` runs what its console script runs (`brain_jepa_cli:main`).

    python benchmarks/cli_startup.py              # 5 rounds
    python benchmarks/cli_startup.py --repeats 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 1.0
CONSOLE_SCRIPT = "import sys; from brain_jepa_cli import main; sys.exit(main())"  # what pip's `brain-jepa` runs


def commands() -> list[list[str]]:
    sys.path.insert(0, str(REPO_ROOT))
    from brain_jepa_cli import COMMANDS

    return [[], *([name.replace("_", "-")] for name in COMMANDS), ["space", "create"]]


def wall_time(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    runs = {"python -c pass": [sys.executable, "-c", "pass"]}
    for words in commands():
        runs[" ".join(["brain-jepa", *words, "--help"])] = [sys.executable, "-c", CONSOLE_SCRIPT, *words, "--help"]
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, command in runs.items():
            times[name].append(wall_time(command, env))

    baseline = statistics.median(times["python -c pass"])
    width = max(map(len, runs))
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{args.repeats} rounds, median wall time (min-max)"
    )
    print(f"{'command':<{width}}  {'median s':>8}  {'range s':>11}  {'x pass':>6}  < {LIMIT_S:g} s")
    failed = 0
    for name, values in times.items():
        median = statistics.median(values)
        verdict = "" if name == "python -c pass" else ("PASS" if median < LIMIT_S else "FAIL")
        failed += verdict == "FAIL"
        print(
            f"{name:<{width}}  {median:8.3f}  {min(values):5.2f}-{max(values):<5.2f}  {median / baseline:6.1f}  {verdict}".rstrip()
        )
    print(f"{len(times) - 1 - failed} of {len(times) - 1} under {LIMIT_S:g} s")


if __name__ == "__main__":
    main()
