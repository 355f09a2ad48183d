"""Downstream data before training: train / validation / test splits, what the label column holds,
the checks that data, feature extractor and checkpoint fit together, and what the model takes from
the data (feature extractor, atlas gradient, example atlas). Every problem raises a one-line
ValueError naming the argument before any model is trained."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atlas import atlas_for, set_atlas
from .brainmarks_data import load_dataset_folder
from .configuration_brain_jepa import BrainJepaConfig
from .downstream_arguments import DataArguments, ModelArguments
from .example_data import example_gradient, load_example_dataset
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from .gradients import check_gradient, load_gradient_csv, resolve_gradient
from .series_fit import check_series_fit, series_lengths, set_series_options


PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def load_splits(data_args: DataArguments) -> dict:
    """{"train", "validation", "test"} -> datasets.Dataset. A DatasetDict keeps its splits (missing
    validation / test are carved out of train); a single dataset is split by the fractions, stratified
    by label for classification, with `split_seed` (the same split for every seed)."""
    from datasets import Dataset, DatasetDict

    if data_args.dataset == "example":
        dataset = load_example_dataset(num_subjects=data_args.example_subjects, seed=data_args.example_seed)
    else:
        folder = Path(data_args.dataset)
        if not folder.exists():
            raise FileNotFoundError(
                f"dataset: no such folder {str(folder)!r} (expected 'example', a save_to_disk / build-dataset folder "
                "or a Brainmarks dataset folder)"
            )
        dataset = load_dataset_folder(folder, data_args.fmri_column)  # Brainmarks' layout is converted
    if isinstance(dataset, DatasetDict):
        splits = {}
        names = {
            "train": data_args.train_split,
            "validation": data_args.validation_split,
            "test": data_args.test_split,
        }
        if names["train"] not in dataset:
            raise ValueError(
                f"train_split: expected one of the dataset's splits {sorted(dataset)}, got {names['train']!r}"
            )
        splits["train"] = dataset[names["train"]]
        missing = [role for role in ("validation", "test") if names[role] not in dataset]
        carved = _split_dataset(splits["train"], data_args, missing)
        splits.update(carved)
        for role in ("validation", "test"):
            if role not in missing:
                splits[role] = dataset[names[role]]
        return {role: splits[role] for role in ("train", "validation", "test")}
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset: expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    for role in ("train", "validation", "test"):
        if getattr(data_args, f"{role}_split") != role:
            raise ValueError(
                f"{role}_split: {data_args.dataset} is one dataset without splits, got "
                f"{role}_split={getattr(data_args, f'{role}_split')!r}; drop it (the fractions split it)"
            )
    return _split_dataset(dataset, data_args, ["validation", "test"])


def _split_dataset(dataset, data_args: DataArguments, roles: list[str]) -> dict:
    """Carve `roles` ("validation", "test") out of `dataset`; the rest is "train"."""
    from sklearn.model_selection import train_test_split

    fractions = {"validation": data_args.validation_fraction, "test": data_args.test_fraction}
    for role in roles:
        if not 0.0 < fractions[role] < 1.0:
            raise ValueError(f"{role}_fraction: expected a fraction in (0, 1), got {fractions[role]!r}")
    if sum(fractions[r] for r in roles) >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction: expected a sum below 1, got {sum(fractions[r] for r in roles)}"
        )
    indices = np.arange(len(dataset))
    if not roles:
        return {"train": dataset}
    stratify = None
    if data_args.label_column in dataset.column_names:
        values = np.asarray(dataset[data_args.label_column])
        if values.ndim == 1 and values.dtype.kind in "iub" and len(values):
            _, counts = np.unique(values, return_counts=True)
            if counts.min() >= 2 * (len(roles) + 1):
                stratify = values
    result = {}
    remaining, remaining_fraction = indices, 1.0
    for role in roles:
        size = fractions[role] / remaining_fraction
        count = int(round(size * len(remaining)))
        if count < 1 or count >= len(remaining):
            result[role] = dataset.select([])
            continue
        strata = None if stratify is None else stratify[remaining]
        if strata is not None and min(count, len(remaining) - count) < len(np.unique(strata)):
            strata = None  # too few samples to hold every class on both sides: a plain random split
        rest, held = train_test_split(remaining, test_size=count, random_state=data_args.split_seed, stratify=strata)
        result[role] = dataset.select(np.sort(held))
        remaining, remaining_fraction = np.sort(rest), remaining_fraction - fractions[role]
    result["train"] = dataset.select(remaining)
    return {role: result[role] for role in ("train", "validation", "test") if role in result}


@dataclass
class LabelInfo:
    """What the label column holds, decided on the training split."""

    problem_type: str
    num_labels: int
    target_mean: float = 0.0
    target_std: float = 1.0
    label_names: tuple[str, ...] | None = None  # id2label of the saved model: the column / class names


def _class_names(split, column: str, num_labels: int) -> tuple[str, ...] | None:
    """The names of a `datasets.ClassLabel` column (None for plain integers)."""
    names = getattr(split.features.get(column), "names", None)
    return tuple(names) if names and len(names) == num_labels else None


def _label_array(split, column: str, role: str) -> np.ndarray:
    if column not in split.column_names:
        raise ValueError(
            f"label_column: expected a column {column!r} in the {role} split, got columns {split.column_names}"
        )
    values = split[column]
    try:
        array = np.asarray(values)
    except ValueError:
        raise ValueError(f"labels: column {column!r} of the {role} split holds ragged lists") from None
    return array


def infer_label_info(splits: dict, column: str, problem_type: str | None) -> LabelInfo:
    """Problem type, number of labels and (regression) standardisation statistics; raises a ValueError
    naming the column for labels that are missing, non-numeric or of the wrong kind."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type: expected one of {PROBLEM_TYPES} or None, got {problem_type!r}")
    arrays = {role: _label_array(split, column, role) for role, split in splits.items()}
    train = arrays["train"]
    for role, array in arrays.items():
        if array.dtype.kind not in "iufb":
            example = array.ravel()[:3].tolist()
            raise ValueError(
                f"labels: expected numeric values in column {column!r}, got dtype {array.dtype} in the {role} split "
                f"(e.g. {example})"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ValueError(
                f"labels: expected finite values in column {column!r}, got {bad} NaN/Inf in the {role} split"
            )
    if problem_type is None:
        if train.ndim == 2:
            problem_type = "multi_label_classification"
        elif train.dtype.kind in "iub":
            problem_type = "single_label_classification"
        else:
            problem_type = "regression"
    if problem_type == "regression":
        if train.ndim != 1:
            raise ValueError(
                f"labels: expected one regression target per sample in column {column!r}, got shape {train.shape}"
            )
        std = float(train.astype(np.float64).std())
        if not std > 0:
            raise ValueError(
                f"labels: expected varying regression targets in the train split of {column!r}, got all equal to {train[0]}"
            )
        return LabelInfo(problem_type, 1, float(train.astype(np.float64).mean()), std, label_names=(column,))
    if problem_type == "single_label_classification":
        for role, array in arrays.items():
            if array.ndim != 1:
                raise ValueError(
                    f"labels: expected one class id per sample in column {column!r}, got shape {array.shape} ({role} split)"
                )
            if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
                fractional = array[array != np.round(array)][:3].tolist()
                raise ValueError(
                    f"labels: expected integer class ids in column {column!r} for problem_type="
                    f"'single_label_classification', got non-integer values such as {fractional} ({role} split); "
                    "use problem_type='regression' for continuous targets"
                )
            if len(array) and array.min() < 0:
                raise ValueError(
                    f"labels: expected class ids >= 0 in column {column!r}, got {array.min()} ({role} split)"
                )
        classes = np.unique(train)
        if len(classes) < 2:
            raise ValueError(
                f"labels: expected at least 2 classes in the train split of {column!r}, got {classes.tolist()}"
            )
        num_labels = int(max(int(a.max()) for a in arrays.values() if len(a))) + 1
        return LabelInfo(problem_type, num_labels, label_names=_class_names(splits["train"], column, num_labels))
    # multi-label
    for role, array in arrays.items():
        if array.ndim != 2 or not np.isin(array, (0, 1)).all():
            raise ValueError(
                f"labels: expected (num_samples, num_labels) 0/1 targets in column {column!r} for multi-label "
                f"classification, got shape {array.shape} ({role} split)"
            )
    return LabelInfo(problem_type, int(train.shape[1]))


def check_splits_not_empty(splits: dict) -> None:
    for role in ("train", "validation", "test"):
        if role not in splits or len(splits[role]) == 0:
            raise ValueError(
                f"{role} split: expected at least one sample, got 0; check the dataset or the fractions "
                f"(train={len(splits.get('train', []))}, validation={len(splits.get('validation', []))}, "
                f"test={len(splits.get('test', []))})"
            )


def series_shape(split, fmri_column: str) -> tuple[int, int]:
    """(ROIs, shortest time-series length) of a split's `fmri_column`."""
    if fmri_column not in split.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {split.column_names}")
    feature = split.features[fmri_column]
    shape = getattr(feature, "shape", None)
    if shape is not None and None not in shape:
        return int(shape[0]), int(shape[1])
    view = split.with_format("numpy", columns=[fmri_column])
    shapes = [np.shape(view[i][fmri_column]) for i in range(len(view))]
    rois = {s[0] for s in shapes}
    if len(rois) != 1:
        raise ValueError(f"{fmri_column}: expected the same number of ROIs in every series, got {sorted(rois)}")
    return rois.pop(), min(s[1] for s in shapes)


def check_data_matches_model(splits: dict, config, feature_extractor, fmri_column: str, source: str) -> None:
    """ROI count and frame count of the data, the feature extractor and the checkpoint must agree."""
    if feature_extractor.num_rois != config.num_rois:
        raise ValueError(
            f"num_rois: the feature extractor expects {feature_extractor.num_rois} ROIs but the checkpoint "
            f"{source!r} was built for num_rois={config.num_rois}"
        )
    if feature_extractor.num_frames != config.num_frames:
        raise ValueError(
            f"num_frames: the feature extractor produces {feature_extractor.num_frames} frames per sample but the "
            f"checkpoint {source!r} was built for num_frames={config.num_frames}"
        )

    for role, split in splits.items():
        rois, length = series_shape(split, fmri_column)
        if rois != config.num_rois:
            raise ValueError(
                f"{fmri_column}: the {role} split has {rois} ROIs per series but the checkpoint {source!r} expects "
                f"num_rois={config.num_rois}; use a dataset parcellated with the checkpoint's atlas"
            )
        check_series_fit(
            series_lengths(split, fmri_column), feature_extractor, fmri_column, where=f" of the {role} split"
        )


def _has_file(name_or_path: str, filename: str, revision: str | None) -> bool:
    if Path(name_or_path).is_dir():
        return (Path(name_or_path) / filename).is_file()
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(name_or_path, filename, revision=revision)
        return True
    except Exception:  # noqa: BLE001 - absent file, offline, or not a repo: build one instead
        return False


def load_config(model_args: ModelArguments, data_args: DataArguments, num_rois: int):

    if model_args.model_name_or_path:
        config = BrainJepaConfig.from_pretrained(model_args.model_name_or_path, revision=model_args.revision)
        if data_args.num_frames not in (None, config.num_frames):
            raise ValueError(
                f"num_frames: {model_args.model_name_or_path} was built for num_frames={config.num_frames}, "
                f"got {data_args.num_frames}; drop --num_frames (it sizes a --preset model)"
            )
        return config
    if not model_args.preset:
        raise ValueError(
            "model_name_or_path: expected a pretrained folder or Hub id (or --preset for random init), got none"
        )
    sizes = {"num_frames": data_args.num_frames, "patch_size": model_args.patch_size}  # None: the config's own
    return BrainJepaConfig.from_preset(
        model_args.preset, num_rois=num_rois, **{k: v for k, v in sizes.items() if v is not None}
    )


def load_feature_extractor(model_args: ModelArguments, data_args: DataArguments, config, train_split):
    """The model's saved extractor (or `data_args.feature_extractor`), else a z-scoring one built from
    the config; `scaling` / `sampling_rate` overrides applied; robust scaling refitted on train if needed."""

    source = data_args.feature_extractor or model_args.model_name_or_path
    if data_args.feature_extractor and not _has_file(source, "preprocessor_config.json", model_args.revision):
        raise ValueError(
            f"feature_extractor: expected a folder or Hub id holding preprocessor_config.json, got {source!r}"
        )
    if source and _has_file(source, "preprocessor_config.json", model_args.revision):
        extractor = BrainJepaFeatureExtractor.from_pretrained(source, revision=model_args.revision)
    else:
        extractor = BrainJepaFeatureExtractor(
            num_rois=config.num_rois,
            num_frames=config.num_frames,
            scaling=data_args.scaling or "zscore",
            sampling_rate=data_args.sampling_rate or 3,
        )

    set_series_options(extractor, sampling_rate=data_args.sampling_rate, short_series=data_args.short_series)
    if data_args.scaling is not None and data_args.scaling != extractor.scaling:
        extractor.scaling = data_args.scaling
        extractor.robust_median = extractor.robust_iqr = None
    if extractor.scaling == "robust" and not extractor.is_fitted:
        view = train_split.with_format("numpy", columns=[data_args.fmri_column])
        extractor.fit((view[i][data_args.fmri_column] for i in range(len(view))), time_axis=-1)
    return extractor


def give_model_gradient(model, feature_extractor, data_args: DataArguments) -> None:
    """Give a model without an atlas gradient one: `data_args.gradient` CSV, the extractor's, or the
    example's for the example dataset. A model that holds one keeps it."""
    config = model.config
    if config.position_embedding_type != "gradient":
        return
    encoder = model.base_model
    if torch.any(encoder.embeddings.gradient) and data_args.gradient is None:
        return
    example = (lambda: example_gradient(config.gradient_dim)) if data_args.dataset == "example" else None
    given = None if data_args.gradient is None else load_gradient_csv(data_args.gradient, num_rois=config.num_rois)
    gradient = resolve_gradient(given, feature_extractor=feature_extractor, example=example)
    if gradient is None:
        raise ValueError(
            "gradient: the model holds no atlas gradient and none was given; pass --gradient <CSV of "
            f"{config.num_rois} rows x {config.gradient_dim} columns> or start from a pretrained folder that stores one"
        )
    encoder.set_gradient(check_gradient(gradient, config.num_rois, config.gradient_dim))


def resolve_example_atlas(model, model_args: ModelArguments, data_args: DataArguments) -> None:
    """A 450-ROI model trained on the embedded example dataset without an atlas gets the example's."""
    if model_args.atlas is None and data_args.dataset == "example" and model.config.num_rois == 450:
        if atlas_for(model) is None:
            set_atlas(model, "example")


__all__ = [
    "PROBLEM_TYPES",
    "LabelInfo",
    "load_splits",
    "infer_label_info",
    "check_splits_not_empty",
    "series_shape",
    "check_data_matches_model",
    "load_config",
    "load_feature_extractor",
    "give_model_gradient",
    "resolve_example_atlas",
]
