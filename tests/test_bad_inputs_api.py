"""Bad input of every kind to the Python API fails loudly (issue 13): one parametrized case per kind,
each checking that the message names the argument and says what was expected. Cases that are correct
behaviour, not errors, are listed with their reason in docs/bad_inputs.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from brain_jepa_hf import (
    BrainJepaConfig,
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor

from helpers import disjoint_indices, make_config, make_inputs, save_pretrained_folder


# ------------------------------------------------------------------------------ BrainJepaConfig fields

NAN = float("nan")
CONFIG_FIELDS = {
    "num_rois 0": ({"num_rois": 0}, r"num_rois: expected a positive integer, got 0"),
    "num_rois as text": ({"num_rois": "23"}, r"num_rois: expected a positive integer, got '23'"),
    "num_rois float": ({"num_rois": 23.5}, r"num_rois: expected a positive integer, got 23.5"),
    "num_rois bool": ({"num_rois": True}, r"num_rois: expected a positive integer, got True"),
    "num_frames negative": ({"num_frames": -40}, r"num_frames: expected a positive integer, got -40"),
    "num_frames not a multiple of patch_size": (
        {"num_frames": 41},
        r"num_frames: expected a multiple of patch_size=8, got 41; use num_frames=40",
    ),
    "patch_size 0": ({"patch_size": 0}, r"patch_size: expected a positive integer, got 0"),
    "patch_size larger than num_frames": (
        {"patch_size": 80},
        r"num_frames: expected a multiple of patch_size=80, got 40",
    ),
    "num_channels 0": ({"num_channels": 0}, r"num_channels: expected a positive integer, got 0"),
    "gradient_dim 0": ({"num_channels": 1, "_gradient_dim": 0}, r"gradient_dim: expected a positive integer, got 0"),
    "hidden_size not a multiple of 4": ({"hidden_size": 66}, r"hidden_size: expected a multiple of 4 .*got 66"),
    "hidden_size not divisible by heads": (
        {"num_attention_heads": 3},
        r"hidden_size: expected a multiple of num_attention_heads=3, got 64",
    ),
    "num_hidden_layers 0": ({"num_hidden_layers": 0}, r"num_hidden_layers: expected a positive integer, got 0"),
    "num_attention_heads negative": (
        {"num_attention_heads": -4},
        r"num_attention_heads: expected a positive integer, got -4",
    ),
    "predictor_hidden_size not a multiple of 4": (
        {"predictor_hidden_size": 30},
        r"predictor_hidden_size: expected a multiple of 4 .*got 30",
    ),
    "predictor width not divisible by heads": (
        {"predictor_num_attention_heads": 3},
        r"predictor_hidden_size: expected a multiple of predictor_num_attention_heads=3, got 32",
    ),
    "predictor_num_hidden_layers 0": (
        {"predictor_num_hidden_layers": 0},
        r"predictor_num_hidden_layers: expected a positive integer, got 0",
    ),
    "mlp_ratio NaN": ({"mlp_ratio": NAN}, r"mlp_ratio: expected a finite number, got nan"),
    "mlp_ratio negative": ({"mlp_ratio": -4.0}, r"mlp_ratio: expected a positive number, got -4.0"),
    "hidden_act not a string": ({"hidden_act": 3}, r"hidden_act: expected a transformers activation name .*got 3"),
    "qkv_bias as text": ({"qkv_bias": "no"}, r"qkv_bias: expected True or False, got 'no'"),
    "layer_norm_eps inf": ({"layer_norm_eps": float("inf")}, r"layer_norm_eps: expected a finite number, got inf"),
    "hidden_dropout_prob 1": (
        {"hidden_dropout_prob": 1.0},
        r"hidden_dropout_prob: expected a probability in \[0, 1\), got 1.0",
    ),
    "attention dropout negative": (
        {"attention_probs_dropout_prob": -0.1},
        r"attention_probs_dropout_prob: expected a probability in \[0, 1\), got -0.1",
    ),
    "attention dropout NaN": (
        {"attention_probs_dropout_prob": NAN},
        r"attention_probs_dropout_prob: expected a finite number, got nan",
    ),
    "drop_path_rate NaN": ({"drop_path_rate": NAN}, r"drop_path_rate: expected a finite number, got nan"),
    "drop_path_rate negative": (
        {"drop_path_rate": -0.1},
        r"drop_path_rate: expected a probability in \[0, 1\), got -0.1",
    ),
    "initializer_range inf": (
        {"initializer_range": float("inf")},
        r"initializer_range: expected a finite number, got inf",
    ),
    "classifier_init_range negative": (
        {"classifier_init_range": -1.0},
        r"classifier_init_range: expected a positive number, got -1.0",
    ),
    "position_embedding_type unknown": (
        {"position_embedding_type": "rope"},
        r"position_embedding_type: expected 'gradient' or 'sincos', got 'rope'",
    ),
    "atlas unknown name": (
        {"atlas": "aal"},
        r"atlas: expected None, a table or one of \['example', 'released'\], got 'aal'",
    ),
    "atlas of another ROI count": (
        {"atlas": "released"},
        r"atlas: 'released' has 450 ROIs but num_rois=23; give a table",
    ),
    "atlas as a list": ({"atlas": ["a", "b"]}, r"atlas: expected None, a name or a table \(mapping\), got list"),
    "atlas table without keys": ({"atlas": {"name": "x"}}, r"atlas: expected a table with keys \['name', 'roi_names'"),
}


@pytest.mark.parametrize("case", CONFIG_FIELDS)
def test_config_field_is_checked(case):
    overrides, message = CONFIG_FIELDS[case]
    with pytest.raises(ValueError, match=message):
        if "_gradient_dim" in overrides:  # make_config sets gradient_dim itself
            BrainJepaConfig.from_preset("tiny", gradient_dim=overrides["_gradient_dim"])
        make_config(**overrides)


def _atlas_table(num_rois=23, **changes):
    table = {
        "name": "mine",
        "roi_names": [f"r{i}" for i in range(num_rois)],
        "networks": ["n"] * num_rois,
        "coarse_networks": ["c"] * num_rois,
        "hemispheres": ["L"] * num_rois,
        "coords": [[0, 0, 0]] * num_rois,
    }
    return {**table, **changes}


CONFIG_MORE = {
    "unknown preset": (
        lambda: BrainJepaConfig.from_preset("vit-huge"),
        r"preset: expected one of \['tiny', 'vit-base'",
    ),
    "atlas table of another length": (
        lambda: make_config(atlas=_atlas_table(22)),
        r"atlas: expected 23 entries in 'roi_names' \(num_rois\), got 22",
    ),
    "atlas coords not 3 numbers": (
        lambda: make_config(atlas=_atlas_table(coords=[[0, 0]] * 23)),
        r"atlas: expected 'coords' rows of 3 numbers",
    ),
    "atlas networks not strings": (
        lambda: make_config(atlas=_atlas_table(networks=[1] * 23)),
        r"atlas: expected strings in 'networks'",
    ),
    "config folder that does not exist": (
        lambda: BrainJepaConfig.from_pretrained("./no/such/model"),
        r"pretrained_model_name_or_path: no such folder './no/such/model'",
    ),
}


@pytest.mark.parametrize("case", CONFIG_MORE)
def test_config_construction_is_checked(case):
    run, message = CONFIG_MORE[case]
    with pytest.raises(ValueError, match=message):
        run()


# ------------------------------------------------------------------------------ BrainJepaFeatureExtractor


def _extractor(**kwargs):
    return BrainJepaFeatureExtractor(
        **{"num_rois": 23, "num_frames": 40, "sampling_rate": 1, "scaling": "zscore", **kwargs}
    )


EXTRACTOR_ARGUMENTS = {
    "num_rois 0": ({"num_rois": 0}, r"num_rois: expected a positive integer, got 0"),
    "num_frames as text": ({"num_frames": "40"}, r"num_frames: expected a positive integer, got '40'"),
    "sampling_rate 0": ({"sampling_rate": 0}, r"sampling_rate: expected a positive integer, got 0"),
    "sampling_rate fractional": ({"sampling_rate": 1.5}, r"sampling_rate: expected a positive integer, got 1.5"),
    "scaling unknown": ({"scaling": "minmax"}, r"scaling: expected one of .*got 'minmax'"),
    "short_series unknown": ({"short_series": "shrink"}, r"short_series: expected one of .*got 'shrink'"),
    "target_tr negative": ({"target_tr": -2.0}, r"target_tr: expected a positive number of seconds or None, got -2.0"),
    "target_tr as text": ({"target_tr": "2"}, r"target_tr: expected a positive number of seconds or None, got '2'"),
    "robust_median without robust_iqr": (
        {"scaling": "robust", "robust_median": np.zeros(23)},
        r"robust_median, robust_iqr: expected both or neither",
    ),
    "robust statistics of another ROI count": (
        {"scaling": "robust", "robust_median": np.zeros(22), "robust_iqr": np.ones(22)},
        r"robust_median",
    ),
    "robust_iqr NaN": (
        {"scaling": "robust", "robust_median": np.zeros(23), "robust_iqr": np.full(23, NAN)},
        r"robust_iqr: expected finite values",
    ),
    "gradient of another ROI count": ({"gradient": np.zeros((22, 6))}, r"gradient: expected .*23"),
    "gradient NaN": ({"gradient": np.full((23, 6), NAN)}, r"gradient: expected finite values, got NaN or Inf"),
}


@pytest.mark.parametrize("case", EXTRACTOR_ARGUMENTS)
def test_feature_extractor_argument_is_checked(case):
    kwargs, message = EXTRACTOR_ARGUMENTS[case]
    with pytest.raises(ValueError, match=message):
        _extractor(**kwargs)


RNG = np.random.default_rng(0)
GOOD = RNG.standard_normal((23, 60))


def _with(value):
    series = GOOD.copy()
    series[4, 7] = value
    return series


EXTRACTOR_INPUTS = {
    "1-D series": ({"series": GOOD[0]}, r"series"),
    "4-D batch": ({"series": GOOD[None, None]}, r"series"),
    "empty list": ({"series": []}, r"series: expected at least one series, got an empty list"),
    "ragged nested lists": (
        {"series": [[1.0, 2.0], [3.0]]},
        r"series: expected a rectangular numeric array, got ragged nested lists",
    ),
    "list of unequal ROI counts": ({"series": [GOOD, GOOD[:22]]}, r"series\[1\]: .*23"),
    "wrong ROI count": (
        {"series": GOOD[:20]},
        r"series: expected 23 ROIs along the rows \(time_axis=-1\), got 20 ROIs",
    ),
    "transposed (time x ROI) without time_axis": (
        {"series": GOOD.T},
        r"series: expected 23 ROIs .*the other axis has 23 entries: pass time_axis=-2",
    ),
    "too short series": (
        {"series": GOOD[:, :30]},
        r"series\[0\]: expected sampling_rate\*num_frames=40 volumes, got 30; use short_series='stretch' or 'pad'",
    ),
    "NaN in a series": ({"series": _with(NAN)}, r"series\[0\]: expected finite values"),
    "Inf in a series": ({"series": _with(np.inf)}, r"series\[0\]: expected finite values"),
    "text values": ({"series": np.full((23, 60), "a")}, r"series: expected real numbers, got dtype <U1"),
    "complex values": ({"series": GOOD.astype(np.complex64)}, r"series: expected real numbers, got dtype complex64"),
    "time_axis 2": ({"series": GOOD, "time_axis": 2}, r"time_axis: expected"),
    "tr without target_tr": ({"series": GOOD, "tr": 2.0}, r"tr: "),
    "tr count differs from series count": (
        {"series": [GOOD, GOOD], "tr": [2.0, 2.0, 2.0], "_target_tr": 2.0},
        r"tr: expected one TR or one per series \(2\), got 3",
    ),
    "tr negative": (
        {"series": GOOD, "tr": -1.0, "_target_tr": 2.0},
        r"tr: expected positive TRs in seconds, got -1.0",
    ),
    "unknown keyword": ({"series": GOOD, "padding": True}, r"unexpected keyword arguments: \['padding'\]"),
}


@pytest.mark.parametrize("case", EXTRACTOR_INPUTS)
def test_feature_extractor_input_is_checked(case):
    kwargs, message = dict(EXTRACTOR_INPUTS[case][0]), EXTRACTOR_INPUTS[case][1]
    extractor = _extractor(target_tr=kwargs.pop("_target_tr", None))
    with pytest.raises(ValueError, match=message):
        extractor(**kwargs)


def test_feature_extractor_robust_fit_needs_two_series():
    with pytest.raises(ValueError, match=r"series: expected at least 2 training series to fit robust scaling, got 1"):
        _extractor(scaling="robust").fit([GOOD])


# ------------------------------------------------------------------------------ model forward inputs


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    config = make_config()
    fmri, gradient = make_inputs(config, batch=2)
    encoder = BrainJepaModel(config).eval()
    pretraining = BrainJepaForPreTraining(config).eval()
    classifiers = {
        kind: BrainJepaForSequenceClassification(make_config(num_labels=n, problem_type=kind)).eval()
        for kind, n in (("regression", 1), ("single_label_classification", 3), ("multi_label_classification", 2))
    }
    return {"encoder": encoder, "pretraining": pretraining, "fmri": fmri, "gradient": gradient, **classifiers}


def _encode(m, fmri=None, gradient="given", **kwargs):
    fmri = m["fmri"] if fmri is None else fmri
    gradient = m["gradient"] if isinstance(gradient, str) else gradient
    with torch.no_grad():
        m["encoder"](fmri, gradient=gradient, **kwargs)


def _nan_fmri(m):
    fmri = m["fmri"].clone()
    fmri[1, 0, 2, 3] = NAN
    return fmri


def _pretrain(m, context=None, targets=None):
    ctx, tgt = disjoint_indices(2, m["encoder"].config.num_patches, 10, 5)
    with torch.no_grad():
        m["pretraining"](
            m["fmri"], ctx if context is None else context, tgt if targets is None else targets, gradient=m["gradient"]
        )


def _classify(m, kind, labels):
    with torch.no_grad():
        m[kind](m["fmri"], gradient=m["gradient"], labels=labels)


FORWARD = {
    "fmri_values as numpy": (
        lambda m: _encode(m, m["fmri"].numpy()),
        r"fmri_values: expected a torch.Tensor, got ndarray",
    ),
    "fmri_values 3-D": (
        lambda m: _encode(m, m["fmri"][:, 0]),
        r"fmri_values: expected shape \(batch, 1, rois, frames\), got rank 3",
    ),
    "fmri_values integer dtype": (
        lambda m: _encode(m, m["fmri"].long()),
        r"fmri_values: expected a floating-point tensor, got dtype torch.int64",
    ),
    "fmri_values empty batch": (lambda m: _encode(m, m["fmri"][:0]), r"fmri_values: expected at least one sample"),
    "fmri_values 2 channels": (
        lambda m: _encode(m, m["fmri"].repeat(1, 2, 1, 1)),
        r"fmri_values: expected 1 channel\(s\) in dim 1",
    ),
    "fmri_values frames not a multiple of patch_size": (
        lambda m: _encode(m, m["fmri"][..., :36]),
        r"fmri_values: expected a number of frames that is a positive multiple of patch_size=8, got 36",
    ),
    "fmri_values fewer frames than a patch": (lambda m: _encode(m, m["fmri"][..., :5]), r"patch_size=8, got 5"),
    "fmri_values NaN": (lambda m: _encode(m, _nan_fmri(m)), r"fmri_values: expected finite values, got 1 NaN/Inf"),
    "fmri_values ROI count unlike the gradient": (
        lambda m: _encode(m, m["fmri"][:, :, :20]),
        r"gradient: expected 20 rows \(one per ROI of fmri_values\), got 23",
    ),
    "no gradient and none stored": (
        lambda m: _encode(m, gradient=None),
        r"gradient: the model holds no atlas gradient",
    ),
    "gradient 1-D": (
        lambda m: _encode(m, gradient=m["gradient"][:, 0]),
        r"gradient: expected shape \(23, 6\) or \(2, 23, 6\)",
    ),
    "gradient of another width": (
        lambda m: _encode(m, gradient=m["gradient"][:, :5]),
        r"gradient: expected 6 columns \(config.gradient_dim\), got 5",
    ),
    "gradient batch unlike fmri_values": (
        lambda m: _encode(m, gradient=m["gradient"].expand(3, -1, -1)),
        r"gradient: expected shape \(23, 6\) or \(2, 23, 6\), got \(3, 23, 6\)",
    ),
    "gradient NaN": (lambda m: _encode(m, gradient=torch.full((23, 6), NAN)), r"gradient: expected finite values"),
    "context_indices as a list": (
        lambda m: _encode(m, context_indices=[[0, 1]]),
        r"context_indices: expected a torch.Tensor of token indices, got list",
    ),
    "context_indices float": (
        lambda m: _encode(m, context_indices=torch.zeros(2, 3)),
        r"context_indices: expected an integer tensor, got dtype torch.float32",
    ),
    "context_indices of another batch": (
        lambda m: _encode(m, context_indices=torch.zeros(3, 4, dtype=torch.long)),
        r"context_indices: expected shape \(2, num_kept\), got \(3, 4\)",
    ),
    "context_indices empty": (
        lambda m: _encode(m, context_indices=torch.zeros(2, 0, dtype=torch.long)),
        r"context_indices: expected at least one index per sample",
    ),
    "context_indices beyond the tokens": (
        lambda m: _encode(m, context_indices=torch.full((2, 3), 115)),
        r"context_indices: expected indices in \[0, 114\], got values in \[115, 115\]",
    ),
    "context_indices negative": (
        lambda m: _encode(m, context_indices=torch.full((2, 3), -1)),
        r"context_indices: expected indices in \[0, 114\], got values in \[-1, -1\]",
    ),
    "target_indices beyond the tokens": (
        lambda m: _pretrain(m, targets=torch.full((2, 3), 500)),
        r"target_indices: expected indices in \[0, 114\]",
    ),
    "target_indices bool": (
        lambda m: _pretrain(m, targets=torch.ones(2, 3, dtype=torch.bool)),
        r"target_indices: expected an integer tensor, got dtype torch.bool",
    ),
    "context_indices 1-D in pretraining": (
        lambda m: _pretrain(m, context=torch.arange(5)),
        r"context_indices: expected shape \(2, num_kept\), got \(5,\)",
    ),
    "regression labels of another count": (
        lambda m: _classify(m, "regression", torch.ones(3)),
        r"labels: expected 2 regression targets for a batch of 2 and num_labels=1, got shape \(3,\)",
    ),
    "class id beyond num_labels": (
        lambda m: _classify(m, "single_label_classification", torch.tensor([0, 3])),
        r"labels: expected class ids in \[0, 2\], got values in \[0, 3\]",
    ),
    "negative class id": (
        lambda m: _classify(m, "single_label_classification", torch.tensor([-1, 0])),
        r"labels: expected class ids in \[0, 2\], got values in \[-1, 0\]",
    ),
    "class ids of another count": (
        lambda m: _classify(m, "single_label_classification", torch.tensor([0, 1, 2])),
        r"labels: expected shape \(2,\) class ids, got 3 values",
    ),
    "multi-label targets of another shape": (
        lambda m: _classify(m, "multi_label_classification", torch.ones(2, 3)),
        r"labels: expected shape \(2, 2\) of 0/1 targets, got \(2, 3\)",
    ),
    "multi-label targets NaN": (
        lambda m: _classify(m, "multi_label_classification", torch.tensor([[0.0, NAN], [1.0, 0.0]])),
        r"labels: expected finite values",
    ),
    "set_gradient of another shape": (
        lambda m: m["encoder"].set_gradient(torch.zeros(22, 6)),
        r"gradient: expected shape \(23, 6\) \(config.num_rois, config.gradient_dim\), got \(22, 6\)",
    ),
    "EMA momentum above 1": (
        lambda m: m["pretraining"].update_target_encoder(1.5),
        r"momentum: expected a value in \[0, 1\], got 1.5",
    ),
}


@pytest.mark.parametrize("case", FORWARD)
def test_model_input_is_checked(models, case):
    run, message = FORWARD[case]
    with pytest.raises(ValueError, match=message):
        run(models)


def test_unknown_forward_keyword_is_not_swallowed(models):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'mask'"):
        _encode(models, mask=torch.ones(2, 115))


def test_inference_dtype_is_checked():
    from brain_jepa_hf.modeling_brain_jepa import resolve_dtype

    with pytest.raises(ValueError, match=r"dtype: expected one of .*got 'float16'"):
        resolve_dtype("float16")


# ------------------------------------------------------------------------------ model folders


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_pretrained_folder(folder, make_config())
    return folder


def _copy(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _misshape(folder):
    weights = folder / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.endswith("mlp.fc1.weight"))
    state[key] = state[key][:-1].clone()
    save_file(state, weights, metadata={"format": "pt"})


def _truncate(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _config_text(text):
    return lambda folder: (folder / "config.json").write_text(text)


FOLDERS = {
    "weights of another shape": (
        _misshape,
        r"pretrained_model_name_or_path: the weights in .* have other shapes than the config gives",
    ),
    "truncated safetensors": (
        _truncate,
        r"pretrained_model_name_or_path: the weights file in .* is not a readable safetensors file",
    ),
    "no weights file": (lambda folder: (folder / "model.safetensors").unlink(), r"model.safetensors|weights"),
    "config.json not JSON": (_config_text("{not json"), r"config.json|JSON"),
    "config.json of another model_type": (
        _config_text('{"model_type": "bert", "hidden_size": 64}'),
        r"model_type: expected 'brain_jepa' in config.json, got 'bert'",
    ),
    "config.json with a bad field": (
        lambda folder: _edit_config(folder, layer_norm_eps=-1),
        r"layer_norm_eps: expected a positive number, got -1",
    ),
}


def _edit_config(folder, **changes):
    import json

    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("case", FOLDERS)
def test_damaged_model_folder_is_refused(tmp_path, model_folder, case):
    damage, message = FOLDERS[case]
    folder = _copy(model_folder, tmp_path / "model")
    damage(folder)
    with pytest.raises((ValueError, OSError, RuntimeError), match=message):
        BrainJepaModel.from_pretrained(folder)


# ------------------------------------------------------------------------------ gradients, parcellation, atlas


def _fc(n=12):
    return np.corrcoef(np.random.default_rng(0).standard_normal((n, 200)))


def _compute(**kwargs):
    from brain_jepa_hf.gradients import compute_gradients

    return compute_gradients(kwargs.pop("fc", _fc()), **{"n_components": 3, **kwargs})


def _connectivity(series, **kwargs):
    from brain_jepa_hf.gradients import functional_connectivity

    return functional_connectivity(series, **kwargs)


def _gradient_csv(tmp_path, text, **kwargs):
    from brain_jepa_hf.gradients import load_gradient_csv

    path = tmp_path / "g.csv"
    path.write_text(text)
    return load_gradient_csv(path, **kwargs)


UTILITIES = {
    "fc not square": (
        lambda tmp: _compute(fc=np.zeros((12, 5))),
        r"fc: expected a square \(R, R\) connectivity matrix, got shape \(12, 5\)",
    ),
    "fc NaN": (
        lambda tmp: _compute(fc=np.where(np.eye(12) > 0, NAN, _fc())),
        r"fc: expected finite values, got NaN or Inf",
    ),
    "fc not symmetric": (lambda tmp: _compute(fc=np.triu(_fc())), r"fc: expected a symmetric matrix"),
    "n_components too many": (
        lambda tmp: _compute(n_components=12),
        r"n_components: expected an integer in \[1, 11\] for 12 ROIs, got 12",
    ),
    "n_components float": (
        lambda tmp: _compute(n_components=2.5),
        r"n_components: expected an integer in \[1, 11\] for 12 ROIs, got 2.5",
    ),
    "sparsity 1": (lambda tmp: _compute(sparsity=1.0), r"sparsity: expected a fraction in \[0, 1\), got 1.0"),
    "sparsity leaving no entry": (
        lambda tmp: _compute(sparsity=0.95),
        r"sparsity: 0.95 keeps int\(12 \* \(1 - 0.95\)\) = 0 entries",
    ),
    "kernel unknown": (lambda tmp: _compute(kernel="nope"), r"kernel: expected one of \('cosine', .*got 'nope'"),
    "random_state negative": (
        lambda tmp: _compute(random_state=-1),
        r"random_state: expected an integer in \[0, 2\*\*32 - 1\], got -1",
    ),
    "connectivity series of unequal ROI counts": (
        lambda tmp: _connectivity([np.zeros((5, 20)) + np.arange(20), np.zeros((4, 20))]),
        r"expected 5 ROIs like series\[0\], got 4",
    ),
    "connectivity series too short": (
        lambda tmp: _connectivity([RNG.standard_normal((5, 2))]),
        r"expected at least 3 time points, got 2",
    ),
    "connectivity series NaN": (
        lambda tmp: _connectivity([np.full((5, 20), NAN)]),
        r"expected finite values, got NaN or Inf",
    ),
    "connectivity time_axis 2": (
        lambda tmp: _connectivity([RNG.standard_normal((5, 20))], time_axis=2),
        r"time_axis: expected 0/-2 \(time x ROI\) or 1/-1 \(ROI x time\), got 2",
    ),
    "connectivity of no series": (lambda tmp: _connectivity([]), r"series: expected at least one series, got none"),
    "gradient CSV with text": (
        lambda tmp: _gradient_csv(tmp, "a,b\n1,2\n"),
        r"gradient file .*g.csv: expected comma-separated numbers without a header",
    ),
    "gradient CSV NaN": (
        lambda tmp: _gradient_csv(tmp, "1,nan\n1,2\n"),
        r"gradient file .*g.csv: expected finite values, got NaN or Inf",
    ),
    "gradient CSV of another ROI count": (
        lambda tmp: _gradient_csv(tmp, "1,2\n1,2\n", num_rois=3),
        r"gradient file .*g.csv: expected 3 rows \(one per ROI\), got 2",
    ),
    "gradient CSV missing": (
        lambda tmp: __import__("brain_jepa_hf.gradients").gradients.load_gradient_csv(tmp / "none.csv"),
        r"gradient file: .*none.csv does not exist",
    ),
    "saving non-finite gradients": (
        lambda tmp: __import__("brain_jepa_hf.gradients").gradients.save_gradient_csv(
            tmp / "g.csv", np.full((3, 2), NAN)
        ),
        r"gradients: expected a finite 2-D \(R, K\) array",
    ),
    "brainspace group unknown": (
        lambda tmp: __import__("brain_jepa_hf.gradients").gradients.load_brainspace_group_fc("other"),
        r"group: expected 'main' or 'holdout', got 'other'",
    ),
}


@pytest.mark.parametrize("case", UTILITIES)
def test_gradient_utilities_check_their_inputs(tmp_path, case):
    run, message = UTILITIES[case]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run(tmp_path)
