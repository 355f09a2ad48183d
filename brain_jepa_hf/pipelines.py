"""Register the Brain-JEPA pipelines with transformers and write them into saved model folders.

Tasks: "brain-jepa-feature-extraction" (subject embeddings, any Brain-JEPA checkpoint) and
"brain-jepa-classification" (a fine-tuned head). `save_pipelines(folder)` records them as
`custom_pipelines` in the folder's config and copies `pipeline_brain_jepa.py` beside it, so that
`pipeline(task, model=folder_or_repo, trust_remote_code=True)` works without this package.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.pipelines import PIPELINE_REGISTRY

from .pipeline_brain_jepa import BrainJepaClassificationPipeline, BrainJepaFeatureExtractionPipeline


FEATURE_EXTRACTION_TASK = "brain-jepa-feature-extraction"
CLASSIFICATION_TASK = "brain-jepa-classification"
PIPELINE_FILE = Path(__file__).with_name("pipeline_brain_jepa.py")

# task -> (pipeline class, Auto class the pipeline loads the weights with)
PIPELINE_TASKS = {
    FEATURE_EXTRACTION_TASK: (BrainJepaFeatureExtractionPipeline, AutoModel),
    CLASSIFICATION_TASK: (BrainJepaClassificationPipeline, AutoModelForSequenceClassification),
}


def register_pipelines() -> None:
    """Make both tasks known to `transformers.pipeline` in this process (idempotent)."""
    for task, (pipeline_class, auto_class) in PIPELINE_TASKS.items():
        if task not in PIPELINE_REGISTRY.get_supported_tasks():
            PIPELINE_REGISTRY.register_pipeline(
                task, pipeline_class=pipeline_class, pt_model=auto_class, type="multimodal"
            )


def tasks_for(architectures: list[str] | None) -> list[str]:
    """Tasks a saved model supports: feature extraction always, classification when it has a head."""
    architectures = architectures or []
    tasks = [FEATURE_EXTRACTION_TASK]
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        tasks.append(CLASSIFICATION_TASK)
    return tasks


def save_pipelines(folder: str | Path, tasks: list[str] | None = None) -> list[str]:
    """Add `custom_pipelines` to `folder/config.json` and copy the pipeline code file; returns the tasks."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"folder: expected a saved model with config.json in {folder}, found none")
    config = json.loads(config_path.read_text())
    tasks = tasks_for(config.get("architectures")) if tasks is None else list(tasks)
    unknown = [t for t in tasks if t not in PIPELINE_TASKS]
    if unknown:
        raise ValueError(f"tasks: expected names from {sorted(PIPELINE_TASKS)}, got {unknown}")
    module = PIPELINE_FILE.stem
    config["custom_pipelines"] = {
        task: {
            "impl": f"{module}.{PIPELINE_TASKS[task][0].__name__}",
            "pt": [PIPELINE_TASKS[task][1].__name__],
            "type": "multimodal",
        }
        for task in tasks
    }
    shutil.copyfile(PIPELINE_FILE, folder / PIPELINE_FILE.name)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return tasks


__all__ = [
    "FEATURE_EXTRACTION_TASK",
    "CLASSIFICATION_TASK",
    "PIPELINE_TASKS",
    "register_pipelines",
    "save_pipelines",
    "tasks_for",
]
