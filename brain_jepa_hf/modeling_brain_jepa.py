"""PyTorch Brain-JEPA: a ViT over ROI x time patches with brain-gradient positioning, its JEPA
predictor, and task heads. Imports only transformers, torch and the configuration file, so the copy
saved next to the weights runs as Hub remote code."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple, logging
from transformers.utils.output_capturing import capture_outputs

from .configuration_brain_jepa import BrainJepaConfig, check_model_location


logger = logging.get_logger(__name__)

# ----------------------------------------------------------------------------------------------
# Input checks: every message names the argument, what was expected and what came.
# ----------------------------------------------------------------------------------------------


def _checking_values() -> bool:
    """Value checks (NaN scans, index ranges) read tensor contents, which `torch.compile` cannot trace
    without splitting the graph; compiled code skips them (shape and type checks always run)."""
    return not torch.compiler.is_compiling()


def _check_finite(name: str, tensor: torch.Tensor) -> None:
    if _checking_values() and not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name}: expected finite values, got {bad} NaN/Inf entries in a tensor of shape {tuple(tensor.shape)}"
        )


_FLOAT32_HINT = " or use a float32 model"


def cast_checked(name: str, tensor: torch.Tensor, dtype: torch.dtype, device=None) -> torch.Tensor:
    """`tensor` in the weights' dtype; a finite value beyond that dtype's range (1e39 in float64 for
    a float32 model, 7e4 for a float16 one) would become Inf there, and every output NaN."""
    cast = tensor.to(device=device, dtype=dtype)
    if cast.dtype != tensor.dtype and _checking_values() and not torch.isfinite(cast).all():
        raise ValueError(
            f"{name}: expected values within the range of the model's dtype {dtype} (|x| <= "
            f"{torch.finfo(dtype).max:.4g}), got |x| up to {float(tensor.abs().max()):.4g}; rescale the input "
            f"(e.g. z-score it){_FLOAT32_HINT if dtype != torch.float32 else ''}"
        )
    return cast


class MismatchedWeightsError(ValueError, RuntimeError):
    """Weights whose shapes differ from the config: a ValueError (a bad input, one line on the command
    line) that is also the RuntimeError transformers raises for it."""


def check_fmri_values(fmri_values, config: BrainJepaConfig) -> None:
    """Validate a (batch, channels, rois, frames) input against `config`."""
    if not isinstance(fmri_values, torch.Tensor):
        raise ValueError(f"fmri_values: expected a torch.Tensor, got {type(fmri_values).__name__}")
    if fmri_values.dim() != 4:
        raise ValueError(
            f"fmri_values: expected shape (batch, {config.num_channels}, rois, frames), "
            f"got rank {fmri_values.dim()} shape {tuple(fmri_values.shape)}"
        )
    if not fmri_values.is_floating_point():
        raise ValueError(f"fmri_values: expected a floating-point tensor, got dtype {fmri_values.dtype}")
    batch, channels, _, frames = fmri_values.shape
    if batch < 1:
        raise ValueError(f"fmri_values: expected at least one sample, got shape {tuple(fmri_values.shape)}")
    if channels != config.num_channels:
        raise ValueError(
            f"fmri_values: expected {config.num_channels} channel(s) in dim 1, got shape {tuple(fmri_values.shape)}"
        )
    if frames < config.patch_size or frames % config.patch_size:
        raise ValueError(
            f"fmri_values: expected a number of frames that is a positive multiple of patch_size="
            f"{config.patch_size}, got {frames} (shape {tuple(fmri_values.shape)})"
        )
    _check_finite("fmri_values", fmri_values)


def check_token_indices(name: str, indices, batch_size: int, num_tokens: int) -> None:
    """Validate a (batch, k) tensor of token indices into a sequence of `num_tokens`."""
    if not isinstance(indices, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of token indices, got {type(indices).__name__}")
    if indices.dim() != 2 or indices.shape[0] != batch_size:
        raise ValueError(f"{name}: expected shape ({batch_size}, num_kept), got {tuple(indices.shape)}")
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor, got dtype {indices.dtype}")
    if indices.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one index per sample, got shape {tuple(indices.shape)}")
    if not _checking_values():
        return
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= num_tokens:
        raise ValueError(f"{name}: expected indices in [0, {num_tokens - 1}], got values in [{low}, {high}]")


# ----------------------------------------------------------------------------------------------
# Inference precision
# ----------------------------------------------------------------------------------------------

INFERENCE_DTYPES = ("auto", "float32", "bfloat16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (x86 AVX512-BF16 or AMX-BF16), read once per
    process from torch's cpuinfo queries, else from the flags in /proc/cpuinfo. Without them torch
    emulates bfloat16 matmul, slower than float32 (4x on an AVX-512 Xeon without AVX512-BF16), and
    neither torch.backends.cpu.get_cpu_capability() ("AVX512" either way) nor
    torch.ops.mkldnn._is_mkldnn_bf16_supported() (true on any AVX-512 CPU) tells the two apart. Other
    architectures report False: bfloat16 speed there is unmeasured, so float32 is kept."""
    queries = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(query) for query in queries):
        try:
            return any(bool(query()) for query in queries)
        except RuntimeError:
            pass
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def check_device(device) -> torch.device:
    """`device` as a torch.device; a name torch does not know (e.g. 'tpu') is a one-line ValueError."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: expected a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}"
        ) from None


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | int | None = None) -> torch.dtype:
    """The inference dtype for `dtype` ("auto", "float32", "bfloat16" or a torch dtype) on `device`
    (default CPU). "auto" is bfloat16 on a CPU with bfloat16 matrix instructions (`cpu_has_fast_bf16`)
    and on a CUDA GPU that supports bfloat16 natively, float32 everywhere else; None means float32."""
    if device is not None:
        check_device(device)
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
    else:
        name = None
    if name not in INFERENCE_DTYPES:
        raise ValueError(
            f"dtype: expected one of {INFERENCE_DTYPES} (or torch.float32 / torch.bfloat16), got {dtype!r}"
        )
    if name != "auto":
        return getattr(torch, name)
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


# ----------------------------------------------------------------------------------------------
# Positions
# ----------------------------------------------------------------------------------------------


def sincos_embedding(positions: torch.Tensor, width: int) -> torch.Tensor:
    """1-D sine-cosine table of shape (len(positions), width): sin(p*w_k) for k < width/2, then
    cos(p*w_k), with w_k = 1 / 10000^(k / (width/2)). Computed in float64, returned in float32."""
    half = width // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64, device=positions.device) / half)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).float()


class BrainJepaPositionalEmbedding(nn.Module):
    """Brain gradient positioning at one width: time half = fixed sine-cosine of the time-patch
    index; space half = learned Linear(gradient_dim -> width/2) of each ROI's gradient row, min-max
    rescaled to [-1, 1] over the whole (ROI, channel) matrix of each sample ("gradient" mode), or the
    sine-cosine of the ROI index ("sincos" ablation). Tokens are ROI-major: n = r * Tp + t."""

    def __init__(self, config: BrainJepaConfig, width: int):
        super().__init__()
        self.width = width
        self.mode = config.position_embedding_type
        if self.mode == "gradient":
            self.gradient_proj = nn.Linear(config.gradient_dim, width // 2)

    def space_embedding(self, gradient: torch.Tensor | None, num_rois: int, device) -> torch.Tensor:
        """(b, R, width/2) space half: b is the gradient's batch (1 for a shared atlas). Computed in at
        least float32 whatever the model's dtype (a bfloat16 min-max rescale would lose the ordering of
        nearby ROIs); the caller casts the finished table."""
        if self.mode == "sincos":
            return sincos_embedding(torch.arange(num_rois, device=device), self.width // 2)[None]
        weight, bias = self.gradient_proj.weight, self.gradient_proj.bias
        dtype = torch.promote_types(weight.dtype, torch.float32)
        space = F.linear(gradient.to(dtype), weight.to(dtype), bias.to(dtype))
        low = space.amin(dim=(1, 2), keepdim=True)
        high = space.amax(dim=(1, 2), keepdim=True)
        return 2.0 * (space - low) / (high - low).clamp_min(torch.finfo(space.dtype).tiny) - 1.0

    def forward(self, gradient: torch.Tensor | None, num_rois: int, num_time_patches: int) -> torch.Tensor:
        """Positions of all R * Tp tokens, shape (b, R * Tp, width)."""
        device = self.gradient_proj.weight.device if self.mode == "gradient" else None
        space = self.space_embedding(gradient, num_rois, device)
        time = sincos_embedding(torch.arange(num_time_patches, device=space.device), self.width // 2)
        time = time.to(space.dtype)
        batch, half = space.shape[0], self.width // 2
        table = torch.cat(
            [
                time[None, None].expand(batch, num_rois, num_time_patches, half),
                space[:, :, None].expand(batch, num_rois, num_time_patches, half),
            ],
            dim=-1,
        )
        return table.reshape(batch, num_rois * num_time_patches, self.width)


def gather_tokens(hidden_states: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """hidden_states (B or 1, N, C) at indices (B, K) -> (B, K, C)."""
    if hidden_states.shape[0] != indices.shape[0]:
        hidden_states = hidden_states.expand(indices.shape[0], -1, -1)
    return torch.gather(hidden_states, 1, indices[..., None].expand(-1, -1, hidden_states.shape[-1]))


# ----------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------


class BrainJepaPatchEmbeddings(nn.Module):
    """Conv2d with kernel and stride (1, patch_size): one token per ROI per `patch_size` frames."""

    def __init__(self, config: BrainJepaConfig):
        super().__init__()
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=(1, config.patch_size), stride=(1, config.patch_size)
        )

    def forward(self, fmri_values: torch.Tensor) -> torch.Tensor:
        # (B, C, R, T) -> (B, D, R, Tp) -> (B, R * Tp, D), ROI-major. The transpose is made contiguous
        # once here: elementwise ops keep their input's memory layout, so a transposed view would
        # carry through every residual add and cost each LayerNorm a copy (25x slower on CPU).
        return self.projection(fmri_values).flatten(2).transpose(1, 2).contiguous()


class BrainJepaEmbeddings(nn.Module):
    """Patch embeddings plus positions; keeps only `context_indices` tokens when given. Holds the
    atlas gradient (num_rois x gradient_dim) as a persistent buffer, saved with the weights."""

    def __init__(self, config: BrainJepaConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = BrainJepaPatchEmbeddings(config)
        self.position_embeddings = BrainJepaPositionalEmbedding(config, config.hidden_size)
        self.register_buffer("gradient", torch.zeros(config.num_rois, config.gradient_dim), persistent=True)

    def resolve_gradient(self, gradient, batch_size: int, num_rois: int) -> torch.Tensor | None:
        """Validate `gradient` ((R, G) or (B, R, G)) or fall back to the stored atlas gradient;
        returns (1 or B, R, G), or None in "sincos" mode where no gradient is used."""
        if self.config.position_embedding_type == "sincos":
            return None
        dim = self.config.gradient_dim
        if gradient is None:
            stored = self.gradient
            if stored.shape[0] != num_rois:
                raise ValueError(
                    f"gradient: fmri_values has {num_rois} ROIs but the model's stored gradient has "
                    f"{stored.shape[0]} rows; pass gradient=<({num_rois}, {dim}) tensor> for this ROI set"
                )
            if _checking_values() and not torch.any(stored):
                raise ValueError(
                    "gradient: the model holds no atlas gradient (its buffer is all zeros); pass "
                    f"gradient=<({num_rois}, {dim}) tensor> or call model.set_gradient(...) first"
                )
            return stored[None]
        if not isinstance(gradient, torch.Tensor):
            gradient = torch.as_tensor(gradient)
        if gradient.dim() == 2:
            gradient = gradient[None]
        if gradient.dim() != 3 or gradient.shape[0] not in (1, batch_size):
            raise ValueError(
                f"gradient: expected shape ({num_rois}, {dim}) or ({batch_size}, {num_rois}, {dim}), "
                f"got {tuple(gradient.shape)}"
            )
        if gradient.shape[1] != num_rois:
            raise ValueError(
                f"gradient: expected {num_rois} rows (one per ROI of fmri_values), got {gradient.shape[1]} "
                f"(shape {tuple(gradient.shape)})"
            )
        if gradient.shape[2] != dim:
            raise ValueError(
                f"gradient: expected {dim} columns (config.gradient_dim), got {gradient.shape[2]} "
                f"(shape {tuple(gradient.shape)})"
            )
        _check_finite("gradient", gradient)
        return cast_checked("gradient", gradient, self.patch_embeddings.projection.weight.dtype, self.gradient.device)

    def forward(
        self,
        fmri_values: torch.Tensor,
        gradient: torch.Tensor | None,
        context_indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        num_rois, num_time_patches = fmri_values.shape[2], fmri_values.shape[3] // self.config.patch_size
        embeddings = self.patch_embeddings(fmri_values)
        positions = self.position_embeddings(gradient, num_rois, num_time_patches)
        embeddings = embeddings + positions.to(embeddings.dtype)
        if context_indices is not None:
            embeddings = gather_tokens(embeddings, context_indices)
        return embeddings


# ----------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention on (B, heads, N, d) inputs; returns (B, N, heads, d) and the weights."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class BrainJepaAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, dispatched through transformers'
    attention interface (eager, sdpa, flash-attention where installed)."""

    def __init__(self, config: BrainJepaConfig, width: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_probs_dropout_prob
        self.qkv = nn.Linear(width, 3 * width, bias=config.qkv_bias)
        self.proj = nn.Linear(width, width)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, tokens, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            None,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
            **kwargs,
        )
        # Every interface returns (B, N, heads, d): merging the last two keeps heads in order.
        output = output.reshape(batch, tokens, width)
        return self.proj(output), weights


class BrainJepaMLP(nn.Module):
    def __init__(self, config: BrainJepaConfig, width: int):
        super().__init__()
        hidden = int(width * config.mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.act = ACT2FN[config.hidden_act]
        self.exact_gelu = config.hidden_act == "gelu"
        self.fc2 = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(hidden_states)
        if self.exact_gelu and not torch.is_grad_enabled():
            # Without autograd, GELU overwrites fc1's fresh output: same kernel, same values, one
            # (batch x tokens x 4D) buffer less to allocate per block.
            hidden = torch.ops.aten.gelu_(hidden)
        else:
            hidden = self.act(hidden)
        return self.dropout(self.fc2(self.dropout(hidden)))


class BrainJepaDropPath(nn.Module):
    """Stochastic depth: drops the residual branch per sample with probability `drop_prob`."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep = 1.0 - self.drop_prob
        mask = hidden_states.new_empty((hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)).bernoulli_(keep)
        return hidden_states * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class BrainJepaLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: BrainJepaConfig, width: int, num_heads: int, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.attention = BrainJepaAttention(config, width, num_heads)
        self.attention_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.norm2 = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = BrainJepaMLP(config, width)
        self.drop_path = BrainJepaDropPath(drop_path)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attention(self.norm1(hidden_states), **kwargs)
        hidden_states = residual_add(hidden_states, self.drop_path(self.attention_dropout(attended)))
        hidden_states = residual_add(hidden_states, self.drop_path(self.mlp(self.norm2(hidden_states))))
        return hidden_states, weights


def residual_add(residual: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """residual + branch. Without autograd the sum goes into the branch's buffer (a block's fresh
    output, never a tensor handed back to the caller): the same values, since addition commutes,
    without a new allocation; the residual itself is left intact (it may be a returned hidden state)."""
    if (
        torch.is_grad_enabled()
        or branch is residual
        or branch.shape != residual.shape
        or branch.dtype != residual.dtype
    ):
        return residual + branch
    return branch.add_(residual)


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def given_output_flags(**flags) -> dict:
    """The `output_*` flags a caller set: a head passes these on to its encoder, whose `capture_outputs`
    takes the others from the config (an explicit None there would mean False)."""
    return {name: value for name, value in flags.items() if value is not None}


class BrainJepaPreTrainedModel(PreTrainedModel):
    config: BrainJepaConfig
    config_class = BrainJepaConfig
    base_model_prefix = "brain_jepa"
    main_input_name = "fmri_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BrainJepaEmbeddings", "BrainJepaLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    # What `capture_outputs` collects for `output_hidden_states` / `output_attentions`: the input of the
    # first block then each block's output (before the final LayerNorm), and each block's attention weights.
    _can_record_outputs = {"hidden_states": BrainJepaLayer, "attentions": BrainJepaAttention}

    def _init_weights(self, module):
        """Effective init of the original: truncated normal (std initializer_range) for Linear/Conv
        weights and the mask token, zero biases, LayerNorm 1/0, no depth rescaling; the atlas gradient
        buffer starts empty (zeros) until `set_gradient` or a checkpoint fills it."""
        std = self.config.initializer_range
        if isinstance(module, BrainJepaClassifier):
            init.trunc_normal_(module.weight, std=self.config.classifier_init_range)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, BrainJepaEmbeddings):
            init.zeros_(module.gradient)
        elif isinstance(module, BrainJepaPredictor):
            init.trunc_normal_(module.mask_token, std=std)

    # Weights a checkpoint of this class may lack: a new task head starts fresh from its init.
    _fresh_on_load: tuple[str, ...] = ()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As in transformers, but strict: weights the checkpoint lacks (other than a fresh task head)
        or carries beyond what this class uses raise a ValueError naming them, instead of leaving
        random weights. With `output_loading_info=True`, or weights given as `state_dict` without a
        folder, the caller gets the report and decides."""
        check_model_location(pretrained_model_name_or_path, kwargs)
        wants_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        except Exception as err:  # transformers' own wording names neither the folder nor what to do
            if isinstance(err, RuntimeError) and "ignore_mismatched_sizes" in str(err):
                raise MismatchedWeightsError(
                    f"pretrained_model_name_or_path: the weights in {pretrained_model_name_or_path} have other shapes than "
                    "the config gives (see the report above); re-save or re-convert it, or pass "
                    "ignore_mismatched_sizes=True to initialise those weights afresh"
                ) from err
            if type(err).__name__ == "SafetensorError":
                raise ValueError(
                    f"pretrained_model_name_or_path: the weights file in {pretrained_model_name_or_path} is "
                    f"not a readable safetensors file ({err}); re-save or re-download it"
                ) from err
            raise
        if wants_info or pretrained_model_name_or_path is None:
            return (model, info) if wants_info else model
        fresh = re.compile("|".join(cls._fresh_on_load)) if cls._fresh_on_load else None
        missing = sorted(k for k in info["missing_keys"] if fresh is None or not fresh.match(k))
        unexpected = sorted(info["unexpected_keys"])
        if missing or unexpected:

            def listed(keys):
                return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

            found = [f"{len(missing)} missing ({listed(missing)})"] if missing else []
            found += [f"{len(unexpected)} unexpected ({listed(unexpected)})"] if unexpected else []
            raise ValueError(
                f"pretrained_model_name_or_path: expected the weights of a {cls.__name__} in "
                f"{pretrained_model_name_or_path}, got {' and '.join(found)} keys; the weights file does not "
                "match its config (renamed or lost layers?): re-save or re-convert it"
            )
        return model

    def _gradient_holders(self) -> list[BrainJepaEmbeddings]:
        return [m for m in self.modules() if isinstance(m, BrainJepaEmbeddings)]

    def set_gradient(self, gradient) -> None:
        """Store the atlas gradient (num_rois x gradient_dim) used when `forward` gets none; it is
        saved with the weights."""
        gradient = torch.as_tensor(gradient, dtype=torch.float32)
        expected = (self.config.num_rois, self.config.gradient_dim)
        if tuple(gradient.shape) != expected:
            raise ValueError(
                f"gradient: expected shape {expected} (config.num_rois, config.gradient_dim), got {tuple(gradient.shape)}"
            )
        _check_finite("gradient", gradient)
        with torch.no_grad():
            for holder in self._gradient_holders():
                holder.gradient.copy_(gradient)


class BrainJepaModel(BrainJepaPreTrainedModel):
    """The Brain-JEPA encoder: patch embedding + gradient positions -> pre-norm ViT -> LayerNorm."""

    # Loading a pretraining folder keeps its target encoder, a classification folder its encoder; the
    # rest is expected to be left out.
    _keys_to_ignore_on_load_unexpected = [r"context_encoder\.", r"predictor\.", r"fc_norm\.", r"classifier\."]

    def __init__(self, config: BrainJepaConfig):
        super().__init__(config)
        self.embeddings = BrainJepaEmbeddings(config)
        # On the CPU even under a `torch.device("meta")` context: the rates are plain numbers.
        rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers, device="cpu").tolist()
        self.layers = nn.ModuleList(
            BrainJepaLayer(config, config.hidden_size, config.num_attention_heads, rate) for rate in rates
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> BrainJepaPatchEmbeddings:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        fmri_values: torch.Tensor,
        gradient: torch.Tensor | None = None,
        context_indices: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        output_attentions: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        fmri_values (`torch.FloatTensor` of shape `(batch, 1, rois, frames)`):
            Parcellated BOLD, ROIs in the atlas order of `gradient`; frames a multiple of `patch_size`.
        gradient (`torch.FloatTensor` of shape `(rois, gradient_dim)` or `(batch, rois, gradient_dim)`, *optional*):
            Connectivity-gradient coordinates of each ROI; defaults to the gradient stored in the model.
        context_indices (`torch.LongTensor` of shape `(batch, num_context)`, *optional*):
            ROI-major token indices (r * Tp + t) to keep after positions are added; all tokens if None.
        output_hidden_states, output_attentions, return_dict:
            As in transformers (default: the config's); `capture_outputs` collects the hidden states and
            attention weights and makes the tuple.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        if output_attentions and self.config._attn_implementation not in ("eager", None):
            # As transformers' sdpa/flash interfaces do: warn, and return no attention weights.
            logger.warning_once(
                f"output_attentions: attn_implementation={self.config._attn_implementation!r} computes no attention "
                "weights, so none are returned; load with attn_implementation='eager' or call "
                "model.set_attn_implementation('eager') to get them"
            )
        check_fmri_values(fmri_values, self.config)
        batch, _, num_rois, frames = fmri_values.shape
        num_tokens = num_rois * (frames // self.config.patch_size)
        if context_indices is not None:
            check_token_indices("context_indices", context_indices, batch, num_tokens)
        gradient = self.embeddings.resolve_gradient(gradient, batch, num_rois)

        fmri_values = cast_checked(
            "fmri_values", fmri_values, self.embeddings.patch_embeddings.projection.weight.dtype
        )
        hidden_states = self.embeddings(fmri_values, gradient, context_indices)
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states)
        sequence_output = self.layernorm(hidden_states)
        if _checking_values() and not torch.isfinite(sequence_output).all():
            raise ValueError(
                f"fmri_values: finite inputs gave non-finite outputs: the model's {sequence_output.dtype} activations "
                f"overflowed (input |x| up to {float(fmri_values.abs().max()):.4g}); rescale the input (e.g. z-score "
                f"it){_FLOAT32_HINT if sequence_output.dtype != torch.float32 else ''}"
            )
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=sequence_output.mean(dim=1))


class BrainJepaPredictor(nn.Module):
    """JEPA predictor: projects context tokens to its own width, adds its own positions, appends one
    learned mask token (plus position) per target index, runs its blocks and projects the target
    part back to the encoder width."""

    def __init__(self, config: BrainJepaConfig):
        super().__init__()
        width = config.predictor_hidden_size
        self.input_proj = nn.Linear(config.hidden_size, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position_embeddings = BrainJepaPositionalEmbedding(config, width)
        self.layers = nn.ModuleList(
            BrainJepaLayer(config, width, config.predictor_num_attention_heads)
            for _ in range(config.predictor_num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.output_proj = nn.Linear(width, config.hidden_size)

    def forward(
        self,
        context_hidden_states: torch.Tensor,
        context_indices: torch.Tensor,
        target_indices: torch.Tensor,
        gradient: torch.Tensor | None,
        num_rois: int,
        num_time_patches: int,
    ) -> torch.Tensor:
        batch, num_context = context_indices.shape
        positions = self.position_embeddings(gradient, num_rois, num_time_patches)
        context = self.input_proj(context_hidden_states)
        context = context + gather_tokens(positions, context_indices).to(context.dtype)
        targets = self.mask_token.to(context.dtype) + gather_tokens(positions, target_indices).to(context.dtype)
        hidden_states = torch.cat([context, targets], dim=1)
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states)
        hidden_states = self.layernorm(hidden_states)[:, num_context:]
        return self.output_proj(hidden_states)


@dataclass
class BrainJepaForPreTrainingOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`):
        Smooth L1 (beta 1) between `predictions` and `targets`.
    predictions (`torch.FloatTensor` of shape `(batch, num_targets, hidden_size)`):
        Predictor outputs at the target indices.
    targets (`torch.FloatTensor` of shape `(batch, num_targets, hidden_size)`):
        Target-encoder features over all tokens, LayerNorm-ed without affine, at the target indices.
    context_hidden_states (`torch.FloatTensor` of shape `(batch, num_context, hidden_size)`):
        Context-encoder output on the context tokens.
    target_pooled_output (`torch.FloatTensor` of shape `(batch, hidden_size)`):
        Mean over all tokens of the target encoder's output (what a linear probe of this model sees),
        for monitoring how much the features depend on the sample.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
        Context encoder: its input embeddings and each block's output, each `(batch, num_context, hidden_size)`.
    attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
        Context encoder: each block's attention weights `(batch, heads, num_context, num_context)`
        (eager attention only, as in transformers).
    """

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None
    targets: torch.FloatTensor | None = None
    context_hidden_states: torch.FloatTensor | None = None
    target_pooled_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class BrainJepaForPreTraining(BrainJepaPreTrainedModel):
    """JEPA pretraining: `context_encoder` sees the context tokens; `predictor` predicts the features
    that `brain_jepa`, the exponential-moving-average target encoder, gives the target tokens.

    The target encoder is the base model (`brain_jepa`), so `BrainJepaModel.from_pretrained` on a saved
    pretraining folder loads the target encoder, the weights fine-tuning starts from."""

    def __init__(self, config: BrainJepaConfig):
        super().__init__(config)
        self.brain_jepa = BrainJepaModel(config)
        self.context_encoder = BrainJepaModel(config)
        self.predictor = BrainJepaPredictor(config)
        self.post_init()
        with torch.no_grad():
            self.brain_jepa.load_state_dict(self.context_encoder.state_dict())
        self.brain_jepa.requires_grad_(False)

    @property
    def target_encoder(self) -> BrainJepaModel:
        return self.brain_jepa

    def train(self, mode: bool = True):
        super().train(mode)
        self.brain_jepa.requires_grad_(False)
        return self

    @torch.no_grad()
    def update_target_encoder(self, momentum: float) -> None:
        """EMA step: target <- momentum * target + (1 - momentum) * context encoder."""
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1], got {momentum!r}")
        target = list(self.brain_jepa.parameters())
        source = list(self.context_encoder.parameters())
        torch._foreach_mul_(target, float(momentum))
        torch._foreach_add_(target, source, alpha=1.0 - float(momentum))
        self.brain_jepa.embeddings.gradient.copy_(self.context_encoder.embeddings.gradient)

    @can_return_tuple
    def forward(
        self,
        fmri_values: torch.Tensor,
        context_indices: torch.Tensor,
        target_indices: torch.Tensor,
        gradient: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        output_attentions: bool | None = None,
    ) -> BrainJepaForPreTrainingOutput | tuple:
        r"""
        context_indices (`torch.LongTensor` of shape `(batch, num_context)`):
            ROI-major token indices the context encoder sees.
        target_indices (`torch.LongTensor` of shape `(batch, num_targets)`):
            ROI-major token indices to predict; disjoint from `context_indices` in every sample.
        """
        check_fmri_values(fmri_values, self.config)
        batch, _, num_rois, frames = fmri_values.shape
        num_time_patches = frames // self.config.patch_size
        num_tokens = num_rois * num_time_patches
        check_token_indices("context_indices", context_indices, batch, num_tokens)
        check_token_indices("target_indices", target_indices, batch, num_tokens)
        if _checking_values():
            in_context = torch.zeros(batch, num_tokens, dtype=torch.bool, device=context_indices.device)
            in_context.scatter_(1, context_indices, True)
            overlap = in_context.gather(1, target_indices)
            if overlap.any():
                sample = int(overlap.any(dim=1).nonzero()[0])
                raise ValueError(
                    f"target_indices: expected no index shared with context_indices, got {int(overlap.sum())} shared "
                    f"(first in sample {sample})"
                )
        gradient = self.context_encoder.embeddings.resolve_gradient(gradient, batch, num_rois)

        with torch.no_grad():
            # Only the context encoder's hidden states and attentions are returned.
            target_outputs = self.brain_jepa(
                fmri_values, gradient=gradient, output_hidden_states=False, output_attentions=False, return_dict=True
            )
            target_features = F.layer_norm(
                target_outputs.last_hidden_state, (target_outputs.last_hidden_state.shape[-1],)
            )
            targets = gather_tokens(target_features, target_indices)
        context_outputs = self.context_encoder(
            fmri_values,
            gradient=gradient,
            context_indices=context_indices,
            return_dict=True,
            **given_output_flags(output_hidden_states=output_hidden_states, output_attentions=output_attentions),
        )
        context = context_outputs.last_hidden_state
        predictions = self.predictor(context, context_indices, target_indices, gradient, num_rois, num_time_patches)
        loss = F.smooth_l1_loss(predictions.float(), targets.float(), beta=1.0)
        return BrainJepaForPreTrainingOutput(
            loss=loss,
            predictions=predictions,
            targets=targets,
            context_hidden_states=context,
            target_pooled_output=target_outputs.pooler_output,
            hidden_states=context_outputs.hidden_states,
            attentions=context_outputs.attentions,
        )


def resolve_problem_type(problem_type: str | None, num_labels: int, labels: torch.Tensor | None = None) -> str:
    """`problem_type` when set; else, as transformers infers it: regression for one label, single-label
    classification for integer (or no) labels, multi-label classification for floating-point ones."""
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    if labels is None or not labels.is_floating_point():
        return "single_label_classification"
    return "multi_label_classification"


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None, num_labels: int
) -> torch.Tensor:
    """The loss of a (batch, num_labels) head, computed in float32: MSE for regression, cross-entropy for
    single-label and binary cross-entropy with logits for multi-label classification (`problem_type`,
    inferred from `labels` when None). Used by the classification head, the linear probe and any
    caller scoring `logits`; labels that do not fit the problem raise a ValueError naming them."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels: expected a torch.Tensor, got {type(labels).__name__}; pass torch.tensor(labels)")
    if num_labels < 1:
        raise ValueError(
            "labels: the model has no task head (num_labels=0), so there is no loss to compute; set num_labels "
            "to the number of classes (1 for regression)"
        )
    if labels.is_floating_point():
        _check_finite("labels", labels)
    resolved = resolve_problem_type(problem_type, num_labels, labels)
    batch = logits.shape[0]
    if resolved == "regression":
        if labels.numel() != batch * num_labels:
            raise ValueError(
                f"labels: expected {batch * num_labels} regression targets for a batch of {batch} and "
                f"num_labels={num_labels}, got shape {tuple(labels.shape)}"
            )
        return F.mse_loss(logits.float(), labels.float().reshape(logits.shape))
    if resolved == "single_label_classification":
        if _checking_values() and labels.is_floating_point() and not torch.equal(labels, labels.round()):
            raise ValueError(
                f"labels: expected integer class ids for single-label classification, got dtype {labels.dtype} with fractional values"
            )
        labels = labels.reshape(-1).long()
        if labels.numel() != batch:
            raise ValueError(f"labels: expected shape ({batch},) class ids, got {labels.numel()} values")
        if _checking_values() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(
                f"labels: expected class ids in [0, {num_labels - 1}], got values in [{int(labels.min())}, {int(labels.max())}]"
            )
        return F.cross_entropy(logits.float(), labels)
    if resolved == "multi_label_classification":
        if tuple(labels.shape) != tuple(logits.shape):
            inferred = (
                ""
                if problem_type
                else (
                    f" (floating-point labels with num_labels={num_labels} are taken as multi-label; for class "
                    "ids pass integer labels or set problem_type='single_label_classification')"
                )
            )
            raise ValueError(
                f"labels: expected shape {tuple(logits.shape)} of 0/1 targets, got {tuple(labels.shape)}{inferred}"
            )
        if _checking_values() and not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError(
                "labels: expected 0/1 targets for multi-label classification, got values such as "
                f"{float(labels[(labels != 0) & (labels != 1)][0]):g}"
            )
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    raise ValueError(
        "problem_type: expected 'regression', 'single_label_classification' or 'multi_label_classification', "
        f"got {resolved!r}"
    )


class BrainJepaClassifier(nn.Linear):
    """The task head: a Linear layer initialised with std `classifier_init_range` (2e-5)."""


class BrainJepaForSequenceClassification(BrainJepaPreTrainedModel):
    """Encoder -> mean over tokens -> LayerNorm (fc_norm) -> Linear head, for regression,
    single-label or multi-label classification (`config.problem_type`)."""

    # Loading an encoder or pretraining folder starts a new head.
    _fresh_on_load = (r"fc_norm\.", r"classifier\.")

    def __init__(self, config: BrainJepaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.brain_jepa = BrainJepaModel(config)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = (
            BrainJepaClassifier(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        fmri_values: torch.Tensor,
        gradient: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        context_indices: torch.Tensor | None = None,
        output_hidden_states: bool | list[int] | None = None,
        output_attentions: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        context_indices (`torch.LongTensor` of shape `(batch, num_context)`, *optional*):
            ROI-major token indices the encoder keeps (and the head pools over); all tokens if None.
        labels (`torch.Tensor` of shape `(batch,)` or `(batch, num_labels)`, *optional*):
            Regression targets, class ids, or multi-label 0/1 targets, by `config.problem_type`.
        """
        outputs = self.brain_jepa(
            fmri_values,
            gradient=gradient,
            context_indices=context_indices,
            return_dict=True,
            **given_output_flags(output_hidden_states=output_hidden_states, output_attentions=output_attentions),
        )
        logits = self.classifier(self.fc_norm(outputs.pooler_output))
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config.problem_type, self.num_labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "INFERENCE_DTYPES",
    "cpu_has_fast_bf16",
    "resolve_dtype",
    "BrainJepaPreTrainedModel",
    "BrainJepaModel",
    "BrainJepaPredictor",
    "BrainJepaForPreTraining",
    "BrainJepaForPreTrainingOutput",
    "BrainJepaForSequenceClassification",
    "resolve_problem_type",
    "sequence_classification_loss",
]
