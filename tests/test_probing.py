"""Linear probing: the frozen-encoder BatchNorm + Linear probe trains only its head; the scikit-learn
fast path equals a direct scikit-learn fit and recovers a planted signal."""

import inspect
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brain_jepa_hf import BrainJepaModel
from brain_jepa_hf.downstream_arguments import DataArguments, parse_arguments
from brain_jepa_hf.finetuning import run_finetuning
from brain_jepa_hf.probing import (
    BrainJepaLinearProbe,
    fit_sklearn_probe,
    run_sklearn_probe,
)

from helpers import FINETUNE_FAST, make_config, save_pretrained_folder, small_dataset


# A plain L2 model without scikit-learn >= 1.8's FutureWarnings (these options do not exist before).
PLAIN_L2 = (
    {"l1_ratios": (0.0,), "use_legacy_attributes": False}
    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters
    else {}
)


def test_probe_head_is_batchnorm_without_affine_and_encoder_stays_frozen():
    encoder = BrainJepaModel(make_config(drop_path_rate=0.5))
    probe = BrainJepaLinearProbe(encoder, num_labels=3, problem_type="single_label_classification").train()
    assert not probe.norm.affine and probe.norm.training
    assert not probe.base_model.training  # no drop path in the features
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]


def test_probe_weights_saved_under_the_old_encoder_name_still_load():
    """Probes saved before the encoder took the base model's name (`brain_jepa`) stored it as `encoder.*`."""
    config = make_config()
    saved = BrainJepaLinearProbe(BrainJepaModel(config), num_labels=2, problem_type="single_label_classification")
    old_names = {key.replace("brain_jepa.", "encoder.", 1): value for key, value in saved.state_dict().items()}
    assert any(key.startswith("encoder.") for key in old_names)
    probe = BrainJepaLinearProbe(BrainJepaModel(config), num_labels=2, problem_type="single_label_classification")
    probe.load_state_dict(old_names)
    torch.testing.assert_close(probe.state_dict(), saved.state_dict())


def test_torch_probe_trains_only_the_head(tmp_path):
    config = make_config(num_rois=23, num_frames=40, patch_size=8)
    pretrained = save_pretrained_folder(tmp_path / "pre", config)
    small_dataset().save_to_disk(str(tmp_path / "data"))
    out = tmp_path / "probe"
    model_args, data_args, training_args, _ = parse_arguments(
        [
            "--model_name_or_path",
            str(tmp_path / "pre"),
            "--dataset",
            str(tmp_path / "data"),
            "--label_column",
            "sex",
            "--mode",
            "linear_probe",
            "--probe_optimizer",
            "lars",
            "--seeds",
            "1",
            "--weight_decay",
            "0",
            "--learning_rate",
            "0.05",
            "--output_dir",
            str(out),
        ]
        + FINETUNE_FAST
    )
    results = run_finetuning(model_args, data_args, training_args)
    assert {"accuracy", "f1", "balanced_accuracy", "auroc"} <= set(results["test"])
    assert results["training"]["optimizer"] == "lars"  # the original's probe optimizer, on request
    from safetensors.torch import load_file

    state = load_file(out / "model.safetensors")
    for name, tensor in pretrained.brain_jepa.state_dict().items():
        if name in ("embeddings.gradient",):
            continue
        assert torch.equal(state[f"brain_jepa.{name}"], tensor), name  # frozen encoder unchanged
    assert state["classifier.weight"].abs().max() > 0  # the head was trained and saved
    assert "norm.running_mean" in state and state["norm.running_mean"].abs().sum() > 0
    assert json.loads((out / "probe_config.json").read_text())["probe"] == "BatchNorm1d(affine=False) + Linear"


def test_sklearn_probe_equals_a_direct_scikit_learn_fit():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(80, 10))
    labels = (features[:, 0] + 0.3 * rng.normal(size=80) > 0).astype(np.int64)
    logits, chosen = fit_sklearn_probe(
        features[:60], labels[:60], features[60:], "single_label_classification", cv=4, seed=3
    )
    direct = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.logspace(-4, 2, 13),
            cv=StratifiedKFold(4, shuffle=True, random_state=3),
            scoring="neg_log_loss",
            max_iter=5000,
            **PLAIN_L2,
        ),
    ).fit(features[:60], labels[:60])
    assert np.allclose(np.exp(logits), direct.predict_proba(features[60:]), atol=1e-9)
    assert np.mean(logits.argmax(1) == labels[60:]) >= 0.75  # well above chance (0.5)
    targets = features @ rng.normal(size=10)
    predictions, chosen = fit_sklearn_probe(features[:60], targets[:60], features[60:], "regression", cv=4, seed=3)
    ridge = make_pipeline(
        StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 15), cv=KFold(4, shuffle=True, random_state=3))
    )
    assert np.allclose(predictions, ridge.fit(features[:60], targets[:60]).predict(features[60:]))
    assert chosen["alpha"] == pytest.approx(ridge[-1].alpha_)


def test_sklearn_probe_end_to_end_recovers_a_planted_label(tmp_path):
    config = make_config(num_rois=23, num_frames=40, patch_size=8)
    save_pretrained_folder(tmp_path / "pre", config)
    rng = np.random.default_rng(1)
    data = small_dataset(num_subjects=60, seed=1)
    # plant sex as the amplitude of ROI 0-4 (z-scoring is global, so amplitude differences survive)
    fmri = np.asarray(data.with_format("numpy")["fmri"])
    sex = np.asarray(data["sex"])
    fmri[:, :5] *= (1 + 2.5 * sex)[:, None, None]
    from brain_jepa_hf.arrow_data import dataset_from_arrays

    dataset_from_arrays(list(data["subject_id"]), fmri, {"age": rng.uniform(45, 80, 60), "sex": sex}).save_to_disk(
        str(tmp_path / "data")
    )
    data_args = DataArguments(dataset=str(tmp_path / "data"), label_column="sex")
    results = run_sklearn_probe(
        tmp_path / "pre", data_args, output_dir=str(tmp_path / "out"), seeds=3, cv=3, progress=False
    )
    assert len(results["per_seed"]) == 3
    assert results["test"]["accuracy"]["mean"] > 0.75
    assert "ACC (%)" in (tmp_path / "out" / "results.md").read_text()
    with pytest.raises(ValueError, match="seeds: expected a positive integer, got 0"):
        run_sklearn_probe(tmp_path / "pre", data_args, seeds=0)
