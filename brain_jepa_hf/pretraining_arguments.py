"""The arguments of a pretraining run (`brain-jepa pretrain`, YAML presets and configs): their
defaults, checks and the model config they describe. Light: imports neither torch nor the model."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


PRESET_DIR = Path(__file__).parent / "presets"
# Arguments that do not change the trained weights, so a resume may change them: where things go and
# how often they are logged or saved, how many checkpoints are kept, monitoring thresholds, the Hub
# upload, data-loading workers and the device/attention kernel (the same computation). Everything
# else, the model config, the data (its fingerprint and the gradient's hash) and the number of
# processes is part of the run's fingerprint. `max_steps` and `num_epochs` are in it: they set the
# schedules' length, so a longer run is a different run (its learning rate differs at every step).
NOT_FINGERPRINTED = frozenset(
    {
        "output_dir",
        "dataset",
        "gradient",
        "atlas",
        "model_preset",
        "model_overrides",
        "num_frames",
        "patch_size",
        "position_embedding_type",
        "attn_implementation",
        "cpu",
        "num_workers",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "resume_from_checkpoint",
        "overwrite_output_dir",
        "collapse_std_threshold",
        "collapse_rank_fraction",
        "collapse_relative_fraction",
        "push_to_hub",
        "hub_model_id",
        "hub_private",
    }
)


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
        metadata={
            "help": "Gradient CSV (R rows x gradient_dim, no header); default: the example's, or DATASET/gradient.csv."
        },
    )
    atlas: str | None = field(
        default=None,
        metadata={
            "help": "ROI names and networks stored with the model: an atlas table (CSV/TSV: index, name, network[, "
            "coarse_network, hemisphere, x, y, z]), 'released' (the released 450-ROI layout) or "
            "'none'; default: 'example' on the embedded example dataset, else none."
        },
    )
    model_preset: str = field(default="vit-base", metadata={"help": "tiny, vit-small, vit-base or vit-large."})
    # Typed str for the command line (a JSON object); a YAML config may give a mapping instead.
    model_overrides: str | None = field(
        default=None, metadata={"help": "Extra BrainJepaConfig fields, a JSON object (or a mapping in YAML)."}
    )
    # The model config owns num_frames and patch_size (the feature extractor takes the config's); these
    # two set them, None keeping BrainJepaConfig's (160 frames, patches of 16).
    num_frames: int | None = field(default=None, metadata={"help": "Frames per sample (default: the config's, 160)."})
    patch_size: int | None = field(default=None, metadata={"help": "Frames per token (default: the config's, 16)."})
    sampling_rate: int = field(
        default=3,
        metadata={
            "help": "Clip stride: clips span sampling_rate*num_frames volumes "
            "(3 in the paper at TR 0.735 s; about 1 for TR 2 s)."
        },
    )
    short_series: str = field(
        default="error",
        metadata={
            "help": "Series shorter than sampling_rate*num_frames volumes: error, stretch (frames spread over "
            "the whole series) or pad (missing frames filled)."
        },
    )
    scaling: str = field(default="robust", metadata={"help": "robust (fitted on the data), zscore or none."})
    position_embedding_type: str = field(default="gradient", metadata={"help": "gradient or sincos (ablation)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager, sdpa or flash_attention_2."})
    mask: str = field(
        default="spatiotemporal", metadata={"help": "spatiotemporal (Brain-JEPA) or multiblock (I-JEPA)."}
    )
    per_device_batch_size: int = field(default=16, metadata={"help": "Samples per process per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    num_epochs: int = field(default=300, metadata={"help": "Epochs (sets the schedule length unless max_steps)."})
    warmup_epochs: float = field(
        default=40, metadata={"help": "LR warmup, in epochs (a fraction of max_steps if set)."}
    )
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
        metadata={
            "help": "A checkpoint folder, or 'latest' for the newest in OUTPUT_DIR/checkpoints of this same "
            "run (same settings, as recorded in OUTPUT_DIR/run_settings.json)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace an OUTPUT_DIR that holds a run with other settings (its files are removed); "
            "without it such a folder is refused."
        },
    )
    collapse_std_threshold: float = field(
        default=0.05, metadata={"help": "Warn when target features' std falls below."}
    )
    collapse_rank_fraction: float = field(
        default=0.02, metadata={"help": "Warn when their effective rank < this x width."}
    )
    collapse_relative_fraction: float = field(
        default=0.5,
        metadata={
            "help": "Warn when the target std, or the pooled std across samples, falls below this fraction of "
            "its first logged value (partial collapse); 0 turns the rule off."
        },
    )
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def validate(self) -> None:
        if not self.output_dir:
            raise ValueError("output_dir: expected a folder path, got an empty value")
        for name in (
            "example_subjects",
            "num_frames",
            "patch_size",
            "sampling_rate",
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "num_epochs",
            "logging_steps",
            "save_steps",
            "save_total_limit",
        ):
            value = getattr(self, name)
            if value is None and name in ("num_frames", "patch_size"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        for name in ("learning_rate", "start_lr", "final_lr", "weight_decay", "final_weight_decay"):
            value = getattr(self, name)
            positive = name == "learning_rate"
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or (value <= 0 if positive else value < 0)
            ):
                raise ValueError(
                    f"{name}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}"
                )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected a positive integer or None, got {self.max_steps!r}")
        if not 0 <= self.warmup_epochs <= self.num_epochs:
            raise ValueError(
                f"warmup_epochs: expected a value in [0, num_epochs={self.num_epochs}], got {self.warmup_epochs}"
            )
        if self.short_series not in ("error", "stretch", "pad"):
            raise ValueError(f"short_series: expected 'error', 'stretch' or 'pad', got {self.short_series!r}")
        if self.mask not in ("spatiotemporal", "multiblock"):
            raise ValueError(f"mask: expected 'spatiotemporal' or 'multiblock', got {self.mask!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision: expected 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError(
                "hub_model_id: expected a repository id like 'user/brain-jepa-base' with push_to_hub, got None"
            )
        if not 0 <= self.collapse_relative_fraction < 1:
            raise ValueError(
                f"collapse_relative_fraction: expected a value in [0, 1), got {self.collapse_relative_fraction!r}"
            )
        if not 0 <= self.ema_start <= self.ema_end <= 1:
            raise ValueError(
                f"ema_start, ema_end: expected 0 <= ema_start <= ema_end <= 1, got {self.ema_start}, {self.ema_end}"
            )
        self._validate_more()

    def _validate_more(self) -> None:
        """Checks of the arguments that would otherwise fail only after the output folder is written."""
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        if self.scaling not in ("robust", "zscore", "none"):
            raise ValueError(f"scaling: expected one of ('robust', 'zscore', 'none'), got {self.scaling!r}")
        known = ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
        if self.attn_implementation not in known and "/" not in str(self.attn_implementation):
            raise ValueError(
                f"attn_implementation: expected one of {known} (or a Hub kernel id), got {self.attn_implementation!r}"
            )
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(
                f"max_grad_norm: expected a positive number or None (no clipping), got {self.max_grad_norm!r}"
            )
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"num_workers: expected an integer >= 0, got {self.num_workers!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed: expected an integer in [0, 2**32 - 1], got {self.seed!r}")
        if not (math.isfinite(self.collapse_std_threshold) and self.collapse_std_threshold >= 0):
            raise ValueError(f"collapse_std_threshold: expected a number >= 0, got {self.collapse_std_threshold!r}")
        if not 0 <= self.collapse_rank_fraction <= 1:
            raise ValueError(
                f"collapse_rank_fraction: expected a value in [0, 1], got {self.collapse_rank_fraction!r}"
            )

    def parsed_model_overrides(self) -> dict:
        overrides = self.model_overrides or {}
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"model_overrides: expected a JSON object, got {self.model_overrides!r} ({error})"
                ) from None
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
        given = {
            "num_frames": self.num_frames,
            "patch_size": self.patch_size,
            "position_embedding_type": self.position_embedding_type,
        }
        for name in sorted(set(overrides) & set(given)):
            if given[name] is not None:
                raise ValueError(f"model_overrides: {name} is also set by --{name}={given[name]!r}; set it once")
        given = {name: value for name, value in given.items() if value is not None and name not in overrides}
        config = BrainJepaConfig.from_preset(self.model_preset, **given, **overrides)
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


__all__ = ["PretrainingArguments", "NOT_FINGERPRINTED", "load_yaml_arguments", "preset_path"]
