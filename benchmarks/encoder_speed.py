"""Encoder speed and memory: ViT-B on 450 x 160 samples, fp32 CPU, eager vs sdpa, side by side.

Each (attention, batch) case runs in its own subprocess so its peak resident memory is its own.
The script also measures this machine's fp32 matmul rate and reports what fraction of it the
encoder reaches (FLOPs of the forward / time).

    python benchmarks/encoder_speed.py                  # ViT-B, batches 1 and 4
    python benchmarks/encoder_speed.py --batch-sizes 1 --num-layers 2   # quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def forward_flops(config, batch: int) -> float:
    """2 x multiply-adds of one encoder forward. Per block: qkv 6ND^2, proj 2ND^2, MLP 4rND^2
    (r = mlp_ratio, so 24ND^2 in all for r = 4), attention scores and mixing 4N^2D."""
    n, d = config.num_patches, config.hidden_size
    per_block = (8 + 4 * config.mlp_ratio) * n * d * d + 4 * n * n * d
    patch = 2 * n * config.patch_size * d
    return batch * (config.num_hidden_layers * per_block + patch)


def matmul_rate(size: int = 2048, trials: int = 5) -> float:
    """Best fp32 GEMM rate over a few trials (FLOP/s), the ceiling the encoder is compared with."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def worker(attn: str, batch: int, num_layers: int, repeats: int) -> dict:
    import torch

    from brain_jepa_hf import BrainJepaConfig, BrainJepaModel

    config = BrainJepaConfig.from_preset("vit-base", num_hidden_layers=num_layers)
    torch.manual_seed(0)
    model = BrainJepaModel(config).eval()
    model.set_attn_implementation(attn)
    model.set_gradient(torch.randn(config.num_rois, config.gradient_dim))
    fmri = torch.randn(batch, 1, config.num_rois, config.num_frames)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model(fmri)
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = min(times)
    return {
        "attn": attn,
        "batch": batch,
        "seconds_per_sample": best / batch,
        "peak_rss_gib": peak / 2**20,
        "forward_extra_gib": (peak - rss_before) / 2**20,
        "gflops_per_s": forward_flops(config, batch) / best / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--num-layers", type=int, default=12, help="encoder depth (12 = ViT-B)")
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per case (best is kept)")
    parser.add_argument("--worker", nargs=2, metavar=("ATTN", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.num_layers, args.repeats)))
        return

    import torch

    rate = matmul_rate()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul rate {rate / 1e9:.1f} GFLOP/s")
    print(f"ViT-B encoder (depth {args.num_layers}), 450 ROIs x 160 frames = 4500 tokens, fp32, inference")
    print(f"{'attn':6} {'batch':>5} {'s/sample':>9} {'peak GiB':>9} {'fwd GiB':>8} {'GFLOP/s':>8} {'of matmul':>9}")
    results = {}
    for batch in args.batch_sizes:
        for attn in ("eager", "sdpa"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                attn,
                str(batch),
                "--num-layers",
                str(args.num_layers),
                "--repeats",
                str(args.repeats),
            ]
            row = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            )
            results[attn, batch] = row
            print(
                f"{attn:6} {batch:>5} {row['seconds_per_sample']:>9.2f} {row['peak_rss_gib']:>9.2f} "
                f"{row['forward_extra_gib']:>8.2f} {row['gflops_per_s']:>8.1f} {row['gflops_per_s'] * 1e9 / rate:>9.0%}",
                flush=True,
            )
    print()
    for batch in args.batch_sizes:
        eager, sdpa = results["eager", batch], results["sdpa", batch]
        speedup = eager["seconds_per_sample"] / sdpa["seconds_per_sample"]
        memory = sdpa["forward_extra_gib"] / max(eager["forward_extra_gib"], 1e-9)
        flop_bound = rate / (sdpa["gflops_per_s"] * 1e9)
        print(
            f"batch {batch}: sdpa speedup {speedup:.2f}x (goal >= 3x), sdpa/eager forward memory {memory:.2f} "
            f"(goal <= 0.5), sdpa time / FLOP-bound time {flop_bound:.2f} (goal <= 1.2)"
        )


if __name__ == "__main__":
    main()
