"""Bad input of every kind fails loudly: one parametrized case per kind, each checking that the message
names the argument and says what to change (issue 13: no silent wrong results)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSequenceClassification, pipeline

from brain_jepa_hf import (
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)
from brain_jepa_hf.downstream_arguments import parse_arguments
from brain_jepa_hf.embedding import embed
from brain_jepa_hf.finetuning import run_finetuning
from brain_jepa_hf.pipelines import FEATURE_EXTRACTION_TASK, register_pipelines
from brain_jepa_hf.probing import run_sklearn_probe

from helpers import make_config, save_pretrained_folder, small_dataset


# ------------------------------------------------------------------------------ model folders


def _rename_a_layer(state: dict) -> dict:
    return {key.replace("brain_jepa.layers.1.", "brain_jepa.layer.1."): value for key, value in state.items()}


def _drop_a_layer(state: dict) -> dict:
    return {key: value for key, value in state.items() if not key.startswith("brain_jepa.layers.1.")}


def _add_a_layer(state: dict) -> dict:
    extra = {
        key.replace("layers.1.", "layers.2."): value.clone()
        for key, value in state.items()
        if key.startswith("brain_jepa.layers.1.")
    }
    return {**state, **extra}


FOLDER_DAMAGE = {
    "renamed keys": (_rename_a_layer, r"missing \(.*layers\.1\..*unexpected \(.*layer\.1\."),
    "missing layer": (_drop_a_layer, r"12 missing \(.*layers\.1\."),
    "extra layer": (_add_a_layer, r"12 unexpected \(.*layers\.2\."),
}


def _embed(folder: Path, tmp_path: Path):
    embed(folder, small_dataset(num_subjects=4), tmp_path / "emb.npy", progress=False)


def _finetune(folder: Path, tmp_path: Path, mode: str = "finetune"):
    small_dataset().save_to_disk(str(tmp_path / "data"))
    args = parse_arguments(
        [
            "--model_name_or_path",
            str(folder),
            "--dataset",
            str(tmp_path / "data"),
            "--output_dir",
            str(tmp_path / "out"),
            "--label_column",
            "age",
            "--mode",
            mode,
            "--max_steps",
            "1",
            "--use_cpu",
        ]
    )
    run_finetuning(*args[:3])


def _sklearn_probe(folder: Path, tmp_path: Path):
    small_dataset().save_to_disk(str(tmp_path / "data"))
    _, data_args, _, _ = parse_arguments(
        [
            "--model_name_or_path",
            str(folder),
            "--dataset",
            str(tmp_path / "data"),
            "--output_dir",
            str(tmp_path / "out"),
            "--label_column",
            "age",
        ]
    )
    run_sklearn_probe(folder, data_args, progress=False)


def _pipeline(folder: Path, tmp_path: Path):
    register_pipelines()
    pipeline(FEATURE_EXTRACTION_TASK, model=str(folder))


LOADERS = {
    "BrainJepaModel.from_pretrained": lambda folder, _: BrainJepaModel.from_pretrained(folder),
    "BrainJepaForPreTraining.from_pretrained": lambda folder, _: BrainJepaForPreTraining.from_pretrained(folder),
    "BrainJepaForSequenceClassification.from_pretrained": lambda folder, _: (
        BrainJepaForSequenceClassification.from_pretrained(folder)
    ),
    "AutoModel (remote code)": lambda folder, _: AutoModel.from_pretrained(folder, trust_remote_code=True),
    "AutoModelForSequenceClassification": lambda folder, _: AutoModelForSequenceClassification.from_pretrained(folder),
    "embed": _embed,
    "finetune": _finetune,
    "finetune --mode linear_probe": lambda folder, tmp_path: _finetune(folder, tmp_path, "linear_probe"),
    "probe (scikit-learn)": _sklearn_probe,
    "pipeline": _pipeline,
}


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    save_pretrained_folder(folder, make_config(num_rois=23, num_frames=40, patch_size=8))
    return folder


@pytest.mark.parametrize("damage", FOLDER_DAMAGE)
@pytest.mark.parametrize("loader", LOADERS)
def test_damaged_weights_file_is_refused_by_every_loader(tmp_path, pretraining_folder, damage, loader):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in pretraining_folder.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    change, keys = FOLDER_DAMAGE[damage]
    weights = folder / "model.safetensors"
    save_file(change(load_file(weights)), weights, metadata={"format": "pt"})
    with pytest.raises(
        ValueError, match=r"pretrained_model_name_or_path: expected the weights of a BrainJepa"
    ) as error:
        LOADERS[loader](folder, tmp_path)
    assert "re-save or re-convert" in str(error.value)
    assert re.search(keys, str(error.value)), str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "emb.npy").exists()


def test_fresh_head_is_the_only_part_allowed_to_be_missing(tmp_path, pretraining_folder):
    classifier = BrainJepaForSequenceClassification.from_pretrained(pretraining_folder, num_labels=2)
    encoder = BrainJepaModel.from_pretrained(pretraining_folder)
    torch.testing.assert_close(classifier.brain_jepa.state_dict(), encoder.state_dict())
    classifier.save_pretrained(tmp_path)
    # A classification folder also gives its encoder, with no complaint about its head.
    torch.testing.assert_close(BrainJepaModel.from_pretrained(tmp_path).state_dict(), encoder.state_dict())
    _, info = BrainJepaForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert any(key.startswith("predictor.") for key in info["missing_keys"])  # reported, caller decides


# ------------------------------------------------------------------------------ values beyond the dtype's range


def _tiny_model(dtype=torch.float32):
    torch.manual_seed(0)
    return BrainJepaModel(make_config()).to(dtype).eval()


def _series(value, dtype=torch.float64, config=None):
    config = config or make_config()
    fmri = torch.randn(2, 1, config.num_rois, config.num_frames, dtype=dtype)
    fmri[1, 0, 3, 5] = value
    gradient = torch.randn(config.num_rois, config.gradient_dim)
    return fmri, gradient


def _float64_input_beyond_float32():
    fmri, gradient = _series(1e39)
    _tiny_model()(fmri, gradient=gradient)


def _float64_gradient_beyond_float32():
    fmri, gradient = _series(0.0, torch.float32)
    gradient = gradient.double()
    gradient[2, 1] = -1e39
    _tiny_model()(fmri, gradient=gradient)


def _float32_input_beyond_half():
    fmri, gradient = _series(7e4, torch.float32)
    _tiny_model(torch.float16)(fmri, gradient=gradient)


def _half_activations_overflow():
    fmri, gradient = _series(6e4, torch.float16)
    fmri[1] = 6e4
    model = _tiny_model(torch.float16)
    with torch.no_grad():  # every value is representable in float16, the patch embedding's sums are not
        model.embeddings.patch_embeddings.projection.weight.fill_(1.0)
    model(fmri, gradient=gradient)


def _pretraining_input_beyond_float32():
    from helpers import disjoint_indices

    config = make_config()
    fmri, gradient = _series(1e39, config=config)
    context, targets = disjoint_indices(2, config.num_patches, 10, 5)
    BrainJepaForPreTraining(config).eval()(fmri, context, targets, gradient=gradient)


def _feature_extractor_beyond_float32():
    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    series = np.random.default_rng(0).standard_normal((2, 23, 60))
    series[1, 4, 30] = 1e39  # inside the centre clip
    BrainJepaFeatureExtractor(num_rois=23, num_frames=40, sampling_rate=1, scaling="zscore")(series)


OVERFLOWS = {
    "float64 input > float32 max": (
        _float64_input_beyond_float32,
        r"fmri_values: expected values within the range of the model's dtype torch.float32 .*got \|x\| up to 1e\+39; rescale",
    ),
    "float64 gradient > float32 max": (
        _float64_gradient_beyond_float32,
        r"gradient: expected values within the range of the model's dtype torch.float32 .*1e\+39; rescale",
    ),
    "input > float16 max into a half model": (
        _float32_input_beyond_half,
        r"fmri_values: expected values within the range of the model's dtype torch.float16 \(\|x\| <= 6.55e\+04\), got \|x\| up to 7e\+04; rescale",
    ),
    "half activations overflow": (
        _half_activations_overflow,
        r"fmri_values: finite inputs gave non-finite outputs: the model's torch.float16 activations overflowed .*rescale",
    ),
    "pretraining input > float32 max": (
        _pretraining_input_beyond_float32,
        r"fmri_values: expected values within the range .*float32",
    ),
    "feature extractor input > float32 max": (
        _feature_extractor_beyond_float32,
        r"series\[1\]: expected values that stay finite in float32 once scaled, got \|x\| up to 1e\+39 \(overflow\); rescale",
    ),
}


@pytest.mark.parametrize("case", OVERFLOWS)
def test_values_beyond_the_weights_dtype_are_refused(case):
    run, message = OVERFLOWS[case]
    with pytest.raises(ValueError, match=message):
        run()


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
@pytest.mark.parametrize("value", ["1e39", "inf", "nan"])
def test_build_dataset_refuses_values_float32_cannot_hold(tmp_path, capsys, suffix, value):
    from brain_jepa_cli import main

    series = np.random.default_rng(0).standard_normal((23, 60))
    series[5, 9] = float(value)
    (tmp_path / "in").mkdir()
    for subject in ("sub-01", "sub-02"):
        path = tmp_path / "in" / f"{subject}{suffix}"
        np.save(path, series) if suffix == ".npy" else np.savetxt(path, series, delimiter=",")
    assert main(["build-dataset", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]) != 0
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "row 5, column 9" in error, error
    expected = "expected values within float32 range" if value == "1e39" else "expected finite values, got NaN or Inf"
    assert expected in error and "sub-0" in error, error
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ convert


def _nan_in(part: str, key: str, value: float):
    def change(checkpoint):
        checkpoint[part][key] = checkpoint[part][key].clone()
        checkpoint[part][key].view(-1)[3] = value

    return change


CONVERSIONS = {
    "non-paper width without heads": (
        lambda checkpoint: None,
        {"num_attention_heads": None},
        r"num_attention_heads: required for hidden_size=64, depth=2, not a paper size "
        r"\(vit-small 384x12, vit-base 768x12, vit-large 1024x24\).*pass num_attention_heads "
        r"\(--num-attention-heads\)",
    ),
    "NaN encoder weight": (
        _nan_in("target_encoder", "module.blocks.1.mlp.fc1.weight", float("nan")),
        {},
        r"checkpoint: expected finite weights, got NaN/Inf in 1 tensor\(s\) "
        r"\(target_encoder:blocks.1.mlp.fc1.weight\).*convert an earlier checkpoint",
    ),
    "Inf predictor weight": (
        _nan_in("predictor", "module.predictor_embed.weight", float("inf")),
        {"with_predictor": True},
        r"checkpoint: expected finite weights, got NaN/Inf in 1 tensor\(s\) "
        r"\(predictor:predictor_embed.weight\)",
    ),
}


@pytest.mark.parametrize("case", CONVERSIONS)
def test_convert_refuses_guessing_and_non_finite_weights(tmp_path, pretrained, original_files, case):
    from brain_jepa_hf.conversion import convert_original_checkpoint

    from original_layout import original_checkpoint

    change, kwargs, message = CONVERSIONS[case]
    checkpoint = original_checkpoint(pretrained[0])
    change(checkpoint)
    torch.save(checkpoint, tmp_path / "edited.pth.tar")
    with pytest.raises(ValueError, match=message):
        convert_original_checkpoint(
            tmp_path / "edited.pth.tar", original_files[1], tmp_path / "out", **{"num_attention_heads": 4, **kwargs}
        )
    assert not (tmp_path / "out").exists()


def test_cli_convert_without_heads_prints_one_line(original_files, tmp_path, capsys):
    from brain_jepa_cli import main

    checkpoint, gradient_csv = original_files
    assert (
        main(["convert", str(checkpoint), "--gradient-csv", str(gradient_csv), "--output-dir", str(tmp_path / "o")])
        == 1
    )
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert error.startswith("brain-jepa convert: error: num_attention_heads:") and "--num-attention-heads" in error, (
        error
    )


# ------------------------------------------------------------------------------ config and arguments

CONFIGS = {
    "layer_norm_eps 0": ({"layer_norm_eps": 0.0}, r"layer_norm_eps: expected a positive number, got 0.0"),
    "layer_norm_eps < 0": ({"layer_norm_eps": -1e-6}, r"layer_norm_eps: expected a positive number, got -1e-06"),
    "layer_norm_eps NaN": ({"layer_norm_eps": float("nan")}, r"layer_norm_eps: expected a finite number, got nan"),
    "mlp_ratio as text": ({"mlp_ratio": "4"}, r"mlp_ratio: expected a finite number, got '4' \(str\)"),
    "mlp_ratio 0": ({"mlp_ratio": 0}, r"mlp_ratio: expected a positive number, got 0"),
    "mlp_ratio < 1 unit": (
        {"mlp_ratio": 0.01},
        r"mlp_ratio: expected at least 0.03125 so that the MLP of the 32-wide "
        r"blocks has a hidden unit, got 0.01 \(MLP width 0\)",
    ),
    "hidden_act unknown": (
        {"hidden_act": "nope"},
        r"hidden_act: expected a transformers activation name such as 'gelu'.*got 'nope'",
    ),
    "dropout as text": (
        {"hidden_dropout_prob": "0.1"},
        r"hidden_dropout_prob: expected a finite number, got '0.1' \(str\)",
    ),
    "drop_path_rate 1": ({"drop_path_rate": 1.0}, r"drop_path_rate: expected a probability in \[0, 1\), got 1.0"),
    "initializer_range 0": ({"initializer_range": 0}, r"initializer_range: expected a positive number, got 0"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_config_refuses_values_it_would_misuse(case):
    from brain_jepa_hf import BrainJepaConfig

    overrides, message = CONFIGS[case]
    with pytest.raises(ValueError, match=message):
        BrainJepaConfig.from_preset("tiny", **overrides)


LABELS = {
    "labels as a list": (
        3,
        None,
        [0, 1, 2],
        r"labels: expected a torch.Tensor, got list; pass torch.tensor\(labels\)",
    ),
    "no head (num_labels=0)": (
        0,
        None,
        torch.tensor([0, 1, 0]),
        r"labels: the model has no task head \(num_labels=0\).*set num_labels",
    ),
    "fractional class ids": (
        3,
        None,
        torch.tensor([0.5, 1.0, 2.0]),
        r"labels: expected shape \(3, 3\) of 0/1 targets, got \(3,\) \(floating-point labels with "
        r"num_labels=3 are taken as multi-label; for class ids pass integer labels",
    ),
    "multi-label targets not 0/1": (
        2,
        "multi_label_classification",
        torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]]),
        r"labels: expected 0/1 targets for multi-label classification, got values such as 2",
    ),
    "regression target NaN": (
        1,
        None,
        torch.tensor([1.0, float("nan"), 2.0]),
        r"labels: expected finite values, got 1 NaN/Inf",
    ),
}


@pytest.mark.parametrize("case", LABELS)
def test_classifier_labels_are_checked(case):
    num_labels, problem_type, labels, message = LABELS[case]
    config = make_config(num_labels=num_labels, problem_type=problem_type)
    model = BrainJepaForSequenceClassification(config).eval()
    fmri = torch.randn(3, 1, config.num_rois, config.num_frames)
    with pytest.raises(ValueError, match=message):
        model(fmri, gradient=torch.randn(config.num_rois, config.gradient_dim), labels=labels)


def _pretraining_args(**changes):
    from brain_jepa_hf.pretraining_arguments import PretrainingArguments

    args = PretrainingArguments(output_dir="unused", model_preset="tiny", **changes)
    args.validate()
    args.model_config(num_rois=23)


def _finetuning_args(*extra):
    parse_arguments(["--model_name_or_path", "m", "--dataset", "d", "--output_dir", "o", *extra])


ARGUMENTS = {
    "model_overrides typo": (
        lambda: _pretraining_args(model_overrides='{"hiden_size": 128}'),
        r"model_overrides: expected BrainJepaConfig fields, got unknown key 'hiden_size'; did you mean 'hidden_size'\?",
    ),
    "pretrain learning_rate 0": (
        lambda: _pretraining_args(learning_rate=0.0),
        r"learning_rate: expected a positive number, got 0.0",
    ),
    "pretrain learning_rate < 0": (
        lambda: _pretraining_args(learning_rate=-1e-3),
        r"learning_rate: expected a positive number, got -0.001",
    ),
    "pretrain weight_decay < 0": (
        lambda: _pretraining_args(weight_decay=-0.1),
        r"weight_decay: expected a non-negative number, got -0.1",
    ),
    "finetune learning_rate < 0": (
        lambda: _finetuning_args("--learning_rate=-1e-3"),
        r"learning_rate: expected a positive number, got -0.001",
    ),
    "finetune learning_rate 0": (
        lambda: _finetuning_args("--learning_rate", "0"),
        r"learning_rate: expected a positive number, got 0.0",
    ),
    "finetune base_learning_rate 0": (
        lambda: _finetuning_args("--base_learning_rate", "0"),
        r"base_learning_rate: expected a positive number, got 0.0",
    ),
}


@pytest.mark.parametrize("case", ARGUMENTS)
def test_training_arguments_are_checked(case):
    run, message = ARGUMENTS[case]
    with pytest.raises(ValueError, match=message):
        run()


def _cohort(tmp_path, labels_text=None, gradient_columns=None):
    from brain_jepa_hf.data import build_dataset

    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(tmp_path / "in" / f"sub-{i}.npy", rng.standard_normal((23, 30)))
    kwargs = {}
    if labels_text is not None:
        (tmp_path / "labels.csv").write_text(labels_text)
        kwargs["labels"] = tmp_path / "labels.csv"
    if gradient_columns is not None:
        np.savetxt(tmp_path / "g.csv", rng.standard_normal((23, gradient_columns)), delimiter=",")
        kwargs["gradient"] = str(tmp_path / "g.csv")
    build_dataset(tmp_path / "in", output_dir=tmp_path / "out", progress=False, **kwargs)


BUILDS = {
    "label NaN": (
        "subject_id,age\nsub-0,50\nsub-1,\nsub-2,61\nsub-3,70\n",
        None,
        r"labels: expected a value in column 'age' for every subject, got 1 empty/NaN/Inf \(subjects \['sub-1'\]\); fill them in",
    ),
    "label Inf": (
        "subject_id,age\nsub-0,50\nsub-1,inf\nsub-2,61\nsub-3,70\n",
        None,
        r"labels: expected a value in column 'age' .* got 1 empty/NaN/Inf \(subjects \['sub-1'\]\)",
    ),
    "text in a numeric column": (
        "subject_id,age\nsub-0,50\nsub-1,fifty\nsub-2,61\nsub-3,70\n",
        None,
        r"labels: expected numbers or text in column 'age', got both: text 'fifty' for subject 'sub-1'",
    ),
    "gradient with 29 columns": (
        None,
        29,
        r"gradient: expected 23 rows x 30 columns \(ROIs x gradient_components, the "
        r"model's gradient_dim\), got 23 x 29; pass gradient_components=29 \(--gradient-components\)",
    ),
}


@pytest.mark.parametrize("case", BUILDS)
def test_build_dataset_refuses_what_it_would_store_wrongly(tmp_path, case):
    labels, gradient_columns, message = BUILDS[case]
    with pytest.raises(ValueError, match=message):
        _cohort(tmp_path, labels, gradient_columns)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ errors made clear


def _truncated_npy(tmp_path):
    from brain_jepa_hf.data import build_dataset

    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "sub-1.npy", np.zeros((23, 30)))
    (tmp_path / "in" / "sub-1.npy").write_bytes((tmp_path / "in" / "sub-1.npy").read_bytes()[:200])
    build_dataset(tmp_path / "in", output_dir=tmp_path / "out", progress=False)


def _bad_subject_regex(tmp_path):
    from brain_jepa_hf.series_files import list_series_files

    (tmp_path / "sub-1_bold.npy").write_bytes(b"")
    list_series_files(tmp_path, subject_regex="(sub-[0-9]+")


def _short_series_stretch(tmp_path):
    from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    BrainJepaFeatureExtractor(num_rois=23, num_frames=40, sampling_rate=1, short_series="stretch")(np.zeros((23, 30)))


def _folder_without_config(tmp_path):
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "probe_config.json").write_text("{}")
    BrainJepaModel.from_pretrained(tmp_path / "probe")


def _typo_in_local_path(tmp_path):
    BrainJepaModel.from_pretrained(str(tmp_path / "modle"))


def _labels_as_list(tmp_path):
    model = BrainJepaForSequenceClassification(make_config(num_labels=2)).eval()
    model(torch.randn(2, 1, 23, 40), gradient=torch.randn(23, 6), labels=[0, 1])


CLEAR_ERRORS = {
    "truncated .npy": (_truncated_npy, r"series file .*sub-1.npy: expected a complete numeric .npy array"),
    "bad --subject-regex": (
        _bad_subject_regex,
        r"subject_regex: expected a Python regular expression, got '\(sub-\[0-9\]\+' \(missing \)",
    ),
    "short_series='stretch' too short": (
        _short_series_stretch,
        r"series\[0\]: expected at least num_frames=40 volumes for "
        r"short_series='stretch', got 30; use short_series='pad',",
    ),
    "folder without config.json": (
        _folder_without_config,
        r"pretrained_model_name_or_path: expected a saved model folder with "
        r"config.json, got .*probe without one \(it holds a linear probe",
    ),
    "typo in a local path": (_typo_in_local_path, r"pretrained_model_name_or_path: no such folder '.*modle'"),
    "labels as a list": (_labels_as_list, r"labels: expected a torch.Tensor, got list"),
}


@pytest.mark.parametrize("case", CLEAR_ERRORS)
def test_errors_name_the_argument(tmp_path, case):
    run, message = CLEAR_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        run(tmp_path)


def test_a_small_classification_set_splits_without_stratifying_what_cannot_be(tmp_path):
    from brain_jepa_hf.downstream_arguments import DataArguments
    from brain_jepa_hf.downstream_data import _split_dataset

    data = small_dataset(num_subjects=12)
    data_args = DataArguments(dataset="unused", label_column="sex", validation_fraction=0.1, test_fraction=0.2)
    splits = _split_dataset(data, data_args, ["validation", "test"])
    assert sum(len(split) for split in splits.values()) == 12 and len(splits["test"]) >= 1


def test_a_half_precision_checkpoint_converts(tmp_path, pretrained, original_files):
    from brain_jepa_hf.conversion import convert_original_checkpoint

    from original_layout import original_checkpoint

    model, fmri, _ = pretrained
    checkpoint = original_checkpoint(model)
    half = {
        part: {key: value.half() for key, value in checkpoint[part].items()}
        for part in ("encoder", "predictor", "target_encoder")
    }
    torch.save({**checkpoint, **half}, tmp_path / "half.pth.tar")
    out = convert_original_checkpoint(
        tmp_path / "half.pth.tar", original_files[1], tmp_path / "out", num_attention_heads=4
    )
    with torch.no_grad():
        converted = BrainJepaModel.from_pretrained(out).eval()(fmri).last_hidden_state
        torch.testing.assert_close(converted, model.brain_jepa(fmri).last_hidden_state, atol=5e-2, rtol=0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["embed", "--model", "./no/such/model", "--dataset", "example", "--output", "x.npy"], "embed: error: "),
        (
            ["finetune", "--model_name_or_path", "m", "--dataset", "d", "--output_dir", "o", "--learning_rate=-1"],
            "finetune: error: learning_rate: expected a positive number, got -1.0",
        ),
        (
            ["pretrain", "--output_dir", "o", "--learning_rate", "0"],
            "pretrain: error: learning_rate: expected a positive number",
        ),
    ],
    ids=["embed", "finetune", "pretrain"],
)
def test_cli_prints_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys, argv, message):
    from brain_jepa_cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith(f"brain-jepa {message}"), error
    assert not any(line.startswith("Traceback") for line in error)
    with pytest.raises((ValueError, FileNotFoundError)):
        main(argv + ["--debug"])


def test_a_checkpoint_that_cannot_be_written_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    """A full disk makes torch's writer fail with "basic_ios::clear: iostream error"; the command says
    which checkpoint, how much space is left and how to go on."""
    import accelerate

    from brain_jepa_cli import main

    def full_disk(self, output_dir=None, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(accelerate.Accelerator, "save_state", full_disk)
    argv = [
        "pretrain",
        "--preset",
        "example-tiny",
        "--example_subjects",
        "8",
        "--per_device_batch_size",
        "4",
        "--num_frames",
        "80",
        "--max_steps",
        "2",
        "--save_steps",
        "1",
        "--output_dir",
        str(tmp_path / "run"),
        "--cpu",
    ]
    assert main(argv) == 1
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("brain-jepa pretrain: error: ")]
    assert len(errors) == 1 and not any(line.startswith("Traceback") for line in lines), lines
    error = errors[0]
    assert error.startswith("brain-jepa pretrain: error: output_dir: could not write the step-1 checkpoint under "), (
        error
    )
    assert "iostream error" in error and "MiB free there" in error and "--resume_from_checkpoint latest" in error
    assert not list((tmp_path / "run" / "checkpoints").glob(".*.tmp"))
