"""Representation-collapse monitoring for JEPA pretraining.

JEPA objectives can be minimised by target features that stop carrying information: all tokens map
to nearly the same vector (std across tokens -> 0), to a few directions (effective rank -> 1), or
features that still vary over positions but no longer over subjects. Absolute thresholds catch the
first two; a partial collapse (std falling to a fraction of its starting value while the loss
heads to 0) only shows relative to where the run started, so the monitor also compares each
reading with the first one it saw (kept across resumes through `state_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch


@torch.no_grad()
def feature_statistics(features: torch.Tensor, max_rows: int = 2048) -> tuple[float, float]:
    """(mean per-dimension std across tokens, effective rank) of (..., D) features. The effective
    rank is exp(entropy) of the normalised singular values; both fall towards 0 / 1 on collapse."""
    rows = features.reshape(-1, features.shape[-1]).float()[:max_rows]
    std = rows.std(dim=0).mean().item()
    singular = torch.linalg.svdvals(rows - rows.mean(dim=0))
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return std, math.exp(entropy.item())


@torch.no_grad()
def sample_spread(pooled: torch.Tensor) -> float:
    """Mean per-dimension std across samples of (batch, D) pooled features: near 0 when the features
    depend on the token positions only, not on the subject."""
    return pooled.float().std(dim=0).mean().item() if pooled.shape[0] > 1 else float("nan")


@dataclass
class CollapseMonitor:
    """Decides whether a reading of the target features looks collapsed.

    Args:
        width: feature width D (the effective-rank threshold is a fraction of it).
        std_threshold: warn when the std across tokens falls below this.
        rank_fraction: warn when the effective rank falls below this x width.
        relative_fraction: warn when the std across tokens, or the std of pooled features across
            samples, falls below this fraction of its first reading. 0 turns the rule off.
    """

    width: int
    std_threshold: float = 0.05
    rank_fraction: float = 0.02
    relative_fraction: float = 0.5
    baseline_std: float | None = None
    baseline_sample_std: float | None = None

    def __post_init__(self):
        if not 0.0 <= self.relative_fraction < 1.0:
            raise ValueError(f"collapse_relative_fraction: expected a value in [0, 1), got {self.relative_fraction!r}")
        if self.std_threshold < 0 or self.rank_fraction < 0:
            raise ValueError(
                f"collapse_std_threshold, collapse_rank_fraction: expected values >= 0, got "
                f"{self.std_threshold!r}, {self.rank_fraction!r}"
            )

    def check(self, std: float, rank: float, sample_std: float = float("nan")) -> list[str]:
        """Reasons (empty when healthy) for one reading; the first finite reading of each std
        becomes its baseline."""
        if self.baseline_std is None and math.isfinite(std):
            self.baseline_std = std
        if self.baseline_sample_std is None and math.isfinite(sample_std):
            self.baseline_sample_std = sample_std
        reasons = []
        if std < self.std_threshold:
            reasons.append(f"target std {std:.4f} < {self.std_threshold:.4f}")
        if rank < self.rank_fraction * self.width:
            reasons.append(f"effective rank {rank:.2f} < {self.rank_fraction * self.width:.2f}")
        if self.relative_fraction > 0:
            if self.baseline_std and std < self.relative_fraction * self.baseline_std:
                reasons.append(
                    f"target std {std:.4f} < {self.relative_fraction:g} x its first reading {self.baseline_std:.4f}"
                )
            if self.baseline_sample_std and sample_std < self.relative_fraction * self.baseline_sample_std:
                reasons.append(
                    f"pooled std across samples {sample_std:.4f} < {self.relative_fraction:g} x its first reading "
                    f"{self.baseline_sample_std:.4f} (features losing subject content)"
                )
        return reasons

    def state_dict(self) -> dict:
        return {"baseline_std": self.baseline_std, "baseline_sample_std": self.baseline_sample_std}

    def load_state_dict(self, state: Mapping) -> None:
        self.baseline_std = state.get("baseline_std")
        self.baseline_sample_std = state.get("baseline_sample_std")


__all__ = ["CollapseMonitor", "feature_statistics", "sample_spread"]
