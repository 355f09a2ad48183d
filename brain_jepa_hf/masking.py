"""Mask collators for JEPA pretraining on the (ROI x time-patch) token grid.

Two strategies, both vectorised over the batch with torch ops and both a pure function of
``(seed, step)``:

* :class:`BrainJepaMaskCollator` - Brain-JEPA's spatiotemporal masking: one observation block and
  three target regions (Cross-ROI "alpha", Cross-Time "beta", Double-Cross "gamma").
* :class:`MultiBlockMaskCollator` - I-JEPA multi-block masking, the paper's ablation baseline.

Tokens are ROI-major: token ``n = r * Tp + t`` for ROI ``r`` and time patch ``t``.

Use with a ``DataLoader``:

* ``num_workers=0``: pass the collator itself as ``collate_fn``. Each call draws the masks of the
  next step of its internal counter.
* ``num_workers>0``: collate functions run in worker processes whose copies of the collator do
  not share a counter, so masks would no longer follow the step. Pass
  ``collate_fn=collator.collate_examples`` (data only) and call ``collator.add_masks(batch)`` in
  the training loop (main process). Calling the collator itself inside a worker raises.

``state_dict()`` / ``load_state_dict()`` carry the step counter, so a resumed run draws the same
masks as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import default_collate, get_worker_info


_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def step_generator(seed: int, step: int) -> torch.Generator:
    """CPU generator whose stream depends only on ``(seed, step)`` (well mixed, so nearby steps and
    seeds give unrelated streams)."""
    return torch.Generator().manual_seed(_splitmix64(_splitmix64(seed) ^ step))


def scaled_count(length: int, scale_range: tuple[float, float], u: float) -> int:
    """``int(length * s)`` with ``s = lo + u * (hi - lo)``: how the original turns a uniform draw
    ``u`` in [0, 1) into a block size."""
    low, high = scale_range
    return int(length * (low + u * (high - low)))


def first_k_true(mask: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the first ``k`` True entries of each row of a (B, L) bool tensor, ascending.

    Every row must hold at least ``k`` True entries."""
    keep = mask & (mask.cumsum(dim=1) <= k)
    return keep.nonzero()[:, 1].view(mask.shape[0], k)


def random_subset(scores: torch.Tensor, size: int) -> torch.Tensor:
    """Bool mask of ``size`` entries per row chosen uniformly at random along the last dim, given
    i.i.d. uniform ``scores``: the ``size`` smallest (found as the complement of the largest when
    that is the smaller selection)."""
    length = scores.shape[-1]
    keep_smallest = size <= length - size
    count = size if keep_smallest else length - size
    picked = torch.zeros(scores.shape, dtype=torch.bool)
    if count:
        indices = scores.topk(count, dim=-1, largest=not keep_smallest, sorted=False).indices
        picked.scatter_(-1, indices, True)
    return picked if keep_smallest else ~picked


def random_subset_of_pool(scores: torch.Tensor, in_pool: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Bool mask choosing ``sizes[...]`` members (a per-row count) uniformly at random among the
    True entries of ``in_pool`` along the last dim, given i.i.d. uniform ``scores`` in [0, 1)."""
    length = scores.shape[-1]
    most = int(sizes.max()) if sizes.numel() else 0
    if most == 0:
        return torch.zeros(scores.shape, dtype=torch.bool)
    # Pool members score below 1, the others at least 2: the smallest `size` are pool members.
    first = torch.where(in_pool, scores, 2.0).topk(most, dim=-1, largest=False, sorted=True).indices
    wanted = torch.arange(most) < sizes[..., None]
    chosen = torch.zeros(*scores.shape[:-1], length + 1, dtype=torch.bool)  # last slot: discarded
    return chosen.scatter_(-1, torch.where(wanted, first, length), True)[..., :length]


def compact(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the True entries of each row of a (B, L) bool tensor, ascending, left-aligned
    in a (B, L) tensor (entries past the row's count are unspecified)."""
    batch, length = mask.shape
    slot = torch.where(mask, mask.cumsum(dim=1) - 1, length)
    out = torch.zeros(batch, length + 1, dtype=torch.long)
    out.scatter_(1, slot, torch.arange(length).expand(batch, length))
    return out[:, :length]


def product_indices(rows: torch.Tensor, times: torch.Tensor, length: int) -> torch.Tensor:
    """The first ``length`` ROI-major token indices of concatenated (ROI set x time set) regions.

    ``rows`` (B, P, R) and ``times`` (B, P, Tp) are bool; region p of sample b holds the tokens
    r * Tp + t for every chosen r and t, ascending; regions are concatenated in order p = 0..P-1.
    Equals taking the True positions of each region's (R, Tp) grid in order, without building it.
    """
    batch, parts, num_rois = rows.shape
    num_times = times.shape[-1]
    row_list = compact(rows.reshape(batch * parts, num_rois)).reshape(batch, parts * num_rois)
    time_list = compact(times.reshape(batch * parts, num_times)).reshape(batch, parts * num_times)
    num_cols = times.sum(dim=-1)  # (B, P)
    sizes = rows.sum(dim=-1) * num_cols
    ends = sizes.cumsum(dim=1)  # (B, P), ascending
    j = torch.arange(length).expand(batch, length).contiguous()
    part = torch.searchsorted(ends, j, right=True).clamp_(max=parts - 1)  # region of each position
    local = j - (ends - sizes).gather(1, part)
    cols_here = num_cols.gather(1, part).clamp_(min=1)
    # Exact in float64: both operands are small integers.
    row_rank = (local.double() / cols_here).floor_().long()
    roi = row_list.gather(1, part * num_rois + row_rank)
    time = time_list.gather(1, part * num_times + local - row_rank * cols_here)
    return roi * num_times + time


def _check_scale(name: str, value, *, allow_zero: bool = False) -> tuple[float, float]:
    bounds = "0 <= low <= high <= 1" if allow_zero else "0 < low <= high <= 1"
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a pair (low, high) with {bounds}, got {value!r}") from None
    if not ((0.0 <= low if allow_zero else 0.0 < low) and low <= high <= 1.0):
        raise ValueError(f"{name}: expected a pair (low, high) with {bounds}, got {value!r}")
    return low, high


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


class _StepMaskCollator:
    """Shared collation, step counter and checkpoint state of the mask collators."""

    kind: str = ""

    def __init__(self, num_rois: int, num_time_patches: int, seed: int, fmri_key: str):
        self.num_rois = _check_positive_int("num_rois", num_rois)
        self.num_time_patches = _check_positive_int("num_time_patches", num_time_patches)
        self.seed = _check_positive_int("seed", seed, minimum=0)
        self.fmri_key = fmri_key
        self.step = 0  # index of the next batch to draw masks for

    @classmethod
    def from_config(cls, config, **kwargs):
        """Collator for the token grid of a `BrainJepaConfig` (its `num_rois`, `num_time_patches`)."""
        return cls(config.num_rois, config.num_time_patches, **kwargs)

    @property
    def num_patches(self) -> int:
        return self.num_rois * self.num_time_patches

    # -- masks
    def sample_masks(self, batch_size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(context_indices (B, K), target_indices (B, M))``, int64 ROI-major token indices; a
        pure function of ``(seed, step)``."""
        raise NotImplementedError

    # -- collation
    def collate_examples(self, examples: Sequence[Mapping]) -> dict:
        """Stack a list of example dicts with torch default collation (no masks). Safe to use as a
        DataLoader ``collate_fn`` in worker processes."""
        if not isinstance(examples, Sequence) or len(examples) == 0:
            raise ValueError(f"examples: expected a non-empty list of dicts, got {examples!r:.80}")
        for i, example in enumerate(examples):
            if not isinstance(example, Mapping):
                raise ValueError(f"examples[{i}]: expected a dict of fields, got {type(example).__name__}")
        batch = dict(default_collate(list(examples)))
        fmri = batch.get(self.fmri_key)
        if isinstance(fmri, torch.Tensor):
            if fmri.dim() != 4 or fmri.shape[2] != self.num_rois or fmri.shape[3] % self.num_time_patches:
                raise ValueError(
                    f"{self.fmri_key}: expected each example of shape (channels, {self.num_rois}, T) with T a "
                    f"multiple of num_time_patches={self.num_time_patches}, got batch shape {tuple(fmri.shape)}"
                )
        return batch

    def add_masks(self, batch: dict) -> dict:
        """Add ``context_indices`` and ``target_indices`` for the next step to a collated batch
        (call in the main process) and advance the step counter."""
        if self.fmri_key not in batch:
            raise ValueError(f"batch: expected a {self.fmri_key!r} field, got fields {sorted(batch)}")
        batch_size = len(batch[self.fmri_key])
        context_indices, target_indices = self.sample_masks(batch_size, self.step)
        self.step += 1
        return {**batch, "context_indices": context_indices, "target_indices": target_indices}

    def __call__(self, examples: Sequence[Mapping]) -> dict:
        """Collate ``examples`` and add the masks of the next step (DataLoader ``collate_fn`` with
        ``num_workers=0``)."""
        if get_worker_info() is not None:
            raise RuntimeError(
                f"{type(self).__name__} was called inside a DataLoader worker, where its step counter is a "
                "per-worker copy and masks would not follow the training step. With num_workers>0 pass "
                "collate_fn=collator.collate_examples and call batch = collator.add_masks(batch) in the "
                "training loop."
            )
        return self.add_masks(self.collate_examples(examples))

    # -- checkpointing
    def state_dict(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "step": self.step}

    def load_state_dict(self, state: Mapping) -> None:
        missing = {"kind", "seed", "step"} - set(state)
        if missing:
            raise ValueError(f"state: expected keys kind, seed, step; missing {sorted(missing)}")
        if state["kind"] != self.kind:
            raise ValueError(f"state: saved by a {state['kind']!r} collator, this one is {self.kind!r}")
        if state["seed"] != self.seed:
            raise ValueError(
                f"state: saved with seed={state['seed']}, this collator has seed={self.seed}; "
                "build the collator with the saved seed to resume the same mask sequence"
            )
        self.step = _check_positive_int("state['step']", int(state["step"]), minimum=0)


@dataclass
class SpatiotemporalDraw:
    """The blocks of one spatiotemporal draw (B samples; side index 0 = right, 1 = left)."""

    observation_rois: torch.Tensor  # (B, R) bool
    observation_times: torch.Tensor  # (B, Tp) bool, a contiguous window
    alpha_rois: torch.Tensor  # (B, R) bool
    alpha_times: torch.Tensor  # (B, Tp) bool, a window inside the observation window
    side_rois: torch.Tensor  # (B, 2, R) bool, beta (observed alpha ROIs) + gamma (the others)
    side_times: torch.Tensor  # (B, 2, Tp) bool, columns among the outer ones of each side

    @property
    def context(self) -> torch.Tensor:
        """(B, R, Tp) observation minus alpha ROIs (all times) and side columns (all ROIs)."""
        rois = self.observation_rois & ~self.alpha_rois
        times = self.observation_times & ~self.side_times.any(dim=1)
        return rois[:, :, None] & times[:, None, :]

    @property
    def targets(self) -> torch.Tensor:
        """(B, 3, R, Tp) the alpha, right and left target regions."""
        alpha = self.alpha_rois[:, :, None] & self.alpha_times[:, None, :]
        sides = self.side_rois[:, :, :, None] & self.side_times[:, :, None, :]
        return torch.cat([alpha[:, None], sides], dim=1)


class BrainJepaMaskCollator(_StepMaskCollator):
    """Brain-JEPA spatiotemporal masking on an R x Tp token grid (REFERENCE.md, "Spatiotemporal
    masking"). Sizes are ``int(length * s)`` with ``s`` uniform in the given range.

    Args:
        num_rois: R, rows of the grid.
        num_time_patches: Tp, columns of the grid.
        enc_scale: observation block: fraction of ROIs (a random subset) and, drawn separately,
            fraction of time patches (a contiguous window); once per batch. Original (0.84, 1.0).
        alpha_roi_scale: Cross-ROI target: fraction of all ROIs (random subset), once per batch.
            These ROIs leave the observation at all times. Original (0.45, 0.6).
        alpha_time_scale: Cross-ROI target: fraction of time patches of its window, placed inside
            the observation window; once per batch. Original (0.2, 0.6).
        side_time_scale: Cross-Time / Double-Cross targets, per sample and side: ``int(Tp * s)``
            columns (at most the outer columns of that side), removed from the observation at all
            ROIs. Original (0.0, 0.4).
        side_roi_scale: per sample and side: this fraction of the observed alpha ROIs (beta) and
            the same fraction of all other ROIs (gamma). Original (0.15, 0.3).
        outer_time_fraction: outer columns per side, ``floor(Tp * f + 0.5)``: 3 of 10 (columns
            0-2 and 7-9) as in the original.
        allow_last_window_start: the original draws window starts with an exclusive upper bound
            (``randint(0, L - w)``), so the observation window never reaches the last time patch
            and the alpha window never ends at the observation's last column. False (default)
            keeps that; True allows every start.
        seed: masks are a function of ``(seed, step)`` only.
        fmri_key: the example field holding the (1, R, T) signal.

    Target indices are alpha, then right, then left (each ROI-major), concatenated; the alpha
    window may share tokens with a side region, which then appear twice, as in the original.
    Context and target lists are truncated to the shortest in the batch so they stack.
    """

    kind = "spatiotemporal"

    def __init__(
        self,
        num_rois: int,
        num_time_patches: int,
        *,
        enc_scale: tuple[float, float] = (0.84, 1.0),
        alpha_roi_scale: tuple[float, float] = (0.45, 0.6),
        alpha_time_scale: tuple[float, float] = (0.2, 0.6),
        side_time_scale: tuple[float, float] = (0.0, 0.4),
        side_roi_scale: tuple[float, float] = (0.15, 0.3),
        outer_time_fraction: float = 0.3,
        allow_last_window_start: bool = False,
        seed: int = 0,
        fmri_key: str = "fmri_values",
    ):
        super().__init__(num_rois, num_time_patches, seed, fmri_key)
        self.enc_scale = _check_scale("enc_scale", enc_scale)
        self.alpha_roi_scale = _check_scale("alpha_roi_scale", alpha_roi_scale)
        self.alpha_time_scale = _check_scale("alpha_time_scale", alpha_time_scale)
        self.side_time_scale = _check_scale("side_time_scale", side_time_scale, allow_zero=True)
        self.side_roi_scale = _check_scale("side_roi_scale", side_roi_scale, allow_zero=True)
        if not isinstance(outer_time_fraction, (int, float)) or not 0.0 < outer_time_fraction <= 0.5:
            raise ValueError(f"outer_time_fraction: expected a number in (0, 0.5], got {outer_time_fraction!r}")
        self.outer_time_fraction = float(outer_time_fraction)
        self.allow_last_window_start = bool(allow_last_window_start)
        self.num_outer_columns = max(1, math.floor(num_time_patches * outer_time_fraction + 0.5))
        self._check_grid()

    def _check_grid(self) -> None:
        """Refuse configurations that can give an empty block or an empty context."""
        R, Tp = self.num_rois, self.num_time_patches
        enc_rois_min = int(R * self.enc_scale[0])
        alpha_rois_min, alpha_rois_max = int(R * self.alpha_roi_scale[0]), int(R * self.alpha_roi_scale[1])
        if alpha_rois_min < 1:
            raise ValueError(
                f"num_rois: alpha_roi_scale={self.alpha_roi_scale} gives int({R} * {self.alpha_roi_scale[0]}) = 0 "
                f"target ROIs; expected num_rois >= {math.ceil(1 / self.alpha_roi_scale[0])}"
            )
        if enc_rois_min <= alpha_rois_max:
            raise ValueError(
                f"num_rois: the observation may keep no ROI: it has at least int({R} * {self.enc_scale[0]}) = "
                f"{enc_rois_min} ROIs but alpha removes up to int({R} * {self.alpha_roi_scale[1]}) = {alpha_rois_max}; "
                f"raise enc_scale[0] above alpha_roi_scale[1] or use more ROIs"
            )
        windows = self._window_sizes(Tp, self.enc_scale)
        alpha_times = self._window_sizes(Tp, self.alpha_time_scale)
        if min(alpha_times) < 1:
            raise ValueError(
                f"num_time_patches: alpha_time_scale={self.alpha_time_scale} gives an alpha window of "
                f"int({Tp} * {self.alpha_time_scale[0]}) = 0 time patches; expected num_time_patches >= "
                f"{math.ceil(1 / self.alpha_time_scale[0])}"
            )
        if max(alpha_times) >= min(windows):
            raise ValueError(
                f"num_time_patches: the alpha window (up to {max(alpha_times)} of {Tp} time patches, "
                f"alpha_time_scale={self.alpha_time_scale}) must be shorter than the observation window "
                f"(at least {min(windows)}, enc_scale={self.enc_scale})"
            )
        if 2 * self.num_outer_columns > Tp:
            raise ValueError(
                f"outer_time_fraction: {self.outer_time_fraction} gives {self.num_outer_columns} outer columns per "
                f"side, more than half of num_time_patches={Tp}"
            )
        side_max = min(int(Tp * self.side_time_scale[1]), self.num_outer_columns)
        outer = self.num_outer_columns
        worst = Tp
        for width in windows:
            for start in range(self._num_starts(Tp, width)):
                left = max(0, min(start + width, outer) - start)
                right = max(0, start + width - max(start, Tp - outer))
                worst = min(worst, width - min(left, side_max) - min(right, side_max))
        if worst < 1:
            raise ValueError(
                f"num_time_patches: with {Tp} time patches the side targets (up to {side_max} of the "
                f"{outer} outer columns per side, side_time_scale={self.side_time_scale}) can remove every "
                f"observed column; use more time patches or a smaller side_time_scale/outer_time_fraction"
            )

    def _num_starts(self, length: int, width: int) -> int:
        return length - width + (1 if self.allow_last_window_start else 0)

    @staticmethod
    def _window_sizes(length: int, scale_range: tuple[float, float]) -> range:
        """Conservative range of ``int(length * s)`` over the scale range, capped at length - 1."""
        low = min(int(length * scale_range[0]), length - 1)
        high = min(int(length * scale_range[1]), length - 1)
        return range(low, high + 1)

    def sample_draw(self, batch_size: int, step: int) -> SpatiotemporalDraw:
        """The observation, alpha and side blocks of batch ``step`` (pure function of seed, step)."""
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("step", step, minimum=0)
        R, Tp, B = self.num_rois, self.num_time_patches, batch_size
        g = step_generator(self.seed, step)

        # Once per batch: alpha then observation sizes (ROI count, time-window length).
        u_alpha_rois, u_alpha_times, u_enc_rois, u_enc_times = torch.rand(4, generator=g).tolist()
        alpha_rois = min(scaled_count(R, self.alpha_roi_scale, u_alpha_rois), R - 1)
        alpha_times = min(scaled_count(Tp, self.alpha_time_scale, u_alpha_times), Tp - 1)
        enc_rois = min(scaled_count(R, self.enc_scale, u_enc_rois), R - 1)
        enc_times = min(scaled_count(Tp, self.enc_scale, u_enc_times), Tp - 1)

        # Per sample: observation ROI subset and window; alpha ROI subset and window inside it.
        observation_rois = random_subset(
            torch.rand(
                B,
                R,
                generator=g,
            ),
            enc_rois,
        )
        alpha_roi_mask = random_subset(
            torch.rand(
                B,
                R,
                generator=g,
            ),
            alpha_rois,
        )
        enc_start = (torch.rand(B, 1, generator=g) * self._num_starts(Tp, enc_times)).long()
        alpha_start = enc_start + (torch.rand(B, 1, generator=g) * self._num_starts(enc_times, alpha_times)).long()
        t = torch.arange(Tp)
        observation_times = (t >= enc_start) & (t < enc_start + enc_times)
        alpha_time_mask = (t >= alpha_start) & (t < alpha_start + alpha_times)

        # Per sample and side (0 = right, 1 = left): ROI fraction and column count.
        u_side = torch.rand(B, 2, 2, generator=g, dtype=torch.float64)
        low, high = self.side_roi_scale
        roi_fraction = low + u_side[..., 0] * (high - low)
        low, high = self.side_time_scale
        side_columns = (Tp * (low + u_side[..., 1] * (high - low))).long().clamp(max=self.num_outer_columns)
        # beta: among observed alpha ROIs; gamma: among all the others; same fraction for both.
        observed_alpha = observation_rois & alpha_roi_mask
        in_beta_pool = observed_alpha[:, None, :].expand(B, 2, R)
        beta_pool = observed_alpha.sum(dim=-1, keepdim=True)  # (B, 1)
        beta_count = (beta_pool * roi_fraction).long()
        gamma_count = ((R - beta_pool) * roi_fraction).long()
        side_scores = torch.rand(B, 2, R, generator=g)
        side_rois = random_subset_of_pool(side_scores, in_beta_pool, beta_count) | random_subset_of_pool(
            side_scores, ~in_beta_pool, gamma_count
        )
        # Columns: a random subset of the outer columns of each side.
        outer = self.num_outer_columns
        chosen = random_subset_of_pool(
            torch.rand(B, 2, outer, generator=g),
            torch.ones(B, 2, outer, dtype=torch.bool),
            side_columns,
        )
        side_times = torch.zeros(B, 2, Tp, dtype=torch.bool)
        side_times[:, 0, Tp - outer :] = chosen[:, 0]
        side_times[:, 1, :outer] = chosen[:, 1]

        return SpatiotemporalDraw(
            observation_rois, observation_times, alpha_roi_mask, alpha_time_mask, side_rois, side_times
        )

    def sample_masks(self, batch_size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.sample_draw(batch_size, step)
        # Context and target regions are products (ROI set x time set): index them without grids.
        context_rois = (draw.observation_rois & ~draw.alpha_rois)[:, None]
        context_times = (draw.observation_times & ~draw.side_times.any(dim=1))[:, None]
        target_rois = torch.cat([draw.alpha_rois[:, None], draw.side_rois], dim=1)
        target_times = torch.cat([draw.alpha_times[:, None], draw.side_times], dim=1)
        num_context = int((context_rois.sum(-1) * context_times.sum(-1)).min())
        num_target = int((target_rois.sum(-1) * target_times.sum(-1)).sum(1).min())
        return (
            product_indices(context_rois, context_times, num_context),
            product_indices(target_rois, target_times, num_target),
        )


class MultiBlockMaskCollator(_StepMaskCollator):
    """I-JEPA multi-block masking on the R x Tp grid (the paper's ablation baseline): per batch,
    one context block size and one target block size; per sample, ``num_pred_blocks`` target
    blocks (contiguous ROIs x contiguous time patches) and a context block minus all targets.

    Block size from scale ``s`` and aspect ratio ``a``: ``round(R * sqrt(s * a))`` ROIs by
    ``round(Tp * sqrt(s / a))`` time patches, capped at R - 1 and Tp - 1. The aspect ratio is
    relative to the grid (``a = 1`` covers the same fraction of both axes), because I-JEPA's
    token-unit aspect on a 450 x 10 grid would cap every block at Tp - 1 columns.

    Args:
        enc_scale: context block fraction of the grid (aspect 1). I-JEPA (0.85, 1.0).
        pred_scale: fraction of the grid per target block. I-JEPA (0.15, 0.2).
        pred_aspect_ratio: target block aspect range. I-JEPA (0.75, 1.5).
        num_pred_blocks: target blocks per sample. I-JEPA 4.
        min_keep: fewest context tokens; block positions are redrawn (vectorised, up to 20
            tries) for samples below it.
        allow_last_window_start: as in :class:`BrainJepaMaskCollator` (I-JEPA also draws block
            corners with an exclusive upper bound).
        seed, fmri_key: as in :class:`BrainJepaMaskCollator`.

    Target indices are the blocks concatenated (each ROI-major); blocks may overlap each other.
    """

    kind = "multiblock"
    max_tries = 20

    def __init__(
        self,
        num_rois: int,
        num_time_patches: int,
        *,
        enc_scale: tuple[float, float] = (0.85, 1.0),
        pred_scale: tuple[float, float] = (0.15, 0.2),
        pred_aspect_ratio: tuple[float, float] = (0.75, 1.5),
        num_pred_blocks: int = 4,
        min_keep: int = 10,
        allow_last_window_start: bool = False,
        seed: int = 0,
        fmri_key: str = "fmri_values",
    ):
        super().__init__(num_rois, num_time_patches, seed, fmri_key)
        if num_rois < 2 or num_time_patches < 2:
            raise ValueError(
                f"num_rois, num_time_patches: expected both >= 2 for blocks smaller than the grid, "
                f"got {num_rois} and {num_time_patches}"
            )
        self.enc_scale = _check_scale("enc_scale", enc_scale)
        self.pred_scale = _check_scale("pred_scale", pred_scale)
        try:
            low, high = (float(v) for v in pred_aspect_ratio)
        except (TypeError, ValueError):
            raise ValueError(f"pred_aspect_ratio: expected a pair (low, high), got {pred_aspect_ratio!r}") from None
        if not 0.0 < low <= high:
            raise ValueError(f"pred_aspect_ratio: expected 0 < low <= high, got {pred_aspect_ratio!r}")
        self.pred_aspect_ratio = (low, high)
        self.num_pred_blocks = _check_positive_int("num_pred_blocks", num_pred_blocks)
        self.min_keep = _check_positive_int("min_keep", min_keep)
        if min_keep >= self.num_patches:
            raise ValueError(
                f"min_keep: expected fewer than the {self.num_patches} tokens of the grid, got {min_keep}"
            )
        self.allow_last_window_start = bool(allow_last_window_start)

    def block_shape(self, scale: float, aspect: float) -> tuple[int, int]:
        """(ROIs, time patches) of a block covering ``scale`` of the grid with relative aspect."""
        rois = round(self.num_rois * math.sqrt(scale * aspect))
        times = round(self.num_time_patches * math.sqrt(scale / aspect))
        return min(max(rois, 1), self.num_rois - 1), min(max(times, 1), self.num_time_patches - 1)

    def _block_grids(self, g: torch.Generator, shape: tuple[int, ...], rois: int, times: int) -> torch.Tensor:
        """Random placements of a rois x times block: bool grids of ``shape + (R, Tp)``."""
        extra = 0 if not self.allow_last_window_start else 1
        top = (torch.rand(*shape, 1, generator=g) * (self.num_rois - rois + extra)).long()
        left = (torch.rand(*shape, 1, generator=g) * (self.num_time_patches - times + extra)).long()
        r, t = torch.arange(self.num_rois), torch.arange(self.num_time_patches)
        row = (r >= top) & (r < top + rois)
        col = (t >= left) & (t < left + times)
        return row[..., :, None] & col[..., None, :]

    def sample_grids(self, batch_size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(context (B, R, Tp), targets (B, num_pred_blocks, R, Tp))`` bool grids of batch ``step``."""
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("step", step, minimum=0)
        g = step_generator(self.seed, step)
        u_scale, u_aspect, u_enc = torch.rand(3, generator=g).tolist()
        pred_low, pred_high = self.pred_scale
        aspect_low, aspect_high = self.pred_aspect_ratio
        pred_shape = self.block_shape(
            pred_low + u_scale * (pred_high - pred_low), aspect_low + u_aspect * (aspect_high - aspect_low)
        )
        enc_shape = self.block_shape(self.enc_scale[0] + u_enc * (self.enc_scale[1] - self.enc_scale[0]), 1.0)

        targets = self._block_grids(g, (batch_size, self.num_pred_blocks), *pred_shape)
        free = ~targets.any(dim=1)
        context = self._block_grids(g, (batch_size,), *enc_shape) & free
        for _ in range(self.max_tries):
            short = context.flatten(1).sum(dim=1) < self.min_keep
            if not short.any():
                return context, targets
            retry = self._block_grids(g, (int(short.sum()),), *enc_shape) & free[short]
            context[short] = retry
        raise RuntimeError(
            f"MultiBlockMaskCollator: no context block with min_keep={self.min_keep} tokens outside the "
            f"{self.num_pred_blocks} target blocks after {self.max_tries} tries (step {step}); lower "
            f"pred_scale={self.pred_scale}, num_pred_blocks or min_keep"
        )

    def sample_masks(self, batch_size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        context, targets = self.sample_grids(batch_size, step)
        context = context.flatten(1)
        targets = targets.flatten(1)  # every block has the same size, so no truncation happens
        context_indices = first_k_true(context, int(context.sum(dim=1).min()))
        target_indices = first_k_true(targets, int(targets.sum(dim=1).min())) % self.num_patches
        return context_indices, target_indices


MASK_COLLATORS: dict[str, type[_StepMaskCollator]] = {
    BrainJepaMaskCollator.kind: BrainJepaMaskCollator,
    MultiBlockMaskCollator.kind: MultiBlockMaskCollator,
}


def build_mask_collator(kind: str, num_rois: int, num_time_patches: int, **kwargs) -> _StepMaskCollator:
    """A mask collator by name: "spatiotemporal" (Brain-JEPA) or "multiblock" (I-JEPA)."""
    if kind not in MASK_COLLATORS:
        raise ValueError(f"kind: expected one of {sorted(MASK_COLLATORS)}, got {kind!r}")
    return MASK_COLLATORS[kind](num_rois, num_time_patches, **kwargs)


__all__ = [
    "BrainJepaMaskCollator",
    "MultiBlockMaskCollator",
    "SpatiotemporalDraw",
    "MASK_COLLATORS",
    "build_mask_collator",
    "step_generator",
]
