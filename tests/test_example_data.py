"""The synthetic example cohort: layout, determinism, BOLD-like dynamics, learnable planted labels."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifierCV, RidgeCV
from sklearn.model_selection import cross_val_predict

from brain_jepa_hf.example_data import (
    EXAMPLE_NUM_ROIS,
    EXAMPLE_NUM_SUBCORTICAL,
    EXAMPLE_TR,
    example_gradient,
    example_group_connectivity,
    iter_example_subjects,
    load_example_dataset,
)
from brain_jepa_hf.gradients import load_brainspace_group_fc


@pytest.fixture(scope="module")
def cohort():
    dataset = load_example_dataset(num_subjects=160, seed=0)
    return dataset, dataset.with_format("numpy")[:]


def test_columns_shapes_and_types(cohort):
    dataset, arrays = cohort
    assert dataset.column_names == ["subject_id", "fmri", "age", "sex"]
    assert arrays["fmri"].shape == (160, EXAMPLE_NUM_ROIS, 490) and arrays["fmri"].dtype == np.float32
    assert dataset[0]["subject_id"] == "sub-00000" and len(set(dataset["subject_id"])) == 160
    assert set(np.unique(arrays["sex"])) == {0, 1}
    assert 45 <= arrays["age"].min() and arrays["age"].max() <= 80 and arrays["age"].std() > 5


def test_deterministic_and_each_subject_depends_only_on_seed_and_index(cohort):
    _, arrays = cohort
    again = load_example_dataset(num_subjects=3, seed=0).with_format("numpy")[:]
    np.testing.assert_array_equal(again["fmri"], arrays["fmri"][:3])
    shifted = next(iter_example_subjects(num_subjects=1, seed=0, start=5))
    np.testing.assert_array_equal(shifted["fmri"], arrays["fmri"][5])
    other_seed = load_example_dataset(num_subjects=1, seed=1).with_format("numpy")[:]
    assert not np.allclose(other_seed["fmri"][0], arrays["fmri"][0])


def test_connectivity_follows_real_group_fc_with_subcortical_rois_first(cohort):
    _, arrays = cohort
    group = example_group_connectivity()
    cortex = slice(EXAMPLE_NUM_SUBCORTICAL, None)
    np.testing.assert_allclose(group[cortex, cortex], load_brainspace_group_fc("main"), atol=1e-12)
    assert np.linalg.eigvalsh(group).min() > 0
    mean_fc = np.mean([np.corrcoef(x) for x in arrays["fmri"][:20]], axis=0)
    upper = np.triu_indices(EXAMPLE_NUM_ROIS, 1)
    assert np.corrcoef(mean_fc[upper], group[upper])[0, 1] > 0.9


def test_bold_like_slow_autocorrelation_at_stated_tr(cohort):
    _, arrays = cohort
    x = arrays["fmri"][:10].astype(np.float64)
    x = x - x.mean(axis=2, keepdims=True)
    lag1 = ((x[..., 1:] * x[..., :-1]).sum(-1) / (x * x).sum(-1)).mean()
    assert 0.6 < lag1 < 0.9, lag1
    power = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).mean(axis=(0, 1))
    freqs = np.fft.rfftfreq(x.shape[-1], d=EXAMPLE_TR)
    assert power[(freqs > 0) & (freqs < 0.15)].mean() > 10 * power[freqs > 0.4].mean()
    assert 300 < arrays["fmri"].mean() < 1300  # raw BOLD-like intensities, per-ROI baselines


def test_planted_labels_are_predictable_from_connectivity(cohort):
    _, arrays = cohort
    upper = np.triu_indices(EXAMPLE_NUM_ROIS, 1)
    z = arrays["fmri"] - arrays["fmri"].mean(axis=2, keepdims=True)
    z /= np.linalg.norm(z, axis=2, keepdims=True)
    features = np.stack([np.arctanh(np.clip((x @ x.T)[upper], -0.999, 0.999)) for x in z])  # Fisher-z FC
    age, sex = arrays["age"], arrays["sex"]
    predicted_age = cross_val_predict(RidgeCV(alphas=np.logspace(1, 5, 5)), features, age, cv=5)
    predicted_sex = cross_val_predict(RidgeClassifierCV(alphas=np.logspace(1, 5, 5)), features, sex, cv=5)
    age_r = np.corrcoef(predicted_age, age)[0, 1]
    sex_accuracy = (predicted_sex == sex).mean()
    print(f"FC ridge, 5-fold CV on 160 subjects: age r = {age_r:.3f}, sex accuracy = {sex_accuracy:.3f}")
    assert age_r > 0.6 and sex_accuracy > 0.75  # chance: r ~ 0, accuracy ~ 0.5
    # the same pipeline cannot predict shuffled labels: the score comes from the planted effect
    shuffled = np.random.default_rng(0).permutation(age)
    shuffled_r = np.corrcoef(
        cross_val_predict(RidgeCV(alphas=np.logspace(1, 5, 5)), features, shuffled, cv=5), shuffled
    )[0, 1]
    assert shuffled_r < 0.3


def test_example_gradient_is_deterministic_brainspace_gradients():
    gradient = example_gradient()
    assert gradient.shape == (EXAMPLE_NUM_ROIS, 30) and gradient.dtype == np.float32
    assert np.isfinite(gradient).all() and gradient.std(axis=0).min() > 0
    np.testing.assert_array_equal(gradient, example_gradient())
    gradient[:] = 0  # callers get a copy
    assert example_gradient().std() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"num_subjects: expected a positive integer, got 0"):
        load_example_dataset(num_subjects=0)
    with pytest.raises(ValueError, match=r"num_timepoints: expected an integer >= 3, got 2"):
        load_example_dataset(num_subjects=1, num_timepoints=2)
