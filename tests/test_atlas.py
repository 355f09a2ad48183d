"""ROI atlas metadata: the shipped 450-ROI table against the shared atlas facts, user tables and their
errors, and the atlas a model carries through save_pretrained, conversion, pretraining and fine-tuning."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from brain_jepa_cli import main as cli_main
from brain_jepa_hf import (
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)
from brain_jepa_hf.atlas import (
    Atlas,
    atlas_for,
    read_atlas_table,
    released_atlas,
    set_atlas,
)
from brain_jepa_hf.conversion import convert_original_checkpoint

from helpers import make_config, make_inputs
from original_layout import original_checkpoint


REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_TABLE = REPO_ROOT / "brain_jepa_hf" / "atlas_data" / "released_450.csv"


def _shared_atlas_dir() -> Path | None:
    candidates = [REPO_ROOT.parent / "shared", REPO_ROOT / "shared"]
    if os.environ.get("BRAIN_JEPA_SHARED_DIR"):
        candidates.insert(0, Path(os.environ["BRAIN_JEPA_SHARED_DIR"]))
    for folder in candidates:
        if (folder / "atlas" / "schaefer400_17networks_centroids.csv").is_file():
            return folder / "atlas"
    return None


SHARED = _shared_atlas_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None,
    reason="shared/atlas/ (README.md + schaefer400_17networks_centroids.csv) is not beside the repository",
)


@pytest.fixture(scope="module")
def shared_parcels():
    with open(SHARED / "schaefer400_17networks_centroids.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def readme_mapping() -> dict[str, str]:
    """The 17 -> 7 correspondence as written in the shared README's "17 -> 7 networks" section."""
    text = (SHARED / "README.md").read_text()
    section = text.split("## 17 -> 7 networks", 1)[1].split("\n## ", 1)[0]
    mapping = {}
    for sources, target in re.findall(r"((?:[A-Za-z]+, )*[A-Za-z]+) -> ([A-Za-z]+)", section):
        for source in sources.split(", "):
            mapping[source] = target
    assert len(mapping) == 17, mapping
    return mapping


def write_table(
    path: Path, rows: list[list], header=("index", "name", "network", "hemisphere", "x", "y", "z"), delimiter=","
):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def user_rows(num_rois: int) -> list[list]:
    networks = ["Visual", "Motor", "Default"]
    return [[i, f"roi_{i}", networks[i % 3], "L" if i % 2 else "R", float(i), -2.5 * i, 10.0] for i in range(num_rois)]


# ---------------------------------------------------------------------------------------------
# The shipped 450-ROI table
# ---------------------------------------------------------------------------------------------


@needs_shared
def test_cortical_rows_are_the_shared_table(shared_parcels):
    atlas = released_atlas()
    assert atlas.num_rois == 450 and atlas.name == "released"
    names = [p["ROI Name"] for p in shared_parcels]
    assert list(atlas.roi_names[50:]) == names
    assert list(atlas.networks[50:]) == [n.split("_")[2] for n in names]
    assert list(atlas.hemispheres[50:]) == [n.split("_")[1][0] for n in names]
    expected = np.array([[float(p[a]) for a in ("R", "A", "S")] for p in shared_parcels])
    np.testing.assert_array_equal(atlas.coords[50:], expected)


@needs_shared
def test_seventeen_to_seven_as_the_readme(readme_mapping):
    atlas = released_atlas()
    assert readme_mapping["TempPar"] == "Default"
    pairs = set(zip(atlas.networks[50:], atlas.coarse_networks[50:]))
    assert pairs == set(readme_mapping.items())
    # TempPar stays separable: its own label at the fine level, Default at the coarse level
    temppar = [i for i, n in enumerate(atlas.network_labels("fine")) if n == "TempPar"]
    assert temppar and {atlas.network_labels("coarse")[i] for i in temppar} == {"Default"}


@needs_shared
def test_network_counts(shared_parcels):
    atlas = released_atlas()
    fine, coarse = Counter(atlas.network_labels("fine")), Counter(atlas.network_labels("coarse"))
    assert fine["Subcortical"] == coarse["Subcortical"] == 50
    assert fine - Counter({"Subcortical": 50}) == Counter(p["ROI Name"].split("_")[2] for p in shared_parcels)
    assert len(fine) == 18 and len(coarse) == 8 and sum(fine.values()) == sum(coarse.values()) == 450
    for network in atlas.network_order("fine"):  # every network has parcels in both hemispheres
        assert {h for h, n in zip(atlas.hemispheres, atlas.networks) if n == network} == {"L", "R"}
    assert atlas.network_order("coarse") == [
        "Subcortical",
        "Vis",
        "SomMot",
        "DorsAttn",
        "SalVentAttn",
        "Limbic",
        "Cont",
        "Default",
    ]


def test_subcortical_rows_right_then_left_without_coordinates():
    atlas = released_atlas()
    assert atlas.hemispheres[:25] == ("R",) * 25 and atlas.hemispheres[25:50] == ("L",) * 25
    assert set(atlas.networks[:50]) == set(atlas.coarse_networks[:50]) == {"Subcortical"}
    assert np.isnan(atlas.coords[:50]).all() and np.isfinite(atlas.coords[50:]).all()
    assert len(set(atlas.roi_names)) == 450
    assert [n.replace("_RH_", "_LH_") for n in atlas.roi_names[:25]] == list(atlas.roi_names[25:50])


def test_centroids_agree_with_names():
    """Order check on the table itself: hemisphere from the name matches the side of the centroid, and
    the visual networks are the most posterior and the somatomotor ones the most superior."""
    atlas = released_atlas()
    x = atlas.coords[50:, 0]
    hemispheres = np.array(atlas.hemispheres[50:])
    assert (x[hemispheres == "L"] < 0).all() and (x[hemispheres == "R"] > 0).all()
    coarse = np.array(atlas.coarse_networks[50:])
    mean_y = {n: atlas.coords[50:][coarse == n, 1].mean() for n in set(coarse)}
    mean_z = {n: atlas.coords[50:][coarse == n, 2].mean() for n in set(coarse)}
    assert min(mean_y, key=mean_y.get) == "Vis"
    assert max(mean_z, key=mean_z.get) == "SomMot"


def _explained_variance(values: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of the variance of `values` explained by group means of `labels` (R^2 of a one-way ANOVA)."""
    centred = values - values.mean()
    within = sum(((values[labels == g] - values[labels == g].mean()) ** 2).sum() for g in np.unique(labels))
    return 1.0 - within / (centred**2).sum()


def test_networks_explain_the_connectivity_gradients_of_real_fc():
    """The atlas README's order check, on data that ships offline: brainspace's Schaefer-400 group FC (in
    7-network order), put into the released 17-network order by matching parcel centroids; the table's
    17 network labels then explain most of the variance of the first two gradients, shuffled labels
    almost none."""
    from brain_jepa_hf.atlas import released_rows_of_brainspace_schaefer400
    from brain_jepa_hf.gradients import compute_gradients, load_brainspace_group_fc

    rows = released_rows_of_brainspace_schaefer400()
    assert sorted(rows.tolist()) == list(range(50, 450))
    assert (rows != np.arange(50, 450)).mean() > 0.9  # brainspace's order is not the released one
    fc = load_brainspace_group_fc("main", 400)
    order = np.argsort(rows)  # released row 50 + j holds brainspace parcel order[j]
    gradient = compute_gradients(fc[np.ix_(order, order)], n_components=2, random_state=0)
    networks = np.array(released_atlas().networks[50:])
    shuffled = np.random.default_rng(0).permutation(networks)
    for column in range(2):
        assert _explained_variance(gradient[:, column], networks) > 0.8
        assert _explained_variance(gradient[:, column], shuffled) < 0.2


def test_example_atlas_fits_the_example_cohort(tmp_path):
    """The example cohort's cortex is brainspace's FC in brainspace's parcel order: the example atlas (the
    released rows reordered) explains its gradients better than the released order does."""
    from brain_jepa_hf.atlas import example_atlas
    from brain_jepa_hf.example_data import example_gradient

    example, released = example_atlas(), released_atlas()
    assert example.roi_names[:50] == released.roi_names[:50]
    assert sorted(example.roi_names[50:]) == sorted(released.roi_names[50:])
    assert example.hemispheres[50:250] == ("L",) * 200  # brainspace lists the left hemisphere first
    gradient = example_gradient(2)
    for column in range(2):
        fitted = _explained_variance(gradient[:, column], np.array(example.networks))
        assert fitted > 0.8 and fitted > _explained_variance(gradient[:, column], np.array(released.networks))
    assert _explained_variance(gradient[:, 1], np.array(released.networks)) < 0.7
    model = BrainJepaModel(make_config(num_rois=450, num_frames=32, patch_size=16, atlas="example"))
    model.save_pretrained(tmp_path / "m")
    assert atlas_for(tmp_path / "m") == example


@needs_shared
def test_build_script_regenerates_the_package_table_byte_for_byte(tmp_path):
    out = tmp_path / "released_450.csv"
    script = REPO_ROOT / "conversion" / "build_released_atlas.py"
    source = SHARED / "schaefer400_17networks_centroids.csv"
    result = subprocess.run(
        [sys.executable, str(script), "--source", str(source), "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == PACKAGE_TABLE.read_bytes()
    out.write_text(out.read_text().replace("VisCent,Vis", "VisCent,Default", 1))
    check = subprocess.run(
        [sys.executable, str(script), "--source", str(source), "--output", str(out), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1 and "out of date" in check.stderr


def test_atlas_is_immutable_and_compares_by_value():
    atlas = released_atlas()
    with pytest.raises(ValueError):
        atlas.coords[0, 0] = 1.0
    copy = Atlas(
        atlas.name, atlas.roi_names, atlas.networks, atlas.coarse_networks, atlas.hemispheres, atlas.coords.copy()
    )
    assert copy == atlas
    assert (
        Atlas(
            "other",
            *[getattr(atlas, f) for f in ("roi_names", "networks", "coarse_networks", "hemispheres", "coords")],
        )
        != atlas
    )
    with pytest.raises(ValueError, match=r"level: expected one of \('coarse', 'fine'\), got 'seven'"):
        atlas.network_labels("seven")


# ---------------------------------------------------------------------------------------------
# User tables
# ---------------------------------------------------------------------------------------------


def test_user_table_tsv_one_based_any_order(tmp_path):
    rows = [[i + 1, f"roi_{i}", "Net" + "AB"[i % 2], "left" if i < 3 else "RH", "", "", ""] for i in range(6)]
    rows[2][4:] = ["1.5", "-2", "3e1"]
    path = write_table(
        tmp_path / "atlas.tsv",
        rows[::-1],
        header=("Index", "Name", "Network", "Hemisphere", "X", "Y", "Z"),
        delimiter="\t",
    )
    atlas = read_atlas_table(path, num_rois=6)
    assert atlas.name == "atlas" and atlas.roi_names == tuple(f"roi_{i}" for i in range(6))
    assert atlas.coarse_networks == atlas.networks == ("NetA", "NetB") * 3
    assert atlas.hemispheres == ("L", "L", "L", "R", "R", "R")
    np.testing.assert_array_equal(atlas.coords[2], [1.5, -2.0, 30.0])
    assert np.isnan(np.delete(atlas.coords, 2, axis=0)).all()


def test_user_table_with_coarse_network_and_no_coordinates(tmp_path):
    rows = [[i, f"r{i}", ["A1", "A2", "B1"][i % 3], ["A", "A", "B"][i % 3]] for i in range(5)]
    atlas = read_atlas_table(
        write_table(tmp_path / "t.csv", rows, header=("index", "name", "network", "coarse_network"))
    )
    assert atlas.network_labels("coarse") == ["A", "A", "B", "A", "A"]
    assert atlas.network_labels("fine") == ["A1", "A2", "B1", "A1", "A2"]
    assert atlas.hemispheres == ("",) * 5 and np.isnan(atlas.coords).all()


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda rows, header: (rows[:-1], header),
            r"atlas: expected 6 rows \(the model's num_rois\), got 5 in .*t\.csv",
        ),
        (
            lambda rows, header: ([r[:2] + r[3:] for r in rows], header[:2] + header[3:]),
            r"atlas: expected columns \['index', 'name', 'network'\].* missing \['network'\]",
        ),
        (
            lambda rows, header: ([[0] + r[1:] if i == 3 else r for i, r in enumerate(rows)], header),
            r"atlas: expected each index once, got \[0\] more than once",
        ),
        (
            lambda rows, header: ([[r[0] + (4 if i == 5 else 0)] + r[1:] for i, r in enumerate(rows)], header),
            r"atlas: expected indices 0\.\.5 or 1\.\.6 without gaps, got 0\.\.9 missing \[5\]",
        ),
        (
            lambda rows, header: ([[r[0] + 2] + r[1:] for r in rows], header),
            r"atlas: expected indices 0\.\.5 or 1\.\.6 without gaps, got 2\.\.7",
        ),
        (
            lambda rows, header: ([r[:5] + ["front"] + r[6:] if i == 1 else r for i, r in enumerate(rows)], header),
            r"atlas: expected a number \(or empty\) for y, got 'front' on line 3 of",
        ),
        (
            lambda rows, header: ([r[:1] + ["  "] + r[2:] if i == 4 else r for i, r in enumerate(rows)], header),
            r"atlas: expected a non-empty name, got an empty one on line 6 of",
        ),
        (
            lambda rows, header: ([r[:3] + ["both"] + r[4:] for r in rows], header),
            r"atlas: expected hemisphere L, R, LH, RH, left, right or empty, got 'both' on line 2",
        ),
        (
            lambda rows, header: ([r[:6] for r in rows], header[:6]),
            r"atlas: expected all of x, y, z or none, got only \['x', 'y'\]",
        ),
        (
            lambda rows, header: ([["first"] + r[1:] if i == 0 else r for i, r in enumerate(rows)], header),
            r"atlas: expected an integer index, got 'first' on line 2",
        ),
    ],
)
def test_user_table_errors(tmp_path, edit, message):
    rows, header = edit(user_rows(6), list(("index", "name", "network", "hemisphere", "x", "y", "z")))
    path = write_table(tmp_path / "t.csv", rows, header=header)
    with pytest.raises(ValueError, match=message) as error:
        read_atlas_table(path, num_rois=6)
    assert "\n" not in str(error.value)


def test_missing_table_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"atlas: .*nope\.csv does not exist or is not a file"):
        read_atlas_table(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------
# The atlas a model carries
# ---------------------------------------------------------------------------------------------


def test_saved_model_with_the_released_atlas_loads_it_back(tmp_path):
    config = make_config(num_rois=450, num_frames=32, patch_size=16, atlas="released")
    model = BrainJepaModel(config)
    assert atlas_for(model) == atlas_for(config) == released_atlas()
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["atlas"] == "released"
    assert atlas_for(tmp_path / "m") == released_atlas()
    assert atlas_for(BrainJepaModel.from_pretrained(tmp_path / "m")) == released_atlas()


def test_user_table_round_trip_through_save_and_load(tmp_path):
    rows = user_rows(23)
    rows[4][4:] = ["", "", ""]  # unknown centroid
    table = read_atlas_table(write_table(tmp_path / "mine.csv", rows), num_rois=23)
    model = BrainJepaForSequenceClassification(make_config(num_labels=2))
    assert atlas_for(model) is None
    assert set_atlas(model, tmp_path / "mine.csv") == table
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["atlas"]["coords"][4] == [None, None, None]
    loaded = BrainJepaForSequenceClassification.from_pretrained(tmp_path / "m")
    assert atlas_for(loaded) == table and atlas_for(tmp_path / "m") == table
    assert np.isnan(atlas_for(loaded).coords[4]).all()


def test_config_checks_the_atlas_against_num_rois(tmp_path):
    with pytest.raises(ValueError, match=r"atlas: 'released' has 450 ROIs but num_rois=23"):
        make_config(atlas="released")
    with pytest.raises(
        ValueError, match=r"atlas: expected None, a table or one of \['example', 'released'\], got 'yeo'"
    ):
        make_config(num_rois=450, atlas="yeo")
    model = BrainJepaModel(make_config())
    with pytest.raises(ValueError, match=r"atlas: expected 23 ROIs \(the model's num_rois\), got 450 in 'released'"):
        set_atlas(model, "released")
    with pytest.raises(ValueError, match=r"atlas: expected 23 rows \(the model's num_rois\), got 6 in"):
        set_atlas(model, write_table(tmp_path / "t.csv", user_rows(6)))
    table = {
        "name": "t",
        "roi_names": ["a"] * 22,
        "networks": ["n"] * 23,
        "coarse_networks": ["n"] * 23,
        "hemispheres": [""] * 23,
        "coords": [[None] * 3] * 23,
    }
    with pytest.raises(ValueError, match=r"atlas: expected 23 entries in 'roi_names' \(num_rois\), got 22"):
        make_config(atlas=table)
    with pytest.raises(ValueError, match=r"model: expected a model folder with config.json, got .* without one"):
        atlas_for(tmp_path)


@pytest.fixture(scope="module")
def original_450(tmp_path_factory):
    """A tiny 450-ROI pretraining model saved in the authors' checkpoint layout, with its gradient CSV."""
    config = make_config(num_rois=450, num_frames=32, patch_size=16)
    torch.manual_seed(0)
    model = BrainJepaForPreTraining(config).eval()
    _, gradient = make_inputs(config)
    model.set_gradient(gradient)
    folder = tmp_path_factory.mktemp("original-450")
    torch.save(original_checkpoint(model), folder / "jepa.pth.tar")
    np.savetxt(folder / "gradient.csv", gradient.double().numpy(), delimiter=",")
    return folder / "jepa.pth.tar", folder / "gradient.csv"


def test_converted_450_roi_model_carries_the_released_atlas(original_450, tmp_path):
    checkpoint, gradient_csv = original_450
    out = convert_original_checkpoint(
        checkpoint, gradient_csv, tmp_path / "converted", num_attention_heads=make_config().num_attention_heads
    )
    assert atlas_for(out) == released_atlas()
    assert atlas_for(BrainJepaModel.from_pretrained(out)) == released_atlas()
    assert (
        cli_main(
            [
                "convert",
                str(checkpoint),
                "--gradient-csv",
                str(gradient_csv),
                "--output-dir",
                str(tmp_path / "bare"),
                "--atlas",
                "none",
                "--num-attention-heads",
                str(make_config().num_attention_heads),
            ]
        )
        == 0
    )
    assert atlas_for(tmp_path / "bare") is None


def test_convert_with_a_user_table_and_bad_atlases(tmp_path, capsys):
    config = make_config()
    torch.manual_seed(0)
    model = BrainJepaForPreTraining(config).eval()
    model.set_gradient(make_inputs(config)[1])
    torch.save(original_checkpoint(model), tmp_path / "jepa.pth.tar")
    np.savetxt(tmp_path / "gradient.csv", model.brain_jepa.embeddings.gradient.double().numpy(), delimiter=",")
    args = [
        "convert",
        str(tmp_path / "jepa.pth.tar"),
        "--gradient-csv",
        str(tmp_path / "gradient.csv"),
        "--num-attention-heads",
        str(config.num_attention_heads),
    ]
    assert cli_main(args + ["--output-dir", str(tmp_path / "auto")]) == 0
    assert atlas_for(tmp_path / "auto") is None  # not 450 ROIs: no atlas assumed
    table = write_table(tmp_path / "mine.csv", user_rows(23))
    assert cli_main(args + ["--output-dir", str(tmp_path / "mine"), "--atlas", str(table)]) == 0
    assert atlas_for(tmp_path / "mine") == read_atlas_table(table)
    capsys.readouterr()
    assert cli_main(args + ["--output-dir", str(tmp_path / "bad"), "--atlas", "released"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err == "brain-jepa convert: error: atlas: expected 23 ROIs (the model's num_rois), got 450 in 'released'"
    assert not (tmp_path / "bad").exists()
    assert cli_main(args + ["--output-dir", str(tmp_path / "bad"), "--atlas", "relased"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "brain-jepa convert: error: atlas: expected a table file, 'released', 'example' or 'none', got 'relased' (no such file)"
    )


def test_pretraining_and_finetuning_arguments_set_an_atlas(tmp_path):
    from brain_jepa_hf.downstream_arguments import ModelArguments
    from brain_jepa_hf.downstream_data import LabelInfo
    from brain_jepa_hf.finetuning import build_model
    from brain_jepa_hf.pretraining_arguments import PretrainingArguments

    table = write_table(tmp_path / "mine.csv", user_rows(23))
    args = PretrainingArguments(
        output_dir=str(tmp_path / "run"),
        model_preset="tiny",
        num_frames=40,
        patch_size=8,
        atlas=str(table),
        model_overrides='{"gradient_dim": 6}',
    )
    config = args.model_config(num_rois=23)
    assert atlas_for(config) == read_atlas_table(table)
    with pytest.raises(ValueError, match=r"atlas: expected 30 rows \(the model's num_rois\), got 23"):
        args.model_config(num_rois=30)

    BrainJepaModel(config).save_pretrained(tmp_path / "pretrained")
    inherits = build_model(
        ModelArguments(model_name_or_path=str(tmp_path / "pretrained")), None, LabelInfo("regression", 1)
    )
    assert atlas_for(inherits) == read_atlas_table(table)  # fine-tuning keeps the pretrained model's atlas
    cleared = build_model(
        ModelArguments(model_name_or_path=str(tmp_path / "pretrained"), atlas="none"), None, LabelInfo("regression", 1)
    )
    assert atlas_for(cleared) is None


def test_runs_on_the_embedded_example_store_its_atlas_by_default(tmp_path):
    from brain_jepa_hf.atlas import example_atlas
    from brain_jepa_hf.downstream_arguments import DataArguments, ModelArguments
    from brain_jepa_hf.downstream_data import resolve_example_atlas
    from brain_jepa_hf.pretraining_arguments import PretrainingArguments

    args = PretrainingArguments(output_dir=str(tmp_path), model_preset="tiny")
    assert args.model_config(num_rois=450).atlas == "example"
    assert (
        PretrainingArguments(output_dir=str(tmp_path), model_preset="tiny", atlas="none").model_config(450).atlas
        is None
    )
    assert (
        PretrainingArguments(output_dir=str(tmp_path), model_preset="tiny", dataset=str(tmp_path))
        .model_config(450)
        .atlas
        is None
    )
    model = BrainJepaForSequenceClassification(make_config(num_rois=450, num_frames=32, patch_size=16))
    resolve_example_atlas(model, ModelArguments(), DataArguments(dataset=str(tmp_path)))
    assert atlas_for(model) is None
    resolve_example_atlas(model, ModelArguments(), DataArguments())  # dataset "example"
    assert atlas_for(model) == example_atlas()
