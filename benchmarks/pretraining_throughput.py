"""Pretraining throughput: samples/s of one JEPA optimizer step (masks, target encoder on all tokens,
context encoder, predictor, backward, AdamW, EMA) for the tiny and ViT-B configs at 450 x 160.

On CPU everything runs in fp32. On a CUDA GPU the same step also runs under bf16 autocast and the
script prints steps/s and the model FLOP utilisation (MFU): the step's matmul FLOPs (forward x3 for
the trained context encoder and predictor, x1 for the no-grad target encoder) over the time,
divided by the GPU's dense bf16 peak (`--peak_tflops`, 989 for an H100 SXM).

    python benchmarks/pretraining_throughput.py                      # CPU: tiny and ViT-B
    python benchmarks/pretraining_throughput.py --configs vit-base --batch_size 32 --peak_tflops 989   # GPU
"""

from __future__ import annotations

import argparse
import time

import torch


def encoder_flops(num_tokens: int, width: int, depth: int, mlp_ratio: float, patch: int = 16) -> float:
    """2 x multiply-adds of one forward of a pre-norm ViT stack over `num_tokens` tokens."""
    per_block = (8 + 4 * mlp_ratio) * num_tokens * width**2 + 4 * num_tokens**2 * width
    return depth * per_block + 2 * num_tokens * patch * width


def step_flops(config, batch: int, num_context: int, num_targets: int) -> float:
    n = config.num_patches
    target = encoder_flops(n, config.hidden_size, config.num_hidden_layers, config.mlp_ratio, config.patch_size)
    context = encoder_flops(
        num_context, config.hidden_size, config.num_hidden_layers, config.mlp_ratio, config.patch_size
    )
    predictor_tokens = num_context + num_targets
    predictor = (
        encoder_flops(
            predictor_tokens, config.predictor_hidden_size, config.predictor_num_hidden_layers, config.mlp_ratio, 0
        )
        + 2 * predictor_tokens * config.hidden_size * config.predictor_hidden_size
    )
    return batch * (target + 3 * (context + predictor))


def measure(preset: str, batch: int, steps: int, device: str, dtype: torch.dtype | None) -> dict:
    from brain_jepa_hf import BrainJepaConfig, BrainJepaForPreTraining
    from brain_jepa_hf.masking import BrainJepaMaskCollator

    config = BrainJepaConfig.from_preset(preset)
    torch.manual_seed(0)
    model = BrainJepaForPreTraining(config).to(device).train()
    model.set_gradient(torch.randn(config.num_rois, config.gradient_dim))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collator = BrainJepaMaskCollator(config.num_rois, config.num_time_patches, seed=0)
    fmri = torch.randn(batch, 1, config.num_rois, config.num_frames, device=device)
    flops, times = 0.0, []
    for step in range(steps + 1):  # the first step warms up
        context, targets = (t.to(device) for t in collator.sample_masks(batch, step))
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = model(fmri, context, targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_target_encoder(0.996)
        if device == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
            flops += step_flops(config, batch, context.shape[1], targets.shape[1])
    seconds = sum(times)
    return {
        "preset": preset,
        "batch": batch,
        "samples_per_s": batch * steps / seconds,
        "steps_per_s": steps / seconds,
        "tflops": flops / seconds / 1e12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "vit-base"])
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="GPU dense bf16 peak for the MFU")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    modes = [("fp32", None)] + ([("bf16", torch.bfloat16)] if device == "cuda" else [])
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; batch {args.batch_size}, {args.steps} timed steps after one warm-up")
    print(f"{'config':9} {'dtype':5} {'samples/s':>10} {'steps/s':>8} {'TFLOP/s':>8} {'MFU':>6}")
    for preset in args.configs:
        for label, dtype in modes:
            row = measure(preset, args.batch_size, args.steps, device, dtype)
            mfu = f"{row['tflops'] / args.peak_tflops:6.1%}" if dtype is not None else "     -"
            print(
                f"{preset:9} {label:5} {row['samples_per_s']:>10.2f} {row['steps_per_s']:>8.3f} {row['tflops']:>8.3f} {mfu}",
                flush=True,
            )


if __name__ == "__main__":
    main()
