"""kill -9 and a full disk, command by command, through the command line as a user runs it.

A kill falls at a point reached for sure: SIGKILL from an audit hook at the rename that would move a
finished staging folder (or file) into place, at the removal that follows a swap, or, for `finetune`,
from outside once a Trainer checkpoint exists in the staging folder. After each kill the same command is
run again: it must finish, leave no staging debris (the output's folder is listed, hidden entries
included) and write exactly what an uninterrupted run writes (the same bytes; every command here is
deterministic on CPU with its seeds). A full disk is simulated with RLIMIT_FSIZE (see `brain_jepa_cli`):
the command prints one line naming the output and saying the disk is full, and the previous output stays
as it was, with no debris beside it."""

import json
import re
import shutil
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brain_jepa_hf import BrainJepaForPreTraining

from helpers import (
    FINETUNE_FAST,
    PRETRAIN_FAST,
    brain_jepa_cli,
    listing,
    make_config,
    save_pretrained_folder,
    small_dataset,
)
from original_layout import original_checkpoint


def staging_rename(name: str) -> tuple[str, str]:
    """The moment a finished staging folder/file for output `name` is about to be renamed into place."""
    return "os.rename", rf"/\.{re.escape(name)}\.tmp-[^/ ]+ "


def alone(out: Path) -> bool:
    """Whether the output is the only entry of its folder (no staging or backup beside it)."""
    return [p.name for p in out.parent.iterdir()] == [out.name]


def assert_ok(result):
    assert result.returncode == 0, result.stderr[-3000:]


def assert_killed(result):
    assert result.returncode == -signal.SIGKILL, f"not killed (rc {result.returncode}): {result.stderr[-3000:]}"


def contents(path: Path):
    """The bytes of a file output, or {relative path: bytes} of every file of a folder output."""
    return (
        path.read_bytes()
        if path.is_file()
        else {n: (path / n).read_bytes() for n in listing(path) if (path / n).is_file()}
    )


def comparable(name: str, data: bytes) -> bytes:
    """A datasets folder's state.json carries `_fingerprint`, a random id each build draws (as
    `datasets` does for a new dataset); everything else in every output must be the same bytes."""
    if name.endswith("state.json") and b'"_fingerprint"' in data:
        return json.dumps({k: v for k, v in json.loads(data).items() if k != "_fingerprint"}).encode()
    return data


def same_output(path: Path, reference: Path) -> None:
    """The same files with the same bytes (a file output, or every file of a folder)."""
    if reference.is_file():
        assert path.read_bytes() == reference.read_bytes(), path
        return
    assert listing(path) == listing(reference)
    for name, data in contents(reference).items():
        assert comparable(name, (path / name).read_bytes()) == comparable(name, data), (
            f"{name} differs from an uninterrupted run"
        )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny model folder (23 ROIs, 40 frames), a 20-subject dataset, series files, scans and atlases,
    and an original checkpoint; each test writes its outputs in folders of their own."""
    root = tmp_path_factory.mktemp("inputs")
    config = make_config(num_rois=23, num_frames=40, patch_size=8)
    save_pretrained_folder(root / "model", config)
    small_dataset(num_subjects=20, num_timepoints=60).save_to_disk(str(root / "data"))
    rng = np.random.default_rng(0)
    (root / "series").mkdir()
    for i in range(6):
        np.save(root / "series" / f"sub-{i}.npy", (100 + rng.standard_normal((12, 50))).astype(np.float32))
    atlas = np.zeros((6, 6, 4), np.int16)
    atlas[:, :2], atlas[:, 2:4], atlas[:, 4:] = 1, 2, 3
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), root / "atlas.nii.gz")
    (root / "scans").mkdir()
    for i in range(2):
        nib.save(
            nib.Nifti1Image(rng.standard_normal((6, 6, 4, 30)).astype(np.float32), np.eye(4)),
            root / "scans" / f"sub-{i}_bold.nii.gz",
        )
    torch.manual_seed(0)
    model = BrainJepaForPreTraining(config)
    model.set_gradient(torch.randn(23, 6, generator=torch.Generator().manual_seed(1)))
    torch.save(original_checkpoint(model), root / "jepa-ep300.pth.tar")
    np.savetxt(root / "gradient.csv", model.brain_jepa.embeddings.gradient.double().numpy(), delimiter=",")
    config450 = make_config(num_rois=450, num_frames=40, patch_size=8)
    save_pretrained_folder(root / "model450", config450)
    small_dataset(num_subjects=4, num_rois=450, num_timepoints=60).save_to_disk(str(root / "data450"))
    return root


def commands(root: Path) -> dict:
    """Each command's arguments given its output path, the name of its output and its overwrite flag."""
    return {
        "finetune": (
            lambda out: [
                "finetune",
                "--model_name_or_path",
                root / "model",
                "--dataset",
                root / "data",
                "--label_column",
                "age",
                "--seeds",
                "1",
                *FINETUNE_FAST,
                "--output_dir",
                out,
            ],
            "out",
            "--overwrite_output_dir",
        ),
        "probe": (
            lambda out: [
                "probe",
                "--model_name_or_path",
                root / "model",
                "--dataset",
                root / "data",
                "--label_column",
                "age",
                "--seeds",
                "1",
                "--cv_folds",
                "2",
                "--use_cpu",
                "--output_dir",
                out,
            ],
            "out",
            "--overwrite_output_dir",
        ),
        "embed": (
            lambda out: [
                "embed",
                "--model",
                root / "model",
                "--dataset",
                root / "data",
                "--chunk_size",
                "8",
                "--dtype",
                "float32",
                "--output",
                out,
            ],
            "emb.npy",
            "--overwrite",
        ),
        "build-dataset": (lambda out: ["build-dataset", root / "series", "--output-dir", out], "out", "--overwrite"),
        "gradients": (
            lambda out: ["gradients", "--dataset", root / "data", "--n-components", "3", "--output", out],
            "gradient.csv",
            None,
        ),
        "parcellate": (
            lambda out: ["parcellate", root / "scans", "--atlas", root / "atlas.nii.gz", "--output-dir", out],
            "out",
            "--overwrite",
        ),
        "convert": (
            lambda out: [
                "convert",
                root / "jepa-ep300.pth.tar",
                "--gradient-csv",
                root / "gradient.csv",
                "--num-attention-heads",
                "4",
                "--repo-id",
                "me/model",
                "--output-dir",
                out,
            ],
            "out",
            "--overwrite",
        ),
        "analyze": (
            lambda out: [
                "analyze",
                "--model",
                root / "model450",
                "--dataset",
                root / "data450",
                "--atlas",
                "example",
                "--layers",
                "-1",
                "--permutations",
                "0",
                "--output_dir",
                out,
            ],
            "out",
            "--overwrite",
        ),
    }


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The output of an uninterrupted run of a command, computed once."""
    done = {}

    def get(command: str) -> Path:
        if command not in done:
            arguments, name, _ = commands(inputs)[command]
            out = tmp_path_factory.mktemp(f"reference-{command}") / name
            assert_ok(brain_jepa_cli(*arguments(out)))
            done[command] = out
        return done[command]

    return get


def rerun_matches_reference(inputs, reference, command: str, out: Path, *extra) -> None:
    arguments, _, _ = commands(inputs)[command]
    assert_ok(brain_jepa_cli(*arguments(out), *extra))
    assert alone(out), "staging debris left"
    same_output(out, reference(command))  # inside a folder output too: the same entries, hidden ones included


# ---------------------------------------------------------------------------------------------------
# kill -9, then the same command again
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["probe", "build-dataset", "gradients", "parcellate", "convert", "analyze"])
def test_killed_before_the_output_moves_into_place_the_rerun_writes_what_an_uninterrupted_run_writes(
    inputs, reference, tmp_path, command
):
    arguments, name, _ = commands(inputs)[command]
    out = tmp_path / "work" / name
    assert_killed(brain_jepa_cli(*arguments(out), kill_at=staging_rename(name)))
    assert not out.exists() and [p.name for p in out.parent.iterdir()][0].startswith(f".{name}.tmp-")  # the debris
    rerun_matches_reference(inputs, reference, command, out)


def test_killed_after_a_swap_over_the_previous_output_the_rerun_removes_the_previous_output(
    inputs, reference, tmp_path
):
    """`--overwrite` swaps the new folder in; a kill before the swapped-out previous output is removed
    leaves it beside the output; the next run removes it."""
    arguments, name, overwrite = commands(inputs)["convert"]
    out = tmp_path / "work" / name
    shutil.copytree(inputs / "model", out)  # a previous output
    assert_killed(brain_jepa_cli(*arguments(out), overwrite, kill_at=("shutil.rmtree", rf"/\.{name}\.(tmp|old)-")))
    same_output(out, reference("convert"))  # the new output is in place; the previous one lies beside it
    assert not alone(out)
    rerun_matches_reference(inputs, reference, "convert", out, overwrite)


def test_embed_killed_between_chunks_and_after_the_final_write_reruns_to_the_same_bytes(inputs, reference, tmp_path):
    arguments, name, _ = commands(inputs)["embed"]
    out = tmp_path / "work" / name
    assert_killed(brain_jepa_cli(*arguments(out), kill_at=("os.rename", r"/\.chunk-\d+\.npy\.tmp-[^/ ]+ ", 2)))
    partial = out.with_name(name + ".partial")
    assert sorted(p.name for p in partial.iterdir() if not p.name.startswith(".")) == [
        "chunk-0000000000.npy",
        "meta.json",
    ]
    assert [p.name.split(".tmp-")[0] for p in partial.glob(".*")] == [".chunk-0000000008.npy"]  # half-written
    rerun_matches_reference(inputs, reference, "embed", out)

    again = tmp_path / "again" / name  # a kill between the final rename and removing the finished chunks
    assert_killed(brain_jepa_cli(*arguments(again), kill_at=("shutil.rmtree", r"emb\.npy\.partial")))
    assert again.is_file() and again.with_name(name + ".partial").is_dir()
    rerun_matches_reference(inputs, reference, "embed", again)


def test_finetune_killed_mid_training_reruns_from_scratch_to_the_same_model_and_results(inputs, reference, tmp_path):
    """`finetune` has no resume: its staging folder (Trainer checkpoints included) is removed by the next run,
    which starts again; with the same seeds it writes the same weights and results (timings aside)."""
    arguments, name, _ = commands(inputs)["finetune"]
    out = tmp_path / "work" / name
    process = brain_jepa_cli(*arguments(out), background=True)
    deadline = time.time() + 300
    while not list(out.parent.glob(f".{name}.tmp-*/seed-*/checkpoint-*/trainer_state.json")):
        assert process.poll() is None, f"finetune ended before it could be killed: {process.stderr.read()[-2000:]}"
        assert time.time() < deadline, "no Trainer checkpoint within 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not out.exists() and list(out.parent.glob(f".{name}.tmp-*"))

    assert_ok(brain_jepa_cli(*arguments(out)))
    expected = reference("finetune")
    assert alone(out) and listing(out) == listing(expected)
    assert (out / "model.safetensors").read_bytes() == (expected / "model.safetensors").read_bytes()
    timings = ("runtime", "per_second", "flos")

    def without_timings(value):  # noqa: E306
        if isinstance(value, dict):
            return {k: without_timings(v) for k, v in value.items() if not any(t in k for t in timings)}
        return [without_timings(v) for v in value] if isinstance(value, list) else value

    assert without_timings(json.loads((out / "results.json").read_text())) == without_timings(
        json.loads((expected / "results.json").read_text())
    )


# ---------------------------------------------------------------------------------------------------
# A full disk: one line naming the output, the previous output unchanged, nothing beside it
# ---------------------------------------------------------------------------------------------------

FILE_SIZE_LIMITS = {  # bytes: below the size of the command's largest output file, above what it writes first
    "finetune": 50_000,
    "probe": 300,
    "embed": 1_000,
    "build-dataset": 2_000,
    "gradients": 300,
    "parcellate": 300,
    "convert": 50_000,
    "analyze": 4_000,
}


@pytest.mark.parametrize("command", list(FILE_SIZE_LIMITS))
def test_a_full_disk_fails_in_one_line_and_keeps_the_previous_output(inputs, reference, tmp_path, command):
    arguments, name, overwrite = commands(inputs)[command]
    previous = reference(command)
    out = tmp_path / "work" / name
    out.parent.mkdir()
    (shutil.copytree if previous.is_dir() else shutil.copy2)(previous, out)
    before = contents(out)
    result = brain_jepa_cli(
        *arguments(out), *([overwrite] if overwrite else []), file_size_limit=FILE_SIZE_LIMITS[command]
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"brain-jepa {command}: error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "the disk is full: no space left to write" in lines[0] and str(out.parent) in lines[0], lines[0]
    assert alone(out)  # no debris
    assert contents(out) == before


def test_pretrain_on_a_full_disk_says_so_and_leaves_no_half_written_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = brain_jepa_cli(
        "pretrain",
        *PRETRAIN_FAST,
        "--example_subjects",
        "8",
        "--max_steps",
        "1",
        "--save_steps",
        "1",
        "--output_dir",
        out,
        file_size_limit=100_000,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("brain-jepa pretrain: error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"could not write the step-1 checkpoint under {out / 'checkpoints'}: the disk is full" in lines[0], lines[0]
    assert "--resume_from_checkpoint latest" in lines[0]
    assert alone(out) and not [p for p in out.rglob(".*")]  # the run's settings stay (to resume); no staging


# ---------------------------------------------------------------------------------------------------
# A reused output: refused unless asked to replace it (pretraining's own runs: tests/test_faults.py)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["finetune", "probe", "embed", "build-dataset", "parcellate", "convert", "analyze"]
)
def test_an_existing_output_is_refused_without_the_overwrite_flag_and_left_as_it_was(inputs, tmp_path, command):
    arguments, name, overwrite = commands(inputs)[command]
    out = tmp_path / "work" / name
    out.parent.mkdir()
    if name.endswith(".npy"):
        np.save(out, np.zeros(3))
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = contents(out)
    result = brain_jepa_cli(*arguments(out))
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"brain-jepa {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{out} already exists" in lines[0] or f"{out} is not empty" in lines[0], lines[0]
    assert re.search(rf"pass (overwrite=True \()?{re.escape(overwrite)}[ )]", lines[0]), lines[0]  # the command's flag
    assert alone(out) and contents(out) == before
