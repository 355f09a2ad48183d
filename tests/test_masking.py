"""Mask collators: the spatiotemporal procedure of REFERENCE.md, its expected sizes, determinism,
resumption, DataLoader use, argument checks, and the I-JEPA multi-block option."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import hypergeom
from torch.utils.data import DataLoader

from brain_jepa_hf.configuration_brain_jepa import BrainJepaConfig
from brain_jepa_hf.masking import (
    BrainJepaMaskCollator,
    MultiBlockMaskCollator,
    build_mask_collator,
    first_k_true,
)

from masking_reference import loop_sample_masks, loop_spatiotemporal_masks


R, TP = 450, 10


# ----------------------------------------------------------------------------------------------
# Exact expectation of the original procedure (R = 450, Tp = 10), by enumerating the discrete
# size distributions; no collator code involved.
# ----------------------------------------------------------------------------------------------
def count_distribution(length: int, low: float, high: float) -> dict[int, Fraction]:
    """Law of int(length * s), s uniform on [low, high): x = length * s is uniform on
    [length*low, length*high), and P(int(x) = v) is the overlap of [v, v+1) with that interval."""
    a, b = length * Fraction(str(low)), length * Fraction(str(high))
    if a == b:
        return {int(a): Fraction(1)}
    law, v = {}, int(a)
    while v < b:
        overlap = min(b, v + 1) - max(a, v)
        if overlap > 0:
            law[v] = overlap / (b - a)
        v += 1
    return law


def mean_of(law: dict[int, Fraction]) -> float:
    return float(sum(v * p for v, p in law.items()))


def expected_sizes_450x10() -> dict[str, float]:
    """Expected per-sample sizes before truncation, original settings.

    * Observation: h_o = int(450 s), s ~ U[0.84, 1) -> 378..449 uniformly, mean 413.5 ROIs; window
      w_o = int(10 s) -> 8 (p 3/8) or 9 (p 5/8), start uniform in [0, 10 - w_o - 1].
    * Alpha: h_a = int(450 s), s ~ U[0.45, 0.6) -> 202..269, mean 235.748; window w_a = int(10 s),
      s ~ U[0.2, 0.6) -> 2..5 uniformly, mean 3.5. Alpha target = h_a * w_a (independent draws).
    * Sides: k = int(10 s), s ~ U[0, 0.4) -> 0..3 uniformly (<= 3 outer columns), E[k] = 1.5, so
      each outer column is removed with probability 1.5 / 3. ROIs: int(n s) + int((450 - n) s),
      s ~ U[0.15, 0.3), with n = |observed ROIs & alpha ROIs| ~ Hypergeometric(450, h_a, h_o).
    * Context = |observed \\ alpha| x |window columns not removed|; the two factors are independent,
      E|observed \\ alpha| = E[h_o] (450 - E[h_a]) / 450 (independent subsets).

    Values: context 196.874 x 6.3125 = 1242.76; alpha 825.12; each side 150.37; targets 1125.87.
    """
    h_o, w_o = count_distribution(R, 0.84, 1.0), count_distribution(TP, 0.84, 1.0)
    h_a, w_a = count_distribution(R, 0.45, 0.6), count_distribution(TP, 0.2, 0.6)
    outer = 3
    k = {}
    for v, p in count_distribution(TP, 0.0, 0.4).items():
        k[min(v, outer)] = k.get(min(v, outer), 0) + p
    removal_probability = mean_of(k) / outer
    outer_columns = set(range(outer)) | set(range(TP - outer, TP))

    context_rois = mean_of(h_o) * (R - mean_of(h_a)) / R
    context_columns = sum(
        float(p)
        * np.mean(
            [
                sum(1 - removal_probability * (c in outer_columns) for c in range(start, start + w))
                for start in range(TP - w)
            ]
        )
        for w, p in w_o.items()
    )
    fraction_floor = np.array([mean_of(count_distribution(n, 0.15, 0.3)) if n else 0.0 for n in range(R + 1)])
    ho = np.array(list(h_o)), np.array([float(p) for p in h_o.values()])
    ha = np.array(list(h_a)), np.array([float(p) for p in h_a.values()])
    n = np.arange(R + 1)
    overlap_law = hypergeom.pmf(n[None, None, :], R, ha[0][None, :, None], ho[0][:, None, None])
    side_rois = np.einsum("i,j,ijn,n->", ho[1], ha[1], overlap_law, fraction_floor + fraction_floor[::-1])
    alpha = mean_of(h_a) * mean_of(w_a)
    side = side_rois * mean_of(k)
    return {"context": context_rois * context_columns, "alpha": alpha, "side": side, "target": alpha + 2 * side}


def per_sample_sizes(draw) -> dict[str, torch.Tensor]:
    """Untruncated sizes of each sample's context and target regions (B,) from a draw. Every region
    is (ROI set x time set), so its size is the product of the two counts (the invariants test
    checks the draw's grids are exactly these products)."""
    context_rois = (draw.observation_rois & ~draw.alpha_rois).sum(-1)
    context_times = (draw.observation_times & ~draw.side_times.any(1)).sum(-1)
    alpha = draw.alpha_rois.sum(-1) * draw.alpha_times.sum(-1)
    sides = draw.side_rois.sum(-1) * draw.side_times.sum(-1)  # (B, 2)
    return {
        "context": (context_rois * context_times).double(),
        "alpha": alpha.double(),
        "side": sides.double().mean(dim=1),
        "target": (alpha + sides.sum(dim=1)).double(),
    }


def assert_mean_matches(
    batch_means: dict[str, list[float]], expected: dict[str, float], label: str, max_relative_stderr: float
):
    """Each batch draws its sizes once, so batches (not samples) are the independent units: the mean
    over batches must lie within 4 standard errors of the exact expectation, and the standard error
    must be under `max_relative_stderr` of it so the check has teeth (seeds are fixed: no flakiness)."""
    for key, values in batch_means.items():
        values = torch.tensor(values, dtype=torch.float64)
        mean, stderr = values.mean().item(), (values.std() / len(values) ** 0.5).item()
        assert stderr < max_relative_stderr * expected[key], (label, key, stderr)
        assert abs(mean - expected[key]) < 4 * stderr, (
            f"{label} {key}: empirical mean {mean:.2f} vs expected {expected[key]:.2f} (stderr {stderr:.2f})"
        )


def test_mean_sizes_match_exact_expectation_of_original_procedure():
    expected = expected_sizes_450x10()
    # The closed forms in the docstring of expected_sizes_450x10.
    assert expected["context"] == pytest.approx(1242.76, abs=0.01)
    assert expected["target"] == pytest.approx(1125.87, abs=0.01)

    collator = BrainJepaMaskCollator(R, TP)
    batch_means = {key: [] for key in expected}
    for step in range(1500):
        for key, sizes in per_sample_sizes(collator.sample_draw(4, step)).items():
            batch_means[key].append(sizes.mean().item())
    assert_mean_matches(batch_means, expected, "vectorised", max_relative_stderr=0.01)

    # The per-sample loop reference (independent code) draws from the same law.
    generator = torch.Generator().manual_seed(1)
    loop_means = {"context": [], "target": []}
    for _ in range(400):
        contexts, targets = loop_spatiotemporal_masks(collator, 4, generator)
        loop_means["context"].append(float(np.mean([len(c) for c in contexts])))
        loop_means["target"].append(float(np.mean([len(t) for t in targets])))
    assert_mean_matches(loop_means, expected, "loop reference", max_relative_stderr=0.02)


def consistent_fraction(pool: int, chosen: int, others: int, chosen_others: int, low: float, high: float) -> bool:
    """Is there one s in [low, high) with int(pool * s) == chosen and int(others * s) == chosen_others?"""
    lo, hi = Fraction(str(low)), Fraction(str(high))
    for size, count in ((pool, chosen), (others, chosen_others)):
        if size:
            lo, hi = max(lo, Fraction(count, size)), min(hi, Fraction(count + 1, size))
        elif count:
            return False
    return lo < hi


@pytest.mark.parametrize(
    "num_rois, num_time_patches, allow_last",
    [(450, 10, False), (100, 16, False), (37, 7, True)],
)
def test_procedure_invariants_over_many_batches(num_rois, num_time_patches, allow_last):
    collator = BrainJepaMaskCollator(num_rois, num_time_patches, allow_last_window_start=allow_last)
    Tp, outer = num_time_patches, collator.num_outer_columns
    if (num_rois, num_time_patches) == (450, 10):
        assert outer == 3  # columns 0-2 and 7-9, as the original hard-codes
    side_max = min(int(Tp * 0.4), outer)
    last_column_observed = False
    for step in range(60):
        batch = 8
        draw = collator.sample_draw(batch, step)
        context_indices, target_indices = collator.sample_masks(batch, step)
        context, targets = draw.context.flatten(1), draw.targets.flatten(1)

        # Truncation to the shortest in the batch, keeping each list's first entries.
        shortest_context = int(context.sum(1).min())
        shortest_target = int(targets.sum(1).min())
        assert context_indices.shape == (batch, shortest_context) and context_indices.dtype == torch.long
        assert target_indices.shape == (batch, shortest_target) and target_indices.dtype == torch.long
        assert torch.equal(context_indices, first_k_true(context, shortest_context))
        assert torch.equal(target_indices, first_k_true(targets, shortest_target) % (num_rois * Tp))

        sizes = per_sample_sizes(draw)
        assert torch.equal(sizes["context"], context.sum(1).double())
        assert torch.equal(sizes["target"], targets.sum(1).double())
        obs_rois, obs_times = draw.observation_rois, draw.observation_times
        removed_times = draw.side_times.any(dim=1)
        for b in range(batch):
            ctx, tgt = context_indices[b], target_indices[b]
            # Never overlap; context is sorted and unique.
            assert not torch.isin(ctx, tgt).any()
            assert not (draw.context[b] & draw.targets[b].any(0)).any()
            assert bool((ctx[1:] > ctx[:-1]).all())
            roi, time = ctx // Tp, ctx % Tp
            # Context lies in the observation, excludes alpha ROIs at all times and the side columns at all ROIs.
            assert obs_rois[b, roi].all() and obs_times[b, time].all()
            assert not draw.alpha_rois[b, roi].any()
            assert not removed_times[b, time].any()

            # Sizes within the configured ranges.
            assert int(num_rois * 0.84) <= obs_rois[b].sum() <= num_rois - 1
            window = obs_times[b].nonzero().flatten()
            assert int(Tp * 0.84) <= len(window) <= Tp - 1
            assert bool((window[1:] - window[:-1] == 1).all())  # contiguous
            last_column_observed |= bool(obs_times[b, -1])
            assert int(num_rois * 0.45) <= draw.alpha_rois[b].sum() <= int(num_rois * 0.6)
            alpha_window = draw.alpha_times[b].nonzero().flatten()
            assert int(Tp * 0.2) <= len(alpha_window) <= int(Tp * 0.6)
            assert obs_times[b, alpha_window].all()  # alpha window inside the observation window
            if not allow_last:  # the original's exclusive upper bound on the alpha offset
                assert alpha_window[-1] < window[-1]

            observed_alpha = obs_rois[b] & draw.alpha_rois[b]
            pool, others = int(observed_alpha.sum()), num_rois - int(observed_alpha.sum())
            for side, columns in ((0, range(Tp - outer, Tp)), (1, range(outer))):
                chosen_times = draw.side_times[b, side].nonzero().flatten().tolist()
                assert set(chosen_times) <= set(columns) and len(chosen_times) <= side_max
                beta = draw.side_rois[b, side] & observed_alpha
                gamma = draw.side_rois[b, side] & ~observed_alpha
                assert consistent_fraction(pool, int(beta.sum()), others, int(gamma.sum()), 0.15, 0.3)
    # The original never lets the observation reach the last time patch; the option allows it.
    assert last_column_observed == allow_last


def test_masks_are_a_function_of_seed_and_step():
    collator = BrainJepaMaskCollator(R, TP, seed=3)
    again = BrainJepaMaskCollator(R, TP, seed=3)
    for step in (0, 1, 17, 10_000):
        first, second = collator.sample_masks(16, step), again.sample_masks(16, step)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    draws = [collator.sample_masks(16, step) for step in range(20)]
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert draws[i][0].shape != draws[j][0].shape or not torch.equal(draws[i][0], draws[j][0])
    other_seed = BrainJepaMaskCollator(R, TP, seed=4).sample_masks(16, 0)
    assert other_seed[0].shape != draws[0][0].shape or not torch.equal(other_seed[0], draws[0][0])
    # The global RNG plays no part.
    torch.manual_seed(123)
    fixed = collator.sample_masks(4, 5)
    torch.manual_seed(999)
    assert torch.equal(collator.sample_masks(4, 5)[1], fixed[1])


def make_examples(count: int, num_rois: int = R, frames: int = 160) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "fmri_values": torch.randn(1, num_rois, frames, generator=generator),
            "age": float(60 + i),
            "label": i % 2,
            "subject_id": f"sub-{i:02d}",
        }
        for i in range(count)
    ]


def test_call_collates_fields_and_advances_its_step():
    collator = BrainJepaMaskCollator(R, TP, seed=7)
    examples = make_examples(4)
    batch = collator(examples)
    assert batch["fmri_values"].shape == (4, 1, R, 160)
    assert torch.equal(batch["fmri_values"][2], examples[2]["fmri_values"])
    assert batch["label"].tolist() == [0, 1, 0, 1] and batch["age"].dtype == torch.float64
    assert batch["subject_id"] == ["sub-00", "sub-01", "sub-02", "sub-03"]
    context, target = collator.sample_masks(4, 0)
    assert torch.equal(batch["context_indices"], context) and torch.equal(batch["target_indices"], target)
    assert collator.state_dict() == {"kind": "spatiotemporal", "seed": 7, "step": 1}
    second = collator(examples)
    assert torch.equal(second["context_indices"], collator.sample_masks(4, 1)[0])


def test_resumed_collator_draws_the_same_masks():
    uninterrupted = BrainJepaMaskCollator(R, TP, seed=11)
    examples = make_examples(3)
    run = [uninterrupted(examples) for _ in range(6)]

    first_half = BrainJepaMaskCollator(R, TP, seed=11)
    for _ in range(4):
        first_half(examples)
    saved = first_half.state_dict()
    resumed = BrainJepaMaskCollator(R, TP, seed=11)
    resumed.load_state_dict(saved)
    for expected in run[4:]:
        batch = resumed(examples)
        assert torch.equal(batch["context_indices"], expected["context_indices"])
        assert torch.equal(batch["target_indices"], expected["target_indices"])

    with pytest.raises(ValueError, match=r"state: saved with seed=11, this collator has seed=12"):
        BrainJepaMaskCollator(R, TP, seed=12).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"state: saved by a 'spatiotemporal' collator, this one is 'multiblock'"):
        MultiBlockMaskCollator(R, TP, seed=11).load_state_dict(saved)


def test_dataloader_workers_give_the_same_masks_as_the_main_process(tmp_path):
    rows = make_examples(8, num_rois=40, frames=80)
    dataset = Dataset.from_dict(
        {"fmri_values": [r["fmri_values"].numpy() for r in rows], "label": [r["label"] for r in rows]}
    ).with_format("torch")
    dataset.save_to_disk(str(tmp_path / "ds"))
    dataset = Dataset.load_from_disk(str(tmp_path / "ds")).with_format("torch")

    main_process = BrainJepaMaskCollator(40, 5, seed=5)
    in_main = list(DataLoader(dataset, batch_size=4, collate_fn=main_process))

    with_workers = BrainJepaMaskCollator(40, 5, seed=5)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=with_workers.collate_examples)
    in_workers = [with_workers.add_masks(batch) for batch in loader]
    assert len(in_main) == len(in_workers) == 2
    for a, b in zip(in_main, in_workers):
        assert torch.equal(a["fmri_values"], b["fmri_values"]) and a["fmri_values"].shape == (4, 1, 40, 80)
        assert torch.equal(a["context_indices"], b["context_indices"])
        assert torch.equal(a["target_indices"], b["target_indices"])

    # The collator itself refuses to run in a worker, where its step counter would be a copy.
    bad = DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=BrainJepaMaskCollator(40, 5))
    with pytest.raises(RuntimeError, match=r"called inside a DataLoader worker.*collate_fn=collator.collate_examples"):
        next(iter(bad))


def test_from_config_and_factory():
    config = BrainJepaConfig.from_preset("tiny", num_rois=100, num_frames=96)
    collator = BrainJepaMaskCollator.from_config(config, seed=2)
    assert (collator.num_rois, collator.num_time_patches, collator.seed) == (100, 6, 2)
    assert isinstance(build_mask_collator("spatiotemporal", 450, 10), BrainJepaMaskCollator)
    multiblock = build_mask_collator("multiblock", 450, 10, num_pred_blocks=2)
    assert isinstance(multiblock, MultiBlockMaskCollator) and multiblock.num_pred_blocks == 2
    with pytest.raises(ValueError, match=r"kind: expected one of \['multiblock', 'spatiotemporal'\], got 'random'"):
        build_mask_collator("random", 450, 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"enc_scale": (0.9, 0.8)},
            r"enc_scale: expected a pair \(low, high\) with 0 < low <= high <= 1, got \(0.9, 0.8\)",
        ),
        ({"alpha_roi_scale": (0.0, 0.5)}, r"alpha_roi_scale: expected .* 0 < low <= high <= 1, got \(0.0, 0.5\)"),
        ({"alpha_time_scale": 0.3}, r"alpha_time_scale: expected a pair \(low, high\).*got 0.3"),
        ({"side_roi_scale": (0.1, 1.5)}, r"side_roi_scale: expected .* 0 <= low <= high <= 1, got \(0.1, 1.5\)"),
        ({"outer_time_fraction": 0.7}, r"outer_time_fraction: expected a number in \(0, 0.5\], got 0.7"),
        ({"seed": -1}, r"seed: expected an integer >= 0, got -1"),
        (
            {"enc_scale": (0.5, 1.0)},
            r"num_rois: the observation may keep no ROI: .* 225 ROIs but alpha removes up to .* 270",
        ),
    ],
)
def test_bad_arguments_are_refused_with_the_argument_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BrainJepaMaskCollator(R, TP, **kwargs)


def test_grids_too_small_for_the_procedure_are_refused():
    with pytest.raises(
        ValueError,
        match=r"num_rois: alpha_roi_scale=\(0.45, 0.6\) gives int\(2 \* 0.45\) = 0 target ROIs; expected num_rois >= 3",
    ):
        BrainJepaMaskCollator(2, 10)
    with pytest.raises(
        ValueError,
        match=r"num_time_patches: alpha_time_scale=\(0.2, 0.6\) gives an alpha window of int\(4 \* 0.2\) = 0",
    ):
        BrainJepaMaskCollator(450, 4)
    with pytest.raises(
        ValueError,
        match=r"num_time_patches: with 10 time patches the side targets \(up to 5 of the 5 outer columns per side.*can remove every observed column",
    ):
        BrainJepaMaskCollator(450, 10, outer_time_fraction=0.5, side_time_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"num_rois: expected an integer >= 1, got 0"):
        BrainJepaMaskCollator(0, 10)
    # The smallest time axis the defaults allow still yields non-empty contexts and targets.
    collator = BrainJepaMaskCollator(450, 5)
    for step in range(20):
        context, target = collator.sample_masks(4, step)
        assert context.shape[1] > 0 and target.shape[1] > 0


def test_bad_batches_are_refused():
    collator = BrainJepaMaskCollator(R, TP)
    with pytest.raises(
        ValueError,
        match=r"fmri_values: expected each example of shape \(channels, 450, T\) .* got batch shape \(2, 1, 400, 160\)",
    ):
        collator(make_examples(2, num_rois=400))
    with pytest.raises(
        ValueError, match=r"fmri_values: .*multiple of num_time_patches=10, got batch shape \(2, 1, 450, 155\)"
    ):
        collator(make_examples(2, frames=155))
    with pytest.raises(ValueError, match=r"examples: expected a non-empty list of dicts"):
        collator([])
    with pytest.raises(ValueError, match=r"examples\[0\]: expected a dict of fields, got Tensor"):
        collator([torch.zeros(1, R, 160)])
    with pytest.raises(ValueError, match=r"batch: expected a 'fmri_values' field, got fields \['x'\]"):
        collator.add_masks({"x": torch.zeros(2)})
    assert collator.step == 0  # nothing drawn by refused calls


def test_loop_reference_and_vectorised_agree_on_shapes_and_invariants():
    collator = BrainJepaMaskCollator(R, TP)
    context, target = loop_sample_masks(collator, 16, torch.Generator().manual_seed(0))
    assert context.shape[0] == target.shape[0] == 16
    for b in range(16):
        assert not torch.isin(context[b], target[b]).any()


# ----------------------------------------------------------------------------------------------
# I-JEPA multi-block option
# ----------------------------------------------------------------------------------------------
def test_multiblock_masks_are_disjoint_blocks_of_the_drawn_size():
    collator = MultiBlockMaskCollator(R, TP, seed=1)
    for step in range(30):
        context_grid, target_grids = collator.sample_grids(8, step)
        context, target = collator.sample_masks(8, step)
        blocks = target_grids.flatten(2).sum(2)
        block_size = int(blocks[0, 0])
        assert bool((blocks == block_size).all())  # one block size per batch
        assert target.shape == (8, collator.num_pred_blocks * block_size)
        assert 0.1 * R * TP <= block_size <= 0.25 * R * TP
        assert context.shape[1] >= collator.min_keep
        for b in range(8):
            assert not torch.isin(context[b], target[b]).any()
            for block in target_grids[b]:  # contiguous ROIs x contiguous time patches
                rows, cols = block.any(1).nonzero().flatten(), block.any(0).nonzero().flatten()
                assert len(rows) * len(cols) == block_size
                assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)
        assert torch.equal(context, first_k_true(context_grid.flatten(1), context.shape[1]))
    again = MultiBlockMaskCollator(R, TP, seed=1).sample_masks(8, 29)
    assert torch.equal(again[0], context) and torch.equal(again[1], target)


def test_multiblock_collates_and_resumes():
    collator = MultiBlockMaskCollator(R, TP, seed=2)
    examples = make_examples(2)
    first = collator(examples)
    state = collator.state_dict()
    assert state == {"kind": "multiblock", "seed": 2, "step": 1}
    second = collator(examples)
    resumed = MultiBlockMaskCollator(R, TP, seed=2)
    resumed.load_state_dict(state)
    assert torch.equal(resumed(examples)["target_indices"], second["target_indices"])
    assert first["fmri_values"].shape == (2, 1, R, 160)
    with pytest.raises(ValueError, match=r"min_keep: expected fewer than the 4500 tokens of the grid, got 4500"):
        MultiBlockMaskCollator(R, TP, min_keep=4500)
    with pytest.raises(ValueError, match=r"pred_aspect_ratio: expected 0 < low <= high, got \(2.0, 1.0\)"):
        MultiBlockMaskCollator(R, TP, pred_aspect_ratio=(2.0, 1.0))
    with pytest.raises(RuntimeError, match=r"no context block with min_keep=4000 tokens"):
        MultiBlockMaskCollator(R, TP, min_keep=4000).sample_masks(2, 0)


@pytest.mark.parametrize("kind", ["spatiotemporal", "multiblock"])
def test_collated_batches_train_the_pretraining_model(kind):
    from brain_jepa_hf.modeling_brain_jepa import BrainJepaForPreTraining

    torch.manual_seed(0)
    config = BrainJepaConfig.from_preset("tiny", num_rois=100, num_frames=96)
    model = BrainJepaForPreTraining(config)
    collator = build_mask_collator(kind, config.num_rois, config.num_time_patches, seed=0)
    batch = collator(make_examples(3, num_rois=100, frames=96))
    gradient = torch.randn(config.num_rois, config.gradient_dim)  # any fixed per-ROI coordinates
    outputs = model(batch["fmri_values"], batch["context_indices"], batch["target_indices"], gradient=gradient)
    assert outputs.predictions.shape == (3, batch["target_indices"].shape[1], config.hidden_size)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    assert model.context_encoder.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
