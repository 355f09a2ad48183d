"""Arguments of the downstream tasks (fine-tuning and probing): which model, which data, and the
`TrainingArguments` with the paper's downstream recipe; parsed from flags and an optional YAML file."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments

from .runtime import has_accelerator


PROBE_OPTIMIZERS = ("lars", "adamw")


@dataclass
class ModelArguments:
    """Which weights to start from."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained folder (e.g. `brain-jepa pretrain` output) or Hub id; its target encoder is used."
        },
    )
    preset: str | None = field(
        default=None,
        metadata={"help": "Without model_name_or_path: randomly initialise this size (tiny, vit-small, ...)."},
    )
    random_init: bool = field(
        default=False,
        metadata={
            "help": "Keep the architecture (and atlas gradient) of model_name_or_path but initialise weights randomly."
        },
    )
    patch_size: int | None = field(
        default=None, metadata={"help": "Frames per token for a `preset` model (default: the config's, 16)."}
    )
    drop_path_rate: float = field(default=0.1, metadata={"help": "Stochastic depth of the last block (recipe: 0.1)."})
    mode: str = field(
        default="finetune",
        metadata={
            "help": "finetune (all weights, layer decay) or linear_probe (frozen encoder, BatchNorm + Linear head)."
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path."})
    atlas: str | None = field(
        default=None,
        metadata={
            "help": "ROI names and networks stored with the model: an atlas table (CSV/TSV: index, name, network[, "
            "coarse_network, hemisphere, x, y, z]), 'released' or 'none'; default: the pretrained "
            "model's, else 'example' on the embedded example dataset."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow Hub remote code (not needed with this package)."}
    )

    def __post_init__(self):
        if self.mode not in ("finetune", "linear_probe"):
            raise ValueError(f"mode: expected 'finetune' or 'linear_probe', got {self.mode!r}")
        if self.model_name_or_path and self.preset:
            raise ValueError(
                f"preset: expected either model_name_or_path or preset (random init of a size), got both "
                f"({self.model_name_or_path!r}, {self.preset!r}); drop one"
            )
        if self.model_name_or_path and self.patch_size is not None:
            raise ValueError(
                f"patch_size: applies to a --preset model only (model_name_or_path's config sets it), "
                f"got {self.patch_size!r}; drop --patch_size"
            )
        if self.patch_size is not None and (
            isinstance(self.patch_size, bool) or not isinstance(self.patch_size, int) or self.patch_size < 1
        ):
            raise ValueError(f"patch_size: expected a positive integer, got {self.patch_size!r}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate: expected a probability in [0, 1), got {self.drop_path_rate!r}")


@dataclass
class DataArguments:
    """Which data, which label, and how series become model inputs."""

    dataset: str = field(
        default="example",
        metadata={
            "help": "'example' (the embedded synthetic cohort) or a folder saved with save_to_disk / build-dataset."
        },
    )
    label_column: str = field(default="age", metadata={"help": "Column holding the target."})
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "regression, single_label_classification or multi_label_classification; inferred from the label dtype if unset."
        },
    )
    fmri_column: str = field(default="fmri", metadata={"help": "Column holding (ROI, time) series."})
    train_split: str = field(default="train", metadata={"help": "Split name when the dataset is a DatasetDict."})
    validation_split: str = field(
        default="validation", metadata={"help": "Split name when the dataset is a DatasetDict."}
    )
    test_split: str = field(default="test", metadata={"help": "Split name when the dataset is a DatasetDict."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Held-out validation fraction when splitting one dataset."}
    )
    test_fraction: float = field(
        default=0.2, metadata={"help": "Held-out test fraction when splitting one dataset (paper: 0.2)."}
    )
    split_seed: int = field(
        default=0, metadata={"help": "Seed of the train/validation/test split (fixed across seeds)."}
    )
    example_subjects: int = field(default=200, metadata={"help": "Subjects of the example dataset."})
    example_seed: int = field(default=0, metadata={"help": "Cohort seed of the example dataset."})
    feature_extractor: str | None = field(
        default=None,
        metadata={"help": "Feature extractor folder/Hub id; default: the model's, else one built from the config."},
    )
    scaling: str | None = field(
        default=None,
        metadata={
            "help": "Override the extractor's scaling: robust (refitted on train), zscore (paper downstream), none."
        },
    )
    sampling_rate: int | None = field(
        default=None,
        metadata={"help": "Override the extractor's clip stride (clips span sampling_rate*num_frames volumes)."},
    )
    short_series: str | None = field(
        default=None,
        metadata={
            "help": "Override the extractor's rule for series shorter than the clip: error, stretch (frames "
            "spread over the whole series) or pad (missing frames filled)."
        },
    )
    num_frames: int | None = field(
        default=None, metadata={"help": "Frames per sample of a --preset model (default: the config's, 160)."}
    )
    gradient: str | None = field(
        default=None,
        metadata={"help": "Gradient CSV (R x gradient_dim) for a model that holds none (preset / random init)."},
    )
    eval_dataset_id: str | None = field(
        default=None,
        metadata={
            "help": "Dataset id written to .eval_results/*.yaml (default: the dataset's Hub id, or its folder name)."
        },
    )

    def __post_init__(self):
        if self.scaling not in (None, "robust", "zscore", "none"):
            raise ValueError(f"scaling: expected 'robust', 'zscore' or 'none', got {self.scaling!r}")
        if self.num_frames is not None and (isinstance(self.num_frames, bool) or self.num_frames < 1):
            raise ValueError(f"num_frames: expected a positive integer, got {self.num_frames!r}")


@dataclass
class FinetuningArguments(TrainingArguments):
    """`TrainingArguments` with the paper's downstream defaults, plus layer decay, seeds and lr scaling."""

    output_dir: str | None = field(default=None, metadata={"help": "Folder for the fine-tuned model and results."})
    layer_decay: float = field(default=0.75, metadata={"help": "Layer-wise lr decay; 1.0 disables it."})
    probe_optimizer: str = field(
        default="adamw",
        metadata={
            "help": "Optimizer of a linear probe (mode linear_probe): adamw (--optim / --adam_* settings) or lars "
            "(the original's; momentum 0.9, trust coefficient 0.001; needs a far larger lr, see "
            "docs/finetuning.md). Fine-tuning always uses AdamW."
        },
    )
    base_learning_rate: float = field(
        default=1e-3, metadata={"help": "lr = base_learning_rate * total_batch / 256 unless learning_rate is set."}
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": "Absolute peak lr (overrides base_learning_rate)."}
    )
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
    ddp_find_unused_parameters: bool | None = (
        False  # every trainable parameter is used (the probe's encoder is frozen)
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata={"help": "Validation metric choosing the best checkpoint and seed (default: mse / accuracy)."},
    )

    def __post_init__(self):
        self.metric_chosen_by_user = self.metric_for_best_model is not None
        if not self.output_dir:
            raise ValueError("output_dir: expected a folder path for the fine-tuned model and results, got none")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: expected a non-negative number, got {self.weight_decay!r}")
        if self.learning_rate is None:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            total_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * world_size
            self.learning_rate = self.base_learning_rate * total_batch / 256
        for name in ("base_learning_rate", "learning_rate"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
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
        (ModelArguments, DataArguments, FinetuningArguments),
        prog=prog,
        description=description,
        epilog=epilog,
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


def use_cpu_process_group_without_accelerator(args: TrainingArguments) -> None:
    """Under a multi-process launch on a machine without GPU (or other accelerator), make the Trainer's
    processes join one gloo CPU group and train data-parallel, instead of each training alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if not has_accelerator():
        args.use_cpu = True
    if args.use_cpu and args.ddp_backend is None:
        args.ddp_backend = "gloo"  # accelerate would pick MPI where torch has it, which torchrun does not set up


__all__ = [
    "PROBE_OPTIMIZERS",
    "ModelArguments",
    "DataArguments",
    "FinetuningArguments",
    "build_argument_parser",
    "parse_arguments",
    "use_cpu_process_group_without_accelerator",
]
