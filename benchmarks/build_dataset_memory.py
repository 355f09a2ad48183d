"""Peak memory of `build_dataset` for 100 and 1000 subjects (450 x 490 .npy files), side by side with a
naive build that loads every subject before writing (Dataset.from_dict + save_to_disk).

Each build runs in its own subprocess, which reports its own peak resident set size (ru_maxrss) and
its RSS right after imports; the difference is what the build itself costs. The streamed build
should stay flat as subjects grow; the naive one grows with the cohort.

    python benchmarks/build_dataset_memory.py
    python benchmarks/build_dataset_memory.py --subjects 100 1000 --no-naive
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


CHILD = r"""
import json, resource, sys, time
import numpy as np
from datasets import Dataset, Features, Array2D, Value
from brain_jepa_hf.data import build_dataset
from brain_jepa_hf.series_files import list_series_files, read_series
kind, input_dir, output_dir = sys.argv[1:4]
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if kind == "streamed":
    dataset = build_dataset(input_dir, output_dir=output_dir, progress=False)
    rows = len(dataset)
else:
    files = list_series_files(input_dir)
    arrays = np.stack([read_series(path) for _, path in files])
    features = Features({"subject_id": Value("string"), "fmri": Array2D(arrays.shape[1:], "float32")})
    dataset = Dataset.from_dict({"subject_id": [s for s, _ in files], "fmri": arrays}, features=features)
    dataset.save_to_disk(output_dir)
    rows = len(dataset)
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - start, "baseline_kib": baseline,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_child(kind: str, input_dir: Path, output_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(input_dir), str(output_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"},
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rois", type=int, default=450)
    parser.add_argument("--timepoints", type=int, default=490)
    parser.add_argument("--no-naive", action="store_true", help="skip the load-everything comparison")
    args = parser.parse_args()

    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="build-dataset-memory-") as root:
        root = Path(root)
        source = root / "all"
        source.mkdir()
        rng = np.random.default_rng(0)
        for i in tqdm(range(max(args.subjects)), desc="writing input files", unit="file"):
            np.save(source / f"sub-{i:05d}.npy", rng.standard_normal((args.rois, args.timepoints), dtype=np.float32))
        per_subject_mib = args.rois * args.timepoints * 4 / 2**20
        print(f"subjects of {args.rois} x {args.timepoints} float32 = {per_subject_mib:.2f} MiB each")
        print(
            f"{'build':9s} {'subjects':>8s} {'data MiB':>9s} {'peak RSS MiB':>13s} {'build cost MiB':>15s} {'seconds':>8s}"
        )
        results: dict = {}
        for count in args.subjects:
            folder = root / f"n{count}"
            folder.mkdir()
            for i in range(count):
                os.symlink(source / f"sub-{i:05d}.npy", folder / f"sub-{i:05d}.npy")
            for kind in ("streamed",) + (() if args.no_naive else ("naive",)):
                out = root / f"out-{kind}-{count}"
                report = run_child(kind, folder, out)
                assert report["rows"] == count
                cost = (report["peak_kib"] - report["baseline_kib"]) / 1024
                results[(kind, count)] = report["peak_kib"] / 1024
                print(
                    f"{kind:9s} {count:8d} {count * per_subject_mib:9.0f} {report['peak_kib'] / 1024:13.0f} "
                    f"{cost:15.0f} {report['seconds']:8.1f}"
                )
                subprocess.run(["rm", "-rf", str(out)], check=True)
        low, high = min(args.subjects), max(args.subjects)
        for kind in ("streamed",) + (() if args.no_naive else ("naive",)):
            print(
                f"{kind}: peak RSS at {high} / at {low} subjects = {results[(kind, high)] / results[(kind, low)]:.2f}x "
                f"(data grew {high / low:.0f}x)"
            )


if __name__ == "__main__":
    main()
