"""Bad inputs, reused folders and faults that once gave a silent wrong result or left debris: each now
stops with one line naming the argument and what to change, or recovers on the next run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk

from brain_jepa_cli import main
from brain_jepa_hf.atomic_io import atomic_output_dir, exchange_paths
from brain_jepa_hf.example_data import example_gradient, load_example_dataset
from brain_jepa_hf.gradients import save_gradient_csv

from helpers import PRETRAIN_FAST, make_config, save_pretrained_folder, small_dataset


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def brain_jepa(*arguments, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "brain_jepa_hf", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess | str, command: str) -> str:
    """The error line a command printed (no traceback), without progress-bar output."""
    err = result if isinstance(result, str) else result.stderr
    if not isinstance(result, str):
        assert result.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f"brain-jepa {command}: error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------------
# Reusing a pretraining output folder
# ---------------------------------------------------------------------------------------------------

RUN_A = ["--max_steps", "2", "--save_steps", "1", "--example_subjects", "8"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run-a"
    result = brain_jepa("pretrain", *PRETRAIN_FAST, *RUN_A, "--output_dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--learning_rate", "0.002"], r"\(other settings: learning_rate: 0\.0001 -> 0\.002\)"),
        (["--seed", "1", "--resume_from_checkpoint", "latest"], r"seed: 0 -> 1"),
        (["--max_steps", "3", "--resume_from_checkpoint", "latest"], r"max_steps: 2 -> 3"),
        (["--mask", "multiblock"], r"mask: 'spatiotemporal' -> 'multiblock'"),
        (["--model_overrides", '{"drop_path_rate": 0.1}'], r"model_config\.drop_path_rate: 0\.0 -> 0\.1"),
        (["--example_subjects", "9"], r"example_subjects: 8 -> 9"),
        (["--sampling_rate", "2"], r"sampling_rate: 3 -> 2"),
    ],
    ids=["learning-rate", "resume-other-seed", "longer-schedule", "masking", "model-config", "data", "clip-stride"],
)
def test_a_folder_of_another_run_is_refused(finished_run, tmp_path, extra, message):
    out = tmp_path / "reused"
    shutil.copytree(finished_run, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    line = one_line_error(brain_jepa("pretrain", *PRETRAIN_FAST, *RUN_A, "--output_dir", out, *extra), "pretrain")
    assert f"output_dir: {out} holds another pretraining run" in line
    assert "pass --overwrite_output_dir to replace it, or choose another --output_dir" in line
    assert __import__("re").search(message, line), line
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    line = one_line_error(brain_jepa("pretrain", *PRETRAIN_FAST, *RUN_A, "--output_dir", other), "pretrain")
    assert "holds another pretraining run (it has no run_settings.json" in line and "--overwrite_output_dir" in line
    assert (other / "notes.txt").read_text() == "mine"


def test_a_checkpoint_of_another_run_is_refused(finished_run, tmp_path):
    checkpoint = finished_run / "checkpoints" / "step-00000001"
    line = one_line_error(
        brain_jepa(
            "pretrain",
            *PRETRAIN_FAST,
            *RUN_A,
            "--learning_rate",
            "0.002",
            "--output_dir",
            tmp_path / "fresh",
            "--resume_from_checkpoint",
            checkpoint,
        ),
        "pretrain",
    )
    assert (
        f"resume_from_checkpoint: {checkpoint} was saved by another run (other settings: learning_rate: 0.0001 -> 0.002)"
        in line
    )
    assert "resume with that run's settings" in line


def test_settings_that_do_not_change_the_result_may_change_on_resume(finished_run, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(finished_run, out)
    (out / "checkpoints" / "step-00000002").rename(out / "checkpoints" / ".step-00000002.tmp")  # as if killed
    result = brain_jepa(
        "pretrain",
        *PRETRAIN_FAST,
        *RUN_A,
        "--output_dir",
        out,
        "--resume_from_checkpoint",
        "latest",
        "--logging_steps",
        "2",
        "--save_total_limit",
        "5",
        "--collapse_std_threshold",
        "0.01",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "step-00000001" in result.stderr
    assert (out / "model.safetensors").read_bytes() == (finished_run / "model.safetensors").read_bytes()
    assert [p.name for p in (out / "checkpoints").iterdir()] and not list(out.rglob(".*"))


# ---------------------------------------------------------------------------------------------------
# Series shorter than the clip: every command that reads series has --sampling_rate / --short_series
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_inputs(tmp_path_factory):
    """A model whose extractor takes 40 frames every volume, and 20 series of 60 volumes (so a clip
    stride of 3 needs 120 volumes: too long)."""
    root = tmp_path_factory.mktemp("short")
    save_pretrained_folder(root / "model", make_config(num_rois=23, num_frames=40, patch_size=8))
    small_dataset(num_subjects=20, num_timepoints=60).save_to_disk(str(root / "data"))
    return root


def test_embed_short_series_fail_before_any_work_naming_the_options(short_inputs, tmp_path, capsys):
    output = tmp_path / "emb.npy"
    common = ["embed", "--model", short_inputs / "model", "--dataset", short_inputs / "data", "--output", output]
    assert main([*map(str, common), "--sampling_rate", "3"]) == 1
    line = one_line_error(capsys.readouterr().err, "embed")
    assert (
        "fmri: 20 of 20 series have fewer than the 120 volumes the feature extractor needs (sampling_rate=3 x "
        "num_frames=40, short_series='error'); the shortest, row 0, has 60; pass --short_series stretch"
    ) in line
    assert "--short_series pad" in line and "--sampling_rate 1 (a clip of 40 volumes)" in line
    assert not list(tmp_path.iterdir())  # nothing started
    for fix in (
        ["--sampling_rate", "1"],
        ["--sampling_rate", "3", "--short_series", "stretch"],
        ["--sampling_rate", "3", "--short_series", "pad"],
    ):
        assert main([*map(str, common), *fix, "--overwrite"]) == 0, fix
        assert np.load(output).shape == (20, 64)
        capsys.readouterr()


def test_probe_and_finetune_short_series_name_the_options(short_inputs, tmp_path):
    from brain_jepa_hf.downstream_arguments import DataArguments, build_argument_parser, parse_arguments
    from brain_jepa_hf.probing import run_sklearn_probe

    data = dict(dataset=str(short_inputs / "data"), label_column="age")
    with pytest.raises(
        ValueError,
        match=r"fmri: (\d+) of \1 series of the train split have fewer than the 120 volumes "
        r".*pass --short_series stretch .* or --short_series pad .* or --sampling_rate 1",
    ):
        run_sklearn_probe(
            short_inputs / "model", DataArguments(**data, sampling_rate=3), seeds=1, cv=2, progress=False
        )
    (tmp_path / ".probe.tmp-killed").mkdir()  # staging of a killed run: removed by the next one
    results = run_sklearn_probe(
        short_inputs / "model",
        DataArguments(**data, sampling_rate=3, short_series="stretch"),
        output_dir=str(tmp_path / "probe"),
        seeds=1,
        cv=2,
        progress=False,
    )
    assert results["test"] and (tmp_path / "probe" / "results.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe"]
    parser = build_argument_parser("brain-jepa finetune", "", "")
    _, data_args, _, _ = parse_arguments(
        ["--short_series", "pad", "--sampling_rate", "2", "--output_dir", "x"], parser
    )
    assert (data_args.short_series, data_args.sampling_rate) == ("pad", 2)
    with pytest.raises(ValueError, match=r"short_series: expected one of \('error', 'stretch', 'pad'\), got 'strech'"):
        run_sklearn_probe(
            short_inputs / "model", DataArguments(**data, short_series="strech"), seeds=1, cv=2, progress=False
        )


@pytest.fixture(scope="module")
def short_cohort(tmp_path_factory):
    """A 100-volume cohort; the example-tiny recipe's 80 frames x stride 3 need 240 volumes."""
    folder = tmp_path_factory.mktemp("short-cohort") / "data"
    load_example_dataset(num_subjects=8, num_timepoints=100).save_to_disk(str(folder))
    save_gradient_csv(folder / "gradient.csv", example_gradient())
    return folder


def test_pretrain_short_series_fail_before_any_output_naming_the_options(short_cohort, tmp_path):
    line = one_line_error(
        brain_jepa("pretrain", *PRETRAIN_FAST, "--dataset", short_cohort, "--output_dir", tmp_path / "run"), "pretrain"
    )
    assert (
        "fmri: 8 of 8 series have fewer than the 240 volumes the feature extractor needs (sampling_rate=3 x num_frames=80"
        in line
    )
    assert "pass --short_series stretch" in line and "--sampling_rate 1 (a clip of 80 volumes)" in line
    assert not (tmp_path / "run").exists()


def test_pretrain_short_series_stretch(short_cohort, tmp_path):
    result = brain_jepa(
        "pretrain",
        *PRETRAIN_FAST,
        "--dataset",
        short_cohort,
        "--output_dir",
        tmp_path / "run",
        "--max_steps",
        "1",
        "--short_series",
        "stretch",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "preprocessor_config.json").read_text())["short_series"] == "stretch"


# ---------------------------------------------------------------------------------------------------
# build-dataset: files whose layout would silently change the ROI count
# ---------------------------------------------------------------------------------------------------


def _series(rng, rois, volumes):
    return (100 + rng.standard_normal((rois, volumes))).astype(np.float32)


def write_index_column(folder, rng):  # pandas to_csv defaults: an index column and numbered headers
    for i in range(3):
        pd.DataFrame(_series(rng, 12, 30).T).to_csv(folder / f"sub-{i}.csv")


def write_numbered_header(folder, rng):
    for i in range(3):
        pd.DataFrame(_series(rng, 12, 30).T).to_csv(folder / f"sub-{i}.csv", index=False)


def write_all_transposed(folder, rng):  # saved (time, ROI) while --time-axis says rows are ROIs
    for i in range(2):
        np.save(folder / f"sub-{i}.npy", _series(rng, 450, 49).T)


def write_one_transposed(folder, rng):
    for i in range(3):
        series = _series(rng, 12, 30)
        np.save(folder / f"sub-{i}.npy", series.T if i == 2 else series)


@pytest.mark.parametrize(
    "write, arguments, expected",
    [
        (
            write_index_column,
            ["--time-axis", "0"],
            ["sub-0.csv: its first column counts 0, 1, ..., 29: a row index", "index=False"],
        ),
        (
            write_numbered_header,
            ["--time-axis", "0"],
            ["sub-0.csv: its first row counts 0, 1, ..., 11: numbered column headers", "header=False"],
        ),
        (
            write_all_transposed,
            [],
            ["sub-0.npy: time_axis=-1 reads 49 ROIs x 450 volumes", "pass time_axis=0 (--time-axis)", "--num-rois 49"],
        ),
        (
            write_one_transposed,
            [],
            [
                "sub-2.npy: expected 12 ROIs like the first file sub-0.npy (shape (12, 30)), got shape (30, 12); one of the "
                "two files is transposed",
                "--num-rois",
            ],
        ),
    ],
    ids=["index-column", "numbered-header", "all-transposed", "one-transposed"],
)
def test_build_dataset_refuses_files_that_would_change_the_roi_count(tmp_path, capsys, write, arguments, expected):
    (tmp_path / "series").mkdir()
    write(tmp_path / "series", np.random.default_rng(0))
    assert main(["build-dataset", str(tmp_path / "series"), "--output-dir", str(tmp_path / "out"), *arguments]) == 1
    line = one_line_error(capsys.readouterr().err, "build-dataset")
    for part in expected:
        assert part in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_a_real_450_roi_file_with_450_volumes_is_not_mistaken_and_num_rois_confirms_a_count(tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "series").mkdir()
    for i in range(2):
        np.save(tmp_path / "series" / f"sub-{i}.npy", _series(rng, 49, 450))
    assert (
        main(["build-dataset", str(tmp_path / "series"), "--output-dir", str(tmp_path / "out"), "--num-rois", "49"])
        == 0
    )
    assert load_from_disk(str(tmp_path / "out")).features["fmri"].shape == (49, 450)


# ---------------------------------------------------------------------------------------------------
# Swaps and kills: the output path always holds the old or the new output; the next run cleans up
# ---------------------------------------------------------------------------------------------------


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "new").write_text("new")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old").write_text("old")
    if not exchange_paths(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this filesystem has no atomic exchange; the two-rename fallback is tested below")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["new"] and [
        p.name for p in (tmp_path / "a").iterdir()
    ] == ["old"]


def test_a_kill_between_the_two_renames_of_the_fallback_swap_is_undone_by_the_next_run(tmp_path):
    backup = tmp_path / ".out.old-killed"
    (backup / "out").mkdir(parents=True)
    (backup / "out" / "data").write_text("previous")  # the previous output, moved aside, then a kill
    (tmp_path / ".out.tmp-killed").mkdir()  # the new output, never moved in
    with pytest.raises(FileExistsError, match="output_dir: .*out already exists; pass overwrite=True"):
        with atomic_output_dir(tmp_path / "out"):
            pass
    assert (tmp_path / "out" / "data").read_text() == "previous"
    with atomic_output_dir(tmp_path / "out", overwrite=True) as staging:
        (staging / "data").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (tmp_path / "out" / "data").read_text() == "new"


def test_build_dataset_overwrite_killed_mid_way_keeps_the_old_dataset_and_the_rerun_cleans_up(tmp_path):
    from brain_jepa_hf.data import build_dataset

    rng = np.random.default_rng(2)
    for folder, count in (("old-series", 3), ("series", 1500)):  # text files parse slowly enough to be killed
        (tmp_path / folder).mkdir()
        for i in range(count):
            np.savetxt(tmp_path / folder / f"sub-{i:04d}.csv", _series(rng, 8, 40), delimiter=",", fmt="%.6g")
    old = build_dataset(tmp_path / "old-series", output_dir=tmp_path / "work" / "out", progress=False)
    expected = build_dataset(tmp_path / "series", output_dir=tmp_path / "uninterrupted" / "out", progress=False)

    build = ["build-dataset", tmp_path / "series", "--output-dir", tmp_path / "work" / "out", "--overwrite"]
    process = subprocess.Popen(
        [sys.executable, "-m", "brain_jepa_hf", *map(str, build)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    deadline = time.time() + 120
    while not list((tmp_path / "work").glob(".out.tmp-*/shard-*")):
        assert process.poll() is None, f"build ended before it could be killed: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no staging shard within 120 s"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert list((tmp_path / "work").glob(".out.tmp-*"))  # the killed run's staging
    assert load_from_disk(str(tmp_path / "work" / "out"))["subject_id"] == old["subject_id"]  # the old dataset, whole

    assert brain_jepa(*build).returncode == 0
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["out"]  # no staging debris
    rebuilt = load_from_disk(str(tmp_path / "work" / "out"))
    assert rebuilt["subject_id"] == expected["subject_id"] and len(rebuilt) == 1500
    np.testing.assert_array_equal(
        np.asarray(rebuilt.with_format("numpy")["fmri"]), np.asarray(expected.with_format("numpy")["fmri"])
    )
