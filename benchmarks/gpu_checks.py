"""Correctness checks that need a GPU: attention kernels and bf16, in one short run.

Compares, on the same weights and inputs, the encoder's output and input gradient under every
attention path this machine has against the fp32 eager reference: SDPA with its default choice,
SDPA forced to each of its CUDA kernels (flash, memory-efficient, cuDNN), and
`flash_attention_2` when the `flash_attn` package is installed; all tokens and a context subset;
fp32 and bf16. Then one JEPA pretraining step under bf16 autocast against fp32 (loss, finite
gradients, EMA update). Prints a table and exits 1 if any check fails. Speed and MFU are
`pretraining_throughput.py`'s job.

    python benchmarks/gpu_checks.py                 # on a CUDA machine: a ViT-S-sized encoder at 450 x 160
    python benchmarks/gpu_checks.py --smoke         # anywhere: a tiny model, CPU paths only (checks the script)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys

import torch


# Relative error (max |a - b| / max |reference|) allowed per precision.
TOLERANCE = {torch.float32: 2e-4, torch.bfloat16: 4e-2}


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.float() - reference.float()).abs().max() / reference.float().abs().max().clamp_min(1e-12)).item()


def attention_paths(device: str) -> list[tuple[str, str, object]]:
    """(name, attn_implementation, context manager factory) of every path available here."""
    paths = [("eager", "eager", contextlib.nullcontext), ("sdpa (default kernel)", "sdpa", contextlib.nullcontext)]
    if device == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for name, backend in (
            ("flash", SDPBackend.FLASH_ATTENTION),
            ("memory-efficient", SDPBackend.EFFICIENT_ATTENTION),
            ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ):
            paths.append((f"sdpa ({name} kernel)", "sdpa", lambda backend=backend: sdpa_kernel([backend])))
        if importlib.util.find_spec("flash_attn") is not None:
            paths.append(("flash_attention_2", "flash_attention_2", contextlib.nullcontext))
    return paths


def encoder_outputs(model, fmri, context, dtype, path) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden state, gradient w.r.t. the input of its dot product with a fixed random tensor)
    under one path (a sum of squares would not do: the final LayerNorm makes it nearly constant)."""
    _, implementation, context_manager = path
    model.set_attn_implementation(implementation)
    fmri = fmri.detach().clone().requires_grad_(True)
    with context_manager(), torch.autocast(fmri.device.type, dtype=dtype, enabled=dtype != torch.float32):
        hidden = model(fmri, context_indices=context).last_hidden_state
    weights = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(1)).to(hidden.device)
    (hidden.float() * weights).sum().backward()
    return hidden.detach(), fmri.grad.detach()


def model_and_batch(model_class, config, device: str, batch: int):
    """A seeded model with an atlas gradient, a random fMRI batch and one step's masks, on `device`."""
    from brain_jepa_hf.masking import BrainJepaMaskCollator

    torch.manual_seed(0)
    model = model_class(config)
    model.set_gradient(torch.randn(config.num_rois, config.gradient_dim))
    fmri = torch.randn(batch, 1, config.num_rois, config.num_frames, device=device)
    context, targets = BrainJepaMaskCollator(config.num_rois, config.num_time_patches).sample_masks(batch, step=0)
    return model.to(device), fmri, context.to(device), targets.to(device)


def check_attention(config, device: str, batch: int) -> list[tuple[str, str, float, float, bool | None]]:
    from brain_jepa_hf import BrainJepaModel

    model, fmri, context, _ = model_and_batch(BrainJepaModel, config, device, batch)
    rows = []
    for tokens, indices in (("all tokens", None), ("context subset", context)):
        reference = encoder_outputs(model, fmri, indices, torch.float32, attention_paths(device)[0])
        for path in attention_paths(device):
            for dtype in (torch.float32, torch.bfloat16):
                if dtype == torch.bfloat16 and device == "cpu" and path[1] == "eager" and tokens == "context subset":
                    continue  # emulated bf16 on CPU is slow; one bf16 eager row is enough there
                try:
                    hidden, grad = encoder_outputs(model, fmri, indices, dtype, path)
                except RuntimeError as error:  # a kernel that does not support this dtype/shape here
                    rows.append(
                        (
                            f"{path[0]}, {tokens}",
                            str(dtype).removeprefix("torch."),
                            float("nan"),
                            float("nan"),
                            None if "No available kernel" in str(error) or "not supported" in str(error) else False,
                        )
                    )
                    continue
                out_error, grad_error = relative_error(hidden, reference[0]), relative_error(grad, reference[1])
                ok = out_error <= TOLERANCE[dtype] and grad_error <= 2 * TOLERANCE[dtype]
                rows.append((f"{path[0]}, {tokens}", str(dtype).removeprefix("torch."), out_error, grad_error, ok))
    model.set_attn_implementation("sdpa")
    return rows


def check_bf16_pretraining_step(config, device: str, batch: int) -> list[tuple[str, str, float, float, bool | None]]:
    from brain_jepa_hf import BrainJepaForPreTraining

    model, fmri, context, targets = model_and_batch(BrainJepaForPreTraining, config, device, batch)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(fmri, context, targets).loss
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        results[dtype] = (
            loss.item(),
            all(torch.isfinite(g).all() for g in grads),
            torch.cat([g.flatten().float() for g in grads]),
        )
    loss_error = abs(results[torch.bfloat16][0] - results[torch.float32][0]) / abs(results[torch.float32][0])
    cosine = torch.nn.functional.cosine_similarity(results[torch.bfloat16][2], results[torch.float32][2], dim=0).item()
    before = next(model.brain_jepa.parameters()).detach().clone()
    model.update_target_encoder(0.99)
    ema_moved = not torch.equal(before, next(model.brain_jepa.parameters()).detach())
    ok = loss_error <= 2e-2 and cosine >= 0.99 and results[torch.bfloat16][1] and ema_moved
    return [
        ("JEPA step, bf16 autocast vs fp32 (loss rel. error, 1 - grad cosine)", "bfloat16", loss_error, 1 - cosine, ok)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: checks that the script runs")
    parser.add_argument("--batch_size", type=int, default=2)
    args = parser.parse_args()

    from brain_jepa_hf import BrainJepaConfig

    if args.smoke:
        device = "cpu"
        config = BrainJepaConfig.from_preset("tiny", num_rois=40, num_frames=80)
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --smoke to check the script on CPU")
            return 2
        device = "cuda"
        config = BrainJepaConfig.from_preset("vit-small", num_hidden_layers=4)
    print(
        f"torch {torch.__version__}, device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, "
        f"encoder {config.hidden_size} wide x {config.num_hidden_layers} layers, {config.num_rois} ROIs x "
        f"{config.num_frames} frames, batch {args.batch_size}; reference: eager fp32"
    )
    rows = check_attention(config, device, args.batch_size) + check_bf16_pretraining_step(
        config, device, args.batch_size
    )
    width = max(len(row[0]) for row in rows)
    print(f"{'check':<{width}} | dtype    | out rel. err | grad rel. err | result")
    failed = 0
    for name, dtype, out_error, grad_error, ok in rows:
        verdict = "n/a (kernel unavailable)" if ok is None else ("ok" if ok else "FAIL")
        failed += ok is False
        print(f"{name:<{width}} | {dtype:<8} | {out_error:>12.2e} | {grad_error:>13.2e} | {verdict}")
    print(
        f"tolerances: fp32 {TOLERANCE[torch.float32]:g}, bf16 {TOLERANCE[torch.bfloat16]:g} (gradients 2x); "
        f"{failed} failed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
