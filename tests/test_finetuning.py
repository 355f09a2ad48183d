"""Fine-tuning with the Trainer: layer decay really applies, a tiny run goes train -> eval -> test and
writes results + a model card, and bad input fails before any training."""

import json

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from scipy.stats import pearsonr
from transformers import AutoModelForSequenceClassification, pipeline

from brain_jepa_hf import BrainJepaForPreTraining, BrainJepaForSequenceClassification
from brain_jepa_hf.downstream_arguments import DataArguments, FinetuningArguments, parse_arguments
from brain_jepa_hf.downstream_data import load_splits
from brain_jepa_hf.example_data import example_gradient, load_example_dataset
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.finetuning import BrainJepaTrainer, layer_decay_parameter_groups, run_finetuning
from brain_jepa_hf.gradients import save_gradient_csv
from brain_jepa_hf.pipelines import CLASSIFICATION_TASK

from helpers import FINETUNE_FAST, make_config, save_pretrained_folder, small_dataset


# ------------------------------------------------------------------------------ layer decay


def test_layer_decay_groups_have_the_expected_per_layer_scales():
    config = make_config(num_hidden_layers=3)
    model = BrainJepaForSequenceClassification(config)
    groups = layer_decay_parameter_groups(model, learning_rate=1e-3, weight_decay=0.05, layer_decay=0.75)
    by_name = {name: group for group in groups for name in group["param_names"]}
    assert sorted(by_name) == sorted(n for n, p in model.named_parameters())  # each parameter exactly once
    L = config.num_hidden_layers
    expected = {
        "brain_jepa.embeddings.patch_embeddings.projection.weight": 0.75 ** (L + 1),
        "brain_jepa.embeddings.position_embeddings.gradient_proj.weight": 0.75 ** (L + 1),
        "brain_jepa.layers.0.attention.qkv.weight": 0.75**L,
        "brain_jepa.layers.1.mlp.fc2.weight": 0.75 ** (L - 1),
        "brain_jepa.layers.2.norm1.weight": 0.75,
        "brain_jepa.layernorm.weight": 1.0,
        "fc_norm.bias": 1.0,
        "classifier.weight": 1.0,
    }
    for name, scale in expected.items():
        assert by_name[name]["lr_scale"] == pytest.approx(scale), name
        assert by_name[name]["lr"] == pytest.approx(1e-3 * scale), name
    assert by_name["classifier.weight"]["weight_decay"] == 0.05
    assert by_name["brain_jepa.layers.0.attention.qkv.weight"]["weight_decay"] == 0.05
    for name in (
        "classifier.bias",
        "fc_norm.weight",
        "brain_jepa.layers.0.norm1.weight",
        "brain_jepa.layers.0.mlp.fc1.bias",
    ):
        assert by_name[name]["weight_decay"] == 0.0, name


def test_trainer_optimizer_and_schedule_keep_the_layer_ratios(tmp_path):
    config = make_config(num_hidden_layers=2)
    model = BrainJepaForSequenceClassification(config)
    args = FinetuningArguments(
        output_dir=str(tmp_path),
        learning_rate=4e-3,
        warmup_steps=2,
        max_steps=10,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
    )
    trainer = BrainJepaTrainer(model=model, args=args, layer_decay=0.5)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    groups = trainer.optimizer.param_groups
    assert type(trainer.optimizer).__name__ == "AdamW"
    scales = {g["layer_id"]: g["lr_scale"] for g in groups}
    assert scales == {0: 0.125, 1: 0.25, 2: 0.5, 3: 1.0}
    for _ in range(5):  # through warmup into the cosine phase
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        top = next(g["lr"] for g in groups if g["layer_id"] == 3)
        assert top > 0
        for group in groups:
            assert group["lr"] == pytest.approx(top * group["lr_scale"], rel=1e-9)


def test_classifier_starts_from_the_target_encoder_of_a_pretraining_folder(tmp_path):
    config = make_config()
    pretrained = save_pretrained_folder(tmp_path / "pre", config)
    model = BrainJepaForSequenceClassification.from_pretrained(tmp_path / "pre", num_labels=2)
    target = pretrained.brain_jepa.state_dict()
    for name, tensor in model.brain_jepa.state_dict().items():
        assert torch.equal(tensor, target[name]), name
    assert not torch.equal(
        model.brain_jepa.layers[0].mlp.fc1.weight, pretrained.context_encoder.layers[0].mlp.fc1.weight
    )


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("example") / "cohort"
    load_example_dataset(num_subjects=24).save_to_disk(str(folder))
    return folder


def test_tiny_finetune_on_example_runs_train_eval_test_and_writes_results(example_folder, tmp_path):
    out = tmp_path / "ft-age"
    gradient = save_gradient_csv(tmp_path / "gradient.csv", example_gradient())
    model_args, data_args, training_args, _ = parse_arguments(
        [
            "--preset",
            "tiny",
            "--num_frames",
            "16",
            "--sampling_rate",
            "4",
            "--dataset",
            str(example_folder),
            "--gradient",
            str(gradient),
            "--label_column",
            "age",
            "--seeds",
            "2",
            "--output_dir",
            str(out),
        ]
        + FINETUNE_FAST
    )
    results = run_finetuning(model_args, data_args, training_args)

    saved = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in saved["per_seed"]] == [42, 43]
    for result in saved["per_seed"]:
        assert {"mse", "mae", "pearson_r", "r2", "normalized_mse"} <= set(result["test"])
        assert {"mse", "pearson_r"} <= set(result["validation"])
    test_mse = [r["test"]["mse"] for r in saved["per_seed"]]
    assert saved["test"]["mse"]["mean"] == pytest.approx(np.mean(test_mse))
    assert saved["test"]["mse"]["std"] == pytest.approx(np.std(test_mse, ddof=1))
    assert saved["task"]["num_samples"] == {"train": 17, "validation": 2, "test": 5}
    table = (out / "results.md").read_text()
    assert "| MSE | rho |" in table and f"{saved['test']['mse']['mean']:.3f}" in table

    # the saved best-validation model reproduces its seed's test metrics, in original units
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    splits = load_splits(DataArguments(dataset=str(example_folder), label_column="age"))
    train_ages = np.asarray(splits["train"]["age"], dtype=np.float64)
    assert model.config.regression_target_mean == pytest.approx(train_ages.mean())
    assert model.config.regression_target_std == pytest.approx(train_ages.std())
    extractor = BrainJepaFeatureExtractor.from_pretrained(out)
    test = splits["test"].with_format("numpy")
    inputs = extractor(test["fmri"], time_axis=-1, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[:, 0].double().numpy()
    predictions = logits * model.config.regression_target_std + model.config.regression_target_mean
    ages = np.asarray(test["age"], dtype=np.float64)
    selected = next(r for r in saved["per_seed"] if r["seed"] == saved["selected_seed"])
    assert np.mean((predictions - ages) ** 2) == pytest.approx(selected["test"]["mse"], rel=1e-4)
    assert pearsonr(predictions, ages).statistic == pytest.approx(selected["test"]["pearson_r"], abs=1e-4)
    # ... and so does its classification pipeline, under the label's name
    predict = pipeline(CLASSIFICATION_TASK, model=str(out), trust_remote_code=True)
    assert predict(test["fmri"][0]) == [{"label": "age", "score": pytest.approx(predictions[0], abs=1e-4)}]

    # model card with model-index of the mean test results
    card = ModelCard.load(out / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results if "standardised" not in r.metric_name}
    assert values["mse"] == pytest.approx(saved["test"]["mse"]["mean"], rel=1e-5)
    assert values["pearsonr"] == pytest.approx(saved["test"]["pearson_r"]["mean"], abs=1e-5)
    assert card.data.eval_results[0].dataset_split == "test"
    assert results["selected_seed"] in (42, 43)
    assert not list(out.glob("seed-*/checkpoint-*"))  # checkpoints cleaned, per-seed metrics kept
    assert (out / "seed-42" / "metrics.json").is_file()


def test_yaml_config_with_command_line_override(tmp_path):
    config = tmp_path / "ft.yaml"
    config.write_text("label_column: sex\nseeds: 3\nlayer_decay: 0.6\nnum_train_epochs: 7\n")
    model_args, data_args, args, _ = parse_arguments(
        ["--config", str(config), "--seeds", "2", "--output_dir", str(tmp_path / "o"), "--model_name_or_path", "x"]
    )
    assert (data_args.label_column, args.seeds, args.layer_decay, args.num_train_epochs) == ("sex", 2, 0.6, 7)
    assert args.learning_rate == pytest.approx(1e-3 * 16 / 256)  # base lr scaled by batch / 256
    assert args.weight_decay == 0.05 and args.lr_scheduler_kwargs == {"min_lr": 1e-6}
    config.write_text("label_colum: sex\n")
    with pytest.raises(ValueError, match=r"config: unknown argument\(s\) \['label_colum'\]"):
        parse_arguments(["--config", str(config), "--output_dir", str(tmp_path / "o")])


# ------------------------------------------------------------------------------ bad input


@pytest.fixture
def pretrained_folder(tmp_path):
    config = make_config(num_rois=23, num_frames=40, patch_size=8)
    save_pretrained_folder(tmp_path / "pre", config)
    return tmp_path / "pre"


def _run(tmp_path, dataset_folder, model_folder, *extra):
    out = tmp_path / "out"
    model_args, data_args, training_args, _ = parse_arguments(
        [
            "--model_name_or_path",
            str(model_folder),
            "--dataset",
            str(dataset_folder),
            "--output_dir",
            str(out),
            "--seeds",
            "1",
            *extra,
        ]
        + FINETUNE_FAST
    )
    try:
        return run_finetuning(model_args, data_args, training_args)
    finally:
        assert not out.exists() or (out / "results.json").exists()  # never a half-written output folder


def test_missing_label_column_fails_before_training(tmp_path, pretrained_folder):
    small_dataset().save_to_disk(str(tmp_path / "data"))
    with pytest.raises(
        ValueError,
        match=r"label_column: expected a column 'height' in the train split, got columns \['subject_id', 'fmri', 'age', 'sex'\]",
    ):
        _run(tmp_path, tmp_path / "data", pretrained_folder, "--label_column", "height")
    assert not (tmp_path / "out").exists()


def test_wrong_label_type_for_problem_type_fails_before_training(tmp_path, pretrained_folder):
    small_dataset().save_to_disk(str(tmp_path / "data"))
    with pytest.raises(
        ValueError,
        match=r"labels: expected integer class ids in column 'age' for problem_type='single_label_classification', got non-integer values",
    ):
        _run(
            tmp_path,
            tmp_path / "data",
            pretrained_folder,
            "--label_column",
            "age",
            "--problem_type",
            "single_label_classification",
        )
    strings = small_dataset().remove_columns("sex").add_column("sex", ["F", "M"] * 10)
    strings.save_to_disk(str(tmp_path / "data2"))
    with pytest.raises(ValueError, match=r"labels: expected numeric values in column 'sex', got dtype <U1"):
        _run(tmp_path, tmp_path / "data2", pretrained_folder, "--label_column", "sex")
    assert not (tmp_path / "out").exists()


def test_checkpoint_roi_or_frame_mismatch_fails_before_training(tmp_path, pretrained_folder):
    small_dataset(num_rois=30).save_to_disk(str(tmp_path / "data"))
    with pytest.raises(
        ValueError, match=r"fmri: the train split has 30 ROIs per series but the checkpoint .* expects num_rois=23"
    ):
        _run(tmp_path, tmp_path / "data", pretrained_folder)
    small_dataset().save_to_disk(str(tmp_path / "data23"))
    other = tmp_path / "fe"
    BrainJepaFeatureExtractor(num_rois=23, num_frames=48, sampling_rate=1, scaling="zscore").save_pretrained(other)
    with pytest.raises(
        ValueError,
        match=r"num_frames: the feature extractor produces 48 frames per sample but the checkpoint .* was built for num_frames=40",
    ):
        _run(tmp_path, tmp_path / "data23", pretrained_folder, "--feature_extractor", str(other))
    with pytest.raises(
        ValueError,
        match=r"fmri: \d+ of \d+ series of the train split have fewer than the 120 volumes the "
        r"feature extractor needs \(sampling_rate=3 x num_frames=40.*--short_series stretch",
    ):
        _run(tmp_path, tmp_path / "data23", pretrained_folder, "--sampling_rate", "3")
    assert not (tmp_path / "out").exists()


def test_empty_split_fails_before_training(tmp_path, pretrained_folder):
    small_dataset(num_subjects=4).save_to_disk(str(tmp_path / "data"))  # 10% of 4 subjects rounds to none
    with pytest.raises(
        ValueError, match=r"validation split: expected at least one sample, got 0; .*train=3, validation=0, test=1"
    ):
        _run(tmp_path, tmp_path / "data", pretrained_folder, "--validation_fraction", "0.1")
    assert not (tmp_path / "out").exists()


def test_model_finetuned_from_a_hub_folder_serves_its_pipelines(tmp_path):
    """A pretrained folder as `brain-jepa pretrain` / `convert` write it (remote code, pipelines) ->
    fine-tune -> the output passes the Hub checks and its classification pipeline loads through
    remote code and returns the model's probabilities."""
    from transformers import pipeline

    from brain_jepa_hf.hub import check_hub_folder, prepare_hub_folder
    from brain_jepa_hf.pipelines import CLASSIFICATION_TASK, FEATURE_EXTRACTION_TASK

    config = make_config()
    pretrained = BrainJepaForPreTraining(config)
    pretrained.set_gradient(
        torch.randn(config.num_rois, config.gradient_dim, generator=torch.Generator().manual_seed(0))
    )
    extractor = BrainJepaFeatureExtractor(
        num_rois=config.num_rois, num_frames=config.num_frames, sampling_rate=1, scaling="zscore"
    )
    prepare_hub_folder(pretrained, tmp_path / "pre", feature_extractor=extractor, converted_from=None)
    assert set(json.loads((tmp_path / "pre" / "config.json").read_text())["custom_pipelines"]) == {
        FEATURE_EXTRACTION_TASK
    }
    small_dataset().save_to_disk(str(tmp_path / "data"))
    out = tmp_path / "ft"
    model_args, data_args, training_args, _ = parse_arguments(
        [
            "--model_name_or_path",
            str(tmp_path / "pre"),
            "--dataset",
            str(tmp_path / "data"),
            "--label_column",
            "sex",
            "--seeds",
            "1",
            "--output_dir",
            str(out),
        ]
        + FINETUNE_FAST
    )
    run_finetuning(model_args, data_args, training_args)

    assert check_hub_folder(out) == out  # every file config.json refers to is there
    saved = json.loads((out / "config.json").read_text())
    assert set(saved["custom_pipelines"]) == {FEATURE_EXTRACTION_TASK, CLASSIFICATION_TASK}
    series = np.random.default_rng(3).standard_normal((config.num_rois, 60)).astype(np.float32)
    classify = pipeline(CLASSIFICATION_TASK, model=str(out), trust_remote_code=True, dtype="float32")
    assert type(classify).__module__.startswith("transformers_modules")
    model = BrainJepaForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(**extractor(series, time_axis=-1, return_tensors="pt")).logits[0], -1)
    ranked = classify(series, time_axis=-1)
    np.testing.assert_allclose(sorted(r["score"] for r in ranked), sorted(probabilities.tolist()), atol=1e-5)


def test_label_names_come_from_the_column_or_its_class_names():
    from datasets import ClassLabel, Dataset

    from brain_jepa_hf.downstream_data import infer_label_info

    ages = Dataset.from_dict({"age": [50.0, 61.5, 70.0]})
    assert infer_label_info({"train": ages}, "age", None).label_names == ("age",)
    named = Dataset.from_dict({"dx": [0, 1, 1]}).cast_column("dx", ClassLabel(names=["control", "patient"]))
    assert infer_label_info({"train": named}, "dx", None).label_names == ("control", "patient")
    plain = Dataset.from_dict({"dx": [0, 1, 1]})
    assert infer_label_info({"train": plain}, "dx", None).label_names is None
