"""Arrow datasets from per-subject files and labels; model-ready samples (FmriSamples); failure safety."""

import stat

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import load_from_disk
from transformers import default_data_collator

from brain_jepa_hf.arrow_data import write_dataset
from brain_jepa_hf.atomic_io import current_umask
from brain_jepa_hf.data import build_dataset
from brain_jepa_hf.example_data import load_example_dataset
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.samples import FmriSamples
from brain_jepa_hf.series_files import read_series


R, T = 10, 64


def write_cohort(folder, n=6, seed=0):
    """Subjects as .npy, .csv (no header) and .tsv (ROI-name header), all time x ROI; returns {id: (R, T)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n):
        subject = f"sub-{i:02d}"
        series = (50 + rng.standard_normal((R, T))).astype(np.float32)
        truth[subject] = series
        if i % 3 == 0:
            np.save(folder / f"{subject}.npy", series.T)
        elif i % 3 == 1:
            np.savetxt(folder / f"{subject}.csv", series.T, delimiter=",", fmt="%.9g")
        else:
            header = "\t".join(f"roi{r}" for r in range(R))
            np.savetxt(folder / f"{subject}.tsv", series.T, delimiter="\t", fmt="%.9g", header=header, comments="")
    (folder / "README.txt").write_text("not a series; ignored")
    return truth


def write_labels(path, subjects, extra=("sub-99",)):
    rng = np.random.default_rng(1)
    rows = [
        {"participant": s, "age": float(rng.uniform(40, 80)), "sex": int(rng.integers(0, 2)), "site": f"site{k % 2}"}
        for k, s in enumerate(list(subjects) + list(extra))
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return pd.DataFrame(rows).set_index("participant")


def test_build_dataset_from_mixed_files_and_labels_round_trips(tmp_path):
    truth = write_cohort(tmp_path / "series")
    labels = write_labels(tmp_path / "labels.csv", truth)
    dataset = build_dataset(
        tmp_path / "series",
        labels=tmp_path / "labels.csv",
        subject_column="participant",
        output_dir=tmp_path / "out",
        time_axis=0,
        num_rois=R,
        progress=False,
    )
    assert dataset.column_names == ["subject_id", "fmri", "age", "sex", "site"]
    assert dataset.features["fmri"].shape == (R, T) and dataset.features["fmri"].dtype == "float32"
    assert [dataset.features[c].dtype for c in ("age", "sex", "site")] == ["float32", "int64", "string"]
    assert dataset["subject_id"] == sorted(truth)  # the extra labelled subject without a file is not added
    rows = dataset.with_format("numpy")[:]
    for i, subject in enumerate(rows["subject_id"]):
        np.testing.assert_allclose(rows["fmri"][i], truth[subject], rtol=1e-6)
        assert rows["age"][i] == pytest.approx(labels.loc[subject, "age"], rel=1e-6)
        assert rows["sex"][i] == labels.loc[subject, "sex"] and rows["site"][i] == labels.loc[subject, "site"]
    assert (
        stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~current_umask()
    )  # readable as a plain mkdir would be
    reloaded = load_from_disk(str(tmp_path / "out"))
    np.testing.assert_array_equal(reloaded.with_format("numpy")[:]["fmri"], rows["fmri"])
    dataset.save_to_disk(str(tmp_path / "copy"))
    assert load_from_disk(str(tmp_path / "copy"))["subject_id"] == dataset["subject_id"]


def test_streamed_writer_shards_and_keeps_order(tmp_path):
    rows = ({"subject_id": f"s{i}", "fmri": np.full((R, 8), i, np.float32), "age": float(i)} for i in range(23))
    from datasets import Value

    from brain_jepa_hf.arrow_data import fmri_features

    write_dataset(
        rows, tmp_path / "ds", fmri_features(R, 8, {"age": Value("float32")}), writer_batch_size=4, max_shard_bytes=1
    )
    shards = sorted(p.name for p in (tmp_path / "ds").glob("*.arrow"))
    assert len(shards) == 6 and shards[0] == "data-00000-of-00006.arrow"
    dataset = load_from_disk(str(tmp_path / "ds")).with_format("numpy")
    assert dataset[:]["fmri"][:, 0, 0].tolist() == list(range(23)) and dataset[:]["age"].tolist() == list(range(23))


def test_crop_to_num_timepoints_and_subject_regex(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for i, length in enumerate((70, 64, 80)):
        np.save(folder / f"sub-{i}_task-rest_bold.npy", np.full((R, length), float(i), np.float32))
    dataset = build_dataset(
        folder, output_dir=tmp_path / "out", num_timepoints=64, subject_regex=r"(sub-\d+)_", progress=False
    )
    assert dataset["subject_id"] == ["sub-0", "sub-1", "sub-2"] and dataset.features["fmri"].shape == (R, 64)


def test_samples_match_direct_feature_extractor_calls(tmp_path):
    truth = write_cohort(tmp_path / "series")
    write_labels(tmp_path / "labels.csv", truth)
    dataset = build_dataset(
        tmp_path / "series",
        labels=tmp_path / "labels.csv",
        subject_column="participant",
        output_dir=tmp_path / "out",
        time_axis=0,
        progress=False,
    )
    series = dataset.with_format("numpy")[:]["fmri"]
    extractor = BrainJepaFeatureExtractor(num_rois=R, num_frames=16, sampling_rate=2).fit(series)
    samples = FmriSamples(dataset, extractor, labels="age")
    example = samples[2]
    assert tuple(example["fmri_values"].shape) == (1, R, 16) and example["fmri_values"].dtype == torch.float32
    torch.testing.assert_close(example["fmri_values"], extractor(series[2])["fmri_values"][0])
    assert example["labels"] == torch.tensor(dataset[2]["age"], dtype=torch.float32)
    batch = default_data_collator([samples[i] for i in range(4)])
    assert tuple(batch["fmri_values"].shape) == (4, 1, R, 16) and batch["labels"].dtype == torch.float32
    assert (
        default_data_collator([FmriSamples(dataset, extractor, labels="sex")[i] for i in range(4)])["labels"].dtype
        == torch.int64
    )
    loader = torch.utils.data.DataLoader(samples, batch_size=3, collate_fn=default_data_collator)
    first = next(iter(loader))  # fetched as one batch (__getitems__)
    torch.testing.assert_close(first["fmri_values"], extractor(series[:3])["fmri_values"])
    torch.testing.assert_close(first["labels"], torch.tensor(dataset[:3]["age"], dtype=torch.float32))
    # training samples draw random clips from (seed, epoch, row) alone: the same alone or in any batch
    a = FmriSamples(dataset, extractor, training=True, seed=3)
    b = FmriSamples(dataset, extractor, training=True, seed=3)
    c = FmriSamples(dataset, extractor, training=True, seed=4)
    batched = torch.stack([s["fmri_values"] for s in a.__getitems__([5, 1, 2])])
    alone = torch.stack([b[i]["fmri_values"] for i in (5, 1, 2)])
    torch.testing.assert_close(batched, alone, rtol=0, atol=0)
    direct = extractor(series[1], training=True, seed=np.random.default_rng([3, 0, 1]))["fmri_values"][0]
    torch.testing.assert_close(a[1]["fmri_values"], direct, rtol=0, atol=0)
    assert not torch.equal(batched, torch.stack([c[i]["fmri_values"] for i in (5, 1, 2)]))
    a.set_epoch(1)
    assert not torch.equal(a[1]["fmri_values"], direct)
    with pytest.raises(ValueError, match=r"labels: expected one value per row \(6\), got 2"):
        FmriSamples(dataset, extractor, labels=np.zeros(2))
    with pytest.raises(ValueError, match=r"fmri_column: expected a column of the dataset .*, got 'bold'"):
        FmriSamples(dataset, extractor, fmri_column="bold")


def test_samples_of_series_of_several_lengths_match_one_call_per_series():
    from datasets import Dataset

    rng = np.random.default_rng(0)
    rows = [rng.standard_normal((R, length)).astype(np.float32) for length in (40, 52, 40, 61)]
    dataset = Dataset.from_dict({"fmri": [row.tolist() for row in rows]})
    extractor = BrainJepaFeatureExtractor(num_rois=R, num_frames=8, sampling_rate=4, scaling="zscore")
    for training in (False, True):
        samples = FmriSamples(dataset, extractor, training=training, seed=1)
        batched = [sample["fmri_values"] for sample in samples.__getitems__([0, 1, 2, 3])]
        for index, row in enumerate(rows):
            seed = np.random.default_rng([1, 0, index]) if training else None
            expected = extractor(row, training=training, seed=seed)["fmri_values"][0]
            torch.testing.assert_close(batched[index], expected, rtol=0, atol=0)


def test_example_dataset_uses_the_same_columns_and_samples():
    example = load_example_dataset(num_subjects=4, num_timepoints=490)
    extractor = BrainJepaFeatureExtractor().fit(example.with_format("numpy")[:]["fmri"])
    item = FmriSamples(example, extractor, labels="sex")[1]
    assert tuple(item["fmri_values"].shape) == (1, 450, 160) and item["labels"].dtype == torch.int64


def test_bad_input_raises_and_leaves_nothing_behind(tmp_path):
    truth = write_cohort(tmp_path / "series")
    write_labels(tmp_path / "labels.csv", list(truth)[:4], extra=())
    common = dict(subject_column="participant", time_axis=0, progress=False)
    with pytest.raises(
        ValueError,
        match=r"labels: expected a row for every subject with a file, got 2 missing \(\['sub-04', 'sub-05'\]\) in column 'participant'",
    ):
        build_dataset(tmp_path / "series", labels=tmp_path / "labels.csv", output_dir=tmp_path / "out", **common)
    with pytest.raises(ValueError, match=r"subject_column: expected a column 'subject' in the labels table"):
        build_dataset(
            tmp_path / "series",
            labels=tmp_path / "labels.csv",
            output_dir=tmp_path / "out",
            **{**common, "subject_column": "subject"},
        )
    with pytest.raises(
        ValueError,
        match=r"sub-00.npy: expected 10 ROIs \(time_axis=-1\), got shape \(64, 10\); the other axis has 10 entries: pass time_axis=0",
    ):
        build_dataset(tmp_path / "series", output_dir=tmp_path / "out", num_rois=10, time_axis=-1, progress=False)
    # a bad file late in the folder: the build fails mid-stream and leaves no dataset and no temp folder
    (tmp_path / "series" / "sub-zz.csv").write_text("1,2,3\n4,five,6\n")
    with pytest.raises(ValueError, match=r"series file .*sub-zz.csv: expected ','-separated numbers"):
        build_dataset(
            tmp_path / "series", output_dir=tmp_path / "out", time_axis=0, progress=False, writer_batch_size=2
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "series"]
    (tmp_path / "series" / "sub-zz.csv").unlink()
    np.save(tmp_path / "series" / "sub-zz.npy", np.ones((50, R), np.float32))
    with pytest.raises(
        ValueError, match=r"sub-zz.npy: expected 64 time points like sub-00.npy, got 50; pass num_timepoints"
    ):
        build_dataset(tmp_path / "series", output_dir=tmp_path / "out", time_axis=0, progress=False)
    assert not (tmp_path / "out").exists()
    # an existing dataset survives a failed overwrite, and is replaced by a successful one
    (tmp_path / "series" / "sub-zz.npy").unlink()
    build_dataset(tmp_path / "series", output_dir=tmp_path / "out", time_axis=0, progress=False)
    with pytest.raises(FileExistsError, match=r"output_dir: .*out already exists; pass overwrite=True"):
        build_dataset(tmp_path / "series", output_dir=tmp_path / "out", time_axis=0, progress=False)
    np.save(tmp_path / "series" / "sub-zz.npy", np.full((64, R), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"sub-zz.npy: expected finite values, got NaN or Inf at row 0, column 0"):
        build_dataset(tmp_path / "series", output_dir=tmp_path / "out", time_axis=0, overwrite=True, progress=False)
    assert len(load_from_disk(str(tmp_path / "out"))) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "out", "series"]
    np.save(tmp_path / "series" / "sub-zz.npy", np.ones((64, R), np.float32))
    assert (
        len(
            build_dataset(
                tmp_path / "series", output_dir=tmp_path / "out", time_axis=0, overwrite=True, progress=False
            )
        )
        == 7
    )
    np.save(tmp_path / "series" / "sub-00.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"sub-00.npy: expected real numbers, got dtype <U1"):
        read_series(tmp_path / "series" / "sub-00.npy")
    (tmp_path / "series" / "sub-00.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"expected one file per subject, got sub-00.csv and sub-00.npy for 'sub-00'"):
        build_dataset(tmp_path / "series", output_dir=tmp_path / "other", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"input_dir: expected .npy/.csv/.tsv files in .*empty, found none"):
        build_dataset(tmp_path / "empty", progress=False)
