"""Time the vectorised spatiotemporal mask collator against a per-sample loop of the same semantics.

Both sample the masks of one batch (context and target indices, truncated to the shortest); the
"full" rows add the default collation of the fMRI tensors, which both share. Timings alternate
between the two implementations round by round, so load from other processes hits both alike;
the reported figure is the median over rounds of the mean time per batch.

Examples:
    python benchmarks/collator_speed.py                       # batch 16 at 450 x 10 (the goal)
    python benchmarks/collator_speed.py --batch-sizes 16 64 256 --rounds 30
    python benchmarks/collator_speed.py --num-rois 400 --num-time-patches 20 --threads 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from brain_jepa_hf.masking import BrainJepaMaskCollator


# The per-sample loop is the tests' oracle (tests/masking_reference.py), not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from masking_reference import loop_sample_masks  # noqa: E402


def per_batch_ms(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def floor_draw(collator: BrainJepaMaskCollator, batch_size: int, generator: torch.Generator) -> None:
    """The work any vectorised torch implementation of the same semantics must do, and nothing
    else: the uniform scores of its four ROI subsets (observation, alpha, and the two sides' beta and
    gamma), one top-k selection per subset, and one pass writing each index list. No sizes, windows,
    pools or truncation: a lower bound on the vectorised time, not a working collator."""
    R, Tp = collator.num_rois, collator.num_time_patches
    scores = torch.rand(batch_size, 4, R, generator=generator)
    scores[:, 0].topk(int(0.92 * R), dim=-1, sorted=False)
    scores[:, 1].topk(int(0.52 * R), dim=-1, sorted=False)
    scores[:, 2:].topk(int(0.2 * R), dim=-1, sorted=True)
    grid = torch.zeros(batch_size, R * Tp, dtype=torch.bool)
    grid.nonzero()
    grid.nonzero()


def measure(collator: BrainJepaMaskCollator, batch_size: int, rounds: int, calls: int, frames: int) -> dict:
    examples = [{"fmri_values": torch.randn(1, collator.num_rois, frames), "label": i % 2} for i in range(batch_size)]
    generator = torch.Generator().manual_seed(0)
    step = iter(range(10**9))

    def vectorised():
        collator.sample_masks(batch_size, next(step))

    def loop():
        loop_sample_masks(collator, batch_size, generator)

    def floor():
        floor_draw(collator, batch_size, generator)

    def vectorised_full():
        collator(examples)

    def loop_full():
        batch = collator.collate_examples(examples)
        batch["context_indices"], batch["target_indices"] = loop_sample_masks(collator, batch_size, generator)

    timings = {name: [] for name in ("vectorised", "loop", "vectorised_full", "loop_full", "floor")}
    for fn in (vectorised, loop, vectorised_full, loop_full, floor):  # warm-up
        per_batch_ms(fn, 3)
    for _ in tqdm(range(rounds), desc=f"batch {batch_size}", leave=False):
        timings["vectorised"].append(per_batch_ms(vectorised, calls))
        timings["loop"].append(per_batch_ms(loop, calls))
        timings["vectorised_full"].append(per_batch_ms(vectorised_full, calls))
        timings["loop_full"].append(per_batch_ms(loop_full, calls))
        timings["floor"].append(per_batch_ms(floor, calls))
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-rois", type=int, default=450)
    parser.add_argument("--num-time-patches", type=int, default=10)
    parser.add_argument("--patch-size", type=int, default=16, help="frames per time patch (for the collated fMRI)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16])
    parser.add_argument("--rounds", type=int, default=20, help="alternating timing rounds per batch size")
    parser.add_argument("--calls", type=int, default=10, help="batches per implementation per round")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 1 by default: the ops are small, and extra threads only add "
        "contention on a shared machine (0 keeps torch's default)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    collator = BrainJepaMaskCollator(args.num_rois, args.num_time_patches)
    frames = args.num_time_patches * args.patch_size
    print(
        f"grid {args.num_rois} ROIs x {args.num_time_patches} time patches, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median over {args.rounds} rounds of {args.calls} batches"
    )
    header = f"{'batch':>5} | {'vectorised ms':>13} | {'loop ms':>8} | {'speedup':>7} | {'full vec ms':>11} | {'full loop ms':>12} | {'speedup':>7}"
    print(header)
    print("-" * len(header))
    for batch_size in args.batch_sizes:
        t = measure(collator, batch_size, args.rounds, args.calls, frames)
        print(
            f"{batch_size:>5} | {t['vectorised']:>13.3f} | {t['loop']:>8.3f} | {t['loop'] / t['vectorised']:>6.1f}x | "
            f"{t['vectorised_full']:>11.3f} | {t['loop_full']:>12.3f} | {t['loop_full'] / t['vectorised_full']:>6.1f}x"
        )
        if batch_size == 16 and (args.num_rois, args.num_time_patches) == (450, 10):
            ratio = t["loop"] / t["vectorised"]
            print(
                f"floor of any vectorised torch implementation (random scores + one top-k per ROI subset + "
                f"writing the two index lists): {t['floor']:.3f} ms -> at most {t['loop'] / t['floor']:.1f}x the loop"
            )
            print(
                f"goal (batch 16, 450 x 10): masks under 5 ms -> {t['vectorised']:.3f} ms "
                f"[{'met' if t['vectorised'] < 5 else 'NOT met'}]; >= 20x the loop -> {ratio:.1f}x "
                f"[{'met' if ratio >= 20 else 'NOT met'}]"
            )


if __name__ == "__main__":
    main()
