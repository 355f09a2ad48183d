"""atomic_io: a file or folder appears whole or not at all, with the usual permissions."""

import stat

import pytest

from brain_jepa_hf.atomic_io import current_umask, move_into_place, write_atomic, write_text_atomic


def test_write_atomic_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    (tmp_path / ".table.csv.tmp-killed").write_text("half a fi")  # what a kill mid-write leaves
    assert write_text_atomic(target, "a,b\n") == target
    assert target.read_text() == "a,b\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()  # not the 0600 of a temporary file

    def fail_halfway(temporary):
        temporary.write_text("c,")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail_halfway)
    assert target.read_text() == "a,b\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    write_atomic(target, lambda temporary: temporary.write_bytes(b"\x00\x01"))
    assert target.read_bytes() == b"\x00\x01"


def test_move_into_place_swaps_a_folder_whole(tmp_path):
    target, staging = tmp_path / "step-1", tmp_path / ".step-1.tmp"
    staging.mkdir()
    (staging / "weights").write_text("first")
    move_into_place(staging, target)
    assert (target / "weights").read_text() == "first" and not staging.exists()
    staging.mkdir()
    (staging / "weights").write_text("second")
    move_into_place(staging, target)
    assert (target / "weights").read_text() == "second" and [p.name for p in tmp_path.iterdir()] == ["step-1"]
