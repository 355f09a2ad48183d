"""Files and folders that appear whole or not at all: written beside the target, renamed into place."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable


def check_output_dir(output_dir: str | Path, overwrite: bool, flag: str = "--overwrite") -> Path:
    """Refuse an existing target unless `overwrite` (the command's `flag`); never accept a file in its place."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir: {output_dir} exists and is not a folder")
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"output_dir: {output_dir} already exists; pass overwrite=True ({flag}) to replace it")
    return output_dir


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(directory: bool) -> int:
    """Permissions a plain `mkdir` / `open` would give under the current umask; temporary-file
    helpers create 0700 / 0600, which would hide outputs from other users of a shared machine."""
    return (0o777 if directory else 0o666) & ~current_umask()


def follow_umask(folder: str | Path) -> None:
    """Give every file and folder under `folder` the usual permissions (some writers, e.g. transformers'
    `save_pretrained` for model.safetensors, create 0600 files)."""
    for path in Path(folder).rglob("*"):
        if not path.is_symlink():
            path.chmod(usual_mode(directory=path.is_dir()))


# What a write raises when no byte more fits: a full disk, a quota, or a file-size limit (RLIMIT_FSIZE).
OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# The same, as writers that do not raise an OSError word it (pyarrow, safetensors, torch's C++ streams).
OUT_OF_SPACE_TEXTS = ("no space left on device", "disk quota exceeded", "file too large", "iostream error")


class DiskFullError(OSError):
    """No space was left to write an output; the previous output is unchanged and nothing half-written stays."""


def is_out_of_space(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, says that no byte more could be written."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in OUT_OF_SPACE_ERRNOS:
            return True
        if any(text in str(error).lower() for text in OUT_OF_SPACE_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(target: str | Path, argument: str = "output_dir") -> DiskFullError:
    """The one-line error for a write to `target` that found no space left."""
    target = Path(target)
    folder = next((p for p in (target, *target.parents) if p.is_dir()), Path.cwd())
    free = shutil.disk_usage(folder).free / 2**20
    error = DiskFullError(
        f"{argument}: the disk is full: no space left to write {target} ({free:.0f} MiB free on its filesystem, or a "
        f"quota / file-size limit was reached); nothing half-written was left and any previous output there is "
        f"unchanged: free some space or choose another {argument}"
    )
    error.errno = errno.ENOSPC
    return error


@contextlib.contextmanager
def reporting_full_disk(target: str | Path, argument: str = "output_dir"):
    """Turn an out-of-space failure of the block, however the writer words it, into `disk_full_error`;
    the block itself removes what it half-wrote."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if is_out_of_space(err):
            raise disk_full_error(target, argument) from err
        raise


class _PythonWrites:
    """A binary file seen only through its `write`: numpy then writes through Python, whose errors raise,
    instead of C stdio on a duplicated descriptor, whose errors at close it drops (a full disk would
    leave a short .npy file and no error)."""

    def __init__(self, handle):
        self.write = handle.write


def save_npy(path: str | Path, array) -> None:
    """`np.save(path, array)` that raises when the disk is full instead of leaving a truncated file."""
    import numpy as np

    with open(path, "wb") as handle:
        np.save(_PythonWrites(handle), array)


def remove_stale(paths) -> list[Path]:
    """Remove leftovers of a killed run (staging folders or files); returns what was removed."""
    removed = []
    for path in paths:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed


def staged_file(path: str | Path) -> tuple[int, str]:
    """(handle, name) of a temporary file beside `path` to write and then `os.replace` onto it; the
    temporary files a killed earlier write to the same path left are removed first."""
    path = Path(path)
    remove_stale(path.parent.glob(f".{glob.escape(path.name)}.tmp-*"))
    return tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)


def fsync_path(path: str | Path) -> None:
    """Flush a file, or a folder's entries (where the platform allows), to disk."""
    path = Path(path)
    if path.is_dir():
        if not hasattr(os, "O_DIRECTORY"):
            return  # Windows cannot open a folder
        handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under `folder` to disk (before the folder is renamed into place)."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            fsync_path(path)


def write_atomic(path: str | Path, write: Callable[[Path], object], argument: str = "output") -> Path:
    """Write the file `path` whole or not at all, durably: `write(temporary)` fills a temporary file
    beside it (one a killed earlier write left is removed first), which is flushed to disk, given the
    usual permissions and renamed onto `path`; the folder entry is flushed too. Returns `path`. A full
    disk raises `DiskFullError` naming `path` (as `argument`), with nothing half-written left."""
    path = Path(path)
    handle, name = staged_file(path)
    os.close(handle)
    temporary = Path(name)
    try:
        with reporting_full_disk(path, argument):
            write(temporary)
            fsync_path(temporary)
            temporary.chmod(usual_mode(directory=False))
            os.replace(temporary, path)
            fsync_path(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`write_atomic` for a UTF-8 text file."""
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def stale_staging(output_dir: str | Path) -> list[Path]:
    """Staging and backup folders `atomic_output_dir` leaves beside `output_dir` when killed."""
    output_dir = Path(output_dir)
    if not output_dir.parent.is_dir():
        return []
    prefixes = (f".{output_dir.name}.tmp-", f".{output_dir.name}.old-")
    return sorted(p for p in output_dir.parent.iterdir() if p.name.startswith(prefixes))


def exchange_paths(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem without the exchange
        return False
    raise OSError(error, os.strerror(error), str(second))


def restore_interrupted_swap(output_dir: Path) -> None:
    """Where a kill fell between the two renames of a fallback swap, put the previous output back."""
    for backup in stale_staging(output_dir):
        previous = backup / output_dir.name
        if backup.name.startswith(f".{output_dir.name}.old-") and previous.is_dir() and not output_dir.exists():
            previous.rename(output_dir)


def move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished folder `staging` to `target`. An existing `target` is swapped out in one step
    where the platform allows (else moved aside into a `.<name>.old-*` folder first) and then removed, so
    the `target` path always holds the old or the new folder."""
    if target.exists() and exchange_paths(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # the previous folder
    elif target.exists():
        with reporting_full_disk(target):  # the backup folder is the one thing still created here
            backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(backup / target.name)
        staging.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        staging.rename(target)


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | Path, overwrite: bool = False, flag: str = "--overwrite"):
    """Yield a temporary folder beside `output_dir`; move it into place only if the block succeeds.

    Staging left by a killed earlier run for the same target is removed first; replacing an existing
    output swaps the two folders in one step, so the target path always holds the old or the new output.
    A full disk raises `DiskFullError` naming `output_dir`; `flag` is the command's overwrite option."""
    output_dir = Path(output_dir).resolve()
    if output_dir.parent.is_dir():
        restore_interrupted_swap(output_dir)
    output_dir = check_output_dir(output_dir, overwrite, flag)
    with reporting_full_disk(output_dir):
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(stale_staging(output_dir))
        staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
        staging.chmod(usual_mode(directory=True))
    try:
        with reporting_full_disk(output_dir):
            yield staging
        follow_umask(staging)
        check_output_dir(output_dir, overwrite, flag)  # it may have appeared meanwhile
        move_into_place(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
