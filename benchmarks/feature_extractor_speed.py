"""Feature extractor throughput on 450 x 490 series: one batched call vs a per-sample loop, side by side.

Goal: >= 1000 subjects/s for the batch path on a 2-core CPU.

    python benchmarks/feature_extractor_speed.py                    # 512 subjects
    python benchmarks/feature_extractor_speed.py --subjects 256 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=512)
    parser.add_argument("--rois", type=int, default=450)
    parser.add_argument("--timepoints", type=int, default=490)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    rng = np.random.default_rng(0)
    series = rng.standard_normal((args.subjects, args.rois, args.timepoints), dtype=np.float32) + rng.uniform(
        100, 1000, (1, args.rois, 1)
    ).astype(np.float32)
    print(
        f"{args.subjects} subjects x {args.rois} ROIs x {args.timepoints} volumes, float32; "
        f"torch threads {torch.get_num_threads()}; best of {args.repeats}"
    )
    print(f"{'scaling':8s} {'mode':9s} {'batch subj/s':>13s} {'loop subj/s':>12s} {'batch/loop':>11s}")
    for scaling in ("robust", "zscore"):
        extractor = BrainJepaFeatureExtractor(num_rois=args.rois, scaling=scaling)
        if scaling == "robust":
            extractor.fit(series[:64])
        for training in (False, True):
            batch = best_time(lambda: extractor(series, training=training, seed=0), args.repeats)
            loop = best_time(
                lambda: [extractor(s, training=training, seed=i) for i, s in enumerate(series)], args.repeats
            )
            mode = "train" if training else "eval"
            print(
                f"{scaling:8s} {mode:9s} {args.subjects / batch:13.0f} {args.subjects / loop:12.0f} "
                f"{loop / batch:10.2f}x"
            )
    goal = BrainJepaFeatureExtractor(num_rois=args.rois).fit(series[:64])
    rate = args.subjects / best_time(lambda: goal(series), args.repeats)
    print(f"goal >= 1000 subjects/s (robust, eval, batch): {'met' if rate >= 1000 else 'NOT met'} ({rate:.0f}/s)")


if __name__ == "__main__":
    main()
