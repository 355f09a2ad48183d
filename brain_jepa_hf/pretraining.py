"""JEPA pretraining with Accelerate: spatiotemporal masks, EMA target encoder, per-step schedules,
atomic checkpoints and exact resume. Runs as `brain-jepa pretrain` or under `accelerate launch`."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from .atomic_io import exchange_paths, follow_umask, is_out_of_space, reporting_full_disk
from .collapse_monitor import CollapseMonitor, feature_statistics, sample_spread
from .run_folder import CHECKPOINT_PREFIX, FINAL_STAGING, LOG_FILE, RUN_SETTINGS_FILE, STATE_FILE
from .runtime import has_accelerator
from .series_fit import check_series_fit, series_lengths

logger = logging.getLogger("brain_jepa_hf.pretraining")

PRESET_DIR = Path(__file__).parent / "presets"
# Arguments that do not change the trained weights, so a resume may change them: where things go and
# how often they are logged or saved, how many checkpoints are kept, monitoring thresholds, the Hub
# upload, data-loading workers and the device/attention kernel (the same computation). Everything
# else, the model config, the data (its fingerprint and the gradient's hash) and the number of
# processes is part of the run's fingerprint. `max_steps` and `num_epochs` are in it: they set the
# schedules' length, so a longer run is a different run (its learning rate differs at every step).
NOT_FINGERPRINTED = frozenset({
    "output_dir", "dataset", "gradient", "atlas", "model_preset", "model_overrides", "num_frames", "patch_size",
    "position_embedding_type", "attn_implementation", "cpu", "num_workers", "logging_steps", "save_steps",
    "save_total_limit", "resume_from_checkpoint", "overwrite_output_dir", "collapse_std_threshold",
    "collapse_rank_fraction", "collapse_relative_fraction", "push_to_hub", "hub_model_id", "hub_private",
})


@dataclass
class PretrainingArguments:
    """Every knob of a pretraining run; YAML files (`--config`, `--preset`) use the same names."""

    output_dir: str = field(default="", metadata={"help": "Folder for checkpoints, logs and the final model."})
    dataset: str | None = field(
        default=None, metadata={"help": "A `build-dataset` folder (load_from_disk); default: the embedded example."}
    )
    example_subjects: int = field(default=200, metadata={"help": "Subjects of the embedded example dataset."})
    fmri_column: str = field(default="fmri", metadata={"help": "Dataset column with (ROI, time) series."})
    gradient: str | None = field(
        default=None,
        metadata={"help": "Gradient CSV (R rows x gradient_dim, no header); default: the example's, or DATASET/gradient.csv."},
    )
    atlas: str | None = field(
        default=None,
        metadata={"help": "ROI names and networks stored with the model: an atlas table (CSV/TSV: index, name, network[, "
                          "coarse_network, hemisphere, x, y, z]), 'released' (the released 450-ROI layout) or "
                          "'none'; default: 'example' on the embedded example dataset, else none."},
    )
    model_preset: str = field(default="vit-base", metadata={"help": "tiny, vit-small, vit-base or vit-large."})
    # Typed str for the command line (a JSON object); a YAML config may give a mapping instead.
    model_overrides: str | None = field(
        default=None, metadata={"help": "Extra BrainJepaConfig fields, a JSON object (or a mapping in YAML)."}
    )
    num_frames: int = field(default=160, metadata={"help": "Frames per sample."})
    patch_size: int = field(default=16, metadata={"help": "Frames per token."})
    sampling_rate: int = field(default=3, metadata={"help": "Clip stride: clips span sampling_rate*num_frames volumes "
                                                            "(3 in the paper at TR 0.735 s; about 1 for TR 2 s)."})
    short_series: str = field(
        default="error",
        metadata={"help": "Series shorter than sampling_rate*num_frames volumes: error, stretch (frames spread over "
                          "the whole series) or pad (missing frames filled)."},
    )
    scaling: str = field(default="robust", metadata={"help": "robust (fitted on the data), zscore or none."})
    position_embedding_type: str = field(default="gradient", metadata={"help": "gradient or sincos (ablation)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager, sdpa or flash_attention_2."})
    mask: str = field(default="spatiotemporal", metadata={"help": "spatiotemporal (Brain-JEPA) or multiblock (I-JEPA)."})
    per_device_batch_size: int = field(default=16, metadata={"help": "Samples per process per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    num_epochs: int = field(default=300, metadata={"help": "Epochs (sets the schedule length unless max_steps)."})
    warmup_epochs: float = field(default=40, metadata={"help": "LR warmup, in epochs (a fraction of max_steps if set)."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    start_lr: float = 5e-5
    learning_rate: float = 1e-3
    final_lr: float = 1e-6
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    ema_start: float = 0.996
    ema_end: float = 1.0
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip the gradient norm (off by default)."})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (bf16 needs a GPU to be fast)."})
    cpu: bool = field(default=False, metadata={"help": "Train on CPU even where an accelerator is available."})
    seed: int = 0
    num_workers: int = 0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest removed first)."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder, or 'latest' for the newest in OUTPUT_DIR/checkpoints of this same "
                          "run (same settings, as recorded in OUTPUT_DIR/run_settings.json)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an OUTPUT_DIR that holds a run with other settings (its files are removed); "
                          "without it such a folder is refused."},
    )
    collapse_std_threshold: float = field(default=0.05, metadata={"help": "Warn when target features' std falls below."})
    collapse_rank_fraction: float = field(default=0.02, metadata={"help": "Warn when their effective rank < this x width."})
    collapse_relative_fraction: float = field(
        default=0.5,
        metadata={"help": "Warn when the target std, or the pooled std across samples, falls below this fraction of "
                          "its first logged value (partial collapse); 0 turns the rule off."},
    )
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def validate(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir: expected a folder path, got an empty value")
        for name in ("example_subjects", "num_frames", "patch_size", "sampling_rate", "per_device_batch_size",
                     "gradient_accumulation_steps", "num_epochs", "logging_steps", "save_steps", "save_total_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("learning_rate", "start_lr", "final_lr", "weight_decay", "final_weight_decay"):
            value = getattr(self, name)
            positive = name == "learning_rate"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                value <= 0 if positive else value < 0
            ):
                raise ValueError(f"{name}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected a positive integer or None, got {self.max_steps!r}")
        if not 0 <= self.warmup_epochs <= self.num_epochs:
            raise ValueError(f"warmup_epochs: expected a value in [0, num_epochs={self.num_epochs}], got {self.warmup_epochs}")
        if self.short_series not in ("error", "stretch", "pad"):
            raise ValueError(f"short_series: expected 'error', 'stretch' or 'pad', got {self.short_series!r}")
        if self.mask not in ("spatiotemporal", "multiblock"):
            raise ValueError(f"mask: expected 'spatiotemporal' or 'multiblock', got {self.mask!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision: expected 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("hub_model_id: expected a repository id like 'user/brain-jepa-base' with push_to_hub, got None")
        if not 0 <= self.collapse_relative_fraction < 1:
            raise ValueError(
                f"collapse_relative_fraction: expected a value in [0, 1), got {self.collapse_relative_fraction!r}"
            )
        if not 0 <= self.ema_start <= self.ema_end <= 1:
            raise ValueError(f"ema_start, ema_end: expected 0 <= ema_start <= ema_end <= 1, got {self.ema_start}, {self.ema_end}")

    def parsed_model_overrides(self) -> dict:
        overrides = self.model_overrides or {}
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides)
            except json.JSONDecodeError as error:
                raise ValueError(f"model_overrides: expected a JSON object, got {self.model_overrides!r} ({error})") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"model_overrides: expected a mapping of BrainJepaConfig fields, got {overrides!r}")
        from .configuration_brain_jepa import BrainJepaConfig

        known = set(BrainJepaConfig.from_preset("tiny").to_dict())
        for key in overrides:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"model_overrides: expected BrainJepaConfig fields, got unknown key {key!r}{hint}")
        return overrides

    def model_config(self, num_rois: int | None = None):
        """The model's config; `num_rois` (from the data) applies unless model_overrides sets it; `atlas` is
        stored in it (default: the example cohort's atlas when training on the embedded example)."""
        from .configuration_brain_jepa import BrainJepaConfig

        overrides = self.parsed_model_overrides()
        if num_rois is not None:
            overrides = {"num_rois": num_rois, **overrides}
        config = BrainJepaConfig.from_preset(
            self.model_preset,
            num_frames=self.num_frames,
            patch_size=self.patch_size,
            position_embedding_type=self.position_embedding_type,
            **overrides,
        )
        atlas = self.atlas
        if atlas is None and self.dataset is None and config.num_rois == 450:
            atlas = "example"  # the embedded example cohort's ROIs (brain_jepa_hf.atlas.example_atlas)
        if atlas is not None:
            from .atlas import set_atlas

            set_atlas(config, atlas)
        return config


def load_yaml_arguments(path: str | os.PathLike) -> dict:
    """A YAML mapping of PretrainingArguments fields; unknown keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config: no such YAML file {str(path)!r}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"config: expected a YAML mapping of argument names, got {type(values).__name__} in {path}")
    known = {f.name for f in dataclasses.fields(PretrainingArguments)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config: unknown argument(s) {unknown} in {path}; known: {sorted(known)}")
    return values


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(f"preset: expected one of {available}, got {name!r}")
    return path


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A permutation per epoch from (seed, epoch) alone, so a resumed run sees the same order."""

    def __init__(self, num_samples: int, seed: int):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


class ClipDataset(torch.utils.data.Dataset):
    """Feature-extracted training clips; each clip's random offset is a function of (seed, epoch, index)."""

    def __init__(self, dataset, feature_extractor, fmri_column: str, seed: int):
        if fmri_column not in dataset.column_names:
            raise ValueError(f"fmri_column: expected a column of the dataset {dataset.column_names}, got {fmri_column!r}")
        self.dataset = dataset.with_format("numpy", columns=[fmri_column])
        self.feature_extractor, self.fmri_column, self.seed, self.epoch = feature_extractor, fmri_column, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        series = self.dataset[int(index)][self.fmri_column]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        features = self.feature_extractor(series, time_axis=-1, training=True, seed=rng, return_tensors="np")
        return {"fmri_values": torch.from_numpy(np.ascontiguousarray(features["fmri_values"][0]))}


def load_training_data(args: PretrainingArguments, num_rois_hint: int | None = None):
    """(datasets.Dataset, gradient array or None) for the run."""
    from .gradients import load_gradient_csv

    if args.dataset is None:
        from .example_data import example_gradient, load_example_dataset

        dataset = load_example_dataset(num_subjects=args.example_subjects, seed=args.seed)
        gradient = load_gradient_csv(args.gradient) if args.gradient else example_gradient()
        return dataset, gradient
    from datasets import load_from_disk

    folder = Path(args.dataset)
    if not folder.exists():
        raise FileNotFoundError(f"dataset: no such folder {str(folder)!r} (expected a `brain-jepa build-dataset` output)")
    dataset = load_from_disk(str(folder))
    gradient_file = args.gradient or (folder / "gradient.csv" if (folder / "gradient.csv").exists() else None)
    gradient = load_gradient_csv(gradient_file) if gradient_file else None
    return dataset, gradient


# ----------------------------------------------------------------------------------------------
# Monitoring
# ----------------------------------------------------------------------------------------------


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first (in-progress `.tmp` folders are not listed)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


# ----------------------------------------------------------------------------------------------
# Run identity: an output folder (and its checkpoints) belongs to one run
# ----------------------------------------------------------------------------------------------

CONFIG_KEYS_NOT_FINGERPRINTED = ("transformers_version", "_name_or_path", "output_hidden_states", "output_attentions",
                                 "return_dict", "atlas")


def run_settings(args: PretrainingArguments, config, dataset, gradient, num_processes: int) -> dict:
    """The settings that decide a run's result (see NOT_FINGERPRINTED for what is left out)."""
    settings = {name: value for name, value in dataclasses.asdict(args).items() if name not in NOT_FINGERPRINTED}
    model = config.to_dict()
    settings["model_config"] = {key: model[key] for key in sorted(model) if key not in CONFIG_KEYS_NOT_FINGERPRINTED}
    settings["data"] = None if args.dataset is None else {
        "fingerprint": getattr(dataset, "_fingerprint", None), "num_rows": len(dataset)}
    settings["gradient_sha256"] = None if gradient is None else hashlib.sha256(
        np.ascontiguousarray(gradient, dtype=np.float32).tobytes()).hexdigest()
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
            changes += [f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
        elif old != new:
            changes.append(f"{key}: {old!r} -> {new!r}")
    return "other settings: " + "; ".join(changes[:6]) + ("; ..." if len(changes) > 6 else "")


def read_run_settings(folder: Path) -> dict | None:
    path = folder / RUN_SETTINGS_FILE
    return json.loads(path.read_text())["settings"] if path.is_file() else None


def is_staging(path: Path) -> bool:
    """Hidden in-progress folders and files a killed run leaves (`.final.tmp`, `.step-N.tmp`, `..final.tmp.tmp-*`)."""
    return path.name.startswith(".") and ".tmp" in path.name


def check_output_folder(args: PretrainingArguments, settings: dict) -> bool:
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


def resolve_checkpoint(args: PretrainingArguments, settings: dict | None = None) -> Path | None:
    """The checkpoint to resume from: `latest` is the newest checkpoint of this same run (same `settings`)
    in OUTPUT_DIR; a named checkpoint must come from a run with the same settings."""
    if args.resume_from_checkpoint is None:
        return None
    fingerprint = None if settings is None else settings_fingerprint(settings)
    if args.resume_from_checkpoint == "latest":
        checkpoints = [p for p in list_checkpoints(args.output_dir)
                       if fingerprint is None or checkpoint_fingerprint(p) == fingerprint]
        if not checkpoints:
            logger.warning("resume_from_checkpoint=latest: no checkpoint of this run in %s yet, starting from scratch",
                           args.output_dir)
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
    from .atomic_io import remove_stale

    stale = [p for p in output_dir.iterdir() if is_staging(p)] if output_dir.is_dir() else []
    checkpoints = output_dir / "checkpoints"
    stale += [p for p in checkpoints.iterdir() if is_staging(p)] if checkpoints.is_dir() else []
    return remove_stale(stale)


def write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


def param_groups(model, weight_decay: float) -> list[dict]:
    """Trainable parameters of the context encoder and predictor; biases and 1-D parameters
    (norms, mask token rows aside) get no weight decay."""
    decay, no_decay = [], []
    for name, param in list(model.context_encoder.named_parameters()) + list(model.predictor.named_parameters()):
        if not param.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "apply_wd_schedule": True},
        {"params": no_decay, "weight_decay": 0.0, "apply_wd_schedule": False},
    ]


def pretrain(args: PretrainingArguments) -> Path:
    """Run (or resume) pretraining; returns the output folder holding the final model."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from tqdm.auto import tqdm

    from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
    from .masking import build_mask_collator
    from .modeling_brain_jepa import BrainJepaForPreTraining
    from .schedules import PretrainingSchedules

    args.validate()
    output_dir = Path(args.output_dir)
    if args.resume_from_checkpoint not in (None, "latest"):
        resolve_checkpoint(args)  # a missing checkpoint folder is reported before the data is read

    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        # On a machine without an accelerator, processes started by `accelerate launch --multi_gpu`
        # or torchrun then form a gloo CPU group instead of running as independent copies.
        cpu=args.cpu or not has_accelerator(),
    )
    if accelerator.device.type == "cpu" and args.mixed_precision != "no":
        logger.warning("mixed_precision=%s on CPU is emulated and very slow; use 'no' on CPU", args.mixed_precision)
    set_seed(args.seed)

    dataset, gradient = load_training_data(args)
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one subject, got an empty dataset")
    if args.fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column of the dataset {dataset.column_names}, got {args.fmri_column!r}")
    sample = np.asarray(dataset.with_format("numpy", columns=[args.fmri_column])[0][args.fmri_column])
    if sample.ndim != 2:
        raise ValueError(f"dataset: expected (ROI, time) series in column {args.fmri_column!r}, got shape {sample.shape}")
    config = args.model_config(num_rois=int(sample.shape[0]))
    if config.num_rois != sample.shape[0]:
        raise ValueError(
            f"model_overrides: num_rois={config.num_rois} but the dataset's series have {sample.shape[0]} ROIs (shape {sample.shape})"
        )
    if config.position_embedding_type == "gradient":
        if gradient is None:
            raise ValueError(
                "gradient: expected a gradient CSV (R rows x gradient_dim) for a dataset without DATASET/gradient.csv; "
                "compute one with `brain-jepa gradients`, or use position_embedding_type=sincos"
            )
        gradient = np.asarray(gradient, dtype=np.float32)
        if gradient.shape != (config.num_rois, config.gradient_dim):
            raise ValueError(
                f"gradient: expected shape ({config.num_rois}, {config.gradient_dim}) for this dataset and model, got {gradient.shape}"
            )

    clip_rule = BrainJepaFeatureExtractor(num_rois=config.num_rois, num_frames=args.num_frames, scaling="none",
                                          sampling_rate=args.sampling_rate, short_series=args.short_series)
    check_series_fit(series_lengths(dataset, args.fmri_column), clip_rule, args.fmri_column)  # before any output

    settings = run_settings(args, config, dataset, gradient, accelerator.num_processes)
    fingerprint = settings_fingerprint(settings)
    replace_output = check_output_folder(args, settings)
    checkpoint = None if replace_output else resolve_checkpoint(args, settings)
    accelerator.wait_for_everyone()  # every process has read the folder before it changes
    if accelerator.is_main_process:
        if replace_output:
            logger.warning("overwrite_output_dir: removing the other run in %s", output_dir)
            shutil.rmtree(output_dir)
        for path in remove_stale_staging(output_dir):
            logger.info("removed %s, left by an interrupted run", path)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output_dir / RUN_SETTINGS_FILE,
                          json.dumps({"fingerprint": fingerprint, "settings": settings}, indent=2))
    accelerator.wait_for_everyone()

    if checkpoint is not None and (checkpoint / "preprocessor_config.json").exists():
        feature_extractor = BrainJepaFeatureExtractor.from_pretrained(checkpoint)
    else:
        feature_extractor = BrainJepaFeatureExtractor(
            num_rois=config.num_rois, num_frames=args.num_frames, sampling_rate=args.sampling_rate,
            scaling=args.scaling, gradient=gradient, short_series=args.short_series,
        )
        if args.scaling == "robust":
            fmri = dataset.with_format("numpy", columns=[args.fmri_column])
            feature_extractor.fit((row[args.fmri_column] for row in fmri), time_axis=-1)

    micro_batch = args.per_device_batch_size
    if len(dataset) < micro_batch * accelerator.num_processes:
        raise ValueError(
            f"per_device_batch_size: {micro_batch} x {accelerator.num_processes} process(es) needs at least "
            f"{micro_batch * accelerator.num_processes} subjects, the dataset has {len(dataset)}"
        )
    clips = ClipDataset(dataset, feature_extractor, args.fmri_column, args.seed)
    sampler = EpochShuffleSampler(len(clips), args.seed)
    collator = build_mask_collator(
        args.mask, config.num_rois, config.num_time_patches, seed=args.seed + 7919 * accelerator.process_index
    )
    loader = torch.utils.data.DataLoader(
        clips, batch_size=micro_batch, sampler=sampler, drop_last=True, num_workers=args.num_workers,
        collate_fn=collator.collate_examples, generator=torch.Generator().manual_seed(args.seed),
    )

    torch.manual_seed(args.seed)
    model = BrainJepaForPreTraining(config)
    model.set_attn_implementation(args.attn_implementation)
    if gradient is not None:
        model.set_gradient(gradient)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.start_lr)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(model)

    micro_per_epoch = len(loader)
    steps_per_epoch = max(1, micro_per_epoch // args.gradient_accumulation_steps)
    total_steps = args.max_steps or args.num_epochs * steps_per_epoch
    warmup_steps = round(total_steps * args.warmup_epochs / args.num_epochs)
    schedules = PretrainingSchedules(
        total_steps=total_steps, warmup_steps=warmup_steps, start_lr=args.start_lr, peak_lr=args.learning_rate,
        final_lr=args.final_lr, start_weight_decay=args.weight_decay, final_weight_decay=args.final_weight_decay,
        start_momentum=args.ema_start, final_momentum=args.ema_end,
    )

    monitor = CollapseMonitor(
        config.hidden_size, std_threshold=args.collapse_std_threshold, rank_fraction=args.collapse_rank_fraction,
        relative_fraction=args.collapse_relative_fraction,
    )
    global_step, epoch, micro_in_epoch = 0, 0, 0
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        global_step, epoch, micro_in_epoch = state["global_step"], state["epoch"], state["micro_step_in_epoch"]
        monitor.load_state_dict(state.get("collapse_monitor", {}))
        collator.load_state_dict(state["collator"][accelerator.process_index])
        if accelerator.is_main_process:
            logger.info("resumed from %s at step %d (epoch %d, micro-batch %d)", checkpoint, global_step, epoch, micro_in_epoch)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "pretraining_args.yaml").write_text(yaml.safe_dump(dataclasses.asdict(args), sort_keys=False))
        log_path = output_dir / LOG_FILE
        if log_path.is_file():  # records after the starting step are logged again by this run
            kept = [line for line in log_path.read_text().splitlines() if line.strip()
                    and json.loads(line)["step"] <= global_step]
            write_text_atomic(log_path, "".join(line + "\n" for line in kept))

    def save_checkpoint() -> None:
        root = output_dir / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{global_step:08d}"
        temporary = root / f".{final.name}.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(str(temporary))
        except Exception as err:  # a full disk surfaces as e.g. "basic_ios::clear: iostream error" or a SafetensorError
            if not isinstance(err, (RuntimeError, OSError)) and not is_out_of_space(err):
                raise
            shutil.rmtree(temporary, ignore_errors=True)
            free = shutil.disk_usage(root).free / 2**20
            full = ": the disk is full" if is_out_of_space(err) else ""
            raise OSError(
                f"output_dir: could not write the step-{global_step} checkpoint under {root}{full} ({err}); {free:.0f} MiB "
                "free there: free some space or choose another output_dir, then resume with "
                "--resume_from_checkpoint latest"
            ) from err
        collator_states = gather_object([collator.state_dict()])
        if accelerator.is_main_process:
            feature_extractor.save_pretrained(temporary)
            unwrapped.config.save_pretrained(temporary)  # so that from_pretrained can load the checkpoint
            state = {"global_step": global_step, "epoch": epoch, "micro_step_in_epoch": micro_in_epoch,
                     "collator": collator_states, "total_steps": total_steps,
                     "collapse_monitor": monitor.state_dict(), "run_fingerprint": fingerprint}
            (temporary / STATE_FILE).write_text(json.dumps(state, indent=2))
            shutil.copy2(output_dir / RUN_SETTINGS_FILE, temporary / RUN_SETTINGS_FILE)
            follow_umask(temporary)
            _fsync_tree(temporary)
            if final.exists():  # the same step of this run saved before: swap, never leave neither
                if not exchange_paths(temporary, final):
                    shutil.rmtree(final)
                    os.replace(temporary, final)
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                os.replace(temporary, final)
            own = [p for p in list_checkpoints(output_dir) if checkpoint_fingerprint(p) == fingerprint]
            for old in own[: -args.save_total_limit]:  # never another run's checkpoint
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    progress = tqdm(total=total_steps, initial=global_step, desc="pretraining", unit="step",
                    disable=not accelerator.is_local_main_process)
    window: list[float] = []
    window_start, window_tokens = time.perf_counter(), 0
    log_path = output_dir / LOG_FILE
    done = global_step >= total_steps
    while not done:
        clips.set_epoch(epoch)
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, micro_in_epoch) if micro_in_epoch else loader
        for batch in batches:
            batch = collator.add_masks(batch)
            context = batch["context_indices"].to(accelerator.device)
            targets = batch["target_indices"].to(accelerator.device)
            for group in optimizer.param_groups:
                group["lr"] = schedules.learning_rate(global_step)
                if group["apply_wd_schedule"]:
                    group["weight_decay"] = schedules.weight_decay(global_step)
            with accelerator.accumulate(model):
                outputs = model(batch["fmri_values"], context, targets)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and args.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            micro_in_epoch += 1
            window.append(outputs.loss.item())
            window_tokens += batch["fmri_values"].shape[0] * config.num_patches * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            unwrapped.update_target_encoder(schedules.momentum(global_step))
            global_step += 1
            progress.update(1)

            if global_step % args.logging_steps == 0 or global_step == total_steps:
                std, rank = feature_statistics(outputs.targets)
                pooled_spread = sample_spread(outputs.target_pooled_output)
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": global_step, "epoch": epoch,
                    "loss": float(np.mean(window)),
                    "lr": schedules.learning_rate(global_step - 1),
                    "weight_decay": schedules.weight_decay(global_step - 1),
                    "momentum": schedules.momentum(global_step - 1),
                    "context_size": int(context.shape[1]), "target_size": int(targets.shape[1]),
                    "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                    "target_std": std, "target_effective_rank": rank, "pooled_sample_std": pooled_spread,
                }
                reasons = monitor.check(std, rank, pooled_spread)
                record["collapse_warning"] = bool(reasons)
                if accelerator.is_main_process:
                    if reasons:
                        logger.warning("representation collapse? at step %d: %s", global_step, "; ".join(reasons))
                    with open(log_path, "a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", wd=f"{record['weight_decay']:.3f}",
                                         m=f"{record['momentum']:.4f}", ctx=record["context_size"], tgt=record["target_size"],
                                         tok_s=f"{record['tokens_per_s']:.0f}", std=f"{std:.3f}", erank=f"{rank:.1f}")
                window, window_start, window_tokens = [], time.perf_counter(), 0

            if global_step % args.save_steps == 0 or global_step == total_steps:
                save_checkpoint()  # also at the last step, so the finished run can be resumed or extended
            if global_step >= total_steps:
                done = True
                break
        else:
            epoch += 1
            micro_in_epoch = 0
    progress.close()

    digests = gather_object([parameter_digest(unwrapped)])
    if len(set(digests)) != 1:
        raise RuntimeError(f"replicas diverged: parameter digests per process {digests}")
    if accelerator.is_main_process:
        save_final_model(unwrapped, feature_extractor, output_dir)
        summary = {"global_step": global_step, "epochs_started": epoch + 1, "replica_digests": digests,
                   "num_processes": accelerator.num_processes}
        (output_dir / "pretraining_summary.json").write_text(json.dumps(summary, indent=2))
        if args.push_to_hub:
            from .hub import push_to_hub

            push_to_hub(unwrapped, args.hub_model_id, feature_extractor=feature_extractor, private=args.hub_private,
                        commit_message="Upload Brain-JEPA pretrained model")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return output_dir


def save_final_model(model, feature_extractor, output_dir: Path) -> None:
    """A Hub-ready folder (weights, config, feature extractor, code, pipelines, model card) built
    beside `output_dir`, then moved in file by file, so a crash never leaves a half-written weights
    file there."""
    from .hub import prepare_hub_folder

    temporary = output_dir / FINAL_STAGING
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        with reporting_full_disk(output_dir):
            prepare_hub_folder(model, temporary, feature_extractor=feature_extractor, repo_id=str(output_dir.resolve()))
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)  # nothing half-written stays; the checkpoints remain
        raise
    follow_umask(temporary)
    _fsync_tree(temporary)
    for path in temporary.iterdir():
        os.replace(path, output_dir / path.name)
    temporary.rmdir()
