"""Cost of the attention-by-network analysis next to a plain forward: ViT-B, 450 x 160, batch 4, fp32 CPU.

The analysis is `roi_attention` over all 12 layers (one forward whose attention also pools the
head-averaged weights to ROI x ROI, in query chunks) followed by `network_matrix` and
`attention_received`; the plain forward is the encoder with its default attention (sdpa). Goals:
time <= 1.3x and peak memory <= 1.5x the plain forward's.

Each measurement runs in its own subprocess, plain and analysis interleaved, so that one's memory
cannot hide in the other's and a slow phase of a shared machine hits both alike. In each subprocess
the model and input are built and both code paths are warmed up on a 1-sample, 1-time-patch input;
then the peak resident set size (Linux VmHWM) is reset through /proc/self/clear_refs and the timed
call runs. Memory reported: `extra` = peak RSS during the call minus RSS just before it (what the
call itself needs: activations, attention buffers, results), and `peak` = the process's peak RSS
(model, libraries and the call). The goal is judged on `extra`, the stricter ratio.

    python benchmarks/analysis_cost.py             # ViT-B, batch 4, 2 repetitions (~4 x 1 min on 2 cores)
    python benchmarks/analysis_cost.py --smoke     # tiny config, a few seconds: checks the script runs
    python benchmarks/analysis_cost.py --num-layers 2 --batch 1   # ViT-B layers, quicker look at the ratios
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def read_status(field: str) -> int:
    """A memory field of /proc/self/status in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(mode: str, smoke: bool, batch: int, num_layers: int | None) -> dict:
    import torch

    from brain_jepa_hf import BrainJepaConfig, BrainJepaModel
    from brain_jepa_hf.attention_pooling import roi_attention
    from brain_jepa_hf.network_statistics import attention_received, network_matrix

    if smoke:
        config = BrainJepaConfig.from_preset("tiny", num_rois=120, num_frames=80, patch_size=8, gradient_dim=30)
    else:
        config = BrainJepaConfig()  # ViT-B, 450 ROIs x 160 frames, the released model's shape
    if num_layers is not None:
        config.num_hidden_layers = num_layers
    torch.manual_seed(0)
    model = BrainJepaModel(config).eval()
    gradient = torch.randn(config.num_rois, config.gradient_dim)
    model.set_gradient(gradient)
    fmri = torch.randn(batch, 1, config.num_rois, config.num_frames)
    networks = [
        f"network{k}"
        for k in torch.arange(config.num_rois).mul(18).div(config.num_rois, rounding_mode="floor").tolist()
    ]

    def plain(values):
        with torch.no_grad():
            return model(values).last_hidden_state

    def analysis(values):
        pooled = roi_attention(model, values)  # (layers, B, R, R)
        return network_matrix(pooled, networks), attention_received(pooled, networks)

    run = plain if mode == "plain" else analysis
    run(torch.randn(1, 1, config.num_rois, config.patch_size))  # warm-up: kernels, allocator, imports
    reset_ok = reset_peak()
    before = read_status("VmRSS")
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    run(fmri)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    peak = read_status("VmHWM")
    return {
        "mode": mode,
        "seconds": wall,
        "cpu_seconds": cpu,
        "extra_bytes": peak - before,
        "peak_bytes": peak,
        "peak_reset": reset_ok,
        "attn": model.config._attn_implementation,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny config (quick check that the script runs)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="measurements per mode, interleaved")
    parser.add_argument(
        "--num-layers",
        type=int,
        help="encoder depth (default: the config's, 12 for ViT-B); "
        "every layer costs the same, so fewer layers give the same ratios sooner",
    )
    parser.add_argument("--worker", choices=["plain", "analysis"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.smoke, args.batch, args.num_layers)))
        return

    results = {"plain": [], "analysis": []}
    for repeat in range(args.repeats):
        for mode in ("plain", "analysis"):
            command = [sys.executable, __file__, "--worker", mode, "--batch", str(args.batch)] + (
                ["--smoke"] if args.smoke else []
            )
            if args.num_layers is not None:
                command += ["--num-layers", str(args.num_layers)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{mode} worker failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[mode].append(result)
            print(
                f"[{repeat + 1}/{args.repeats}] {mode:8s} {result['seconds']:8.2f} s  cpu {result['cpu_seconds']:8.2f} s  "
                f"extra {result['extra_bytes'] / 2**20:8.1f} MiB  peak {result['peak_bytes'] / 2**20:8.1f} MiB",
                flush=True,
            )

    def median(mode, key):
        return statistics.median(r[key] for r in results[mode])

    shape = "tiny 120 x 80 (smoke)" if args.smoke else "ViT-B 450 x 160"
    if args.num_layers is not None:
        shape += f", {args.num_layers} layer(s)"
    info = results["plain"][0]
    print(
        f"\n{shape}, batch {args.batch}, fp32 CPU, {info['threads']} threads, plain attention = {info['attn']}, "
        f"medians of {args.repeats}:"
    )
    time_ratio = median("analysis", "seconds") / median("plain", "seconds")
    cpu_ratio = median("analysis", "cpu_seconds") / median("plain", "cpu_seconds")
    extra_ratio = median("analysis", "extra_bytes") / median("plain", "extra_bytes")
    peak_ratio = median("analysis", "peak_bytes") / median("plain", "peak_bytes")
    print(
        f"time ratio        {time_ratio:5.2f}x  (wall; cpu-time ratio {cpu_ratio:.2f}x)  goal <= 1.3x: "
        f"{'met' if time_ratio <= 1.3 else 'NOT met'}"
    )
    print(
        f"peak memory ratio {extra_ratio:5.2f}x  (memory the call adds; whole-process peak ratio {peak_ratio:.2f}x)  "
        f"goal <= 1.5x: {'met' if extra_ratio <= 1.5 else 'NOT met'}"
    )
    if not all(r["peak_reset"] for rs in results.values() for r in rs):
        print("note: /proc/self/clear_refs could not reset the peak; 'extra' then includes the model construction")
    if args.smoke:
        print(
            "(smoke run: the goals apply to the ViT-B run; a tiny model spends a larger share of its time in attention)"
        )


if __name__ == "__main__":
    main()
