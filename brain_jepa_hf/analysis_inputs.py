"""What `analyze_model` checks and loads before any model work: its arguments, the model's config (without
weights) and models, the atlas, the dataset's rows and label, and the feature extractor."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atlas import EXAMPLE, RELEASED, atlas_from_config_value, resolve_atlas
from .attribution import ATTRIBUTION_METHODS
from .configuration_brain_jepa import BrainJepaConfig
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from .modeling_brain_jepa import BrainJepaForSequenceClassification, BrainJepaModel
from .network_statistics import labels_of_rows
from .series_fit import set_series_options


LEVELS = ("coarse", "fine")
MAX_CLASSES = 20  # a label with more distinct numeric values is treated as continuous


@dataclass
class ReportLabel:
    column: str
    values: np.ndarray  # (S,) raw values of the analysed rows
    categorical: bool
    classes: list  # sorted distinct values (categorical only)
    names: dict  # value -> display name

    def display(self) -> np.ndarray:
        if not self.categorical:
            return self.values.astype(np.float64)
        return np.array([self.names[v] for v in self.values.tolist()], dtype=object)


def check_arguments(level, attribution_method, permutations, batch_size, attribution_steps, max_subjects) -> None:
    """The plain arguments of `analyze_model`, before anything is loaded."""
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {LEVELS}, got {level!r}")
    if attribution_method not in ATTRIBUTION_METHODS:
        raise ValueError(
            f"attribution_method: expected one of {tuple(ATTRIBUTION_METHODS)}, got {attribution_method!r}"
        )
    for name, value, low in (
        ("permutations", permutations, 0),
        ("batch_size", batch_size, 1),
        ("attribution_steps", attribution_steps, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if max_subjects is not None and (
        isinstance(max_subjects, bool) or not isinstance(max_subjects, int) or max_subjects < 1
    ):
        raise ValueError(f"max_subjects: expected a positive integer or None, got {max_subjects!r}")


def check_output_dir(output_dir, overwrite: bool) -> Path:
    output_dir = Path(output_dir)
    if output_dir.exists():
        if not output_dir.is_dir():
            raise FileExistsError(f"output_dir: {output_dir} exists and is not a folder")
        if any(output_dir.iterdir()) and not overwrite:
            raise FileExistsError(
                f"output_dir: {output_dir} is not empty; pass --overwrite (overwrite=True) to replace it"
            )
    return output_dir


def model_config(model, attribution):
    """(config, has a classification head, folder or None) without loading weights."""
    folder = None
    if isinstance(model, torch.nn.Module):
        encoder = getattr(model, "base_model", model)
        config = getattr(encoder, "config", None)
        if not isinstance(config, BrainJepaConfig):
            raise ValueError(f"model: expected a Brain-JEPA model, folder or Hub id, got {type(model).__name__}")
        has_head = isinstance(model, BrainJepaForSequenceClassification) and model.config.num_labels > 0
        architectures = [type(model).__name__]
    else:
        source = str(model)
        if Path(source).exists():
            folder = Path(source)
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"model: expected a model folder with config.json, got {source} without one")
        config = BrainJepaConfig.from_pretrained(source)
        architectures = list(getattr(config, "architectures", None) or [])
        has_head = "BrainJepaForSequenceClassification" in architectures and config.num_labels > 0
    if attribution and not has_head:
        raise ValueError(
            f"attribution: the model has no classification head (architectures {architectures}); attribution needs a "
            "fine-tuned classifier (a `brain-jepa finetune` output); drop --attribution to analyse attention only"
        )
    return config, has_head, folder


def load_models(model, with_head: bool, device, dtype):
    """(encoder, classifier or None) on `device` in `dtype`, in eval mode."""
    if isinstance(model, torch.nn.Module):
        classifier = model if with_head else None
        encoder = getattr(model, "base_model", model)
    elif with_head:
        classifier = BrainJepaForSequenceClassification.from_pretrained(str(model))
        encoder = classifier.brain_jepa
    else:
        classifier, encoder = None, BrainJepaModel.from_pretrained(str(model))
    encoder = encoder.to(device, dtype).eval()
    if classifier is not None:
        classifier = classifier.to(device, dtype).eval()
    return encoder, classifier


def analysis_atlas(atlas_spec, config):
    if atlas_spec is not None:
        return resolve_atlas(atlas_spec, num_rois=config.num_rois)
    atlas = atlas_from_config_value(getattr(config, "atlas", None))
    if atlas is None:
        raise ValueError(
            f"atlas: the model carries no atlas (its config.atlas is empty), so its {config.num_rois} ROIs have no names or "
            f"networks; pass --atlas PATH (a CSV/TSV table: index,name,network[,coarse_network,hemisphere,x,y,z]), "
            f"--atlas {RELEASED} (the released 450-ROI layout) or --atlas {EXAMPLE} (the embedded example cohort)"
        )
    if atlas.num_rois != config.num_rois:
        raise ValueError(
            f"atlas: expected {config.num_rois} rows (the model's num_rois), got {atlas.num_rois} in {atlas.name!r}"
        )
    return atlas


def read_label(dataset, label_column, count) -> ReportLabel | None:
    """The label of the analysed rows: categorical (classes and display names) or continuous; None without one."""
    if label_column is None:
        return None
    raw = labels_of_rows(dataset, label_column, count)
    values = np.asarray(raw, dtype=object)
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in raw[:1]):
        raise ValueError(f"label_column: expected one value per subject, got sequences in {label_column!r}")
    distinct = list(dict.fromkeys(values.tolist()))
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in distinct)
    categorical = not numeric or len(distinct) <= MAX_CLASSES and all(float(v).is_integer() for v in distinct)
    if not categorical:
        return ReportLabel(label_column, values.astype(np.float64), False, [], {})
    try:
        classes = sorted(distinct)
    except TypeError:
        classes = sorted(distinct, key=str)
    if len(classes) > MAX_CLASSES:
        raise ValueError(
            f"label_column: {label_column!r} has {len(classes)} distinct values, more than {MAX_CLASSES}; "
            "per-class summaries need a categorical label (bin it first, e.g. with dataset.map)"
        )
    feature = dataset.features.get(label_column)
    class_names = getattr(feature, "names", None)
    names = {}
    for value in classes:
        if class_names is not None and isinstance(value, (int, np.integer)) and 0 <= value < len(class_names):
            names[value] = str(class_names[value])
        elif isinstance(value, str):
            names[value] = value
        else:
            names[value] = f"{label_column}={value}"
    return ReportLabel(label_column, values, True, classes, names)


def _fmri_rows(dataset, fmri_column) -> int | None:
    feature = dataset.features.get(fmri_column)
    shape = getattr(feature, "shape", None)
    return int(shape[0]) if shape else None


def check_cohort(dataset, fmri_column: str, config, max_subjects: int | None) -> int:
    """How many rows to analyse, once the series column and its ROIs match the model."""
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    rows = _fmri_rows(dataset, fmri_column)
    if rows is not None and rows != config.num_rois:
        raise ValueError(
            f"dataset: its {fmri_column!r} series have {rows} ROIs (rows), the model expects num_rois={config.num_rois}"
        )
    count = len(dataset) if max_subjects is None else min(len(dataset), max_subjects)
    if count == 0:
        raise ValueError("dataset: expected at least one row, got 0")
    return count


def check_contrast_classes(label: ReportLabel | None, permutations: int, count: int) -> None:
    """A contrast (permutations > 0) of a categorical label needs two classes of at least 2 subjects each."""
    if label is None or not label.categorical or permutations <= 0:
        return
    if len(label.classes) < 2:
        raise ValueError(
            f"label_column: {label.column!r} has one class ({label.classes[0]!r}) in the {count} analysed subjects; a "
            "contrast needs two (analyse more subjects with --max_subjects, another label, or --permutations 0 to skip it)"
        )
    counts = {value: int(np.sum(label.values == value)) for value in label.classes}
    rare = [value for value, n in counts.items() if n < 2]
    if rare:
        raise ValueError(
            f"label_column: class {rare[0]!r} of {label.column!r} has {counts[rare[0]]} subject among the {count} analysed; "
            "a contrast needs at least 2 per class (more --max_subjects, or --permutations 0 to skip it)"
        )


def analysis_feature_extractor(
    model, folder: Path | None, feature_extractor, sampling_rate: int | None, short_series: str | None
):
    """The given feature extractor (a copy when options change it) or the model folder's, with the options set."""
    if feature_extractor is None:
        if folder is None and not isinstance(model, str):
            raise ValueError(
                "feature_extractor: expected one for a model instance (a folder or Hub id brings its own)"
            )
        feature_extractor = BrainJepaFeatureExtractor.from_pretrained(str(model))
    elif sampling_rate is not None or short_series is not None:
        feature_extractor = copy.deepcopy(feature_extractor)  # the caller's stays as it was
    set_series_options(feature_extractor, sampling_rate=sampling_rate, short_series=short_series)
    return feature_extractor


__all__ = [
    "LEVELS",
    "MAX_CLASSES",
    "ReportLabel",
    "analysis_atlas",
    "analysis_feature_extractor",
    "check_arguments",
    "check_cohort",
    "check_contrast_classes",
    "check_output_dir",
    "load_models",
    "model_config",
    "read_label",
]
