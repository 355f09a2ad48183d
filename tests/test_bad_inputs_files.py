"""Bad files of every kind fail loudly (issue 13): series files, labels tables, gradient CSVs, atlas
tables, NIfTI scans and atlases, model folders and dataset folders. One parametrized case per kind;
each message names the file or argument and says what was expected."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brain_jepa_hf.data import build_dataset, open_dataset, read_series

from helpers import small_dataset


RNG = np.random.default_rng(0)
SERIES = RNG.standard_normal((23, 30))


def _text(series: np.ndarray, delimiter: str = ",") -> str:
    return "\n".join(delimiter.join(f"{v:.6f}" for v in row) for row in series) + "\n"


def _npy(path, array):
    np.save(path, array)


SERIES_FILES = {
    "empty .npy": (
        "s.npy",
        lambda p: p.write_bytes(b""),
        r"series file .*s.npy: expected a complete numeric .npy array",
    ),
    "truncated .npy": (
        "s.npy",
        lambda p: (_npy(p, SERIES), p.write_bytes(p.read_bytes()[:300])),
        r"series file .*s.npy: expected a complete numeric .npy array",
    ),
    "pickled object .npy": (
        "s.npy",
        lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        r"series file .*s.npy: expected a complete numeric .npy array",
    ),
    ".npy of 1 dimension": (
        "s.npy",
        lambda p: _npy(p, SERIES[0]),
        r"series file .*s.npy: expected a non-empty 2-D array, got shape \(30,\)",
    ),
    ".npy of 3 dimensions": (
        "s.npy",
        lambda p: _npy(p, SERIES[None]),
        r"series file .*s.npy: expected a non-empty 2-D array, got shape \(1, 23, 30\)",
    ),
    ".npy of 0 columns": (
        "s.npy",
        lambda p: _npy(p, np.zeros((23, 0))),
        r"series file .*s.npy: expected a non-empty 2-D array, got shape \(23, 0\)",
    ),
    ".npy of text": (
        "s.npy",
        lambda p: _npy(p, np.full((23, 30), "x")),
        r"series file .*s.npy: expected real numbers, got dtype <U1",
    ),
    ".npy of booleans": (
        "s.npy",
        lambda p: _npy(p, SERIES > 0),
        r"series file .*s.npy: expected real numbers, got dtype bool",
    ),
    ".npy of complex numbers": (
        "s.npy",
        lambda p: _npy(p, SERIES.astype(complex)),
        r"series file .*s.npy: expected real numbers, got dtype complex128",
    ),
    ".npy NaN": (
        "s.npy",
        lambda p: _npy(p, np.where(np.arange(30) == 4, np.nan, SERIES)),
        r"series file .*s.npy: expected finite values, got NaN or Inf at row 0, column 4",
    ),
    ".npy beyond float32": (
        "s.npy",
        lambda p: _npy(p, np.where(np.arange(30) == 4, 1e39, SERIES)),
        r"series file .*s.npy: expected values within float32 range",
    ),
    ".npy with an index column": (
        "s.npy",
        lambda p: _npy(p, np.column_stack([np.arange(23), SERIES])),
        r"series file .*s.npy: its first column counts 0, 1, \.\.\., 22: a row index",
    ),
    "empty .csv": ("s.csv", lambda p: p.write_text(""), r"series file .*s.csv"),
    ".csv with text in the first row": (
        "s.csv",
        lambda p: p.write_text("x," + _text(SERIES).split(",", 1)[1]),
        r"series file .*s.csv: expected numbers in row 0 \(or a header row of names\), got 'x' in column 0 among numbers",
    ),
    ".csv with text in a later row": (
        "s.csv",
        lambda p: p.write_text(_text(SERIES) + "x," + ",".join(["1"] * 29) + "\n"),
        r"series file .*s.csv: expected ','-separated numbers",
    ),
    ".csv with rows of unequal length": (
        "s.csv",
        lambda p: p.write_text(_text(SERIES) + "1.0,2.0\n"),
        r"series file .*s.csv: expected ','-separated numbers",
    ),
    ".csv Inf": (
        "s.csv",
        lambda p: p.write_text(_text(SERIES).replace("0.", "inf,", 0) + ",".join(["inf"] * 30) + "\n"),
        r"series file .*s.csv: expected finite values, got NaN or Inf at row 23",
    ),
    ".csv with a pandas index column": (
        "s.csv",
        lambda p: p.write_text(_text(np.column_stack([np.arange(1, 24), SERIES]))),
        r"series file .*s.csv: its first column counts 1, 2, \.\.\., 23: a row index",
    ),
    ".csv with a numbered header": (
        "s.csv",
        lambda p: p.write_text(_text(np.vstack([np.arange(30), SERIES]))),
        r"series file .*s.csv: its first row counts 0, 1, \.\.\., 29: numbered column headers",
    ),
    ".csv with two header rows": (
        "s.csv",
        lambda p: p.write_text("a,b\nc,d\n" + _text(SERIES)),
        r"series file .*s.csv: expected one header row then ','-separated numbers",
    ),
    ".tsv read with commas": ("s.tsv", lambda p: p.write_text(_text(SERIES)), r"series file .*s.tsv: expected"),
    ".txt file": (
        "s.txt",
        lambda p: p.write_text(_text(SERIES, " ")),
        r"series file .*s.txt: expected one of .*got '.txt'",
    ),
    ".nii.gz given as a series file": (
        "s.nii.gz",
        lambda p: p.write_bytes(b"\x1f\x8b"),
        r"series file .*s.nii.gz: expected one of .*got '.gz'",
    ),
    "file without suffix": (
        "series",
        lambda p: p.write_text(_text(SERIES)),
        r"series file .*series: expected one of .*got 'no suffix'",
    ),
    "absent file": ("none.npy", lambda p: None, r"series file: .*none.npy does not exist"),
}


@pytest.mark.parametrize("case", SERIES_FILES)
def test_bad_series_file_is_refused(tmp_path, case):
    name, write, message = SERIES_FILES[case]
    path = tmp_path / name
    write(path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read_series(path)


def test_series_time_axis_is_checked(tmp_path):
    np.save(tmp_path / "s.npy", SERIES)
    with pytest.raises(
        ValueError, match=r"time_axis: expected 0/-2 \(rows are time points\) or 1/-1 \(rows are ROIs\), got 2"
    ):
        read_series(tmp_path / "s.npy", time_axis=2)


# ------------------------------------------------------------------------------ a folder of series files


def _folder(tmp_path, arrays: dict):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, array in arrays.items():
        np.save(folder / name, array) if name.endswith(".npy") else (folder / name).write_text(array)
    return folder


COHORTS = {
    "empty folder": ({}, {}, r"input_dir: expected .npy/.csv/.tsv files in .*in, found none"),
    "two files of one subject": (
        {"sub-1.npy": SERIES, "sub-1.csv": _text(SERIES)},
        {},
        r"input_dir: expected one file per subject, got sub-1",
    ),
    "files of unequal ROI counts": (
        {"sub-1.npy": SERIES, "sub-2.npy": SERIES[:22]},
        {},
        r"series file .*sub-2.npy: expected 23 ROIs",
    ),
    "a transposed file among others": (
        {"sub-1.npy": RNG.standard_normal((23, 40)), "sub-2.npy": RNG.standard_normal((40, 23))},
        {},
        r"series file .*sub-2.npy: expected 23 ROIs",
    ),
    "fewer volumes than --num-timepoints": (
        {"sub-1.npy": SERIES},
        {"num_timepoints": 50},
        r"series file .*sub-1.npy: expected at least num_timepoints=50 volumes, got 30",
    ),
    "bad subject regex": (
        {"sub-1.npy": SERIES},
        {"subject_regex": "(sub-[0-9]+"},
        r"subject_regex: expected a Python regular expression",
    ),
}


@pytest.mark.parametrize("case", COHORTS)
def test_bad_series_folder_is_refused(tmp_path, case):
    arrays, kwargs, message = COHORTS[case]
    folder = _folder(tmp_path, arrays)
    with pytest.raises(ValueError, match=message):
        build_dataset(folder, output_dir=tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ labels tables

HEADER = "subject_id,age,sex\n"
ROWS = "sub-1,50,0\nsub-2,61,1\nsub-3,70,0\n"

LABELS = {
    "a subject missing": (
        HEADER + "sub-1,50,0\nsub-2,61,1\n",
        {},
        r"labels: expected a row for every subject with a file, got 1 missing \(\['sub-3'\]\)",
    ),
    "a subject twice": (
        HEADER + ROWS + "sub-1,52,0\n",
        {},
        r"labels: expected one row per subject, got repeated subjects \['sub-1'\]",
    ),
    "no subject column": (
        "id,age\nsub-1,50\n",
        {},
        r"subject_column: expected a column 'subject_id' in the labels table, got columns \['id', 'age'\]",
    ),
    "unknown label column": (
        HEADER + ROWS,
        {"label_columns": ["height"]},
        r"label_columns: expected columns of the labels table .*got unknown \['height'\]",
    ),
    "label column named fmri": (
        "subject_id,fmri\nsub-1,1\nsub-2,2\nsub-3,3\n",
        {},
        r"label_columns: \['fmri'\] collide with the dataset's own columns",
    ),
    "empty label": (
        HEADER + "sub-1,,0\nsub-2,61,1\nsub-3,70,0\n",
        {},
        r"labels: expected a value in column 'age' for every subject, got 1 empty/NaN/Inf \(subjects \['sub-1'\]\)",
    ),
    "NaN label written out": (
        HEADER + "sub-1,nan,0\nsub-2,61,1\nsub-3,70,0\n",
        {},
        r"labels: expected a value in column 'age' .*got 1 empty/NaN/Inf",
    ),
    "-inf label": (
        HEADER + "sub-1,50,0\nsub-2,-inf,1\nsub-3,70,0\n",
        {},
        r"labels: expected a value in column 'age' .*\['sub-2'\]",
    ),
    "text among class ids": (
        HEADER + "sub-1,50,0\nsub-2,61,male\nsub-3,70,0\n",
        {},
        r"labels: expected numbers or text in column 'sex', got both: text 'male' for subject 'sub-2'",
    ),
    "TSV table read as CSV columns": (
        "subject_id\tage\nsub-1\t50\n",
        {"_suffix": ".csv"},
        r"subject_column: expected a column 'subject_id' in the labels table",
    ),
}


@pytest.mark.parametrize("case", LABELS)
def test_bad_labels_table_is_refused(tmp_path, case):
    text, kwargs, message = LABELS[case]
    kwargs = dict(kwargs)
    folder = _folder(tmp_path, {f"sub-{i}.npy": RNG.standard_normal((23, 30)) for i in (1, 2, 3)})
    table = tmp_path / f"labels{kwargs.pop('_suffix', '.csv')}"
    table.write_text(text)
    with pytest.raises(ValueError, match=message):
        build_dataset(folder, labels=table, output_dir=tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ gradient CSVs given to build-dataset

GRADIENTS = {
    "another ROI count": (
        lambda p: np.savetxt(p, RNG.standard_normal((22, 30)), delimiter=","),
        {},
        r"gradient: expected 23 rows x 30 columns \(ROIs x gradient_components, the model's gradient_dim\), got 22 x 30",
    ),
    "another column count": (
        lambda p: np.savetxt(p, RNG.standard_normal((23, 29)), delimiter=","),
        {},
        r"gradient: expected 23 rows x 30 columns .*got 23 x 29; pass gradient_components=29",
    ),
    "a header row": (
        lambda p: p.write_text("g1,g2\n" + _text(RNG.standard_normal((23, 2)))),
        {"gradient_components": 2},
        r"gradient file .*g.csv: expected comma-separated numbers without a header",
    ),
    "NaN": (
        lambda p: p.write_text(_text(RNG.standard_normal((23, 2))).replace("\n", ",nan\n", 1).replace(",nan", "", 0)),
        {"gradient_components": 2},
        r"gradient file .*g.csv: expected",
    ),
    "empty file": (
        lambda p: p.write_text(""),
        {},
        r"gradient file .*g.csv: expected comma-separated numbers \(one row per ROI\), got an empty file",
    ),
}


@pytest.mark.parametrize("case", GRADIENTS)
def test_bad_gradient_csv_is_refused(tmp_path, case):
    write, kwargs, message = GRADIENTS[case]
    folder = _folder(tmp_path, {f"sub-{i}.npy": RNG.standard_normal((23, 30)) for i in (1, 2)})
    write(tmp_path / "g.csv")
    with pytest.raises(ValueError, match=message):
        build_dataset(folder, gradient=str(tmp_path / "g.csv"), output_dir=tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ atlas tables


def _atlas_table(tmp_path, text, suffix=".csv", **kwargs):
    from brain_jepa_hf.atlas import read_atlas_table

    path = tmp_path / f"atlas{suffix}"
    path.write_text(text)
    return read_atlas_table(path, **kwargs)


ATLAS_HEADER = "index,name,network\n"
ATLAS_ROWS = "0,a,Vis\n1,b,SomMot\n2,c,Vis\n"

ATLASES = {
    "empty table": ("", {}, r"atlas: expected a header row and one row per ROI, got an empty table"),
    "missing network column": ("index,name\n0,a\n", {}, r"atlas: expected columns \['index', 'name', 'network'\]"),
    "repeated column": (
        "index,name,network,name\n0,a,Vis,a\n",
        {},
        r"atlas: expected each column once, got \['name'\] more than once",
    ),
    "only x and y": (
        ATLAS_HEADER.strip() + ",x,y\n0,a,Vis,1,2\n",
        {},
        r"atlas: expected all of x, y, z or none, got only \['x', 'y'\]",
    ),
    "other ROI count than the model": (
        ATLAS_HEADER + ATLAS_ROWS,
        {"num_rois": 4},
        r"atlas: expected 4 rows \(the model's num_rois\), got 3",
    ),
    "header only": (ATLAS_HEADER, {}, r"atlas: expected one row per ROI, got none"),
    "row of another length": (ATLAS_HEADER + "0,a,Vis\n1,b\n", {}, r"atlas: line 3 of .* has 2 fields, expected 3"),
    "index not an integer": (
        ATLAS_HEADER + "zero,a,Vis\n",
        {},
        r"atlas: expected an integer index, got 'zero' on line 2",
    ),
    "empty name": (ATLAS_HEADER + "0,,Vis\n", {}, r"atlas: expected a non-empty name, got an empty one on line 2"),
    "coordinate not a number": (
        ATLAS_HEADER.strip() + ",x,y,z\n0,a,Vis,1,2,inf\n",
        {},
        r"atlas: expected a finite z, got 'inf' on line 2",
    ),
    "repeated index": (
        ATLAS_HEADER + "0,a,Vis\n0,b,Vis\n",
        {},
        r"atlas: expected each index once, got \[0\] more than once",
    ),
    "absent file": (None, {}, r"atlas: .*none.csv does not exist or is not a file"),
}


@pytest.mark.parametrize("case", ATLASES)
def test_bad_atlas_table_is_refused(tmp_path, case):
    text, kwargs, message = ATLASES[case]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        if text is None:
            from brain_jepa_hf.atlas import read_atlas_table

            read_atlas_table(tmp_path / "none.csv")
        _atlas_table(tmp_path, text, **kwargs)


# ------------------------------------------------------------------------------ NIfTI scans and atlases


def _nifti(path, data):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4)), str(path))
    return path


def _parcellate(tmp_path, scan=None, atlas=None, **kwargs):
    from brain_jepa_hf.parcellation import parcellate_files

    scan = scan if scan is not None else RNG.standard_normal((4, 4, 4, 10)).astype(np.float32)
    labels = atlas if atlas is not None else np.repeat(np.arange(1, 5), 16).reshape(4, 4, 4).astype(np.int16)
    images = [_nifti(tmp_path / "scan.nii.gz", scan)]
    return parcellate_files(images, [_nifti(tmp_path / "atlas.nii.gz", labels)], tmp_path / "out", **kwargs)


NIFTIS = {
    "3-D scan": (
        {"scan": np.zeros((4, 4, 4), np.float32)},
        r"img: expected a 4-D image with at least 2 volumes, got shape \(4, 4, 4\)",
    ),
    "scan of one volume": (
        {"scan": np.zeros((4, 4, 4, 1), np.float32)},
        r"img: expected a 4-D image with at least 2 volumes, got shape \(4, 4, 4, 1\)",
    ),
    "scan NaN": (
        {"scan": np.full((4, 4, 4, 10), np.nan, np.float32)},
        r"img: expected finite voxel values, got NaN or Inf",
    ),
    "4-D atlas": (
        {"atlas": np.ones((4, 4, 4, 2), np.int16)},
        r"atlas: expected a 3-D label image, got shape \(4, 4, 4, 2\)",
    ),
    "atlas of fractional labels": (
        {"atlas": np.full((4, 4, 4), 0.5, np.float32)},
        r"atlas: expected integer labels, got non-integer values",
    ),
    "empty atlas": (
        {"atlas": np.zeros((4, 4, 4), np.int16)},
        r"atlases\[0\]: expected at least one non-zero label, got an empty atlas",
    ),
    "scan too short for the temporal filter": (
        {"low_pass": 0.1, "t_r": 2.0},
        r"low_pass, high_pass: the scan's 10 volumes are too few for the Butterworth filter",
    ),
    "confounds for another number of scans": (
        {"confounds": ["a.csv", "b.csv"]},
        r"confounds: expected one entry per image \(1\), got 2",
    ),
}


@pytest.mark.parametrize("case", NIFTIS)
def test_bad_nifti_input_is_refused(tmp_path, case):
    kwargs, message = NIFTIS[case]
    with pytest.raises(ValueError, match=message):
        _parcellate(tmp_path, **kwargs)
    assert not (tmp_path / "out").exists()


def _confounds(tmp_path, text, **kwargs):
    (tmp_path / "conf.csv").write_text(text)
    return _parcellate(tmp_path, confounds=[str(tmp_path / "conf.csv")], **kwargs)


CONFOUNDS = {
    "rows unlike the volumes": (
        "csf,wm\n" + "1,2\n" * 9,
        {},
        r"confounds: expected 10 rows \(one per volume\), got shape \(9, 2\)",
    ),
    "unknown column": (
        "csf,wm\n" + "1,2\n" * 10,
        {"confound_columns": ["gs"]},
        r"confound_columns: expected columns of conf.csv \['csf', 'wm'\], got unknown \['gs'\]",
    ),
    "text in a column": ("csf,wm\n" + "1,x\n" * 10, {}, r"confounds: expected numeric columns in .*conf.csv"),
    "Inf": ("csf,wm\n" + "1,inf\n" * 10, {}, r"confounds: expected finite values, got Inf"),
}


@pytest.mark.parametrize("case", CONFOUNDS)
def test_bad_confounds_file_is_refused(tmp_path, case):
    text, kwargs, message = CONFOUNDS[case]
    with pytest.raises(ValueError, match=message):
        _confounds(tmp_path, text, **kwargs)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ dataset folders of another kind


def _dataset_folder(tmp_path, kind):
    folder = tmp_path / "data"
    if kind == "empty folder":
        folder.mkdir()
    elif kind == "folder of .npy files":
        folder.mkdir()
        np.save(folder / "sub-1.npy", SERIES)
    elif kind == "dataset without the fmri column":
        small_dataset(num_subjects=3).rename_column("fmri", "bold").save_to_disk(str(folder))
    elif kind == "dataset_info.json corrupt":
        small_dataset(num_subjects=3).save_to_disk(str(folder))
        (folder / "dataset_info.json").write_text("{not json")
    elif kind == "arrow shard truncated":
        small_dataset(num_subjects=3).save_to_disk(str(folder))
        shard = next(folder.glob("*.arrow"))
        shard.write_bytes(shard.read_bytes()[:100])
    return folder


DATASETS = {
    "empty folder": r"dataset: expected split folders of \*.arrow shards \(or a save_to_disk folder\) in .*data, found none",
    "folder of .npy files": r"dataset: expected split folders of \*.arrow shards",
    "dataset without the fmri column": r"'fmri'",
    "dataset_info.json corrupt": r"dataset: .*data holds an unreadable Arrow or JSON file \(Expecting property name",
    "arrow shard truncated": r"dataset: .*data holds an unreadable Arrow or JSON file \(.*\); rebuild it",
}


@pytest.mark.parametrize("case", DATASETS)
def test_dataset_folder_of_another_kind_is_refused(tmp_path, case):
    folder = _dataset_folder(tmp_path, case)
    with pytest.raises((ValueError, OSError)) as error:
        dataset = open_dataset(folder)
        dataset.with_format("numpy", columns=["fmri"])[0]
    assert __import__("re").search(DATASETS[case], str(error.value)), str(error.value)


def test_model_folder_with_a_probe_only_names_it(tmp_path):
    from brain_jepa_hf import BrainJepaModel

    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "probe_config.json").write_text(json.dumps({}))
    with pytest.raises(
        ValueError, match=r"expected a saved model folder with config.json, .*\(it holds a linear probe"
    ):
        BrainJepaModel.from_pretrained(tmp_path / "probe")
