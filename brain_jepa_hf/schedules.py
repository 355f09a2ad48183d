"""Per-optimizer-step schedules of JEPA pretraining, as pure functions of the step so that a resumed
run lands exactly where an uninterrupted one would (the original's resume stepped them 8x too far)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainingSchedules:
    """Learning rate: linear warmup from `start_lr` to `peak_lr` over `warmup_steps`, then cosine to
    `final_lr` at `total_steps`. Weight decay: cosine from `start_weight_decay` to
    `final_weight_decay`. EMA momentum: linear from `start_momentum` to `final_momentum`."""

    total_steps: int
    warmup_steps: int
    start_lr: float = 5e-5
    peak_lr: float = 1e-3
    final_lr: float = 1e-6
    start_weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    start_momentum: float = 0.996
    final_momentum: float = 1.0

    def __post_init__(self):
        if self.total_steps < 1:
            raise ValueError(f"total_steps: expected a positive integer, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"warmup_steps: expected a value in [0, total_steps={self.total_steps}], got {self.warmup_steps}"
            )

    def learning_rate(self, step: int) -> float:
        """LR of the update made at optimizer step `step` (0-based; the original advances its
        scheduler before each update, so update k uses position k + 1)."""
        position = step + 1
        if position < self.warmup_steps:
            return self.start_lr + position / self.warmup_steps * (self.peak_lr - self.start_lr)
        progress = min(1.0, (position - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def weight_decay(self, step: int) -> float:
        progress = min(1.0, (step + 1) / self.total_steps)
        return self.final_weight_decay + (self.start_weight_decay - self.final_weight_decay) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )

    def momentum(self, step: int) -> float:
        """EMA momentum applied after optimizer step `step` (0-based): start value first."""
        return (
            self.start_momentum
            + min(step, self.total_steps) * (self.final_momentum - self.start_momentum) / self.total_steps
        )
