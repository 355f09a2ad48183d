"""Configuration of Brain-JEPA models (encoder, predictor and task heads)."""

from __future__ import annotations

import math
import os
from typing import Literal

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN


# Sizes of the paper's encoders. The predictor keeps its pretraining defaults (width 384, depth 6)
# and the encoder's head count.
BRAIN_JEPA_PRESETS: dict[str, dict] = {
    "vit-small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "vit-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "vit-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    # Not in the paper: a few-second model for CPU examples and tests.
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "predictor_hidden_size": 32,
        "predictor_num_hidden_layers": 1,
        "predictor_num_attention_heads": 4,
    },
}

# Atlases the package ships as data (brain_jepa_hf/atlas.py reads them), with their ROI counts.
BUILTIN_ATLAS_ROIS: dict[str, int] = {"example": 450, "released": 450}
# Keys of an atlas stored as a table in the config: one list entry per ROI (except "name").
ATLAS_TABLE_KEYS = ("name", "roi_names", "networks", "coarse_networks", "hemispheres", "coords")


class ModelFolderNotFoundError(ValueError, FileNotFoundError):
    """A local model path that does not exist: a bad argument (ValueError) and, as transformers raises
    for it, an OSError."""


def check_local_path(
    name_or_path, subfolder: str | None = None, argument: str = "pretrained_model_name_or_path"
) -> None:
    """Fail at once, naming the path, when `name_or_path` looks like a local folder (starts with `.`, `/` or
    `~`, has a backslash or more than one `/`, or its parent folder exists) but is absent: transformers would
    take it for a Hub id and retry the Hub for a minute before saying it "couldn't connect"."""
    if name_or_path is None or not isinstance(name_or_path, (str, os.PathLike)):
        return
    text = os.fspath(name_or_path)
    path = os.path.expanduser(text)
    if subfolder:
        path = os.path.join(path, subfolder)
    if os.path.exists(path):
        return
    parent = os.path.dirname(os.path.expanduser(text))
    looks_local = (
        isinstance(name_or_path, os.PathLike)
        or text.startswith((".", "/", "~"))
        or "\\" in text
        or text.count("/") > 1
        or bool(parent)
        and os.path.isdir(parent)
    )
    if looks_local:
        raise ModelFolderNotFoundError(
            f"{argument}: no such folder {text!r} (a Hub id looks like 'user/model'); check the path"
        )


def check_model_location(name_or_path, kwargs: dict) -> None:
    """`check_local_path`, and a local folder without config.json fails at once too, naming the path
    (instead of Hub retries or an unrelated loading error)."""
    if name_or_path is None or kwargs.get("config") is not None and not isinstance(kwargs["config"], str):
        return
    path = os.path.expanduser(str(name_or_path))
    if kwargs.get("subfolder"):
        path = os.path.join(path, kwargs["subfolder"])
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        probe = (
            " (it holds a linear probe: probe_config.json)"
            if os.path.isfile(os.path.join(path, "probe_config.json"))
            else ""
        )
        raise ValueError(
            f"pretrained_model_name_or_path: expected a saved model folder with config.json, got {path} without "
            f"one{probe}; pass the folder that `convert`, `pretrain` or `finetune` wrote"
        )
    check_local_path(name_or_path, kwargs.get("subfolder"))


class BrainJepaConfig(PreTrainedConfig):
    r"""
    Configuration of a Brain-JEPA model. The defaults build the released ViT-B model: 450 ROIs
    (50 subcortical then 400 cortical), 160 frames, patches of 16 frames, 30 gradient components.

    Args:
        num_rois: number of ROIs R of the atlas the model is built for.
        num_frames: number of frames T of the input; must be a multiple of `patch_size`.
        patch_size: frames per token; each token is one ROI over `patch_size` consecutive frames.
        num_channels: input channels (the original uses 1).
        gradient_dim: number of connectivity-gradient components describing each ROI.
        hidden_size, num_hidden_layers, num_attention_heads: encoder width, depth and heads.
        mlp_ratio: MLP hidden width as a multiple of the block width (encoder and predictor).
        hidden_act: MLP activation ("gelu" is the exact erf GELU of the original).
        qkv_bias: whether the fused qkv projection has a bias.
        layer_norm_eps: epsilon of every LayerNorm.
        hidden_dropout_prob: dropout after the attention and MLP outputs.
        attention_probs_dropout_prob: dropout of the attention probabilities.
        drop_path_rate: stochastic depth at the last encoder block (linear from 0 at the first).
        initializer_range: std of the truncated-normal init of Linear/Conv weights and mask token.
        predictor_hidden_size, predictor_num_hidden_layers, predictor_num_attention_heads:
            predictor width, depth and heads (heads default to the encoder's).
        position_embedding_type: "gradient" (brain gradient positioning) or "sincos" (the paper's
            ablation: sine-cosine of the ROI index instead of the gradient projection).
        classifier_init_range: std of the truncated-normal init of the classification head weight.
        atlas: the ROIs' names and networks, so that analyses of a saved model need no extra input:
            None (unknown), the name of a table the package ships ("released": the released 450-ROI
            layout; "example": the embedded example cohort's), or a user table as a mapping of per-ROI lists (see `brain_jepa_hf.atlas`; build it
            with `atlas.atlas_config_value`). Stored in config.json, it travels with every copy of the model.
    """

    model_type = "brain_jepa"

    num_rois: int = 450
    num_frames: int = 160
    patch_size: int = 16
    num_channels: int = 1
    gradient_dim: int = 30
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float = 4.0
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.0
    initializer_range: float = 0.02
    predictor_hidden_size: int = 384
    predictor_num_hidden_layers: int = 6
    predictor_num_attention_heads: int | None = None
    position_embedding_type: Literal["gradient", "sincos"] = "gradient"
    classifier_init_range: float = 2e-5
    atlas: str | dict | None = None

    def __post_init__(self, **kwargs):
        if self.predictor_num_attention_heads is None:
            self.predictor_num_attention_heads = self.num_attention_heads
        super().__post_init__(**kwargs)
        self._check_sizes()

    @property
    def num_time_patches(self) -> int:
        """Time patches Tp per ROI for `num_frames` frames."""
        return self.num_frames // self.patch_size

    @property
    def num_patches(self) -> int:
        """Tokens per sample, R * Tp."""
        return self.num_rois * self.num_time_patches

    @property
    def intermediate_size(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "BrainJepaConfig":
        """As in transformers; a local-looking path that does not exist fails at once, naming it."""
        check_model_location(pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """As in transformers; a config.json of another kind of model (its `model_type`) is refused."""
        model_type = config_dict.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(
                f"model_type: expected {cls.model_type!r} in config.json, got {model_type!r} (another kind "
                "of model); pass a Brain-JEPA folder"
            )
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "BrainJepaConfig":
        """Config of a named size: "vit-small", "vit-base" (released), "vit-large" or "tiny"."""
        key = name.lower().replace("_", "-")
        if key not in BRAIN_JEPA_PRESETS:
            raise ValueError(f"preset: expected one of {sorted(BRAIN_JEPA_PRESETS)}, got {name!r}")
        return cls(**{**BRAIN_JEPA_PRESETS[key], **kwargs})

    def _check_sizes(self) -> None:
        def positive(name):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")

        for name in (
            "num_rois",
            "num_frames",
            "patch_size",
            "num_channels",
            "gradient_dim",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "predictor_hidden_size",
            "predictor_num_hidden_layers",
            "predictor_num_attention_heads",
        ):
            positive(name)
        if self.num_frames % self.patch_size:
            raise ValueError(
                f"num_frames: expected a multiple of patch_size={self.patch_size}, got {self.num_frames}; "
                f"use num_frames={self.num_frames - self.num_frames % self.patch_size} or a patch_size dividing it"
            )
        for width, heads in (
            ("hidden_size", "num_attention_heads"),
            ("predictor_hidden_size", "predictor_num_attention_heads"),
        ):
            w, h = getattr(self, width), getattr(self, heads)
            if w % 4:
                raise ValueError(
                    f"{width}: expected a multiple of 4 (half for time, half for space, each sin+cos), got {w}"
                )
            if w % h:
                raise ValueError(f"{width}: expected a multiple of {heads}={h}, got {w}")
        if self.position_embedding_type not in ("gradient", "sincos"):
            raise ValueError(
                f"position_embedding_type: expected 'gradient' or 'sincos', got {self.position_embedding_type!r}"
            )
        self._check_atlas()

        def number(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r} ({type(value).__name__})")
            return value

        for name in ("mlp_ratio", "layer_norm_eps", "initializer_range", "classifier_init_range"):
            if number(name) <= 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)!r}")
        narrowest = min(self.hidden_size, self.predictor_hidden_size)
        if int(narrowest * self.mlp_ratio) < 1:
            raise ValueError(
                f"mlp_ratio: expected at least {1 / narrowest:.4g} so that the MLP of the {narrowest}-wide blocks has "
                f"a hidden unit, got {self.mlp_ratio!r} (MLP width {int(narrowest * self.mlp_ratio)})"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate"):
            if not 0.0 <= number(name) < 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"qkv_bias: expected True or False, got {self.qkv_bias!r}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACT2FN:
            raise ValueError(
                f"hidden_act: expected a transformers activation name such as 'gelu' (the original's), "
                f"got {self.hidden_act!r}"
            )

    def _check_atlas(self) -> None:
        atlas = self.atlas
        if atlas is None:
            return
        if isinstance(atlas, str):
            if atlas not in BUILTIN_ATLAS_ROIS:
                raise ValueError(
                    f"atlas: expected None, a table or one of {sorted(BUILTIN_ATLAS_ROIS)}, got {atlas!r}"
                )
            if BUILTIN_ATLAS_ROIS[atlas] != self.num_rois:
                raise ValueError(
                    f"atlas: {atlas!r} has {BUILTIN_ATLAS_ROIS[atlas]} ROIs but num_rois={self.num_rois}; "
                    "give a table of this model's ROIs or None"
                )
            return
        if not isinstance(atlas, dict):
            raise ValueError(f"atlas: expected None, a name or a table (mapping), got {type(atlas).__name__}")
        if sorted(atlas) != sorted(ATLAS_TABLE_KEYS):
            raise ValueError(f"atlas: expected a table with keys {list(ATLAS_TABLE_KEYS)}, got {sorted(atlas)}")
        if not isinstance(atlas["name"], str):
            raise ValueError(f"atlas: expected a str 'name', got {atlas['name']!r}")
        for key in ATLAS_TABLE_KEYS[1:]:
            column = atlas[key]
            if not isinstance(column, (list, tuple)) or len(column) != self.num_rois:
                got = len(column) if isinstance(column, (list, tuple)) else type(column).__name__
                raise ValueError(f"atlas: expected {self.num_rois} entries in {key!r} (num_rois), got {got}")
            if key != "coords" and not all(isinstance(v, str) for v in column):
                raise ValueError(f"atlas: expected strings in {key!r}")
        for row in atlas["coords"]:
            if not (
                isinstance(row, (list, tuple))
                and len(row) == 3
                and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row)
            ):
                raise ValueError(f"atlas: expected 'coords' rows of 3 numbers (None where unknown), got {row!r}")


__all__ = ["BrainJepaConfig", "BRAIN_JEPA_PRESETS", "BUILTIN_ATLAS_ROIS", "ATLAS_TABLE_KEYS"]
