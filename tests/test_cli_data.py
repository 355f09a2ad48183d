"""`brain-jepa parcellate | gradients | build-dataset`: NIfTI -> ROI files -> gradients -> Arrow dataset."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk

from brain_jepa_cli import main
from brain_jepa_hf.gradients import (
    compute_gradients,
    functional_connectivity,
    load_gradient_csv,
)


SHAPE, T = (8, 6, 2), 60


def write_scans(folder, n=3):
    """Scans whose 6 regions (2 atlases) carry known signals; returns {scan name: (6, T) signals}."""
    folder.mkdir()
    sub = np.zeros(SHAPE, np.int16)
    sub[:4, :, 0] = 1
    sub[4:, :, 0] = 2
    cortex = np.zeros(SHAPE, np.int16)
    for k in range(4):
        cortex[2 * k : 2 * k + 2, :, 1] = k + 1
    nib.save(nib.Nifti1Image(sub, np.eye(4)), folder / "sub_atlas.nii.gz")
    nib.save(nib.Nifti1Image(cortex, np.eye(4)), folder / "cortex_atlas.nii.gz")
    rng = np.random.default_rng(0)
    truth = {}
    (folder / "scans").mkdir()
    for i in range(n):
        shared = rng.standard_normal(T)
        signals = rng.standard_normal((6, T)) + np.array([1, 1, 0, 0, 1, 0])[:, None] * shared + 100
        data = np.zeros(SHAPE + (T,), np.float32)
        regions = [sub == 1, sub == 2] + [cortex == k + 1 for k in range(4)]
        for k, region in enumerate(regions):
            data[region] = signals[k]
        nib.save(nib.Nifti1Image(data, np.eye(4)), folder / "scans" / f"sub-{i:02d}.nii.gz")
        truth[f"sub-{i:02d}"] = signals
    return truth


def test_help_shows_examples(capsys):
    for command in ("parcellate", "gradients", "build-dataset"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "Examples:" in text and f"brain-jepa {command}" in text


def test_nifti_to_dataset_pipeline(tmp_path, capsys):
    truth = write_scans(tmp_path / "raw")
    raw = tmp_path / "raw"
    assert (
        main(
            [
                "parcellate",
                str(raw / "scans"),
                "--atlas",
                str(raw / "sub_atlas.nii.gz"),
                "--atlas",
                str(raw / "cortex_atlas.nii.gz"),
                "--output-dir",
                str(tmp_path / "rois"),
            ]
        )
        == 0
    )
    assert "wrote 3 ROI time series" in capsys.readouterr().out
    for subject, signals in truth.items():
        np.testing.assert_allclose(np.load(tmp_path / "rois" / f"{subject}.npy"), signals, rtol=1e-5)

    assert (
        main(
            [
                "gradients",
                "--series-dir",
                str(tmp_path / "rois"),
                "--n-components",
                "3",
                "--sparsity",
                "0",
                "--output",
                str(tmp_path / "gradient.csv"),
            ]
        )
        == 0
    )
    parcellated = [np.load(tmp_path / "rois" / f"{subject}.npy") for subject in truth]
    expected = compute_gradients(functional_connectivity(parcellated), n_components=3, sparsity=0)
    np.testing.assert_allclose(
        load_gradient_csv(tmp_path / "gradient.csv", num_rois=6), expected, rtol=1e-6, atol=1e-9
    )

    pd.DataFrame({"participant_id": list(truth), "age": [30.5, 41.0, 52.5], "group": ["a", "b", "a"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False
    )
    assert (
        main(
            [
                "build-dataset",
                str(tmp_path / "rois"),
                "--labels",
                str(tmp_path / "participants.tsv"),
                "--subject-column",
                "participant_id",
                "--output-dir",
                str(tmp_path / "dataset"),
                "--num-rois",
                "6",
                "--gradient",
                str(tmp_path / "gradient.csv"),
                "--gradient-components",
                "3",
            ]
        )
        == 0
    )
    assert "wrote 3 subjects (6 ROIs x 60 volumes)" in capsys.readouterr().out
    dataset = load_from_disk(str(tmp_path / "dataset"))
    assert dataset.column_names == ["subject_id", "fmri", "age", "group"]
    np.testing.assert_allclose(dataset.with_format("numpy")[1]["fmri"], truth["sub-01"], rtol=1e-5)
    np.testing.assert_allclose(
        load_gradient_csv(tmp_path / "dataset" / "gradient.csv"), expected, rtol=1e-6, atol=1e-9
    )

    # --compute-gradient derives gradient.csv from the same subjects in the streaming pass
    assert (
        main(
            [
                "build-dataset",
                str(tmp_path / "rois"),
                "--output-dir",
                str(tmp_path / "dataset2"),
                "--compute-gradient",
                "--gradient-components",
                "3",
                "--gradient-sparsity",
                "0",
            ]
        )
        == 0
    )
    np.testing.assert_allclose(
        load_gradient_csv(tmp_path / "dataset2" / "gradient.csv", num_rois=6),
        compute_gradients(functional_connectivity(parcellated), n_components=3, sparsity=0),
        rtol=1e-6,
        atol=1e-9,
    )


def test_failed_build_dataset_exits_1_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "rois").mkdir()
    for i in range(4):
        np.save(
            tmp_path / "rois" / f"sub-{i}.npy", np.random.default_rng(i).standard_normal((6, 20)).astype(np.float32)
        )
    pd.DataFrame({"subject_id": ["sub-0", "sub-1"], "age": [1.0, 2.0]}).to_csv(tmp_path / "labels.csv", index=False)
    code = main(
        [
            "build-dataset",
            str(tmp_path / "rois"),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert (
        "brain-jepa build-dataset: error: labels: expected a row for every subject with a file, got 2 missing" in err
    )
    np.save(tmp_path / "rois" / "sub-9.npy", np.zeros((5, 20), np.float32))  # wrong ROI count, last file
    assert main(["build-dataset", str(tmp_path / "rois"), "--output-dir", str(tmp_path / "out")]) == 1
    assert (
        "sub-9.npy: expected 6 ROIs like the first file sub-0.npy (shape (6, 20)), got shape (5, 20)"
        in capsys.readouterr().err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "rois"]


def test_example_cohort_and_gradient_commands(tmp_path, capsys):
    assert main(["build-dataset", "--example", "--num-subjects", "3", "--output-dir", str(tmp_path / "example")]) == 0
    dataset = load_from_disk(str(tmp_path / "example"))
    assert dataset.column_names == ["subject_id", "fmri", "age", "sex"] and len(dataset) == 3
    from brain_jepa_hf.example_data import example_gradient, load_example_dataset

    np.testing.assert_array_equal(
        dataset.with_format("numpy")[2]["fmri"], load_example_dataset(num_subjects=3).with_format("numpy")[2]["fmri"]
    )
    stored = load_gradient_csv(tmp_path / "example" / "gradient.csv", num_rois=450)
    np.testing.assert_allclose(stored, example_gradient(), rtol=1e-6, atol=1e-7)
    assert main(["gradients", "--brainspace-group", "main", "--output", str(tmp_path / "main.csv")]) == 0
    assert (
        main(
            [
                "gradients",
                "--brainspace-group",
                "holdout",
                "--reference",
                str(tmp_path / "main.csv"),
                "--output",
                str(tmp_path / "holdout.csv"),
            ]
        )
        == 0
    )
    line = [
        text for text in capsys.readouterr().out.splitlines() if text.startswith("correlation with the reference")
    ][0]
    assert float(line.split(":")[1].split(",")[0]) > 0.9
    assert main(["gradients", "--fc", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "x.csv")]) == 1
    assert "brain-jepa gradients: error: --fc: " in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
