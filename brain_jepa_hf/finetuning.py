"""Fine-tuning Brain-JEPA on labelled fMRI with `transformers.Trainer`, the paper's downstream recipe.

`BrainJepaForSequenceClassification` starts from a pretrained folder or Hub id (the EMA target encoder
of a pretraining folder) and is trained with AdamW (weight decay 0.05 except biases, norms and other
1-D parameters), layer-wise learning-rate decay 0.75 that really applies (each group's lr is
`lr * 0.75 ** (num_layers + 1 - layer_id)`), drop path 0.1, warmup then cosine to 1e-6, base lr
1e-3 * batch / 256, 50 epochs, batch 16. Regression targets are standardised on the training split
(mean and std stored in the saved config as `regression_target_mean` / `regression_target_std`, the
label column's name as `id2label[0]`) and metrics are reported in original units. Evaluation uses the deterministic centre clip. The best
checkpoint on validation is kept and evaluated on the test split. `seeds` runs repeat the whole
procedure and `results.json` / `results.md` report mean (std), as in the paper.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from .metrics import GREATER_IS_BETTER, default_metric_for_best_model, headline_metrics, make_compute_metrics

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
PROBE_OPTIMIZERS = ("lars", "adamw")
RESULTS_JSON = "results.json"
RESULTS_MARKDOWN = "results.md"
METRIC_TITLES = {
    "mse": "MSE", "normalized_mse": "MSE (std. units)", "mae": "MAE", "pearson_r": "rho", "r2": "R^2",
    "accuracy": "ACC (%)", "f1": "F1 (%)", "balanced_accuracy": "BACC (%)", "auroc": "AUROC (%)",
}
PERCENT_METRICS = {"accuracy", "f1", "balanced_accuracy", "auroc"}


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which weights to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Pretrained folder (e.g. `brain-jepa pretrain` output) or Hub id; its target encoder is used."},
    )
    preset: str | None = field(
        default=None, metadata={"help": "Without model_name_or_path: randomly initialise this size (tiny, vit-small, ...)."}
    )
    random_init: bool = field(
        default=False,
        metadata={"help": "Keep the architecture (and atlas gradient) of model_name_or_path but initialise weights randomly."},
    )
    patch_size: int = field(default=16, metadata={"help": "Frames per token for a `preset` model."})
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth of the last block (recipe: 0.1)."})
    mode: str = field(
        default="finetune",
        metadata={"help": "finetune (all weights, layer decay) or linear_probe (frozen encoder, BatchNorm + Linear head)."},
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path."})
    atlas: str | None = field(
        default=None,
        metadata={"help": "ROI names and networks stored with the model: an atlas table (CSV/TSV: index, name, network[, "
                          "coarse_network, hemisphere, x, y, z]), 'released' or 'none'; default: the pretrained "
                          "model's, else 'example' on the embedded example dataset."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow Hub remote code (not needed with this package)."})


@dataclass
class DataArguments:
    """Which data, which label, and how series become model inputs."""

    dataset: str = field(
        default="example",
        metadata={"help": "'example' (the embedded synthetic cohort) or a folder saved with save_to_disk / build-dataset."},
    )
    label_column: str = field(default="age", metadata={"help": "Column holding the target."})
    problem_type: str | None = field(
        default=None,
        metadata={"help": "regression, single_label_classification or multi_label_classification; inferred from the label dtype if unset."},
    )
    fmri_column: str = field(default="fmri", metadata={"help": "Column holding (ROI, time) series."})
    train_split: str = field(default="train", metadata={"help": "Split name when the dataset is a DatasetDict."})
    validation_split: str = field(default="validation", metadata={"help": "Split name when the dataset is a DatasetDict."})
    test_split: str = field(default="test", metadata={"help": "Split name when the dataset is a DatasetDict."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Held-out validation fraction when splitting one dataset."})
    test_fraction: float = field(default=0.2, metadata={"help": "Held-out test fraction when splitting one dataset (paper: 0.2)."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the train/validation/test split (fixed across seeds)."})
    example_subjects: int = field(default=200, metadata={"help": "Subjects of the example dataset."})
    example_seed: int = field(default=0, metadata={"help": "Cohort seed of the example dataset."})
    feature_extractor: str | None = field(
        default=None, metadata={"help": "Feature extractor folder/Hub id; default: the model's, else one built from the config."}
    )
    scaling: str | None = field(
        default=None, metadata={"help": "Override the extractor's scaling: robust (refitted on train), zscore (paper downstream), none."}
    )
    sampling_rate: int | None = field(
        default=None, metadata={"help": "Override the extractor's clip stride (clips span sampling_rate*num_frames volumes)."}
    )
    short_series: str | None = field(
        default=None,
        metadata={"help": "Override the extractor's rule for series shorter than the clip: error, stretch (frames "
                          "spread over the whole series) or pad (missing frames filled)."},
    )
    num_frames: int | None = field(default=None, metadata={"help": "Frames per sample of a --preset model (default 160)."})
    gradient: str | None = field(
        default=None, metadata={"help": "Gradient CSV (R x gradient_dim) for a model that holds none (preset / random init)."}
    )
    eval_dataset_id: str | None = field(
        default=None,
        metadata={"help": "Dataset id written to .eval_results/*.yaml (default: the dataset's Hub id, or its folder name)."},
    )


@dataclass
class FinetuningArguments(TrainingArguments):
    """`TrainingArguments` with the paper's downstream defaults, plus layer decay, seeds and lr scaling."""

    output_dir: str | None = field(default=None, metadata={"help": "Folder for the fine-tuned model and results."})
    layer_decay: float = field(default=0.75, metadata={"help": "Layer-wise lr decay; 1.0 disables it."})
    probe_optimizer: str = field(
        default="adamw",
        metadata={"help": "Optimizer of a linear probe (mode linear_probe): adamw (--optim / --adam_* settings) or lars "
                          "(the original's; momentum 0.9, trust coefficient 0.001; needs a far larger lr, see "
                          "docs/finetuning.md). Fine-tuning always uses AdamW."},
    )
    base_learning_rate: float = field(
        default=1e-3, metadata={"help": "lr = base_learning_rate * total_batch / 256 unless learning_rate is set."}
    )
    learning_rate: float | None = field(default=None, metadata={"help": "Absolute peak lr (overrides base_learning_rate)."})
    min_learning_rate: float = field(default=1e-6, metadata={"help": "Final lr of the cosine schedule."})
    seeds: int = field(default=5, metadata={"help": "Number of seeds (seed, seed+1, ...); mean (std) is reported."})
    keep_seed_models: bool = field(default=False, metadata={"help": "Keep every seed's model, not only the best one."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing output_dir."})
    num_train_epochs: float = 50
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 16
    weight_decay: float = 0.05
    warmup_steps: float = 0.1
    lr_scheduler_type: str = "cosine_with_min_lr"
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    logging_strategy: str = "epoch"
    save_total_limit: int | None = 1
    load_best_model_at_end: bool = True
    report_to: None | str | list[str] = "none"
    remove_unused_columns: bool = False
    dataloader_pin_memory: bool = False
    ddp_find_unused_parameters: bool | None = False  # every trainable parameter is used (the probe's encoder is frozen)
    metric_for_best_model: str | None = field(
        default=None, metadata={"help": "Validation metric choosing the best checkpoint and seed (default: mse / accuracy)."}
    )

    def __post_init__(self):
        self.metric_chosen_by_user = self.metric_for_best_model is not None
        if not self.output_dir:
            raise ValueError("output_dir: expected a folder path for the fine-tuned model and results, got none")
        if self.learning_rate is None:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            total_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * world_size
            self.learning_rate = self.base_learning_rate * total_batch / 256
        for name in ("base_learning_rate", "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if self.lr_scheduler_type == "cosine_with_min_lr" and not self.lr_scheduler_kwargs:
            self.lr_scheduler_kwargs = {"min_lr": self.min_learning_rate}
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds: expected a positive integer, got {self.seeds!r}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay: expected a value in (0, 1], got {self.layer_decay!r}")
        if self.probe_optimizer not in PROBE_OPTIMIZERS:
            raise ValueError(f"probe_optimizer: expected one of {PROBE_OPTIMIZERS}, got {self.probe_optimizer!r}")
        use_cpu_process_group_without_accelerator(self)
        super().__post_init__()


def build_argument_parser(prog: str | None = None, description: str | None = None, epilog: str | None = None):
    """`HfArgumentParser` over (ModelArguments, DataArguments, FinetuningArguments) plus `--config`."""
    import argparse

    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        (ModelArguments, DataArguments, FinetuningArguments), prog=prog, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="YAML file of argument values; command-line flags override it.")
    return parser


def parse_arguments(argv: list[str] | None = None, parser=None, defaults: dict | None = None):
    """(ModelArguments, DataArguments, FinetuningArguments, extra argparse.Namespace) from flags and an
    optional `--config file.yaml` (flags given on the command line override the YAML values, which
    override `defaults`)."""
    import argparse

    parser = parser or build_argument_parser()
    argv = list(argv or [])
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    config_file = pre.parse_known_args(argv)[0].config
    values = dict(defaults or {})
    if config_file is not None:
        import yaml

        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config: no such YAML file {str(path)!r}")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config: expected a YAML mapping of argument names, got {type(loaded).__name__}")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise ValueError(f"config: unknown argument(s) {unknown} in {str(path)!r}")
        values.update(loaded)
    if values:
        parser.set_defaults(**values)
    outputs = parser.parse_args_into_dataclasses(args=argv)
    extra = outputs[3] if len(outputs) > 3 else argparse.Namespace()
    return outputs[0], outputs[1], outputs[2], extra


# ----------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay
# ----------------------------------------------------------------------------------------------

_LAYER_PATTERN = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_id_for_parameter(name: str, num_layers: int) -> int:
    """0 for the embeddings (patch projection, gradient projection), i + 1 for encoder block i, and
    num_layers + 1 for everything after the blocks (final norm, fc_norm, head)."""
    if ".embeddings." in f".{name}":
        return 0
    match = _LAYER_PATTERN.search(name)
    if match and not name.startswith("predictor."):
        return int(match.group(1)) + 1
    return num_layers + 1


def layer_decay_parameter_groups(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, layer_decay: float,
    num_layers: int | None = None,
) -> list[dict]:
    """AdamW parameter groups, one per (layer, decay / no decay): `lr` = learning_rate * `lr_scale`,
    `lr_scale` = layer_decay ** (num_layers + 1 - layer_id); biases, norms and other 1-D parameters get
    no weight decay. Frozen parameters are left out."""
    if num_layers is None:
        num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer_id = layer_id_for_parameter(name, num_layers)
        decayed = parameter.ndim > 1 and not name.endswith(".bias")
        key = (layer_id, decayed)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - layer_id)
            groups[key] = {
                "params": [], "param_names": [], "layer_id": layer_id, "lr_scale": scale,
                "lr": learning_rate * scale, "weight_decay": weight_decay if decayed else 0.0,
            }
        groups[key]["params"].append(parameter)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


class BrainJepaTrainer(Trainer):
    """`Trainer` whose optimizer gets layer-wise lr decay groups (the scheduler scales each group's
    own initial lr, so the per-layer ratios hold throughout warmup and cosine decay). A
    `BrainJepaLinearProbe` is trained with AdamW, or with LARS as in the original when
    `args.probe_optimizer` is "lars"."""

    def __init__(self, *args, layer_decay: float = 0.75, **kwargs):
        self.layer_decay = layer_decay
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        from .lars import Lars
        from .probing import BrainJepaLinearProbe

        model = self.model if model is None else model
        if self.optimizer is None:
            groups = layer_decay_parameter_groups(
                model, self.args.learning_rate, self.args.weight_decay, self.layer_decay,
                num_layers=_encoder_config(model).num_hidden_layers,
            )
            probe_optimizer = getattr(self.args, "probe_optimizer", "adamw")
            if isinstance(self.accelerator.unwrap_model(model), BrainJepaLinearProbe) and probe_optimizer == "lars":
                self.optimizer = Lars(groups, lr=self.args.learning_rate)
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
                self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


def _optimizer_name(model_args: ModelArguments, training_args: FinetuningArguments) -> str:
    """What `BrainJepaTrainer.create_optimizer` builds for this mode: "lars" or the `--optim` name."""
    if model_args.mode == "linear_probe" and training_args.probe_optimizer == "lars":
        return "lars"
    return str(getattr(training_args.optim, "value", training_args.optim))


def _encoder_config(model):
    config = getattr(model, "config", None)
    return config if config is not None else model.encoder.config


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


class FmriSamples(torch.utils.data.Dataset):
    """Model-ready samples of a `datasets.Dataset`: `fmri_values` (1, R, num_frames) from the feature
    extractor (random clip when `training`, reproducible in (seed, epoch, index); centre clip
    otherwise) and `labels` (standardised for regression)."""

    def __init__(self, dataset, feature_extractor, fmri_column: str, labels: np.ndarray | None,
                 training: bool = False, seed: int = 0):
        self.dataset = dataset.with_format("numpy", columns=[fmri_column])
        self.feature_extractor = feature_extractor
        self.fmri_column = fmri_column
        self.labels = labels
        self.training = training
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        series = self.dataset[int(index)][self.fmri_column]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)]) if self.training else None
        features = self.feature_extractor(series, time_axis=-1, training=self.training, seed=rng, return_tensors="np")
        sample = {"fmri_values": torch.from_numpy(np.ascontiguousarray(features["fmri_values"][0]))}
        if self.labels is not None:
            sample["labels"] = torch.as_tensor(self.labels[int(index)])
        return sample


class FmriCollator:
    """Stacks samples into a batch; adds the feature extractor's atlas gradient when it holds one."""

    def __init__(self, gradient: np.ndarray | None = None):
        self.gradient = None if gradient is None else torch.as_tensor(np.asarray(gradient, dtype=np.float32))

    def __call__(self, samples: list[dict]) -> dict:
        batch = {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
        if self.gradient is not None:
            batch["gradient"] = self.gradient
        return batch


def load_splits(data_args: DataArguments) -> dict:
    """{"train", "validation", "test"} -> datasets.Dataset. A DatasetDict keeps its splits (missing
    validation / test are carved out of train); a single dataset is split by the fractions, stratified
    by label for classification, with `split_seed` (the same split for every seed)."""
    from datasets import Dataset, DatasetDict

    if data_args.dataset == "example":
        from .example_data import load_example_dataset

        dataset = load_example_dataset(num_subjects=data_args.example_subjects, seed=data_args.example_seed)
    else:
        from .brainmarks_data import load_dataset_folder

        folder = Path(data_args.dataset)
        if not folder.exists():
            raise FileNotFoundError(
                f"dataset: no such folder {str(folder)!r} (expected 'example', a save_to_disk / build-dataset folder "
                "or a Brainmarks dataset folder)"
            )
        dataset = load_dataset_folder(folder, data_args.fmri_column)  # Brainmarks' layout is converted
    if isinstance(dataset, DatasetDict):
        splits = {}
        names = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
        if names["train"] not in dataset:
            raise ValueError(f"train_split: expected one of the dataset's splits {sorted(dataset)}, got {names['train']!r}")
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
    return _split_dataset(dataset, data_args, ["validation", "test"])


def _split_dataset(dataset, data_args: DataArguments, roles: list[str]) -> dict:
    """Carve `roles` ("validation", "test") out of `dataset`; the rest is "train"."""
    from sklearn.model_selection import train_test_split

    fractions = {"validation": data_args.validation_fraction, "test": data_args.test_fraction}
    for role in roles:
        if not 0.0 < fractions[role] < 1.0:
            raise ValueError(f"{role}_fraction: expected a fraction in (0, 1), got {fractions[role]!r}")
    if sum(fractions[r] for r in roles) >= 1.0:
        raise ValueError(f"validation_fraction + test_fraction: expected a sum below 1, got {sum(fractions[r] for r in roles)}")
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


# ----------------------------------------------------------------------------------------------
# Checks before training
# ----------------------------------------------------------------------------------------------


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
            raise ValueError(f"labels: expected finite values in column {column!r}, got {bad} NaN/Inf in the {role} split")
    if problem_type is None:
        if train.ndim == 2:
            problem_type = "multi_label_classification"
        elif train.dtype.kind in "iub":
            problem_type = "single_label_classification"
        else:
            problem_type = "regression"
    if problem_type == "regression":
        if train.ndim != 1:
            raise ValueError(f"labels: expected one regression target per sample in column {column!r}, got shape {train.shape}")
        std = float(train.astype(np.float64).std())
        if not std > 0:
            raise ValueError(f"labels: expected varying regression targets in the train split of {column!r}, got all equal to {train[0]}")
        return LabelInfo(problem_type, 1, float(train.astype(np.float64).mean()), std, label_names=(column,))
    if problem_type == "single_label_classification":
        for role, array in arrays.items():
            if array.ndim != 1:
                raise ValueError(f"labels: expected one class id per sample in column {column!r}, got shape {array.shape} ({role} split)")
            if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
                fractional = array[array != np.round(array)][:3].tolist()
                raise ValueError(
                    f"labels: expected integer class ids in column {column!r} for problem_type="
                    f"'single_label_classification', got non-integer values such as {fractional} ({role} split); "
                    "use problem_type='regression' for continuous targets"
                )
            if len(array) and array.min() < 0:
                raise ValueError(f"labels: expected class ids >= 0 in column {column!r}, got {array.min()} ({role} split)")
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
    from .series_fit import check_series_fit, series_lengths

    for role, split in splits.items():
        rois, length = series_shape(split, fmri_column)
        if rois != config.num_rois:
            raise ValueError(
                f"{fmri_column}: the {role} split has {rois} ROIs per series but the checkpoint {source!r} expects "
                f"num_rois={config.num_rois}; use a dataset parcellated with the checkpoint's atlas"
            )
        check_series_fit(series_lengths(split, fmri_column), feature_extractor, fmri_column, where=f" of the {role} split")


# ----------------------------------------------------------------------------------------------
# Model and feature extractor
# ----------------------------------------------------------------------------------------------


def _has_file(name_or_path: str, filename: str, revision: str | None) -> bool:
    if Path(name_or_path).is_dir():
        return (Path(name_or_path) / filename).is_file()
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(name_or_path, filename, revision=revision)
        return True
    except Exception:  # noqa: BLE001 - absent file, offline, or not a repo: build one instead
        return False


def load_config(model_args: ModelArguments, data_args: DataArguments, num_rois: int, num_frames: int):
    from .configuration_brain_jepa import BrainJepaConfig

    if model_args.model_name_or_path:
        return BrainJepaConfig.from_pretrained(model_args.model_name_or_path, revision=model_args.revision)
    if not model_args.preset:
        raise ValueError("model_name_or_path: expected a pretrained folder or Hub id (or --preset for random init), got none")
    return BrainJepaConfig.from_preset(model_args.preset, num_rois=num_rois, num_frames=num_frames,
                                       patch_size=model_args.patch_size)


def load_feature_extractor(model_args: ModelArguments, data_args: DataArguments, config, train_split):
    """The model's saved extractor (or `data_args.feature_extractor`), else a z-scoring one built from
    the config; `scaling` / `sampling_rate` overrides applied; robust scaling refitted on train if needed."""
    from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor

    source = data_args.feature_extractor or model_args.model_name_or_path
    if source and _has_file(source, "preprocessor_config.json", model_args.revision):
        extractor = BrainJepaFeatureExtractor.from_pretrained(source, revision=model_args.revision)
    else:
        extractor = BrainJepaFeatureExtractor(
            num_rois=config.num_rois, num_frames=config.num_frames, scaling=data_args.scaling or "zscore",
            sampling_rate=data_args.sampling_rate or 3,
        )
    from .series_fit import set_series_options

    set_series_options(extractor, sampling_rate=data_args.sampling_rate, short_series=data_args.short_series)
    if data_args.scaling is not None and data_args.scaling != extractor.scaling:
        extractor.scaling = data_args.scaling
        extractor.robust_median = extractor.robust_iqr = None
    if extractor.scaling == "robust" and not extractor.is_fitted:
        view = train_split.with_format("numpy", columns=[data_args.fmri_column])
        extractor.fit((view[i][data_args.fmri_column] for i in range(len(view))), time_axis=-1)
    return extractor


def resolve_gradient(model, feature_extractor, data_args: DataArguments) -> None:
    """Give a model without an atlas gradient one: `data_args.gradient` CSV, the extractor's, or the
    example's for the example dataset. A model that holds one keeps it."""
    config = model.config
    if config.position_embedding_type != "gradient":
        return
    encoder = getattr(model, "brain_jepa", None) or getattr(model, "encoder", None) or model
    if torch.any(encoder.embeddings.gradient) and data_args.gradient is None:
        return
    gradient = None
    if data_args.gradient is not None:
        from .gradients import load_gradient_csv

        gradient = load_gradient_csv(data_args.gradient, num_rois=config.num_rois)
    elif getattr(feature_extractor, "gradient", None) is not None:
        gradient = feature_extractor.gradient
    elif data_args.dataset == "example":
        from .example_data import example_gradient

        gradient = example_gradient(config.gradient_dim)
    if gradient is None:
        raise ValueError(
            "gradient: the model holds no atlas gradient and none was given; pass --gradient <CSV of "
            f"{config.num_rois} rows x {config.gradient_dim} columns> or start from a pretrained folder that stores one"
        )
    gradient = np.asarray(gradient, dtype=np.float32)
    if gradient.shape != (config.num_rois, config.gradient_dim):
        raise ValueError(
            f"gradient: expected shape ({config.num_rois}, {config.gradient_dim}) (num_rois, gradient_dim), got {gradient.shape}"
        )
    encoder.set_gradient(gradient)


def resolve_example_atlas(model, model_args: ModelArguments, data_args: DataArguments) -> None:
    """A 450-ROI model trained on the embedded example dataset without an atlas gets the example's."""
    if model_args.atlas is None and data_args.dataset == "example" and model.config.num_rois == 450:
        from .atlas import atlas_for, set_atlas

        if atlas_for(model) is None:
            set_atlas(model, "example")


def build_model(model_args: ModelArguments, config, label_info: LabelInfo, pretrained_gradient=None):
    """BrainJepaForSequenceClassification (mode finetune) or a frozen-encoder linear probe."""
    from .modeling_brain_jepa import BrainJepaForSequenceClassification

    overrides = {
        "num_labels": label_info.num_labels,
        "problem_type": label_info.problem_type,
        "drop_path_rate": model_args.drop_path_rate if model_args.mode == "finetune" else 0.0,
    }
    if model_args.mode not in ("finetune", "linear_probe"):
        raise ValueError(f"mode: expected 'finetune' or 'linear_probe', got {model_args.mode!r}")
    if model_args.model_name_or_path and not model_args.random_init:
        model = BrainJepaForSequenceClassification.from_pretrained(
            model_args.model_name_or_path, revision=model_args.revision, **overrides
        )
    else:
        config = copy.deepcopy(config)
        for key, value in overrides.items():
            setattr(config, key, value)
        model = BrainJepaForSequenceClassification(config)
        if pretrained_gradient is not None:
            model.brain_jepa.set_gradient(pretrained_gradient)
    if model_args.atlas is not None:
        from .atlas import set_atlas

        set_atlas(model, model_args.atlas)
    if label_info.problem_type == "regression":
        model.config.regression_target_mean = label_info.target_mean
        model.config.regression_target_std = label_info.target_std
    if label_info.label_names is not None:  # pipelines report predictions under these names
        model.config.id2label = dict(enumerate(label_info.label_names))
        model.config.label2id = {name: i for i, name in enumerate(label_info.label_names)}
    if model_args.mode == "linear_probe":
        from .probing import BrainJepaLinearProbe

        return BrainJepaLinearProbe(model.brain_jepa, label_info.num_labels, label_info.problem_type)
    return model


def _stored_gradient(model_args: ModelArguments):
    """The atlas gradient held by a pretrained checkpoint (for random init of the same architecture)."""
    if not (model_args.random_init and model_args.model_name_or_path):
        return None
    from .modeling_brain_jepa import BrainJepaModel

    encoder = BrainJepaModel.from_pretrained(model_args.model_name_or_path, revision=model_args.revision)
    gradient = encoder.embeddings.gradient.detach().clone()
    return gradient if torch.any(gradient) else None


# ----------------------------------------------------------------------------------------------
# Processes (`accelerate launch` / torchrun)
# ----------------------------------------------------------------------------------------------


def use_cpu_process_group_without_accelerator(args: TrainingArguments) -> None:
    """Under a multi-process launch on a machine without GPU (or other accelerator), make the Trainer's
    processes join one gloo CPU group and train data-parallel, instead of each training alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    from .runtime import has_accelerator

    if not has_accelerator():
        args.use_cpu = True
    if args.use_cpu and args.ddp_backend is None:
        args.ddp_backend = "gloo"  # accelerate would pick MPI where torch has it, which torchrun does not set up


def process_state(args: TrainingArguments):
    """The `accelerate.PartialState` the Trainer runs under (one process outside a launch)."""
    from accelerate import PartialState

    return args.distributed_state or PartialState()


@contextlib.contextmanager
def shared_output_dir(output_dir: str | Path, overwrite: bool, state):
    """`atomic_output_dir` for every process of a launch: the main process creates one staging folder
    and tells the others its path (checkpoints and rng states of all ranks go there); it is moved into
    place only after every process has finished with it."""
    from accelerate.utils import broadcast_object_list

    from .atomic_io import atomic_output_dir, check_output_dir

    flag = "--overwrite_output_dir"
    check_output_dir(output_dir, overwrite, flag)  # every process stops alike on an existing folder
    if state.num_processes == 1:
        with atomic_output_dir(output_dir, overwrite=overwrite, flag=flag) as staging:
            yield staging
        return
    if state.is_main_process:
        with atomic_output_dir(output_dir, overwrite=overwrite, flag=flag) as staging:
            broadcast_object_list([str(staging)])
            yield staging
            state.wait_for_everyone()
    else:
        path = [None]
        broadcast_object_list(path)
        yield Path(path[0])
        state.wait_for_everyone()
    state.wait_for_everyone()  # the output folder is in place when any process goes on


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


@dataclass
class PreparedRun:
    """Everything a seed needs, checked once before any training."""

    splits: dict
    config: Any
    feature_extractor: Any
    label_info: LabelInfo
    labels: dict
    pretrained_gradient: Any = None
    source: str = ""


def prepare_run(model_args: ModelArguments, data_args: DataArguments) -> PreparedRun:
    """Load data, config and feature extractor and check they fit together; every data or checkpoint
    problem raises here, before a model is built or trained."""
    from .configuration_brain_jepa import check_local_path

    check_local_path(model_args.model_name_or_path)  # a mistyped folder fails before the data are read
    splits = load_splits(data_args)
    check_splits_not_empty(splits)
    label_info = infer_label_info(splits, data_args.label_column, data_args.problem_type)
    rois, _ = series_shape(splits["train"], data_args.fmri_column)
    source = model_args.model_name_or_path or f"preset {model_args.preset}"
    config = load_config(model_args, data_args, rois, num_frames=data_args.num_frames or 160)
    feature_extractor = load_feature_extractor(model_args, data_args, config, splits["train"])
    check_data_matches_model(splits, config, feature_extractor, data_args.fmri_column, source)
    if model_args.atlas is not None:
        from .atlas import resolve_atlas

        resolve_atlas(model_args.atlas, num_rois=config.num_rois)  # a bad table fails before training
    labels = {}
    for role, split in splits.items():
        array = np.asarray(split[data_args.label_column])
        if label_info.problem_type == "regression":
            labels[role] = ((array.astype(np.float64) - label_info.target_mean) / label_info.target_std).astype(np.float32)
        elif label_info.problem_type == "single_label_classification":
            labels[role] = array.astype(np.int64)
        else:
            labels[role] = array.astype(np.float32)
    return PreparedRun(splits, config, feature_extractor, label_info, labels, _stored_gradient(model_args), source)


def _finalise_training_args(args: FinetuningArguments, problem_type: str, seed: int, output_dir: Path):
    args = copy.copy(args)
    args.seed = seed
    args.output_dir = str(output_dir)
    args.push_to_hub = False  # pushing happens once, for the selected model, after all seeds
    if not getattr(args, "metric_chosen_by_user", True):
        args.metric_for_best_model = default_metric_for_best_model(problem_type)
    metric = args.metric_for_best_model.removeprefix("eval_")
    args.greater_is_better = GREATER_IS_BETTER.get(metric, not metric.endswith("loss"))
    return args


def run_seed(prepared: PreparedRun, model_args: ModelArguments, data_args: DataArguments,
             training_args: FinetuningArguments, seed: int, seed_dir: Path) -> dict:
    """Train one seed: returns {"seed", "validation", "test" (metrics), "num_test_predictions", "train"};
    the main process saves the best model (validation) into `seed_dir`. Under a launch, every process
    runs this; evaluation gathers the predictions of all processes, each test sample counted once."""
    from transformers import set_seed

    args = _finalise_training_args(training_args, prepared.label_info.problem_type, seed, seed_dir)
    set_seed(seed)
    model = build_model(model_args, prepared.config, prepared.label_info, prepared.pretrained_gradient)
    resolve_gradient(model, prepared.feature_extractor, data_args)
    resolve_example_atlas(model, model_args, data_args)
    extractor = prepared.feature_extractor
    datasets = {
        role: FmriSamples(split, extractor, data_args.fmri_column, prepared.labels[role], training=(role == "train"), seed=seed)
        for role, split in prepared.splits.items()
    }
    info = prepared.label_info
    trainer = BrainJepaTrainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=FmriCollator(getattr(extractor, "gradient", None)),
        compute_metrics=make_compute_metrics(info.problem_type, info.target_mean, info.target_std, info.num_labels),
        layer_decay=training_args.layer_decay if model_args.mode == "finetune" else 1.0,
        callbacks=[_EpochSetter(datasets["train"])],
    )
    trainer.train()
    validation = _strip_prefix(trainer.evaluate(datasets["validation"], metric_key_prefix="eval"), "eval_")
    prediction = trainer.predict(datasets["test"], metric_key_prefix="test")  # gathered over all processes
    test = _strip_prefix(prediction.metrics, "test_")
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    result = {
        "seed": seed, "validation": validation, "test": test, "num_test_predictions": len(logits),
        "train": {"global_step": trainer.state.global_step, "epoch": float(trainer.state.epoch or 0.0)},
    }
    if trainer.is_world_process_zero():
        for checkpoint in seed_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
        _save_model(trainer.model, extractor, seed_dir)
        (seed_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    trainer.accelerator.wait_for_everyone()
    return result


class _EpochSetter(TrainerCallback):
    """Trainer callback giving the training samples a new random clip per epoch."""

    def __init__(self, samples: FmriSamples):
        self.samples = samples

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.samples.set_epoch(int(state.epoch or 0))


def _strip_prefix(metrics: dict, prefix: str) -> dict:
    keep = {}
    for key, value in metrics.items():
        name = key.removeprefix(prefix)
        if name in ("runtime", "samples_per_second", "steps_per_second", "epoch"):
            continue
        keep[name] = float(value)
    return keep


def _save_model(model, feature_extractor, folder: Path) -> None:
    """save_pretrained (remote code, every Auto class in auto_map) + the feature extractor + the
    pipelines this model serves (code file and `custom_pipelines`, replacing any inherited from the
    pretrained folder); a linear probe saves its head and encoder state dict."""
    from safetensors.torch import save_model

    from .pipelines import save_pipelines

    folder.mkdir(parents=True, exist_ok=True)
    feature_extractor.save_pretrained(folder)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
        save_pipelines(folder)
    else:
        save_model(model, str(folder / "model.safetensors"))
        (folder / "probe_config.json").write_text(json.dumps(model.describe(), indent=2))


def summarise(per_seed: list[dict], split: str = "test") -> dict:
    """{metric: {"mean", "std"}} over seeds (std with ddof=0 ... ddof=1 when several seeds, as usual)."""
    names = sorted({name for result in per_seed for name in result[split]})
    summary = {}
    for name in names:
        values = np.array([result[split][name] for result in per_seed if name in result[split]], dtype=np.float64)
        summary[name] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        }
    return summary


def format_metric(name: str, mean: float, std: float) -> str:
    if name in PERCENT_METRICS:
        return f"{100 * mean:.2f} ({100 * std:.2f})"
    return f"{mean:.3f} ({std:.3f})"


def results_table(rows: list[tuple[str, str, dict]]) -> str:
    """Markdown table in the paper's layout: one row per (model, task), mean (std) over seeds; the
    paper's columns (MSE, rho / ACC, F1) first, then the extra metrics."""
    lines = []
    by_problem: dict[str, list] = {}
    for name, problem_type, summary in rows:
        by_problem.setdefault("regression" if problem_type == "regression" else "classification", []).append(
            (name, problem_type, summary)
        )
    for group, entries in by_problem.items():
        columns = headline_metrics("regression" if group == "regression" else "single_label_classification")
        lines.append("| Model / task | " + " | ".join(METRIC_TITLES[c] for c in columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for name, _, summary in entries:
            cells = [
                format_metric(c, summary[c]["mean"], summary[c]["std"]) if c in summary else "n/a" for c in columns
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _best_seed(per_seed: list[dict], metric: str, greater_is_better: bool) -> int:
    values = [result["validation"].get(metric, math.nan) for result in per_seed]
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not finite:
        return 0
    return (max(finite) if greater_is_better else min(finite))[1]


def _keep_selected_seed_model(staging: Path, per_seed: list[dict], best: int, keep_seed_models: bool) -> None:
    """Copy the selected seed's model to the top of `staging`; drop the other seed models unless kept."""
    best_dir = staging / f"seed-{per_seed[best]['seed']}"
    for path in best_dir.iterdir():
        if path.is_file() and path.name not in ("metrics.json", "trainer_state.json", "training_args.bin"):
            shutil.copy2(path, staging / path.name)
    if not keep_seed_models:
        for result in per_seed:
            for path in (staging / f"seed-{result['seed']}").iterdir():
                if path.is_file() and path.name != "metrics.json":
                    path.unlink()


def run_finetuning(model_args: ModelArguments, data_args: DataArguments, training_args: FinetuningArguments) -> dict:
    """Fine-tune `training_args.seeds` times and write `output_dir` atomically: results.json,
    results.md, the best-validation seed's model with its model card (README.md), and per-seed
    metrics under seed-<k>/. Returns the results dictionary. Under `accelerate launch` every process
    trains each seed data-parallel; only the main process writes files and pushes to the Hub."""
    from tqdm.auto import tqdm

    from .eval_results import write_eval_results
    from .finetune_card import write_finetune_card

    prepared = prepare_run(model_args, data_args)  # every input error is raised here
    if training_args.push_to_hub and model_args.mode == "linear_probe":
        raise ValueError("push_to_hub: a linear probe is not a transformers model; push a fine-tuned model instead")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError("hub_model_id: expected a repository id like 'user/brain-jepa-age' with --push_to_hub, got None")
    output_dir = Path(training_args.output_dir)
    info = prepared.label_info
    metric = _finalise_training_args(training_args, info.problem_type, training_args.seed, output_dir).metric_for_best_model
    metric = metric.removeprefix("eval_")
    state = process_state(training_args)
    with shared_output_dir(output_dir, training_args.overwrite_output_dir, state) as staging:
        per_seed = []
        seeds = [training_args.seed + k for k in range(training_args.seeds)]
        for seed in tqdm(seeds, desc="seeds", unit="seed", disable=len(seeds) == 1 or not state.is_main_process):
            per_seed.append(run_seed(prepared, model_args, data_args, training_args, seed, staging / f"seed-{seed}"))
        best = _best_seed(per_seed, metric, GREATER_IS_BETTER.get(metric, True))
        if state.is_main_process:
            _keep_selected_seed_model(staging, per_seed, best, training_args.keep_seed_models)
        results = {
            "task": {"dataset": data_args.dataset, "label_column": data_args.label_column,
                     "problem_type": info.problem_type, "num_labels": info.num_labels,
                     "num_samples": {role: len(split) for role, split in prepared.splits.items()}},
            "model": {"model_name_or_path": model_args.model_name_or_path, "preset": model_args.preset,
                      "random_init": model_args.random_init, "mode": model_args.mode},
            "training": {"learning_rate": training_args.learning_rate, "layer_decay": training_args.layer_decay,
                         "weight_decay": training_args.weight_decay, "num_train_epochs": training_args.num_train_epochs,
                         "max_steps": training_args.max_steps, "batch_size": training_args.per_device_train_batch_size,
                         "drop_path_rate": model_args.drop_path_rate, "seeds": seeds,
                         "metric_for_best_model": metric,
                         "optimizer": _optimizer_name(model_args, training_args)},
            "regression_target": {"mean": info.target_mean, "std": info.target_std} if info.problem_type == "regression" else None,
            "per_seed": per_seed,
            "test": summarise(per_seed, "test"),
            "validation": summarise(per_seed, "validation"),
            "selected_seed": per_seed[best]["seed"],
        }
        results["training"]["num_processes"] = state.num_processes  # the batch is split over them
        if state.is_main_process:
            (staging / RESULTS_JSON).write_text(json.dumps(results, indent=2))
            task_name = f"{data_args.label_column} ({model_args.mode})"
            table = results_table([(task_name, info.problem_type, results["test"])])
            (staging / RESULTS_MARKDOWN).write_text(
                f"Test results over {len(seeds)} seed(s), mean (std); metrics in original units.\n\n{table}"
            )
            if model_args.mode == "finetune":
                write_finetune_card(staging, results, repo_id=training_args.hub_model_id)
            write_eval_results(staging, results, dataset_id=data_args.eval_dataset_id, repo_id=training_args.hub_model_id)
    if training_args.push_to_hub and state.is_main_process:
        from .hub import push_folder_to_hub

        push_folder_to_hub(output_dir, training_args.hub_model_id, token=training_args.hub_token,
                           private=training_args.hub_private_repo,
                           commit_message=f"Fine-tuned Brain-JEPA on {data_args.label_column}")
    return results


__all__ = [
    "ModelArguments", "DataArguments", "FinetuningArguments", "parse_arguments", "layer_id_for_parameter",
    "layer_decay_parameter_groups", "BrainJepaTrainer", "FmriSamples", "FmriCollator", "load_splits",
    "infer_label_info", "check_data_matches_model", "prepare_run", "run_finetuning", "results_table", "summarise",
]
