"""Parcellation with nilearn on NIfTI scans and label atlases written here with nibabel."""

import nibabel as nib
import numpy as np
import pytest

from brain_jepa_hf.parcellation import atlas_labels, parcellate, parcellate_files


T = 40
SHAPE = (6, 6, 4)


def atlases():
    """A 'subcortical' atlas (labels 3 and 7, slice z=0) and a 'cortical' one (labels 1, 2, 5, slices z=2-3)."""
    sub = np.zeros(SHAPE, np.int16)
    sub[:3, :, 0], sub[3:, :, 0] = 7, 3
    cortex = np.zeros(SHAPE, np.int16)
    cortex[:, :2, 2:], cortex[:, 2:4, 2:], cortex[:, 4:, 2:] = 1, 2, 5
    return sub, cortex


def scan(signals, trend=None, confound=None, tr=2.0, seed=0):
    """4-D image whose voxels in region k carry signals[k] plus zero-mean voxel offsets."""
    sub, cortex = atlases()
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(SHAPE + (T,)) * 0.0
    regions = [sub == 3, sub == 7, cortex == 1, cortex == 2, cortex == 5]  # expected output order
    for k, region in enumerate(regions):
        values = signals[k] + (0 if trend is None else trend[k]) + (0 if confound is None else confound)
        offsets = rng.standard_normal(region.sum())
        offsets -= offsets.mean()  # the regional mean stays exactly signals[k]
        data[region] = values[None, :] + offsets[:, None] * 1e-3
    image = nib.Nifti1Image(data.astype(np.float32), np.eye(4))
    image.header.set_zooms((1.0, 1.0, 1.0, tr))
    return image


def to_images(tmp_path):
    sub, cortex = atlases()
    paths = []
    for name, atlas in (("sub.nii.gz", sub), ("cortex.nii.gz", cortex)):
        nib.save(nib.Nifti1Image(atlas, np.eye(4)), tmp_path / name)
        paths.append(tmp_path / name)
    return paths


@pytest.fixture
def signals():
    rng = np.random.default_rng(1)
    return rng.standard_normal((5, T)) + np.arange(1, 6)[:, None] * 10


def test_recovers_regional_signals_in_atlas_order(tmp_path, signals):
    paths = to_images(tmp_path)
    nib.save(scan(signals), tmp_path / "sub-01_bold.nii.gz")
    out = parcellate(tmp_path / "sub-01_bold.nii.gz", paths)
    assert out.shape == (5, T) and out.dtype == np.float32
    np.testing.assert_allclose(out, signals, atol=1e-4)
    np.testing.assert_array_equal(atlas_labels(paths[0]), [3, 7])
    # the order of atlases is the order of ROIs
    swapped = parcellate(tmp_path / "sub-01_bold.nii.gz", paths[::-1])
    np.testing.assert_allclose(swapped, np.concatenate([signals[2:], signals[:2]]), atol=1e-4)


def test_atlas_on_a_finer_grid_is_resampled_to_the_scan(tmp_path, signals):
    sub, cortex = atlases()
    fine = np.repeat(np.repeat(np.repeat(cortex, 2, 0), 2, 1), 2, 2)
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = -0.25  # voxel centres of the 2x grid inside the coarse voxels
    out = parcellate(scan(signals), [nib.Nifti1Image(sub, np.eye(4)), nib.Nifti1Image(fine, affine)])
    np.testing.assert_allclose(out, signals, atol=1e-4)


def test_detrend_standardize_and_confounds_match_independent_computation(signals):
    images = [nib.Nifti1Image(a, np.eye(4)) for a in atlases()]
    t = np.arange(T, dtype=float)
    trend = np.outer([0.5, -0.3, 0.2, 0.1, -0.4], t)
    out = parcellate(scan(signals, trend=trend), images, detrend=True, standardize=True)
    design = np.c_[np.ones(T), t]
    residual = (signals + trend) - (design @ np.linalg.lstsq(design, (signals + trend).T, rcond=None)[0]).T
    np.testing.assert_allclose(out, residual / residual.std(axis=1, ddof=1, keepdims=True), atol=1e-3)
    confound = np.random.default_rng(2).standard_normal(T) * 3
    cleaned = parcellate(scan(signals, confound=confound), images, confounds=confound[:, None])
    design = np.c_[np.ones(T), confound]
    dirty = signals + confound
    residual = dirty - (design @ np.linalg.lstsq(design, dirty.T, rcond=None)[0]).T
    # confound regression keeps each ROI's mean (nilearn standardises the confounds, not the signals)
    np.testing.assert_allclose(cleaned, residual + dirty.mean(axis=1, keepdims=True), atol=1e-3)


def test_confound_file_columns_and_parcellate_files(tmp_path, signals):
    paths = to_images(tmp_path)
    confound = np.random.default_rng(3).standard_normal(T)
    nib.save(scan(signals, confound=confound), tmp_path / "sub-01_bold.nii.gz")
    nib.save(scan(signals[::-1].copy()), tmp_path / "sub-02_bold.nii")
    table = tmp_path / "sub-01_confounds.tsv"
    table.write_text(
        "framewise_displacement\tglobal_signal\n"
        + "\n".join(f"{'n/a' if i == 0 else 0.1}\t{float(confound[i])!r}" for i in range(T))
        + "\n"
    )
    written = parcellate_files(
        [tmp_path / "sub-01_bold.nii.gz", tmp_path / "sub-02_bold.nii"],
        paths,
        tmp_path / "rois",
        confounds=[table, None],
        confound_columns=["global_signal"],
        progress=False,
    )
    assert [p.name for p in written] == ["sub-01_bold.npy", "sub-02_bold.npy"]
    np.testing.assert_allclose(np.load(written[1]), signals[::-1], atol=1e-4)
    first = np.load(written[0])
    design = np.c_[np.ones(T), confound]
    dirty = signals + confound
    expected = dirty - (design @ np.linalg.lstsq(design, dirty.T, rcond=None)[0]).T + dirty.mean(1, keepdims=True)
    np.testing.assert_allclose(first, expected, atol=1e-3)


def test_bad_input_raises_and_leaves_no_output(tmp_path, signals):
    paths = to_images(tmp_path)
    nib.save(scan(signals), tmp_path / "good.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.float32), np.eye(4)), tmp_path / "three_d.nii.gz")
    with pytest.raises(ValueError, match=r"img: expected a 4-D image with at least 2 volumes, got shape \(6, 6, 4\)"):
        parcellate(tmp_path / "three_d.nii.gz", paths)
    with pytest.raises(FileNotFoundError, match=r"img: .*missing.nii.gz does not exist"):
        parcellate(tmp_path / "missing.nii.gz", paths)
    with pytest.raises(ValueError, match=r"confounds: expected 40 rows \(one per volume\), got shape \(39, 1\)"):
        parcellate(tmp_path / "good.nii.gz", paths, confounds=np.zeros((39, 1)))
    with pytest.raises(ValueError, match=r"atlases\[0\]: expected at least one non-zero label, got an empty atlas"):
        parcellate(tmp_path / "good.nii.gz", [nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4))])
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match=r"img: .*broken.nii.gz is not a readable NIfTI image"):
        parcellate(tmp_path / "broken.nii.gz", paths)
    with pytest.raises(ValueError, match=r"img: .*broken.nii.gz is not a readable NIfTI image"):
        parcellate_files(
            [tmp_path / "good.nii.gz", tmp_path / "broken.nii.gz"], paths, tmp_path / "rois", progress=False
        )
    assert not (tmp_path / "rois").exists() and not list(tmp_path.glob(".rois*"))
