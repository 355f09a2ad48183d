"""BrainJepaFeatureExtractor: every step against an independent computation, modes, round trips, errors."""

import json
import os
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor

from brain_jepa_hf.feature_extraction_brain_jepa import (
    BrainJepaFeatureExtractor,
    register_feature_extractor,
)


R, F, RATE = 12, 16, 3  # small shapes: clip = 48 volumes
CLIP = F * RATE


def make_series(n, num_times=60, num_rois=R, seed=0):
    rng = np.random.default_rng(seed)
    offsets = rng.normal(100.0, 5.0, size=(n, num_rois, 1))
    return (offsets + rng.standard_normal((n, num_rois, num_times))).astype(np.float32)


def expected_indices(start, clip=CLIP, frames=F):
    # the original: linspace(start, start + clip - 1, frames), truncated to integers
    return [int(start + k * (clip - 1) / (frames - 1)) for k in range(frames)]


def robust_stats_by_hand(train):
    """Per-ROI median and IQR (linear interpolation) of each subject's temporal mean, with plain Python."""
    median, iqr = [], []
    for r in range(train[0].shape[0]):
        means = sorted(float(np.mean(s[r].astype(np.float64))) for s in train)
        q = statistics.quantiles(means, n=4, method="inclusive")
        median.append(statistics.median(means))
        iqr.append(q[2] - q[0])
    return np.array(median), np.array(iqr)


@pytest.fixture
def fitted():
    train = make_series(9, seed=1)
    return BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE).fit(list(train)), train


def test_eval_centre_clip_and_robust_scaling_match_independent_computation(fitted):
    extractor, train = fitted
    median, iqr = robust_stats_by_hand(list(train))
    np.testing.assert_allclose(extractor.robust_median, median, rtol=1e-6)
    np.testing.assert_allclose(extractor.robust_iqr, iqr, rtol=1e-5)
    series = make_series(3, num_times=61, seed=2)
    out = extractor(series, time_axis=-1)["fmri_values"]
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 1, R, F)
    idx = expected_indices((61 - CLIP) // 2)
    expected = (series[:, :, idx] - median[None, :, None]) / iqr[None, :, None]
    np.testing.assert_allclose(out[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    # evaluation is deterministic: same output on every call, whatever the seed
    np.testing.assert_array_equal(extractor(series, seed=123)["fmri_values"], out)


def test_training_clips_are_random_valid_and_reproducible_under_seed(fitted):
    extractor = BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE, scaling="none")
    series = make_series(16, num_times=90, seed=3)
    a = extractor(series, training=True, seed=7, return_tensors="np")["fmri_values"]
    b = extractor(series, training=True, seed=7, return_tensors="np")["fmri_values"]
    c = extractor(series, training=True, seed=8, return_tensors="np")["fmri_values"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    starts = []
    for i in range(16):
        matches = [s for s in range(90 - CLIP + 1) if np.array_equal(series[i][:, expected_indices(s)], a[i, 0])]
        assert matches, f"sample {i} is not a linspace clip of its series"
        starts.append(matches[0])
    assert len(set(starts)) > 4  # offsets really vary across the batch
    # a list of differently long series goes through the per-series path with the same rules
    ragged = [series[0], series[1][:, :70]]
    out = extractor(ragged, training=True, seed=1, return_tensors="np")["fmri_values"]
    assert any(np.array_equal(ragged[1][:, expected_indices(s)], out[1, 0]) for s in range(70 - CLIP + 1))


def test_batch_list_single_torch_and_time_axis_inputs_agree(fitted):
    extractor, _ = fitted
    series = make_series(4, num_times=55, seed=4)
    batch = extractor(series)["fmri_values"]
    as_list = extractor(list(series))["fmri_values"]
    singles = torch.cat([extractor(s)["fmri_values"] for s in series])
    from_torch = extractor(torch.from_numpy(series))["fmri_values"]
    time_major = extractor([s.T for s in series], time_axis=0)["fmri_values"]
    time_major_batch = extractor(series.transpose(0, 2, 1).copy(), time_axis=-2)["fmri_values"]
    as_float64 = extractor(series.astype(np.float64))["fmri_values"]
    for other in (as_list, singles, from_torch, time_major, time_major_batch, as_float64):
        torch.testing.assert_close(other, batch)
    # training draws the same clips for the same seed whether the batch is an array or a list
    torch.testing.assert_close(
        extractor(series, training=True, seed=5)["fmri_values"],
        extractor(list(series), training=True, seed=5)["fmri_values"],
    )


def test_time_axis_is_never_guessed_when_rois_equal_time_points():
    extractor = BrainJepaFeatureExtractor(num_rois=CLIP, num_frames=F, sampling_rate=RATE, scaling="none")
    square = make_series(1, num_times=CLIP, num_rois=CLIP, seed=5)[0]
    roi_major = extractor(square, time_axis=-1, return_tensors="np")["fmri_values"][0, 0]
    time_major = extractor(square, time_axis=0, return_tensors="np")["fmri_values"][0, 0]
    np.testing.assert_array_equal(roi_major, square[:, expected_indices(0)])
    np.testing.assert_array_equal(time_major, square.T[:, expected_indices(0)])


def test_zscore_and_none_scaling():
    series = make_series(3, num_times=50, seed=6)
    idx = expected_indices((50 - CLIP) // 2)
    z = BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE, scaling="zscore")
    out = z(series, return_tensors="np")["fmri_values"][:, 0]
    clip = series[:, :, idx].astype(np.float64)
    expected = (clip - clip.mean(axis=(1, 2), keepdims=True)) / clip.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    raw = BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE, scaling="none")
    np.testing.assert_array_equal(raw(series, return_tensors="np")["fmri_values"][:, 0], series[:, :, idx])


def test_tr_resampling_matches_numpy_interp():
    extractor = BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE, scaling="none", target_tr=0.8)
    slow = make_series(1, num_times=30, seed=7)[0]  # 30 volumes at TR 2.0 s = 58 s
    times_in = np.arange(30) * 2.0
    times_out = np.arange(0, times_in[-1] + 1e-9, 0.8)
    resampled = np.stack([np.interp(times_out, times_in, row) for row in slow])
    assert resampled.shape[1] == 73
    out = extractor([slow, slow[:, :29]], tr=[2.0, 2.0], return_tensors="np")["fmri_values"]
    idx = expected_indices((73 - CLIP) // 2)
    np.testing.assert_allclose(out[0, 0], resampled[:, idx], rtol=1e-5)
    # a series already at the target TR is untouched
    at_target = make_series(1, num_times=60, seed=12)[0]
    same = extractor(at_target, tr=0.8, return_tensors="np")["fmri_values"]
    np.testing.assert_array_equal(same[0, 0], at_target[:, expected_indices((60 - CLIP) // 2)])


def test_short_series_strategies():
    short = make_series(1, num_times=30, seed=8)[0]  # shorter than the 48-volume clip
    kwargs = dict(num_rois=R, num_frames=F, sampling_rate=RATE, scaling="none")
    with pytest.raises(ValueError, match=r"series\[0\]: expected sampling_rate\*num_frames=48 volumes.*got 30"):
        BrainJepaFeatureExtractor(**kwargs)(short)
    stretch = BrainJepaFeatureExtractor(short_series="stretch", **kwargs)(short, return_tensors="np")["fmri_values"]
    np.testing.assert_array_equal(stretch[0, 0], short[:, expected_indices(0, clip=30)])
    with pytest.raises(ValueError, match=r"at least num_frames=16 volumes for short_series='stretch', got 12"):
        BrainJepaFeatureExtractor(short_series="stretch", **kwargs)(short[:, :12])
    pad = BrainJepaFeatureExtractor(short_series="pad", **kwargs)(short, return_tensors="np")["fmri_values"][0, 0]
    np.testing.assert_array_equal(pad[:, :10], short[:, ::3])
    np.testing.assert_array_equal(pad[:, 10:], 0.0)
    zpad = BrainJepaFeatureExtractor(short_series="pad", **{**kwargs, "scaling": "zscore"})(short, return_tensors="np")
    valid = zpad["fmri_values"][0, 0, :, :10]
    assert abs(valid.mean()) < 1e-5 and abs(valid.std() - 1) < 1e-4


def test_gradient_is_returned_and_checked():
    gradient = np.random.default_rng(0).standard_normal((R, 5))
    extractor = BrainJepaFeatureExtractor(
        num_rois=R, num_frames=F, sampling_rate=RATE, scaling="none", gradient=gradient
    )
    out = extractor(make_series(2))
    assert out["gradient"].dtype == torch.float32 and tuple(out["gradient"].shape) == (R, 5)
    np.testing.assert_allclose(out["gradient"].numpy(), gradient, rtol=1e-6)
    with pytest.raises(ValueError, match=r"gradient: expected shape \(12, gradient_dim\).*got shape \(11, 5\)"):
        BrainJepaFeatureExtractor(num_rois=R, gradient=gradient[:11])


def test_save_load_and_auto_class_round_trip(tmp_path, fitted):
    extractor, _ = fitted
    extractor.gradient = np.arange(R * 3, dtype=np.float32).reshape(R, 3)
    register_feature_extractor()
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "BrainJepaFeatureExtractor"
    assert saved["auto_map"]["AutoFeatureExtractor"] == "feature_extraction_brain_jepa.BrainJepaFeatureExtractor"
    assert len(saved["robust_median"]) == R and saved["scaling"] == "robust" and saved["sampling_rate"] == RATE
    assert (tmp_path / "feature_extraction_brain_jepa.py").is_file()
    series = make_series(2, seed=9)
    expected = extractor(series)
    for loaded in (
        BrainJepaFeatureExtractor.from_pretrained(tmp_path),
        AutoFeatureExtractor.from_pretrained(tmp_path),
    ):
        assert type(loaded) is BrainJepaFeatureExtractor
        out = loaded(series)
        torch.testing.assert_close(out["fmri_values"], expected["fmri_values"])
        torch.testing.assert_close(out["gradient"], expected["gradient"])


def test_remote_code_loading_without_the_package(tmp_path, fitted):
    extractor, _ = fitted
    register_feature_extractor()
    extractor.save_pretrained(tmp_path / "fe")
    series = make_series(2, seed=10)
    np.save(tmp_path / "series.npy", series)
    np.save(tmp_path / "expected.npy", extractor(series, return_tensors="np")["fmri_values"])
    script = textwrap.dedent(f"""
        import sys
        sys.modules["brain_jepa_hf"] = None  # the package is not importable
        import numpy as np
        from transformers import AutoFeatureExtractor
        fe = AutoFeatureExtractor.from_pretrained({str(tmp_path / "fe")!r}, trust_remote_code=True)
        assert type(fe).__module__.startswith("transformers_modules"), type(fe).__module__
        out = fe(np.load({str(tmp_path / "series.npy")!r}), return_tensors="np")["fmri_values"]
        np.testing.assert_allclose(out, np.load({str(tmp_path / "expected.npy")!r}), rtol=1e-6)
        print("remote ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote ok" in result.stdout


def test_bad_input_raises_clear_errors(fitted):
    extractor, train = fitted
    series = make_series(2, seed=11)
    nan = series.copy()
    nan[1, 3, 7] = np.nan
    with pytest.raises(
        ValueError, match=r"series\[1\]: expected finite values, got NaN or Inf at \(roi, time\) = \(3, 7\)"
    ):
        extractor(nan)
    inf = series.copy()
    inf[0, 2, 50] = np.inf  # outside the centre clip: still rejected
    with pytest.raises(ValueError, match=r"series\[0\]: expected finite values"):
        extractor(inf)
    constant = list(train)
    for s in constant:
        s[4] = 3.0
    with pytest.raises(ValueError, match=r"robust_iqr: expected a positive IQR for every ROI, got 1 ROI\(s\).*\[4\]"):
        BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE).fit(constant)
    with pytest.raises(
        ValueError, match=r"series: expected 12 ROIs along the rows \(time_axis=-1\), got 11 ROIs x 60"
    ):
        extractor(series[:, :11])
    with pytest.raises(
        ValueError, match=r"got 60 ROIs x 12 time points; the other axis has 12 entries: pass time_axis=-2"
    ):
        extractor(series[0].T)
    with pytest.raises(
        ValueError, match=r"robust_median: expected one value per ROI, shape \(10,\), got shape \(12,\)"
    ):
        BrainJepaFeatureExtractor(num_rois=10, robust_median=extractor.robust_median, robust_iqr=extractor.robust_iqr)
    refit = BrainJepaFeatureExtractor.from_dict({**extractor.to_dict(), "robust_median": None, "robust_iqr": None})
    refit.robust_median, refit.robust_iqr = extractor.robust_median[:11], extractor.robust_iqr[:11]  # edited by hand
    with pytest.raises(
        ValueError, match=r"robust_median, robust_iqr: expected one value per ROI \(12\), got shapes \(11,\)"
    ):
        refit(series)
    refit.robust_median, refit.robust_iqr, refit.scaling = None, None, "none"
    refit.gradient = np.zeros((11, 3))
    with pytest.raises(
        ValueError, match=r"gradient: expected shape \(12, gradient_dim\) matching num_rois=12, got shape \(11, 3\)"
    ):
        refit(series)
    with pytest.raises(ValueError, match=r"series\[1\]: expected 12 ROIs .* got 11 ROIs"):
        extractor([series[0], series[1][:11]])
    with pytest.raises(ValueError, match=r"series: expected a rectangular numeric array, got ragged nested lists"):
        extractor([[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match=r"series: expected at least one series, got an empty list"):
        extractor([])
    with pytest.raises(ValueError, match=r"series: expected non-empty series, got shape \(0, 12, 60\)"):
        extractor(np.zeros((0, R, 60)))
    with pytest.raises(ValueError, match=r"series: expected real numbers, got dtype <U"):
        extractor(np.full((R, 60), "a"))
    with pytest.raises(ValueError, match=r"scaling: 'robust' needs per-ROI statistics, got an unfitted extractor"):
        BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE)(series)
    with pytest.raises(ValueError, match=r"expected at least 2 training series to fit robust scaling, got 1"):
        BrainJepaFeatureExtractor(num_rois=R).fit([series[0]])
    with pytest.raises(ValueError, match=r"time_axis: expected 0 or -2 .* got 2"):
        extractor(series, time_axis=2)
    with pytest.raises(ValueError, match=r"tr: got 2.0 but target_tr is None"):
        extractor(series, tr=2.0)
    with pytest.raises(ValueError, match=r"scaling: expected one of \('robust', 'zscore', 'none'\), got 'minmax'"):
        BrainJepaFeatureExtractor(scaling="minmax")
    flat = np.ones((1, R, 60), dtype=np.float32)
    with pytest.raises(ValueError, match=r"series\[0\]: expected a non-constant series for scaling='zscore'"):
        BrainJepaFeatureExtractor(num_rois=R, num_frames=F, sampling_rate=RATE, scaling="zscore")(flat)
