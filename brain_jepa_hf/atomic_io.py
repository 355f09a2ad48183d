"""Output folders that appear whole or not at all: built beside the target, renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


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


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | Path, overwrite: bool = False):
    """Yield a temporary folder beside `output_dir`; move it into place only if the block succeeds."""
    output_dir = check_output_dir(output_dir, overwrite).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    staging.chmod(usual_mode(directory=True))
    try:
        yield staging
        check_output_dir(output_dir, overwrite)  # it may have appeared meanwhile
        if output_dir.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old-", dir=output_dir.parent))
            output_dir.rename(backup / output_dir.name)
            staging.rename(output_dir)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
