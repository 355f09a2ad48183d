"""What the machine offers: accelerators."""

import torch


def has_accelerator() -> bool:
    """True when a CUDA, MPS or XPU device is usable."""
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or torch.backends.mps.is_available() or bool(xpu and xpu.is_available())
