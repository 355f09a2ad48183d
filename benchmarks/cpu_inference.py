"""CPU inference at the hardware's limit: ViT-B on 450 x 160 samples, float32 and bfloat16 side by side.

One run measures, on this machine:
1. the float32 and bfloat16 matmul rates (GFLOP/s) on the encoder's own GEMM shapes (qkv, proj, fc1,
   fc2 with batch x 4500 token rows), time-weighted over the four;
2. the FLOPs of one forward: 2 x the multiply-adds of every matmul (patch projection, qkv, proj, MLP,
   attention scores and mixing); the formula is checked against torch's FlopCounterMode on a
   one-block model with eager attention (FlopCounterMode does not see the CPU SDPA kernel);
3. float32 seconds per forward against the FLOP-bound time (FLOPs / float32 matmul rate), goal <= 1.1x;
4. bfloat16 against float32 speed, goal >= 1.8x where the CPU has bfloat16 matmul instructions
   (`cpu_has_fast_bf16`), otherwise it says "no fast bf16 on this CPU" (bfloat16 is then timed once);
5. pooled-embedding agreement, bfloat16 vs float32, on the example cohort's subjects (the timed
   batches): minimum cosine (goal >= 0.999) and maximum absolute difference.
float32 and bfloat16 forwards alternate (interleaved), the best of `--repeats` is kept. The encoder is
randomly initialised (truncated normal, the model's init) with the example cohort's atlas gradient.

    python benchmarks/cpu_inference.py            # ViT-B, batches 1 and 4
    python benchmarks/cpu_inference.py --smoke    # tiny config, seconds
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
import torch.nn.functional as F

from brain_jepa_hf import BrainJepaConfig, BrainJepaModel
from brain_jepa_hf.example_data import example_gradient, load_example_dataset
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.modeling_brain_jepa import cpu_has_fast_bf16


SPEEDUP_GOAL = 1.8
BOUND_GOAL = 1.1
COSINE_GOAL = 0.999


def gemm_shapes(config: BrainJepaConfig, rows: int) -> dict[str, tuple[int, int, int]]:
    """(rows, in, out) of the encoder block's linear layers."""
    d, hidden = config.hidden_size, int(config.hidden_size * config.mlp_ratio)
    return {"qkv": (rows, d, 3 * d), "proj": (rows, d, d), "fc1": (rows, d, hidden), "fc2": (rows, hidden, d)}


def matmul_rates(config: BrainJepaConfig, rows: int, dtype: torch.dtype, trials: int) -> dict[str, float]:
    """Best GFLOP/s of F.linear (with bias, as the model calls it) per shape, and the time-weighted rate
    over all four ("block")."""
    rates, total_flops, total_seconds = {}, 0.0, 0.0
    generator = torch.Generator().manual_seed(0)
    for name, (m, k, n) in gemm_shapes(config, rows).items():
        x = torch.randn(m, k, generator=generator).to(dtype)
        w = torch.randn(n, k, generator=generator).to(dtype)
        b = torch.randn(n, generator=generator).to(dtype)
        F.linear(x, w, b)
        best = float("inf")
        for _ in range(trials):
            start = time.perf_counter()
            F.linear(x, w, b)
            best = min(best, time.perf_counter() - start)
        flops = 2.0 * m * k * n
        rates[name] = flops / best / 1e9
        total_flops += flops
        total_seconds += best
    rates["block"] = total_flops / total_seconds / 1e9
    return rates


def forward_flops(config: BrainJepaConfig, num_tokens: int, batch: int = 1) -> float:
    """2 x multiply-adds of one forward: per block qkv 6ND^2 + proj 2ND^2 + MLP 4rND^2, attention
    scores and mixing 4N^2D; patch projection 2NPD; the gradient projection 2RGD/2."""
    n, d, r = num_tokens, config.hidden_size, config.mlp_ratio
    per_block = (8 + 4 * r) * n * d * d + 4 * n * n * d
    patch = 2 * n * config.patch_size * config.num_channels * d
    positions = 2 * config.num_rois * config.gradient_dim * (d // 2)
    return batch * (config.num_hidden_layers * per_block + patch + positions)


def counted_flops(config: BrainJepaConfig, num_frames: int) -> tuple[float, float]:
    """(FlopCounterMode's count, the formula's) for a one-block copy of `config`, eager attention,
    on a `num_frames` input (short, so that the eager score matrix stays small)."""
    from torch.utils.flop_counter import FlopCounterMode

    small = BrainJepaConfig(**{**config.to_dict(), "num_hidden_layers": 1, "num_frames": num_frames})
    model = BrainJepaModel(small).eval()
    model.set_attn_implementation("eager")
    model.set_gradient(torch.randn(small.num_rois, small.gradient_dim))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 1, small.num_rois, num_frames))
    return float(counter.get_total_flops()), forward_flops(small, small.num_patches)


def subject_batches(config: BrainJepaConfig, batch_sizes: list[int]) -> dict[int, torch.Tensor]:
    """Distinct example-cohort subjects for each batch size, through the feature extractor's centre clip."""
    total = sum(batch_sizes)
    dataset = load_example_dataset(num_subjects=total, num_timepoints=max(490, config.num_frames))
    extractor = BrainJepaFeatureExtractor(
        num_rois=config.num_rois, num_frames=config.num_frames, sampling_rate=1, scaling="zscore"
    )
    series = list(dataset.with_format("numpy")["fmri"])
    batches, first = {}, 0
    for batch in batch_sizes:
        batches[batch] = extractor(series[first : first + batch], time_axis=-1, training=False, return_tensors="pt")[
            "fmri_values"
        ]
        first += batch
    return batches


def timed(model: BrainJepaModel, fmri: torch.Tensor) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        start = time.perf_counter()
        pooled = model(fmri).pooler_output
        return time.perf_counter() - start, pooled.float()


def build_config(smoke: bool) -> BrainJepaConfig:
    if smoke:
        return BrainJepaConfig.from_preset("tiny", num_hidden_layers=2)
    return BrainJepaConfig.from_preset("vit-base")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny config, batch 1 and 2, one repeat")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 4 (smoke: 1 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed forwards per case, best kept (default 2)")
    parser.add_argument("--trials", type=int, default=5, help="timed GEMMs per shape for the matmul rates")
    args = parser.parse_args()
    batch_sizes = args.batch_sizes or ([1, 2] if args.smoke else [1, 4])
    repeats = args.repeats or (1 if args.smoke else 2)

    config = build_config(args.smoke)
    num_tokens = config.num_patches
    fast_bf16 = cpu_has_fast_bf16()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"bfloat16 matmul instructions (AVX512-BF16 / AMX-BF16): {'yes' if fast_bf16 else 'no'}")
    print(
        f"encoder: {'tiny (smoke)' if args.smoke else 'ViT-B'}, depth {config.num_hidden_layers}, width "
        f"{config.hidden_size}, {config.num_rois} ROIs x {config.num_frames} frames = {num_tokens} tokens"
    )

    counted, formula = counted_flops(config, num_frames=2 * config.patch_size)
    flops = forward_flops(config, num_tokens)
    print(
        f"FLOPs per sample: {flops / 1e12:.3f} TFLOP (formula, 2 x multiply-adds of all matmuls; on a one-block "
        f"short-input copy FlopCounterMode counts {counted / 1e9:.4f} GFLOP, formula {formula / 1e9:.4f})"
    )

    torch.manual_seed(0)
    model32 = BrainJepaModel(config).eval()
    model32.set_gradient(example_gradient(config.gradient_dim))
    model16 = BrainJepaModel(config).eval()
    model16.load_state_dict(model32.state_dict())
    model16.to(torch.bfloat16)
    batches = subject_batches(config, batch_sizes)
    bf16_repeats = repeats if fast_bf16 else 1

    # Each repeat measures, in turn: the fp32 GEMM rates, an fp32 forward, the bf16 GEMM rates, a bf16
    # forward; the best of each is kept, so a busy moment on a shared machine hits one sample, not a side.
    rates, results = {}, {}
    for batch in batch_sizes:
        fmri = batches[batch]
        best32 = best16 = float("inf")
        for attempt in range(repeats):
            for dtype, model in ((torch.float32, model32), (torch.bfloat16, model16)):
                if dtype == torch.bfloat16 and attempt >= bf16_repeats:
                    continue
                measured = matmul_rates(config, batch * num_tokens, dtype, args.trials)
                kept = rates.setdefault((batch, dtype), measured)
                rates[batch, dtype] = {name: max(kept[name], measured[name]) for name in measured}
                seconds, pooled = timed(model, fmri)
                print(
                    f"  batch {batch}, {str(dtype)[6:]}: block GEMMs {measured['block']:.1f} GFLOP/s, forward {seconds:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if dtype == torch.float32:
                    best32, pooled32 = min(best32, seconds), pooled
                else:
                    best16, pooled16 = min(best16, seconds), pooled
        results[batch] = (best32, best16, pooled32, pooled16)

    print(
        f"\nmatmul rates on the block's GEMM shapes, GFLOP/s (best of {args.trials} per measurement, "
        f"each column the best of the measurements interleaved with the forwards):"
    )
    print(f"{'rows':>6} {'dtype':9} " + " ".join(f"{name:>7}" for name in gemm_shapes(config, 1)) + f" {'block':>7}")
    for (batch, dtype), row in rates.items():
        print(f"{batch * num_tokens:>6} {str(dtype)[6:]:9} " + " ".join(f"{row[name]:>7.1f}" for name in row))

    print(f"\nforward, inference mode, fp32 and bf16 interleaved, best of {repeats} (bf16: {bf16_repeats})")
    print(
        f"{'batch':>5} {'fp32 s/sample':>13} {'bound s':>8} {'fp32/bound':>10} {'bf16 s/sample':>13} {'bf16 speedup':>12}"
    )
    summary, cosines, max_diff = [], [], 0.0
    for batch, (best32, best16, pooled32, pooled16) in results.items():
        bound = flops * batch / (rates[batch, torch.float32]["block"] * 1e9)
        speedup = best32 / best16
        cosines += F.cosine_similarity(pooled16, pooled32, dim=-1).tolist()
        max_diff = max(max_diff, float((pooled16 - pooled32).abs().max()))
        summary.append((batch, best32 / bound, speedup))
        print(
            f"{batch:>5} {best32 / batch:>13.3f} {bound / batch:>8.3f} {best32 / bound:>10.2f} "
            f"{best16 / batch:>13.3f} {speedup:>11.2f}x",
            flush=True,
        )

    print()
    for batch, ratio, speedup in summary:
        verdict = "ok" if ratio <= BOUND_GOAL else "above goal"
        line = f"batch {batch}: fp32 time / FLOP-bound time {ratio:.2f} (goal <= {BOUND_GOAL}: {verdict}); "
        if fast_bf16:
            line += f"bf16 speedup {speedup:.2f}x (goal >= {SPEEDUP_GOAL}x: {'ok' if speedup >= SPEEDUP_GOAL else 'below goal'})"
        else:
            line += f"no fast bf16 on this CPU (bf16 runs at {speedup:.2f}x the fp32 speed; auto picks float32)"
        print(line)
    worst = min(cosines)
    print(
        f"agreement bf16 vs fp32, pooled embeddings of {len(cosines)} example subjects: min cosine {worst:.6f} "
        f"(goal >= {COSINE_GOAL}: {'ok' if worst >= COSINE_GOAL else 'below goal'}), max abs diff {max_diff:.4g} "
        f"(pooled values up to {float(pooled32.abs().max()):.3g})"
    )


if __name__ == "__main__":
    main()
