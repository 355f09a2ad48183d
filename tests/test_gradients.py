"""Connectivity gradients with brainspace: real-data agreement, alignment, CSV layout, FC, errors."""

import stat

import numpy as np
import pytest

from brain_jepa_hf.atomic_io import current_umask
from brain_jepa_hf.gradients import (
    align_gradients,
    compute_gradients,
    functional_connectivity,
    gradient_agreement,
    gradients_from_timeseries,
    load_brainspace_group_fc,
    load_gradient_csv,
    save_gradient_csv,
)


@pytest.fixture(scope="module")
def group_gradients():
    main = compute_gradients(load_brainspace_group_fc("main"))
    holdout = compute_gradients(load_brainspace_group_fc("holdout"))
    return main, holdout


def test_independent_groups_give_the_same_gradients_after_alignment(group_gradients):
    main, holdout = group_gradients
    assert main.shape == holdout.shape == (400, 30)
    aligned = align_gradients(holdout, main)
    agreement = gradient_agreement(aligned, main, num=3)
    print(
        "Schaefer-400 main vs holdout group FC, 30 diffusion-map gradients, Procrustes-aligned: "
        f"r(G1) = {agreement[0]:.4f}, r(G2) = {agreement[1]:.4f}, r(G3) = {agreement[2]:.4f}"
    )
    assert agreement[0] >= 0.9 and agreement.min() >= 0.8


def test_alignment_undoes_rotation_and_reflection(group_gradients):
    main, _ = group_gradients
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    rotated = main @ rotation
    assert gradient_agreement(rotated, main).max() < 0.9
    np.testing.assert_allclose(align_gradients(rotated, main), main, atol=1e-8)
    flipped = main * np.where(np.arange(30) % 2, -1, 1)
    np.testing.assert_allclose(align_gradients(flipped, main), main, atol=1e-8)


def test_gradients_are_contiguous_arrays_torch_accepts(group_gradients):
    import torch

    main, holdout = group_gradients
    for result in (main, align_gradients(holdout, main)):
        assert result.flags.c_contiguous and all(stride > 0 for stride in result.strides)
        assert torch.equal(torch.tensor(result), torch.from_numpy(result.copy()))


def test_compute_gradients_with_reference_and_determinism(group_gradients):
    main, _ = group_gradients
    fc = load_brainspace_group_fc("holdout")
    np.testing.assert_array_equal(compute_gradients(fc), group_gradients[1])
    referenced = compute_gradients(fc, reference=main)
    np.testing.assert_allclose(referenced, align_gradients(group_gradients[1], main))


def test_csv_round_trip_in_original_layout(tmp_path, group_gradients):
    main, _ = group_gradients
    (tmp_path / ".gradients.csv.tmp-killed").write_text("0.1,0.")  # what a kill mid-write leaves
    path = save_gradient_csv(tmp_path / "gradients.csv", main)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()  # not the 0600 of a temporary file
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and len(lines[0].split(",")) == 30
    float(lines[0].split(",")[0])  # no header: the first row is numbers
    np.testing.assert_allclose(load_gradient_csv(path, num_rois=400), main, rtol=1e-9, atol=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == ["gradients.csv"]  # no temp file left
    with pytest.raises(ValueError, match=r"expected 450 rows \(one per ROI\), got 400"):
        load_gradient_csv(path, num_rois=450)
    (tmp_path / "header.csv").write_text("g1,g2\n0.1,0.2\n")
    with pytest.raises(ValueError, match=r"header.csv: expected comma-separated numbers without a header"):
        load_gradient_csv(tmp_path / "header.csv")
    with pytest.raises(FileNotFoundError, match=r"gradient file: .*missing.csv does not exist"):
        load_gradient_csv(tmp_path / "missing.csv")


def test_one_resolver_and_one_check_for_the_atlas_gradient(tmp_path):
    from brain_jepa_hf.gradients import check_gradient, resolve_gradient

    given, stored, held, example = (np.full((5, 3), value) for value in (1.0, 2.0, 3.0, 4.0))
    save_gradient_csv(tmp_path / "given.csv", given)
    save_gradient_csv(tmp_path / "gradient.csv", stored)

    class Extractor:
        gradient = held.tolist()

    sources = dict(dataset_folder=tmp_path, feature_extractor=Extractor(), example=lambda: example)
    assert resolve_gradient(tmp_path / "given.csv", **sources)[0, 0] == 1.0  # first: the given one
    assert resolve_gradient(given, **sources)[0, 0] == 1.0
    assert resolve_gradient(**sources)[0, 0] == 2.0  # then the dataset folder's gradient.csv
    assert (
        resolve_gradient(dataset_folder=tmp_path / "none", feature_extractor=Extractor(), example=lambda: example)[
            0, 0
        ]
        == 3.0
    )
    assert resolve_gradient(example=lambda: example)[0, 0] == 4.0
    assert resolve_gradient() is None
    checked = check_gradient(given, 5, 3)
    assert checked.dtype == np.float32 and checked.shape == (5, 3)
    assert check_gradient(given, 5, dtype=np.float64).dtype == np.float64  # any number of columns
    with pytest.raises(
        ValueError, match=r"^gradient: expected 5 rows x 4 columns \(ROIs x gradient_dim\), got 5 x 3$"
    ):
        check_gradient(given, 5, 4)
    with pytest.raises(
        ValueError, match=r"^atlas: expected 6 rows x gradient_dim columns \(ROIs x components\), got 5 x 3; a hint$"
    ):
        check_gradient(given, 6, name="atlas", columns="components", hint="; a hint")
    with pytest.raises(ValueError, match=r"gradient: expected 5 rows x 3 columns .*, got shape \(15,\)"):
        check_gradient(given.ravel(), 5, 3)
    with pytest.raises(ValueError, match=r"gradient: expected finite values, got NaN or Inf"):
        check_gradient(np.where(given > 0, np.nan, 0.0), 5, 3)


def test_gradients_from_time_series_recover_the_generating_structure():
    # three networks of ROIs driven by three shared signals: the first gradients separate them
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 20)
    series = []
    for _ in range(4):
        drivers = rng.standard_normal((3, 300))
        series.append(drivers[labels] + 0.7 * rng.standard_normal((60, 300)))
    fc = functional_connectivity(series)
    by_hand = np.tanh(np.mean([np.arctanh(np.clip(np.corrcoef(s), -1 + 1e-7, 1 - 1e-7)) for s in series], axis=0))
    np.fill_diagonal(by_hand, 1.0)
    np.testing.assert_allclose(fc, by_hand, atol=1e-12)
    np.testing.assert_allclose(functional_connectivity([s.T for s in series], time_axis=0), fc)
    gradients = gradients_from_timeseries(series, n_components=2, sparsity=0.5)
    centroids = np.stack([gradients[labels == k].mean(0) for k in range(3)])
    spread = np.stack([gradients[labels == k].std(0) for k in range(3)]).max()
    assert min(np.linalg.norm(centroids[i] - centroids[j]) for i in range(3) for j in range(i + 1, 3)) > 5 * spread


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"fc: expected a square \(R, R\) connectivity matrix, got shape \(4, 5\)"):
        compute_gradients(np.zeros((4, 5)))
    fc = np.eye(6)
    fc[2, 3] = fc[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"fc: expected finite values, got NaN or Inf at row 2, column 3"):
        compute_gradients(fc)
    with pytest.raises(ValueError, match=r"fc: expected a symmetric matrix"):
        compute_gradients(np.triu(np.ones((6, 6))))
    with pytest.raises(ValueError, match=r"n_components: expected an integer in \[1, 5\] for 6 ROIs, got 6"):
        compute_gradients(np.eye(6), n_components=6)
    with pytest.raises(
        ValueError, match=r"sparsity: 0.9 keeps int\(6 \* \(1 - 0.9\)\) = 0 entries .* expected sparsity <= 0.833"
    ):
        compute_gradients(np.eye(6) * 0.5 + 0.5, n_components=2)
    with pytest.raises(ValueError, match=r"reference: expected the shape of gradients \(10, 3\), got shape \(10, 2\)"):
        align_gradients(np.zeros((10, 3)), np.zeros((10, 2)))
    constant = np.random.default_rng(0).standard_normal((5, 50))
    constant[2] = 1.0
    with pytest.raises(
        ValueError,
        match=r"series\[0\]: expected every ROI to vary over time, got 1 constant ROI\(s\) \(indices \[2\]\)",
    ):
        functional_connectivity([constant])
    with pytest.raises(ValueError, match=r"series\[1\]: expected 5 ROIs like series\[0\], got 4"):
        functional_connectivity([np.random.default_rng(0).standard_normal((n, 9)) for n in (5, 4)])
    with pytest.raises(ValueError, match=r"series: expected at least one series, got none"):
        functional_connectivity([])
