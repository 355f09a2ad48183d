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


def check_output_dir(output_dir: str | Path, overwrite: bool) -> Path:
    """Refuse an existing target unless `overwrite`; never accept a file in its place."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir: {output_dir} exists and is not a folder")
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"output_dir: {output_dir} already exists; pass overwrite=True (--overwrite) to replace it")
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


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write the file `path` whole or not at all, durably: `write(temporary)` fills a temporary file
    beside it (one a killed earlier write left is removed first), which is flushed to disk, given the
    usual permissions and renamed onto `path`; the folder entry is flushed too. Returns `path`."""
    path = Path(path)
    handle, name = staged_file(path)
    os.close(handle)
    temporary = Path(name)
    try:
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
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(backup / target.name)
        staging.rename(target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        staging.rename(target)


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | Path, overwrite: bool = False):
    """Yield a temporary folder beside `output_dir`; move it into place only if the block succeeds.

    Staging left by a killed earlier run for the same target is removed first; replacing an existing
    output swaps the two folders in one step, so the target path always holds the old or the new output."""
    output_dir = Path(output_dir).resolve()
    if output_dir.parent.is_dir():
        restore_interrupted_swap(output_dir)
    output_dir = check_output_dir(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(stale_staging(output_dir))
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    staging.chmod(usual_mode(directory=True))
    try:
        yield staging
        follow_umask(staging)
        check_output_dir(output_dir, overwrite)  # it may have appeared meanwhile
        move_into_place(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
