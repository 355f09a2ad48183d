"""Figures: every function draws a PNG from tiny data, with consistent network colours and clear errors."""

import warnings

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from brain_jepa_hf.figures import network_colors, plot_carpet, save_figure

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
