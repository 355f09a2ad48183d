"""Hub-ready folders and uploads: model weights + config with `auto_map`, remote-code files,
feature extractor, custom pipelines and model card, checked before anything is pushed.

A folder is written beside its target under a temporary name and renamed into place only when
complete, so a failure never leaves a half-written folder.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tempfile
from pathlib import Path

from .atomic_io import atomic_output_dir
from .configuration_brain_jepa import BRAIN_JEPA_PRESETS
from .eval_results import read_eval_results_file
from .feature_extraction_brain_jepa import register_feature_extractor
from .model_card import render_model_card, validate_model_card
from .pipelines import save_pipelines


REMOTE_CODE_MODULES = {"transformers", "torch", "numpy"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def prepare_hub_folder(
    model,
    output_dir: str | Path,
    feature_extractor=None,
    card_preset: str | None = None,
    repo_id: str | None = None,
    converted_from: str | None = None,
    overwrite: bool = False,
    pipelines: bool = True,
    space_id: str | None = None,
) -> Path:
    """Write everything a Hub repository of `model` needs into `output_dir`, then check it.

    `card_preset` is the size named on the card ("vit-small", "vit-base", "vit-large", "custom";
    inferred from the config when None); `repo_id` is what the card's quick start loads (defaults to
    the folder); `converted_from` says the weights came from the authors' checkpoint (see
    `model_card.render_model_card`); `space_id` is a demo Space the card links to.
    """

    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir, overwrite) as staging:
        model.save_pretrained(staging)  # auto_map lists every Brain-JEPA Auto class (auto_classes.py)
        if feature_extractor is not None:
            register_feature_extractor()
            feature_extractor.save_pretrained(staging)
        if pipelines:
            save_pipelines(staging)
        card = render_model_card(
            card_preset or preset_for(model.config),
            config=model.config,
            repo_id=repo_id or str(output_dir.resolve()),
            converted_from=converted_from,
            sampling_rate=getattr(feature_extractor, "sampling_rate", 3),
            scaling=getattr(feature_extractor, "scaling", "zscore"),
            space_id=space_id,
        )
        card.save(staging / "README.md")
        check_hub_folder(staging)
    return output_dir


def preset_for(config) -> str:
    """The card preset whose encoder shape matches `config`, else "custom"."""

    for name in ("vit-small", "vit-base", "vit-large"):
        preset = BRAIN_JEPA_PRESETS[name]
        if all(getattr(config, key) == value for key, value in preset.items()):
            return name
    return "custom"


def remote_code_problems(folder: Path) -> list[str]:
    """Imports in the folder's .py files that a Hub user without our package could not satisfy."""
    problems = []
    local_modules = {p.stem for p in folder.glob("*.py")}
    allowed = REMOTE_CODE_MODULES | set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.ImportFrom):
                module = (node.module or "").split(".")[0]
                if node.level != 1 or module not in local_modules:
                    problems.append(
                        f"{path.name}: relative import '{'.' * node.level}{node.module or ''}' "
                        "does not name a file of this folder"
                    )
                continue
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    problems.append(
                        f"{path.name}: imports {name!r} (remote code may import only "
                        f"{sorted(REMOTE_CODE_MODULES)}, the standard library and files of this folder)"
                    )
    return problems


def check_hub_folder(folder: str | Path) -> Path:
    """Check a folder is a loadable Brain-JEPA repository; raise ValueError listing every problem."""

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: {folder} does not exist or is not a folder")
    problems = []
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else None
    if config is None:
        problems.append("config.json: missing")
    else:
        auto_map = config.get("auto_map") or {}
        for key in ("AutoConfig", "AutoModel"):
            if key not in auto_map:
                problems.append(f"config.json: auto_map has no {key!r} entry (remote code cannot load it)")
        references = list(auto_map.values())
        references += [task["impl"] for task in (config.get("custom_pipelines") or {}).values()]
        for reference in references:
            module = reference.split("--")[-1].split(".")[0]
            if not (folder / f"{module}.py").is_file():
                problems.append(f"config.json: refers to {reference!r} but {module}.py is missing")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        problems.append(f"weights: expected one of {list(WEIGHT_FILES)}, found none")
    processor_path = folder / "preprocessor_config.json"
    if processor_path.is_file():
        reference = (json.loads(processor_path.read_text()).get("auto_map") or {}).get("AutoFeatureExtractor")
        if reference is None:
            problems.append("preprocessor_config.json: auto_map has no 'AutoFeatureExtractor' entry")
        elif not (folder / f"{reference.split('.')[0]}.py").is_file():
            problems.append(f"preprocessor_config.json: refers to {reference!r} but its file is missing")
    problems += remote_code_problems(folder)
    for path in sorted((folder / ".eval_results").glob("*.yaml")):
        try:
            read_eval_results_file(path)
        except ValueError as err:
            problems.append(str(err))
    readme = folder / "README.md"
    if not readme.is_file():
        problems.append("README.md: missing model card")
    else:
        try:
            validate_model_card(readme.read_text())
        except ValueError as err:
            problems.append(f"README.md: {err}")
    if problems:
        raise ValueError(f"folder {folder} is not a complete Brain-JEPA Hub repository:\n- " + "\n- ".join(problems))
    return folder


def _point_card_at(folder: Path, repo_id: str) -> bytes | None:
    """README content whose quick start loads `repo_id` (the card may name the local folder)."""
    readme = folder / "README.md"
    text = readme.read_text()
    updated = re.sub(r'^repo = ".*"$', f'repo = "{repo_id}"', text, count=1, flags=re.M)
    return updated.encode() if updated != text else None


# What a training run leaves in its output folder that is not part of the model: checkpoints with
# optimizer and RNG states, run bookkeeping, and hidden staging folders of an interrupted write.
SKIPPED_FOLDERS = {"checkpoints", "__pycache__"}
SKIPPED_FOLDER_PATTERNS = ("step-*", "checkpoint-*", "*.partial")
KEPT_HIDDEN_FOLDERS = {".eval_results"}  # the Hub reads evaluation results from here
SKIPPED_FILE_PATTERNS = (
    "optimizer.bin",
    "optimizer.pt",
    "scheduler.bin",
    "scheduler.pt",
    "scaler.pt",
    "random_states_*.pkl",
    "rng_state*.pth",
    "training_args.bin",
    "trainer_state.json",
    "pretraining_log.jsonl",
    "pretraining_args.yaml",
    "pretraining_summary.json",
    "run_settings.json",
    "*.tmp",
    "*.tmp-*",
)


def hub_upload_files(folder: str | Path) -> list[Path]:
    """The files of `folder` a Hub repository of the model gets: every path component is checked, so
    nothing under checkpoints/, hidden (staging) folders or training-state files is uploaded."""
    import fnmatch

    folder = Path(folder)
    kept = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        *parents, name = path.relative_to(folder).parts
        if any(
            part in SKIPPED_FOLDERS
            or (part.startswith(".") and part not in KEPT_HIDDEN_FOLDERS)
            or any(fnmatch.fnmatch(part, pattern) for pattern in SKIPPED_FOLDER_PATTERNS)
            for part in parents
        ):
            continue
        if name.startswith(".") or any(fnmatch.fnmatch(name, pattern) for pattern in SKIPPED_FILE_PATTERNS):
            continue
        kept.append(path)
    return kept


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Brain-JEPA model",
    revision: str | None = None,
):
    """Create `repo_id` if needed and upload a checked Hub-ready folder in one commit; returns the CommitInfo."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = check_hub_folder(folder)
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id: expected '<user or org>/<name>', got {repo_id!r}")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    card = _point_card_at(folder, repo_id)
    operations = [
        CommitOperationAdd(
            path_in_repo=path.relative_to(folder).as_posix(),
            path_or_fileobj=card if (card is not None and path.name == "README.md") else str(path),
        )
        for path in hub_upload_files(folder)
    ]
    return api.create_commit(repo_id, operations=operations, commit_message=commit_message, revision=revision)


def push_to_hub(
    model,
    repo_id: str,
    feature_extractor=None,
    card_preset: str | None = None,
    converted_from: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Brain-JEPA model",
):
    """Prepare `model` (+ feature extractor, card, code, pipelines) in a temporary folder and push it."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = prepare_hub_folder(
            model,
            Path(scratch) / "repo",
            feature_extractor=feature_extractor,
            card_preset=card_preset,
            repo_id=repo_id,
            converted_from=converted_from,
        )
        return push_folder_to_hub(folder, repo_id, token=token, private=private, commit_message=commit_message)


__all__ = [
    "check_hub_folder",
    "hub_upload_files",
    "prepare_hub_folder",
    "preset_for",
    "push_folder_to_hub",
    "push_to_hub",
    "remote_code_problems",
]
