"""Brain-JEPA pipelines: saved as custom pipelines, loaded with trust_remote_code from a folder, run on
arrays and on .npy/.csv files; classification heads; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import pipeline

from brain_jepa_hf import BrainJepaForSequenceClassification, BrainJepaModel
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.hub import prepare_hub_folder
from brain_jepa_hf.pipelines import (
    CLASSIFICATION_TASK,
    FEATURE_EXTRACTION_TASK,
    register_pipelines,
)

from helpers import make_config


LABELS = {0: "control", 1: "mci", 2: "dementia"}


def _feature_extractor(config, gradient):
    return BrainJepaFeatureExtractor(
        num_rois=config.num_rois,
        num_frames=config.num_frames,
        sampling_rate=3,
        scaling="zscore",
        gradient=gradient.numpy(),
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    config = make_config()
    gradient = torch.randn(config.num_rois, config.gradient_dim, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    encoder = BrainJepaModel(config).eval()
    encoder.set_gradient(gradient)
    classifier = BrainJepaForSequenceClassification(make_config(num_labels=3, id2label=LABELS)).eval()
    with torch.no_grad():
        classifier.classifier.weight.normal_(0, 0.5)  # a head that separates classes, unlike its 2e-5 init
    classifier.set_gradient(gradient)
    root = tmp_path_factory.mktemp("pipelines")
    fe = _feature_extractor(config, gradient)
    return {
        "encoder": (
            prepare_hub_folder(encoder, root / "encoder", feature_extractor=fe, converted_from=None),
            encoder,
            fe,
        ),
        "classifier": (
            prepare_hub_folder(classifier, root / "classifier", feature_extractor=fe, converted_from=None),
            classifier,
            fe,
        ),
        "bare": (prepare_hub_folder(encoder, root / "bare", converted_from=None), encoder, None),
    }


@pytest.fixture(scope="module")
def series():
    return np.random.default_rng(7).standard_normal((130, 23)).astype(np.float32)  # (time, ROI)


def expected_embedding(model, fe, series):
    with torch.no_grad():
        return model(**fe(series, time_axis=0, return_tensors="pt")).pooler_output[0].numpy()


def test_feature_extraction_pipeline_on_arrays_and_files(folders, series, tmp_path):
    folder, model, fe = folders["encoder"]
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder), trust_remote_code=True, dtype="float32")
    assert type(embedder).__module__.startswith("transformers_modules"), "pipeline code did not come from the folder"
    expected = expected_embedding(model, fe, series)
    np.testing.assert_allclose(embedder(series, time_axis=0), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(embedder(torch.from_numpy(series.T)), expected, atol=1e-5, rtol=0)  # (ROI, time)
    np.save(tmp_path / "sub-01.npy", series)
    header = ",".join(f"roi_{i}" for i in range(series.shape[1]))
    np.savetxt(tmp_path / "sub-01.csv", series, delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "sub-01.tsv", series.T, delimiter="\t")
    from_files = embedder([str(tmp_path / "sub-01.npy"), str(tmp_path / "sub-01.csv")], time_axis=0)
    assert len(from_files) == 2
    for vector in from_files:
        np.testing.assert_allclose(vector, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(embedder(tmp_path / "sub-01.tsv", time_axis=1), expected, atol=1e-5, rtol=0)
    tokens = embedder(series, time_axis=0, pooling="none", return_tensors=True)
    assert isinstance(tokens, torch.Tensor) and tokens.shape == (model.config.num_patches, model.config.hidden_size)
    np.testing.assert_allclose(tokens.mean(0).numpy(), expected, atol=1e-5, rtol=0)


def test_classification_pipeline_returns_labelled_probabilities(folders, series):
    folder, model, fe = folders["classifier"]
    classify = pipeline(CLASSIFICATION_TASK, model=str(folder), trust_remote_code=True, dtype="float32")
    with torch.no_grad():
        probabilities = torch.softmax(model(**fe(series, time_axis=0, return_tensors="pt")).logits[0], -1).numpy()
    ranked = classify(series, time_axis=0)
    assert [r["label"] for r in ranked] == [LABELS[i] for i in np.argsort(-probabilities)]
    np.testing.assert_allclose([r["score"] for r in ranked], np.sort(probabilities)[::-1], atol=1e-5)
    assert classify(series, time_axis=0, top_k=1) == ranked[:1]
    # The same folder also serves embeddings: AutoModel loads the encoder under the head.
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder), trust_remote_code=True, dtype="float32")
    np.testing.assert_allclose(
        embedder(series, time_axis=0), expected_embedding(model.brain_jepa, fe, series), atol=1e-5, rtol=0
    )


def test_regression_head_predicts_in_original_units_under_the_label_name(folders, series, tmp_path):
    _, _, fe = folders["encoder"]
    config = make_config(num_labels=1, problem_type="regression", id2label={0: "age"})
    config.regression_target_mean, config.regression_target_std = 62.5, 9.25  # as fine-tuning stores them
    torch.manual_seed(3)
    regressor = BrainJepaForSequenceClassification(config).eval()
    folder = prepare_hub_folder(regressor, tmp_path / "regressor", feature_extractor=fe, converted_from=None)
    predict = pipeline(CLASSIFICATION_TASK, model=str(folder), trust_remote_code=True)
    with torch.no_grad():
        standardised = regressor(**fe(series, time_axis=0, return_tensors="pt")).logits[0, 0].item()
    [prediction] = predict(series, time_axis=0)
    assert prediction["label"] == "age"
    assert prediction["score"] == pytest.approx(standardised * 9.25 + 62.5, abs=1e-4)
    assert abs(prediction["score"] - standardised) > 1  # not the standardised value


def test_tr_reaches_the_feature_extractor_or_is_refused(folders, series, tmp_path):
    folder, model, _ = folders["encoder"]
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"tr: got 2.0 but target_tr is None"):
        embedder(series, time_axis=0, tr=2.0)
    resampling = BrainJepaFeatureExtractor(
        num_rois=23,
        num_frames=40,
        sampling_rate=1,
        scaling="zscore",
        gradient=model.embeddings.gradient.numpy(),
        target_tr=1.0,
    )
    register_pipelines()
    embed_resampled = pipeline(FEATURE_EXTRACTION_TASK, model=model, feature_extractor=resampling)
    with torch.no_grad():
        expected = model(**resampling(series, time_axis=0, tr=0.5, return_tensors="pt")).pooler_output[0].numpy()
    np.testing.assert_allclose(embed_resampled(series, time_axis=0, tr=0.5), expected, atol=1e-5, rtol=0)
    bare = pipeline(FEATURE_EXTRACTION_TASK, model=str(folders["bare"][0]), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"tr: got 2.0 but the model has no feature extractor"):
        bare(series[:40].T.copy(), tr=2.0)


def test_registered_pipeline_runs_in_process_without_remote_code(folders, series):
    _, model, fe = folders["encoder"]
    register_pipelines()
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=model, feature_extractor=fe, dtype="float32")
    np.testing.assert_allclose(embedder(series, time_axis=0), expected_embedding(model, fe, series), atol=1e-5, rtol=0)


def test_folder_without_feature_extractor_takes_exact_shapes_only(folders, series):
    folder, model, _ = folders["bare"]
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder), trust_remote_code=True, dtype="float32")
    exact = series[:40].T.copy()  # (ROI, time) with time == num_frames
    with torch.no_grad():
        expected = model(torch.from_numpy(exact)[None, None]).pooler_output[0].numpy()
    np.testing.assert_allclose(embedder(exact), expected, atol=1e-5, rtol=0)
    with pytest.raises(
        ValueError,
        match=r"inputs: without a feature extractor the series must already be "
        r"\(ROI, time\) = \(23, 40\), got \(23, 130\)",
    ):
        embedder(series, time_axis=0)


def test_bad_inputs_raise_clear_errors(folders, series, tmp_path):
    folder, *_ = folders["encoder"]
    embedder = pipeline(FEATURE_EXTRACTION_TASK, model=str(folder), trust_remote_code=True, dtype="float32")
    (tmp_path / "words.csv").write_text("a,b\nc,d\ne,f\n")
    with pytest.raises(ValueError, match=r"inputs: .*words.csv is not a numeric table"):
        embedder(str(tmp_path / "words.csv"))
    with pytest.raises(FileNotFoundError, match=r"inputs: .*absent.npy does not exist"):
        embedder(str(tmp_path / "absent.npy"))
    (tmp_path / "scan.nii").write_bytes(b"\0" * 8)
    with pytest.raises(ValueError, match=r"inputs: expected a file ending in one of .* got 'scan.nii'"):
        embedder(str(tmp_path / "scan.nii"))
    with pytest.raises(ValueError, match=r"inputs: expected one 2-D series .* got shape \(2, 130, 23\)"):
        embedder(np.stack([series, series]))
    with pytest.raises(ValueError, match=r"23"):  # the feature extractor names the expected ROI count
        embedder(series[:, :20], time_axis=0)
    with pytest.raises(ValueError, match=r"pooling: expected 'mean' or 'none', got 'max'"):
        embedder(series, time_axis=0, pooling="max")
    with pytest.raises(ValueError, match=r"time_axis: expected 0/-2 \(time x ROI\) or 1/-1 \(ROI x time\), got 2"):
        embedder(series, time_axis=2)
