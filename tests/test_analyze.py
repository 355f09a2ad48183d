"""`brain-jepa analyze` / `analyze_model`: end to end on the example cohort (a real short pretraining run and a
saved classifier with the example atlas), the files it writes, and one-line errors for bad input."""

import re
import warnings

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Value

from brain_jepa_cli import main
from brain_jepa_hf import BrainJepaConfig
from brain_jepa_hf.analysis_report import analyze_model, parse_layers
from brain_jepa_hf.arrow_data import dataset_from_arrays, fmri_features
from brain_jepa_hf.atlas import example_atlas, released_atlas, set_atlas
from brain_jepa_hf.example_data import example_gradient
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.modeling_brain_jepa import (
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
)

from helpers import pretrain_tiny_run


ROI_COLUMNS = ["index", "roi", "hemisphere", "network", "coarse_network", "x", "y", "z"]
COARSE = ["Subcortical", "Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default"]
FRAMES = 32  # two time patches of 16: small and fast, still more than one patch per ROI


@pytest.fixture(scope="module")
def pretraining_run(tmp_path_factory):
    return pretrain_tiny_run(tmp_path_factory.mktemp("run") / "pretrain")


def _save(folder, model):
    model.save_pretrained(folder)
    BrainJepaFeatureExtractor(num_rois=450, num_frames=FRAMES, sampling_rate=1, scaling="zscore").save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A classifier with a head (example atlas) and an encoder without any atlas."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    config = BrainJepaConfig.from_preset(
        "tiny", num_rois=450, num_frames=FRAMES, patch_size=16, gradient_dim=4, num_labels=2, classifier_init_range=0.5
    )
    classifier = BrainJepaForSequenceClassification(config)
    classifier.brain_jepa.set_gradient(example_gradient(4))
    set_atlas(classifier, "example")
    plain = BrainJepaForPreTraining(
        BrainJepaConfig.from_preset("tiny", num_rois=450, num_frames=FRAMES, patch_size=16, gradient_dim=4)
    )
    plain.set_gradient(example_gradient(4))
    return {"classifier": _save(root / "classifier", classifier), "no_atlas": _save(root / "no_atlas", plain)}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """4 random 450-ROI subjects on disk, with a label of one class."""
    rng = np.random.default_rng(0)
    features = fmri_features(450, 100, {"dx": Value("string"), "sex": Value("int64"), "site": Value("string")})
    data = dataset_from_arrays(
        [f"s{i}" for i in range(4)],
        rng.standard_normal((4, 450, 100)).astype(np.float32),
        {"dx": ["NC"] * 4, "sex": [0, 1, 0, 1], "site": ["a", "a", "a", "b"]},
        features=features,
    )
    folder = tmp_path_factory.mktemp("data") / "small"
    data.save_to_disk(str(folder))
    return folder


def _figures_in_report(report: str) -> set[str]:
    return set(re.findall(r"!\[[^\]]*\]\(figures/([\w.-]+\.png)\)", report))


def _check_pngs(folder):
    names = sorted(path.name for path in (folder / "figures").iterdir())
    for name in names:
        pixels = matplotlib.image.imread(folder / "figures" / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
    return names


def test_analyze_example_cohort_with_a_sex_contrast(pretraining_run, tmp_path, capsys):
    out = tmp_path / "analysis"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no matplotlib warnings
        code = main(
            [
                "analyze",
                "--model",
                str(pretraining_run),
                "--dataset",
                "example",
                "--label_column",
                "sex",
                "--max_subjects",
                "6",
                "--layers",
                "0,1",
                "--permutations",
                "200",
                "--output_dir",
                str(out),
            ]
        )
    assert code == 0
    assert capsys.readouterr().out.startswith(f"wrote {out / 'report.md'} (6 figures, ")
    names = _check_pngs(out)
    assert names == [
        "attention_by_network.png",
        "attention_glass_brain.png",
        "embeddings_pca.png",
        "gradient_space.png",
        "network_matrix.png",
        "training_curves.png",
    ]
    report = (out / "report.md").read_text()
    assert _figures_in_report(report) == set(names)
    assert "- Atlas: `example` at the coarse level" in report
    assert "Attention weights are not explanations" in report and "Benjamini-Hochberg" in report
    assert re.search(
        r"sex=1 vs sex=0: (no network differs after FDR correction|\d network\(s\) differ after FDR)", report
    )

    rois = pd.read_csv(out / "tables" / "roi_attention.csv")
    assert list(rois.columns[:8]) == ROI_COLUMNS and len(rois) == 450
    atlas = example_atlas()
    assert rois["roi"].tolist() == list(atlas.roi_names) and rois["network"].tolist() == list(atlas.networks)
    assert rois["coarse_network"].tolist() == list(atlas.coarse_networks)
    assert rois["x"].isna().sum() == 50  # subcortical rows have no centroid
    assert {"layer_0", "layer_1"} <= set(rois.columns)
    # attention received per ROI, relative to uniform, averages 1 over the ROIs (rows of attention sum to 1)
    assert rois["attention_received_x_uniform"].mean() == pytest.approx(1.0, abs=1e-6)

    networks = pd.read_csv(out / "tables" / "network_attention.csv")
    assert networks["network"].tolist() == COARSE
    assert networks["num_rois"].tolist() == [atlas.coarse_networks.count(n) for n in COARSE]
    sizes = networks["num_rois"].to_numpy()
    assert (networks["attention_received_x_uniform"] * sizes).sum() / 450 == pytest.approx(1.0, abs=1e-6)
    # the network value is the mean of its ROIs' values
    by_roi = rois.groupby("coarse_network")["attention_received_x_uniform"].mean()
    assert np.allclose(networks.set_index("network")["attention_received_x_uniform"], by_roi[COARSE], atol=1e-9)
    assert [c for c in networks.columns if c.startswith("class ")] == ["class sex=0 (n=2)", "class sex=1 (n=4)"]

    contrast = pd.read_csv(out / "tables" / "contrast_sex_1_vs_sex_0.csv")
    assert contrast["network"].tolist() == COARSE
    assert {"p_value", "p_fdr", "difference", "n_a", "n_b"} <= set(contrast.columns)
    assert (contrast["n_a"] + contrast["n_b"] == 6).all() and (
        (contrast["p_value"] > 0) & (contrast["p_value"] <= 1)
    ).all()
    matrix = pd.read_csv(out / "tables" / "network_matrix.csv", index_col=0)
    assert matrix.shape == (8, 8) and matrix.index.tolist() == COARSE
    subjects = pd.read_csv(out / "tables" / "subject_network_attention.csv")
    assert len(subjects) == 6 * 2 * 8 and "sex" in subjects.columns
    pca = pd.read_csv(out / "tables" / "embeddings_pca.csv")
    assert list(pca.columns) == ["subject_id", "sex", "pc1", "pc2"] and len(pca) == 6
    gradient = pd.read_csv(out / "tables" / "roi_gradient.csv")
    assert list(gradient.columns[:8]) == ROI_COLUMNS and len(gradient) == 450

    # the figure line is computed from the table
    top = networks.loc[networks["attention_received_x_uniform"].idxmax(), "network"]
    assert f"{top} receives the most attention" in report
    # a non-empty output folder is refused; --overwrite replaces it
    assert main(["analyze", "--model", str(pretraining_run), "--output_dir", str(out), "--max_subjects", "3"]) == 1
    assert "output_dir:" in capsys.readouterr().err


def test_analyze_model_fine_level_with_attribution(folders, tmp_path):
    out = tmp_path / "attribution"
    result = analyze_model(
        folders["classifier"],
        "example",
        out,
        level="fine",
        layers="-1",
        max_subjects=4,
        batch_size=4,
        attribution_steps=2,
        progress=False,
    )
    assert result.report == out / "report.md" and result.report.is_file()
    names = _check_pngs(out)
    assert {"attribution_glass_brain.png", "attribution_by_network.png"} <= set(names)
    assert "training_curves.png" not in names  # a saved model without a pretraining log
    assert sorted(p.name for p in result.figures.values()) == names
    report = result.report.read_text()
    assert _figures_in_report(report) == set(names)
    assert "integrated gradients" in report and "not a causal effect" in report
    assert "Completeness check (2 steps)" in report
    assert "- Layers analysed: 1 " in report
    rois = pd.read_csv(out / "tables" / "roi_attribution.csv")
    assert list(rois.columns) == ROI_COLUMNS + ["mean_abs_attribution", "mean_attribution"] and len(rois) == 450
    assert (rois["mean_abs_attribution"] >= rois["mean_attribution"].abs() - 1e-12).all()
    networks = pd.read_csv(out / "tables" / "network_attribution.csv")
    assert len(networks) == 18 and networks["network"].iloc[0] == "Subcortical"  # 17 networks + Subcortical
    attention = pd.read_csv(out / "tables" / "network_attention.csv")
    assert "TempPar" in attention["network"].tolist() and "layer_1" in attention.columns
    assert set(result.findings) == {path.stem for path in result.figures.values()}


def test_a_continuous_label_colours_the_pca_only(folders, tmp_path):
    result = analyze_model(
        folders["classifier"],
        "example",
        tmp_path / "age",
        label_column="age",
        layers=[-1],
        max_subjects=4,
        attribution=False,
        progress=False,
    )
    report = result.report.read_text()
    assert (
        "- Label: `age` (continuous)" in report and "'age' is continuous: no per-class bars and no contrast" in report
    )
    assert "attribution_glass_brain" not in result.figures and not any("contrast" in name for name in result.tables)
    pca = pd.read_csv(result.tables["embeddings_pca"])
    assert list(pca.columns) == ["subject_id", "age", "pc1", "pc2"] and pca["age"].between(45, 80).all()
    assert "age correlates with PC1 at r = " in result.findings["embeddings_pca"]


@pytest.mark.parametrize("choice, expected", [("bfloat16", torch.bfloat16), (None, torch.float32)])
def test_dtype_reaches_the_model(folders, tmp_path, capsys, choice, expected):
    seen = set()

    def hook(module, args, output):
        if type(module).__name__ == "BrainJepaModel":
            seen.add((next(module.parameters()).dtype, output.last_hidden_state.dtype))

    out = tmp_path / "out"
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        assert (
            main(
                [
                    "analyze",
                    "--model",
                    str(folders["classifier"]),
                    "--dataset",
                    "example",
                    "--max_subjects",
                    "2",
                    "--layers",
                    "-1",
                    "--no-attribution",
                    "--output_dir",
                    str(out),
                ]
                + (["--dtype", choice] if choice else [])
            )
            == 0
        )
    finally:
        handle.remove()
    assert seen == {(expected, expected)}  # float32 by default: figures do not depend on the machine
    assert f"- Precision: {str(expected).removeprefix('torch.')}" in (out / "report.md").read_text()


def test_short_series_fail_before_any_work_and_the_options_fix_them(folders, tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = dataset_from_arrays(
        [f"s{i}" for i in range(2)],
        rng.standard_normal((2, 450, 60)).astype(np.float32),
        features=fmri_features(450, 60),
    )
    data.save_to_disk(str(tmp_path / "short"))
    common = [
        "analyze",
        "--model",
        str(folders["classifier"]),
        "--dataset",
        str(tmp_path / "short"),
        "--layers",
        "-1",
        "--no-attribution",
        "--permutations",
        "0",
    ]
    assert main(common + ["--sampling_rate", "3", "--output_dir", str(tmp_path / "refused")]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("brain-jepa analyze: error: fmri: 2 of 2 series have fewer than the 96 volumes") and (
        "--sampling_rate 1" in line and "--short_series pad" in line
    ), line
    assert not (tmp_path / "refused").exists()
    assert (
        main(common + ["--sampling_rate", "3", "--short_series", "stretch", "--output_dir", str(tmp_path / "fits")])
        == 0
    )
    assert (tmp_path / "fits" / "report.md").is_file()


def test_parse_layers():
    assert parse_layers("all") is None and parse_layers(None) is None
    assert parse_layers("0,5,11") == [0, 5, 11] and parse_layers("-1") == [-1]
    with pytest.raises(ValueError, match="layers: expected 'all' or comma-separated layer indices"):
        parse_layers("first")


def _atlas_table(path, rows):
    atlas = released_atlas()
    lines = ["index,name,network"] + [f"{i},{atlas.roi_names[i]},{atlas.coarse_networks[i]}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "case",
    [
        "atlas_rows",
        "no_atlas",
        "unknown_label",
        "one_class",
        "one_subject_class",
        "attribution_without_head",
        "bad_layers",
    ],
)
def test_bad_input_gives_one_line(case, folders, small_data, tmp_path, capsys):
    out = tmp_path / "out"
    model = folders["no_atlas"] if case in ("no_atlas", "attribution_without_head") else folders["classifier"]
    args = [
        "analyze",
        "--model",
        str(model),
        "--dataset",
        str(small_data),
        "--output_dir",
        str(out),
        "--permutations",
        "10",
    ]
    extra, expected = {
        "atlas_rows": (
            ["--atlas", str(tmp_path / "a400.csv")],
            r"atlas: expected 450 rows \(the model's num_rois\), got 400",
        ),
        "no_atlas": (
            [],
            r"atlas: the model carries no atlas .*; pass --atlas PATH .* --atlas released .* --atlas example",
        ),
        "unknown_label": (
            ["--label_column", "diagnosis"],
            r"label_column: expected one of the dataset's columns \['subject_id', 'fmri', 'dx', 'sex', 'site'\], got 'diagnosis'",
        ),
        "one_class": (
            ["--label_column", "dx"],
            r"label_column: 'dx' has one class \('NC'\) in the 4 analysed subjects; a contrast needs two",
        ),
        "one_subject_class": (
            ["--label_column", "site"],
            r"label_column: class 'b' of 'site' has 1 subject among the 4 analysed; a contrast needs at least 2",
        ),
        "attribution_without_head": (
            ["--attribution", "--atlas", "example"],
            r"attribution: the model has no classification head \(architectures \['BrainJepaForPreTraining'\]\)",
        ),
        "bad_layers": (["--layers", "7"], r"layers: expected indices in \[-2, 1\] \(the model has 2 layers\), got 7"),
    }[case]
    _atlas_table(tmp_path / "a400.csv", 400)
    assert main(args + extra) == 1
    captured = capsys.readouterr()
    error = [line for line in captured.err.splitlines() if "error" in line]
    assert len(error) == 1 and error[0].startswith("brain-jepa analyze: error: "), captured.err
    assert captured.err.strip().endswith(error[0]) and re.search(expected, error[0]), error[0]
    assert "Traceback" not in captured.err and not out.exists()  # nothing half-written


def test_debug_shows_the_exception(folders, small_data, tmp_path):
    with pytest.raises(ValueError, match="label_column: expected one of the dataset's columns"):
        main(
            [
                "analyze",
                "--model",
                str(folders["classifier"]),
                "--dataset",
                str(small_data),
                "--label_column",
                "diagnosis",
                "--output_dir",
                str(tmp_path / "out"),
                "--debug",
            ]
        )
