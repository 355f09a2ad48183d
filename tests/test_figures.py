"""Figures: every function draws a PNG from tiny data, with consistent network colours and clear errors."""

import json
import warnings

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from brain_jepa_hf import brain_figures, training_figures
from brain_jepa_hf.brain_figures import plot_carpet
from brain_jepa_hf.figure_style import CLASS_COLORS, network_colors, save_figure

from helpers import pretrain_tiny_run


NETWORKS = ["Vis", "SomMot", "DorsAttn", "Default", "Subcortical"]


def roi_networks(num_rois: int = 23) -> list[str]:
    """Contiguous network blocks, like a real atlas."""
    return [NETWORKS[i * len(NETWORKS) // num_rois] for i in range(num_rois)]


def save_and_check(figure, path, dpi=60):
    """Save without any warning; the PNG decodes at figsize x dpi pixels and leaves no pyplot figure."""
    width, height = figure.get_size_inches()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_figure(figure, path, dpi=dpi)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (round(height * dpi), round(width * dpi))
    assert pixels.std() > 0.01  # something was drawn
    border = np.concatenate([pixels[[0, -1], :, :3].reshape(-1, 3), pixels[:, [0, -1], :3].reshape(-1, 3)])
    assert border.min() > 0.6, "something dark touches the edge: a label or legend is cut off"
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []
    return pixels


def has_colors(pixels, hex_colors) -> bool:
    """Whether every colour appears exactly in the image (8-bit)."""
    found = {tuple(p) for p in np.round(pixels[..., :3] * 255).astype(int).reshape(-1, 3)}
    return all(tuple(round(255 * v) for v in matplotlib.colors.to_rgb(c)) in found for c in hex_colors)


def draw(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args, **kwargs)


def test_network_colors_depend_only_on_the_name():
    coarse = network_colors(["Vis", "Default", "Subcortical", "Vis"])
    assert list(coarse) == ["Vis", "Default", "Subcortical"]
    assert network_colors(["Subcortical", "Default"])["Default"] == coarse["Default"]
    fine = network_colors(["VisCent", "VisPeri", "ContA", "ContB", "ContC", "TempPar"])
    assert len(set(fine.values())) == len(fine)
    # long forms map to the same family colour
    assert network_colors(["Default mode"])["Default mode"] == coarse["Default"]
    # names outside the Yeo vocabulary: distinct within a call, stable across calls
    custom = network_colors([f"net{i}" for i in range(10)])
    assert len(set(custom.values())) == 10
    assert network_colors(["net3"])["net3"] == network_colors(["net3", "net7"])["net3"]
    with pytest.raises(TypeError, match="names: expected a sequence of network names, got the string"):
        network_colors("Vis")


def test_plot_carpet(tmp_path):
    rng = np.random.default_rng(0)
    series = rng.standard_normal((23, 40))
    pixels = save_and_check(draw(plot_carpet, series, roi_networks(), tr=0.72, title="tiny"), tmp_path / "carpet.png")
    save_and_check(draw(plot_carpet, series, standardize=False), tmp_path / "plain.png")
    # the network band carries each network's colour
    assert has_colors(pixels, network_colors(NETWORKS).values())


def test_plot_carpet_errors():
    series = np.zeros((4, 10))
    with pytest.raises(ValueError, match=r"series: expected a 2-D array, got shape \(10,\)"):
        plot_carpet(np.zeros(10))
    with pytest.raises(ValueError, match=r"networks: expected 4 labels \(one per ROI \(row of series\)\), got 3"):
        plot_carpet(series, ["Vis"] * 3)
    with pytest.raises(ValueError, match="tr: expected a repetition time in seconds > 0, got -1"):
        plot_carpet(series, tr=-1)
    series[1, 2] = np.nan
    with pytest.raises(ValueError, match="series: expected finite values, got 1 NaN/inf of 40"):
        plot_carpet(series)


def test_save_figure_is_atomic_and_refuses_other_formats(tmp_path):
    figure = plot_carpet(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"path: expected a file name ending in \.png, got '.*carpet\.pdf'"):
        save_figure(figure, tmp_path / "carpet.pdf")
    path = save_figure(plot_carpet(np.arange(15.0).reshape(3, 5)), tmp_path / "sub" / "carpet.png")
    assert path == tmp_path / "sub" / "carpet.png"
    assert [p.name for p in path.parent.iterdir()] == ["carpet.png"]  # no temporary file left


def test_plot_network_bars(tmp_path):
    rng = np.random.default_rng(1)
    values = {"NC": rng.random(5) + 0.5, "MCI": rng.random(5) + 0.5}
    errors = {"NC": np.full(5, 0.05), "MCI": np.full((2, 5), 0.1)}
    figure = draw(brain_figures.plot_network_bars, values, NETWORKS, errors=errors, reference=1.0)
    pixels = save_and_check(figure, tmp_path / "bars.png")
    assert has_colors(pixels, CLASS_COLORS[:2])  # one colour per class
    assert has_colors(pixels, network_colors(NETWORKS).values())  # network squares under the axis
    # a single group: bars in the network colours, same as in the carpet
    single = save_and_check(
        draw(brain_figures.plot_network_bars, {"MCI - NC": rng.standard_normal(5)}, NETWORKS), tmp_path / "single.png"
    )
    assert has_colors(single, network_colors(NETWORKS).values())


def test_plot_network_bars_errors():
    with pytest.raises(ValueError, match=r"values\['MCI'\]: expected 5 values \(one per network\), got shape \(4,\)"):
        brain_figures.plot_network_bars({"NC": np.ones(5), "MCI": np.ones(4)}, NETWORKS)
    with pytest.raises(ValueError, match=r"networks: expected 5 labels \(one per network\), got 4"):
        brain_figures.plot_network_bars({"NC": np.ones(5)}, NETWORKS[:4])
    with pytest.raises(ValueError, match=r"values\['NC'\]: expected finite values, got 1 NaN/inf of 5"):
        brain_figures.plot_network_bars({"NC": [1, 2, np.nan, 4, 5]}, NETWORKS)
    with pytest.raises(
        ValueError, match=r"errors: expected a mapping with the same groups as values \['NC'\], got \['MCI'\]"
    ):
        brain_figures.plot_network_bars({"NC": np.ones(5)}, NETWORKS, errors={"MCI": np.ones(5)})
    with pytest.raises(ValueError, match=r"errors\['NC'\]: expected lengths >= 0, got a minimum of -1"):
        brain_figures.plot_network_bars({"NC": np.ones(5)}, NETWORKS, errors={"NC": -np.ones(5)})
    with pytest.raises(ValueError, match=r"networks: expected distinct network names, got duplicates \['Vis'\]"):
        brain_figures.plot_network_bars({"NC": np.ones(3)}, ["Vis", "Vis", "Default"])


@pytest.mark.parametrize("signed", [False, True])
def test_plot_network_matrix(tmp_path, signed):
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((5, 5)) if signed else rng.random((5, 5))
    figure = draw(
        brain_figures.plot_network_matrix, matrix, NETWORKS, row_label="query network", column_label="key network"
    )
    image = figure.axes[0].images[0]
    if signed:  # diverging map centred on 0
        assert image.norm.vmin == -image.norm.vmax and image.get_cmap().name.startswith("RdBu")
    else:
        assert image.get_cmap().name.startswith("viridis")
    pixels = save_and_check(figure, tmp_path / "matrix.png")
    assert has_colors(pixels, network_colors(NETWORKS).values())


def test_plot_network_matrix_errors():
    with pytest.raises(ValueError, match=r"matrix: expected a square \(K, K\) matrix, got shape \(5, 4\)"):
        brain_figures.plot_network_matrix(np.ones((5, 4)), NETWORKS)
    with pytest.raises(ValueError, match=r"matrix: expected a 2-D array, got shape \(2, 5, 5\)"):
        brain_figures.plot_network_matrix(np.ones((2, 5, 5)), NETWORKS)
    with pytest.raises(ValueError, match=r"networks: expected 5 labels \(one per network\), got 3"):
        brain_figures.plot_network_matrix(np.ones((5, 5)), NETWORKS[:3])


def test_plot_glass_brain_shows_rois_without_coordinates(tmp_path):
    rng = np.random.default_rng(3)
    coords = rng.uniform(-60, 60, size=(23, 3))
    coords[:4] = np.nan  # e.g. subcortical rows of the released atlas
    values = rng.standard_normal(23)
    figure = draw(brain_figures.plot_glass_brain, values, coords, roi_networks(), title="tiny", colorbar_label="z")
    strip = [axes for axes in figure.axes if axes.get_title().startswith("4 ROIs without coordinates (rows 0-3)")]
    assert len(strip) == 1
    np.testing.assert_allclose(strip[0].images[0].get_array().ravel(), values[:4])
    assert [t.get_text() for t in strip[0].get_xticklabels()] == ["Vis"]
    cmap = strip[0].images[0].get_cmap()
    pixels = save_and_check(figure, tmp_path / "glass.png")
    assert has_colors(pixels, [cmap(0), cmap(cmap.N - 1)])  # colour-bar ends kept exactly in the palette PNG
    # all coordinates known: no strip
    figure = draw(brain_figures.plot_glass_brain, np.abs(values[4:]), coords[4:])
    assert not any("without coordinates" in axes.get_title() for axes in figure.axes)
    save_and_check(figure, tmp_path / "glass_all.png")


def test_plot_glass_brain_errors():
    coords = np.zeros((3, 3))
    with pytest.raises(
        ValueError, match=r"coords: expected shape \(3, 3\) \(x, y, z in MNI mm per ROI\), got \(4, 3\)"
    ):
        brain_figures.plot_glass_brain(np.ones(3), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="values: expected finite values, got 1 NaN/inf of 3"):
        brain_figures.plot_glass_brain([1, np.nan, 2], coords)
    coords[1, 0] = np.nan
    with pytest.raises(
        ValueError, match="coords: expected all three or none of x, y, z per ROI, got partly NaN rows 1"
    ):
        brain_figures.plot_glass_brain(np.ones(3), coords)
    with pytest.raises(ValueError, match="coords: expected MNI coordinates for at least one ROI, got NaN for all"):
        brain_figures.plot_glass_brain(np.ones(3), np.full((3, 3), np.nan))


def test_plot_gradient_space(tmp_path):
    rng = np.random.default_rng(4)
    figure = draw(brain_figures.plot_gradient_space, rng.standard_normal((23, 3)), roi_networks())
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == [f"{n} ({roi_networks().count(n)})" for n in NETWORKS]
    pixels = save_and_check(figure, tmp_path / "gradient.png")
    assert has_colors(pixels, network_colors(NETWORKS).values())
    with pytest.raises(
        ValueError, match=r"gradient: expected at least 2 gradient columns \(R, G >= 2\), got shape \(23, 1\)"
    ):
        brain_figures.plot_gradient_space(np.ones((23, 1)), roi_networks())
    with pytest.raises(ValueError, match=r"networks: expected 23 labels \(one per ROI \(row of gradient\)\), got 22"):
        brain_figures.plot_gradient_space(np.ones((23, 2)), roi_networks()[:22])
    with pytest.raises(ValueError, match=r"components: expected two different columns in \[0, 2\], got \(0, 3\)"):
        brain_figures.plot_gradient_space(np.ones((23, 3)), roi_networks(), components=(0, 3))


def test_plot_embedding_scatter_picks_legend_or_colour_bar(tmp_path):
    rng = np.random.default_rng(5)
    embeddings = rng.standard_normal((30, 8))
    classes = np.array(["NC", "MCI", "AD"])[rng.integers(0, 3, 30)]
    figure = draw(brain_figures.plot_embedding_scatter, embeddings, classes, label_name="diagnosis")
    assert figure.axes[0].get_legend() is not None and len(figure.axes) == 1
    assert figure.axes[0].get_xlabel().startswith("PC1 (") and "% of variance" in figure.axes[0].get_xlabel()
    save_and_check(figure, tmp_path / "classes.png")
    figure = draw(brain_figures.plot_embedding_scatter, embeddings, rng.uniform(50, 80, 30), label_name="age (years)")
    assert figure.axes[0].get_legend() is None and len(figure.axes) == 2  # scatter + colour bar
    save_and_check(figure, tmp_path / "age.png")
    figure = draw(brain_figures.plot_embedding_scatter, embeddings, rng.integers(0, 2, 30))  # 0/1 labels: categories
    assert figure.axes[0].get_legend() is not None


def test_plot_embedding_scatter_errors():
    embeddings = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"labels: expected one label per embedding \(4,\), got shape \(3,\)"):
        brain_figures.plot_embedding_scatter(embeddings, [1, 2, 3])
    with pytest.raises(ValueError, match=r"embeddings: expected a 2-D array, got shape \(4,\)"):
        brain_figures.plot_embedding_scatter(np.zeros(4), [1, 2, 3, 4])
    with pytest.raises(
        ValueError, match=r"embeddings: expected at least 3 samples x 2 features for a 2-D PCA, got shape \(4, 1\)"
    ):
        brain_figures.plot_embedding_scatter(np.zeros((4, 1)), [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"labels: expected no NaN/inf, got 1 \(those points would be dropped\)"):
        brain_figures.plot_embedding_scatter(embeddings, [1.5, np.nan, 2.5, 3.5])
    with pytest.raises(ValueError, match=r"embeddings: expected finite values, got 1 NaN/inf of 12"):
        embeddings[2, 1] = np.nan
        brain_figures.plot_embedding_scatter(embeddings, [1, 2, 3, 4])


@pytest.fixture(scope="module")
def pretraining_run(tmp_path_factory):
    return pretrain_tiny_run(tmp_path_factory.mktemp("run") / "tiny-run")


def test_plot_training_cli_on_a_real_run(pretraining_run, capsys):
    from brain_jepa_cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["plot-training", str(pretraining_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {pretraining_run / 'pretraining_curves.png'} (3 logged steps; step 3: loss ")
    pixels = matplotlib.image.imread(pretraining_run / "pretraining_curves.png")
    assert pixels.shape[:2] == (round(6.2 * 120), round(9.0 * 120))
    assert (
        main(
            [
                "plot-training",
                str(pretraining_run / "pretraining_log.jsonl"),
                "--output",
                str(pretraining_run / "x.png"),
                "--dpi",
                "60",
            ]
        )
        == 0
    )
    assert matplotlib.image.imread(pretraining_run / "x.png").shape[:2] == (round(6.2 * 60), round(9.0 * 60))


def test_training_log_resumed_runs_collapse_warnings_and_a_cut_last_line(pretraining_run, tmp_path):
    records = [json.loads(line) for line in (pretraining_run / "pretraining_log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "target_std", "target_effective_rank", "pooled_sample_std"} <= set(records[0])
    resumed = dict(records[1], loss=0.125, collapse_warning=True)  # step 2 logged again after a resume
    text = "".join(json.dumps(r) + "\n" for r in records) + json.dumps(resumed) + "\n" + '{"step": 4, "lo'
    log = tmp_path / "pretraining_log.jsonl"
    log.write_text(text)
    read = training_figures.read_training_log(tmp_path)
    assert [r["step"] for r in read] == [1, 2, 3] and read[1]["loss"] == 0.125
    figure = draw(training_figures.plot_training_curves, log)
    assert "collapse warnings at 1 steps (shaded)" in figure.get_suptitle()
    loss_axes = figure.axes[0]
    np.testing.assert_allclose(loss_axes.lines[0].get_ydata(), [records[0]["loss"], 0.125, records[2]["loss"]])
    assert len(loss_axes.patches) == 1  # the shaded step
    save_and_check(figure, tmp_path / "curves.png")


def test_training_log_errors(tmp_path, capsys):
    from brain_jepa_cli import main

    with pytest.raises(SystemExit) as exited:
        main(["plot-training", "--help"])
    assert exited.value.code == 0 and "brain-jepa plot-training runs/example" in capsys.readouterr().out

    with pytest.raises(
        FileNotFoundError,
        match=r"run_dir_or_log: no pretraining_log.jsonl in .* \(is it a `brain-jepa pretrain` output folder\?\)",
    ):
        training_figures.plot_training_curves(tmp_path)
    log = tmp_path / "pretraining_log.jsonl"
    log.write_text("")
    with pytest.raises(
        ValueError, match="no records \\(empty log\\); pretraining writes one every logging_steps steps"
    ):
        training_figures.plot_training_curves(tmp_path)
    log.write_text('{"step": 1}\n')
    with pytest.raises(
        ValueError,
        match=r"line 1: expected fields \['step', 'loss', 'lr', 'target_std', 'target_effective_rank'\], missing \['loss', 'lr'",
    ):
        training_figures.read_training_log(log)
    log.write_text('not json\n{"step": 1}\n')
    with pytest.raises(ValueError, match=r"line 1 is not JSON"):
        training_figures.read_training_log(log)
    assert main(["plot-training", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err == f"brain-jepa plot-training: error: RUN_DIR: {tmp_path / 'missing'} does not exist\n"
