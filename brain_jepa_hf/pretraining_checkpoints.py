"""Which run an output folder belongs to, and its checkpoints: the settings fingerprint, the reused-folder
check, finding the checkpoint to resume from, writing one atomically and pruning old ones."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from .atomic_io import follow_umask, fsync_tree, is_out_of_space, move_into_place, remove_stale
from .pretraining_arguments import NOT_FINGERPRINTED
from .run_folder import CHECKPOINT_PREFIX, RUN_SETTINGS_FILE, STATE_FILE


logger = logging.getLogger("brain_jepa_hf.pretraining")


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first (in-progress `.tmp` folders are not listed)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


CONFIG_KEYS_NOT_FINGERPRINTED = (
    "transformers_version",
    "_name_or_path",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "atlas",
)


def run_settings(args, config, dataset, gradient, num_processes: int) -> dict:
    """The settings that decide a run's result (see NOT_FINGERPRINTED for what is left out)."""
    settings = {name: value for name, value in dataclasses.asdict(args).items() if name not in NOT_FINGERPRINTED}
    model = config.to_dict()
    settings["model_config"] = {key: model[key] for key in sorted(model) if key not in CONFIG_KEYS_NOT_FINGERPRINTED}
    settings["data"] = (
        None
        if args.dataset is None
        else {"fingerprint": getattr(dataset, "_fingerprint", None), "num_rows": len(dataset)}
    )
    settings["gradient_sha256"] = (
        None
        if gradient is None
        else hashlib.sha256(np.ascontiguousarray(gradient, dtype=np.float32).tobytes()).hexdigest()
    )
    settings["num_processes"] = num_processes
    return json.loads(json.dumps(settings, default=str))  # as it reads back from JSON


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def describe_differences(stored: dict | None, current: dict) -> str:
    if stored is None:
        return f"it has no {RUN_SETTINGS_FILE}, so it is not a pretraining run of these settings"
    changes = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += [
                f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
        elif old != new:
            changes.append(f"{key}: {old!r} -> {new!r}")
    return "other settings: " + "; ".join(changes[:6]) + ("; ..." if len(changes) > 6 else "")


def read_run_settings(folder: Path) -> dict | None:
    path = folder / RUN_SETTINGS_FILE
    return json.loads(path.read_text())["settings"] if path.is_file() else None


def is_staging(path: Path) -> bool:
    """Hidden in-progress folders and files a killed run leaves (`.final.tmp`, `.step-N.tmp`, `..final.tmp.tmp-*`,
    `.run_settings.json.tmp-*`, and `.step-N.old-*` where a checkpoint was being replaced)."""
    return path.name.startswith(".") and (".tmp" in path.name or ".old-" in path.name)


def check_output_folder(args, settings: dict) -> bool:
    """Whether OUTPUT_DIR holds another run that must be removed (`overwrite_output_dir`); raises when it
    holds another run and replacing it was not asked for."""
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir: {output_dir} exists and is not a folder")
    content = [p for p in output_dir.iterdir() if not is_staging(p)] if output_dir.is_dir() else []
    stored = read_run_settings(output_dir) if output_dir.is_dir() else None
    if not content or stored == settings:
        return False
    if args.overwrite_output_dir:
        return True
    raise FileExistsError(
        f"output_dir: {output_dir} holds another pretraining run ({describe_differences(stored, settings)}); "
        "pass --overwrite_output_dir to replace it, or choose another --output_dir"
    )


def checkpoint_fingerprint(checkpoint: Path) -> str | None:
    return json.loads((checkpoint / STATE_FILE).read_text()).get("run_fingerprint")


def resolve_checkpoint(args, settings: dict | None = None) -> Path | None:
    """The checkpoint to resume from: `latest` is the newest checkpoint of this same run (same `settings`)
    in OUTPUT_DIR; a named checkpoint must come from a run with the same settings."""
    if args.resume_from_checkpoint is None:
        return None
    fingerprint = None if settings is None else settings_fingerprint(settings)
    if args.resume_from_checkpoint == "latest":
        checkpoints = [
            p
            for p in list_checkpoints(args.output_dir)
            if fingerprint is None or checkpoint_fingerprint(p) == fingerprint
        ]
        if not checkpoints:
            logger.warning(
                "resume_from_checkpoint=latest: no checkpoint of this run in %s yet, starting from scratch",
                args.output_dir,
            )
            return None
        return checkpoints[-1]
    path = Path(args.resume_from_checkpoint)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"resume_from_checkpoint: expected a checkpoint folder containing {STATE_FILE}, got {str(path)!r}"
        )
    if fingerprint is not None and checkpoint_fingerprint(path) != fingerprint:
        raise ValueError(
            f"resume_from_checkpoint: {path} was saved by another run ({describe_differences(read_run_settings(path), settings)}); "
            "resume with that run's settings, or start without --resume_from_checkpoint"
        )
    return path


def remove_stale_staging(output_dir: Path) -> list[Path]:
    """Remove what a killed run left half-written: `.final.tmp` (and its own staging) and checkpoint `.tmp` folders."""
    stale = [p for p in output_dir.iterdir() if is_staging(p)] if output_dir.is_dir() else []
    checkpoints = output_dir / "checkpoints"
    stale += [p for p in checkpoints.iterdir() if is_staging(p)] if checkpoints.is_dir() else []
    return remove_stale(stale)


def checkpoint_paths(output_dir: Path, global_step: int) -> tuple[Path, Path]:
    """(staging, final) folders of the checkpoint of `global_step`: written into the hidden `.step-N.tmp`,
    then published as `step-N`."""
    final = output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{global_step:08d}"
    return final.with_name(f".{final.name}.tmp"), final


def publish_checkpoint(staging: Path, final: Path, fingerprint: str, save_total_limit: int) -> None:
    """Move the complete checkpoint folder `staging` into place as `final`, flushed to disk first; the
    same step saved before is swapped out, never leaving neither. Then only the newest
    `save_total_limit` checkpoints of this run are kept (another run's are never touched)."""
    follow_umask(staging)
    fsync_tree(staging)
    move_into_place(staging, final)
    own = [path for path in list_checkpoints(final.parent.parent) if checkpoint_fingerprint(path) == fingerprint]
    for old in own[:-save_total_limit]:
        shutil.rmtree(old, ignore_errors=True)


def disk_full_error(root: Path, global_step: int, error: Exception) -> OSError:
    """The one-line error for a checkpoint that could not be written (a full disk surfaces as e.g.
    "basic_ios::clear: iostream error")."""
    free = shutil.disk_usage(root).free / 2**20
    full = ": the disk is full" if is_out_of_space(error) else ""
    return OSError(
        f"output_dir: could not write the step-{global_step} checkpoint under {root}{full} ({error}); {free:.0f} MiB "
        "free there: free some space or choose another output_dir, then resume with --resume_from_checkpoint latest"
    )


__all__ = [
    "list_checkpoints",
    "run_settings",
    "settings_fingerprint",
    "check_output_folder",
    "resolve_checkpoint",
    "remove_stale_staging",
    "checkpoint_paths",
    "publish_checkpoint",
    "disk_full_error",
]
