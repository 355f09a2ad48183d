"""A straightforward per-sample loop of Brain-JEPA's spatiotemporal masking.

Not for training: it exists so tests can check that the vectorised
:class:`~brain_jepa_hf.masking.BrainJepaMaskCollator` draws from the same distributions, and so
``benchmarks/collator_speed.py`` can time it against an implementation of the same semantics
written the obvious way (one sample at a time, one (R, Tp) grid per block, as the original does).
It reads the collator's settings but none of its sampling code.
"""

from __future__ import annotations

import torch

from brain_jepa_hf.masking import BrainJepaMaskCollator


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + torch.rand(1, generator=generator).item() * (high - low)


def _randint(high: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, high, (1,), generator=generator))


def loop_spatiotemporal_masks(
    collator: BrainJepaMaskCollator, batch_size: int, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Untruncated per-sample ``(context, target)`` index lists, one sample at a time."""
    R, Tp = collator.num_rois, collator.num_time_patches
    extra = 1 if collator.allow_last_window_start else 0
    outer = collator.num_outer_columns

    # Per batch: alpha ROI count and window length, then observation ROI count and window length.
    alpha_rois = int(R * _uniform(*collator.alpha_roi_scale, generator))
    alpha_times = int(Tp * _uniform(*collator.alpha_time_scale, generator))
    enc_rois = int(R * _uniform(*collator.enc_scale, generator))
    enc_times = int(Tp * _uniform(*collator.enc_scale, generator))

    contexts, targets = [], []
    for _ in range(batch_size):
        observation = torch.zeros(R, Tp, dtype=torch.int32)
        observed_rois = torch.randperm(R, generator=generator)[:enc_rois]
        enc_start = _randint(Tp - enc_times + extra, generator)
        observation[observed_rois, enc_start : enc_start + enc_times] = 1

        alpha = torch.zeros(R, Tp, dtype=torch.int32)
        alpha_roi_list = torch.randperm(R, generator=generator)[:alpha_rois]
        alpha_start = enc_start + _randint(enc_times - alpha_times + extra, generator)
        alpha[alpha_roi_list, alpha_start : alpha_start + alpha_times] = 1
        observation[alpha_roi_list, :] = 0

        is_observed = torch.zeros(R, dtype=torch.bool)
        is_observed[observed_rois] = True
        is_alpha = torch.zeros(R, dtype=torch.bool)
        is_alpha[alpha_roi_list] = True
        beta_pool = torch.nonzero(is_observed & is_alpha).flatten()
        gamma_pool = torch.nonzero(~(is_observed & is_alpha)).flatten()

        target_parts = [torch.nonzero(alpha.flatten()).flatten()]
        for first_outer_column in (Tp - outer, 0):  # right side, then left side
            fraction = _uniform(*collator.side_roi_scale, generator)
            num_columns = min(int(Tp * _uniform(*collator.side_time_scale, generator)), outer)
            beta = beta_pool[torch.randperm(len(beta_pool), generator=generator)[: int(len(beta_pool) * fraction)]]
            gamma = gamma_pool[torch.randperm(len(gamma_pool), generator=generator)[: int(len(gamma_pool) * fraction)]]
            columns = first_outer_column + torch.randperm(outer, generator=generator)[:num_columns]
            side = torch.zeros(R, Tp, dtype=torch.int32)
            for column in columns.tolist():
                side[torch.cat([beta, gamma]), column] = 1
                observation[:, column] = 0
            target_parts.append(torch.nonzero(side.flatten()).flatten())

        contexts.append(torch.nonzero(observation.flatten()).flatten())
        targets.append(torch.cat(target_parts))
    return contexts, targets


def truncate_and_stack(index_lists: list[torch.Tensor]) -> torch.Tensor:
    """Cut every list to the shortest and stack them into (B, K)."""
    shortest = min(len(indices) for indices in index_lists)
    return torch.stack([indices[:shortest] for indices in index_lists])


def loop_sample_masks(
    collator: BrainJepaMaskCollator, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(context_indices, target_indices)`` of one batch, drawn by the per-sample loop."""
    contexts, targets = loop_spatiotemporal_masks(collator, batch_size, generator)
    return truncate_and_stack(contexts), truncate_and_stack(targets)


__all__ = ["loop_spatiotemporal_masks", "loop_sample_masks", "truncate_and_stack"]
