"""Convert the authors' Brain-JEPA pretraining checkpoint into a Hub-ready `transformers` folder.

The original checkpoint is one torch file with `encoder`, `target_encoder` and `predictor` state
dicts (keys prefixed `module.` by DDP) plus optimiser state. The gradient matrix ships separately
as a CSV (R rows x G columns, no header). Every original key is consumed exactly once, every shape
is checked, and the fixed time table the original saved (`emb_h`, shape (R*Tp, width/2)) is
verified against the positions this package computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atlas import default_atlas, set_atlas
from .atomic_io import check_output_dir
from .configuration_brain_jepa import BRAIN_JEPA_PRESETS, BrainJepaConfig
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from .gradients import check_gradient, load_gradient_csv
from .hub import prepare_hub_folder, preset_for
from .modeling_brain_jepa import BrainJepaForPreTraining, BrainJepaModel


SOURCES = ("target_encoder", "encoder")
DDP_PREFIX = "module."
ENCODER_TIME_TABLE = "pos_embed_proj.emb_h"
PREDICTOR_TIME_TABLE = "predictor_2dpe_proj.emb_h"
TIME_TABLE_ATOL = 1e-5

_BLOCK = r"(?P<i>\d+)\.(?P<part>norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(?P<p>weight|bias)"


def _block_name(match: re.Match, prefix: str) -> str:
    part = match["part"].replace("attn.", "attention.")
    return f"{prefix}{match['i']}.{part}.{match['p']}"


# Original key (after the DDP prefix) -> our key, for one encoder and for the predictor.
ENCODER_KEY_MAP: list[tuple[re.Pattern, callable]] = [
    (
        re.compile(r"patch_embed\.proj\.(?P<p>weight|bias)"),
        lambda m: f"embeddings.patch_embeddings.projection.{m['p']}",
    ),
    (
        re.compile(r"pos_embed_proj\.predictor_pos_embed_proj\.(?P<p>weight|bias)"),
        lambda m: f"embeddings.position_embeddings.gradient_proj.{m['p']}",
    ),
    (re.compile(rf"blocks\.{_BLOCK}"), lambda m: _block_name(m, "layers.")),
    (re.compile(r"norm\.(?P<p>weight|bias)"), lambda m: f"layernorm.{m['p']}"),
]
PREDICTOR_KEY_MAP: list[tuple[re.Pattern, callable]] = [
    (re.compile(r"mask_token"), lambda m: "mask_token"),
    (re.compile(r"predictor_embed\.(?P<p>weight|bias)"), lambda m: f"input_proj.{m['p']}"),
    (
        re.compile(r"predictor_2dpe_proj\.predictor_pos_embed_proj\.(?P<p>weight|bias)"),
        lambda m: f"position_embeddings.gradient_proj.{m['p']}",
    ),
    (re.compile(rf"predictor_blocks\.{_BLOCK}"), lambda m: _block_name(m, "layers.")),
    (re.compile(r"predictor_norm\.(?P<p>weight|bias)"), lambda m: f"layernorm.{m['p']}"),
    (re.compile(r"predictor_proj\.(?P<p>weight|bias)"), lambda m: f"output_proj.{m['p']}"),
]


@dataclass
class OriginalCheckpoint:
    """The three state dicts of an original checkpoint, DDP prefix removed, plus its metadata."""

    path: Path
    encoder: dict[str, torch.Tensor] | None
    target_encoder: dict[str, torch.Tensor] | None
    predictor: dict[str, torch.Tensor] | None
    epoch: int | None = None

    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        value = getattr(self, name)
        if value is None:
            present = [n for n in ("encoder", "target_encoder", "predictor") if getattr(self, n) is not None]
            raise ValueError(f"checkpoint {self.path}: expected a {name!r} state dict, got only {present}")
        return value


def strip_ddp_prefix(state_dict: dict, name: str) -> dict[str, torch.Tensor]:
    """Remove the `module.` prefix DDP adds; all keys carry it or none does."""
    if not isinstance(state_dict, dict) or not all(isinstance(k, str) for k in state_dict):
        raise ValueError(
            f"checkpoint[{name!r}]: expected a state dict (str -> tensor), got {type(state_dict).__name__}"
        )
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"checkpoint[{name!r}]: expected tensors, got non-tensor entries {not_tensors[:5]}")
    prefixed = [k.startswith(DDP_PREFIX) for k in state_dict]
    if all(prefixed):
        return {k[len(DDP_PREFIX) :]: v for k, v in state_dict.items()}
    if any(prefixed):
        raise ValueError(
            f"checkpoint[{name!r}]: expected every key to start with {DDP_PREFIX!r} or none, got a mix "
            f"(e.g. {next(k for k in state_dict if not k.startswith(DDP_PREFIX))!r})"
        )
    return dict(state_dict)


def load_original_checkpoint(path: str | Path) -> OriginalCheckpoint:
    """Read an original pretraining checkpoint with `torch.load(weights_only=True)` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: {path} does not exist or is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights-only errors all mean "not a readable checkpoint"
        raise ValueError(
            f"checkpoint: {path} is not a PyTorch checkpoint readable with torch.load(weights_only=True) "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(payload, dict):
        raise ValueError(
            f"checkpoint: expected a dict with 'encoder', 'target_encoder' and 'predictor' state dicts, "
            f"got {type(payload).__name__} in {path}"
        )
    found = [k for k in ("encoder", "target_encoder", "predictor") if k in payload]
    if not found:
        raise ValueError(
            f"checkpoint: expected keys 'encoder', 'target_encoder', 'predictor' (the original pretraining "
            f"layout), got {sorted(map(str, payload))[:10]} in {path}"
        )
    parts = {
        k: strip_ddp_prefix(payload[k], k) if k in payload else None
        for k in ("encoder", "target_encoder", "predictor")
    }
    epoch = payload.get("epoch")
    return OriginalCheckpoint(path=path, epoch=epoch if isinstance(epoch, int) else None, **parts)


def _shape(state_dict: dict, key: str, name: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"checkpoint[{name!r}]: missing key {key!r}, needed to infer the model size")
    return tuple(state_dict[key].shape)


def _table_tolerance(table: torch.Tensor) -> float:
    """TIME_TABLE_ATOL, or the rounding of a table saved in half precision (values in [-1, 1])."""
    return max(TIME_TABLE_ATOL, torch.finfo(table.dtype).eps) if table.is_floating_point() else TIME_TABLE_ATOL


def infer_time_patches(time_table: torch.Tensor, name: str) -> int:
    """Tp from the saved time table: rows r*Tp + t repeat with period Tp; row 0 is sin(0)=0, cos(0)=1."""
    if time_table.dim() != 2:
        raise ValueError(
            f"checkpoint[{name!r}]: expected a 2-D (R*Tp, width/2) time table, got {tuple(time_table.shape)}"
        )
    first = time_table[0]
    repeats = (
        torch.isclose(time_table, first[None], atol=_table_tolerance(time_table))
        .all(dim=1)
        .nonzero()
        .flatten()
        .tolist()
    )
    period = repeats[1] if len(repeats) > 1 else time_table.shape[0]
    if time_table.shape[0] % period:
        raise ValueError(
            f"checkpoint[{name!r}]: its rows do not repeat with a period dividing {time_table.shape[0]} "
            f"(found period {period}); not the original ROI-major time table"
        )
    return period


def infer_config(
    checkpoint: OriginalCheckpoint, source: str = "target_encoder", num_attention_heads: int | None = None
) -> BrainJepaConfig:
    """The `BrainJepaConfig` whose shapes match the checkpoint (sizes, depth, ROI and frame counts)."""
    encoder = checkpoint.state_dict(source)
    name = source
    hidden, channels, kernel_rows, patch = _shape(encoder, "patch_embed.proj.weight", name)
    if kernel_rows != 1:
        raise ValueError(f"checkpoint[{name!r}]: expected a (1, patch) patch kernel, got ({kernel_rows}, {patch})")
    depth = 1 + max((int(m["i"]) for k in encoder if (m := re.match(r"blocks\.(?P<i>\d+)\.", k))), default=-1)
    if depth == 0:
        raise ValueError(f"checkpoint[{name!r}]: expected 'blocks.<i>.*' keys, found none")
    half, gradient_dim = _shape(encoder, "pos_embed_proj.predictor_pos_embed_proj.weight", name)
    time_table = encoder.get(ENCODER_TIME_TABLE)
    if time_table is None:
        raise ValueError(f"checkpoint[{name!r}]: missing key {ENCODER_TIME_TABLE!r} (the saved time table)")
    num_tokens = time_table.shape[0]
    time_patches = infer_time_patches(time_table, name)
    fc1_rows = _shape(encoder, "blocks.0.mlp.fc1.weight", name)[0]
    heads = num_attention_heads or _default_heads(hidden, depth)
    kwargs = dict(
        num_rois=num_tokens // time_patches,
        num_frames=time_patches * patch,
        patch_size=patch,
        num_channels=channels,
        gradient_dim=gradient_dim,
        hidden_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        mlp_ratio=fc1_rows / hidden,
        qkv_bias="blocks.0.attn.qkv.bias" in encoder,
    )
    if checkpoint.predictor is not None:
        predictor = checkpoint.predictor
        predictor_width = _shape(predictor, "predictor_embed.weight", "predictor")[0]
        kwargs["predictor_hidden_size"] = predictor_width
        kwargs["predictor_num_hidden_layers"] = 1 + max(
            (int(m["i"]) for k in predictor if (m := re.match(r"predictor_blocks\.(?P<i>\d+)\.", k))), default=0
        )
        kwargs["predictor_num_attention_heads"] = heads  # the original gives the predictor the encoder's heads
    return BrainJepaConfig(**kwargs)


# The paper's encoders, whose head counts are known; a checkpoint's weights do not record heads.
PAPER_SIZES = ("vit-small", "vit-base", "vit-large")


def _default_heads(hidden: int, depth: int) -> int:
    for name in PAPER_SIZES:
        preset = BRAIN_JEPA_PRESETS[name]
        if preset["hidden_size"] == hidden and preset["num_hidden_layers"] == depth:
            return preset["num_attention_heads"]
    sizes = ", ".join(
        f"{name} {BRAIN_JEPA_PRESETS[name]['hidden_size']}x{BRAIN_JEPA_PRESETS[name]['num_hidden_layers']}"
        for name in PAPER_SIZES
    )
    raise ValueError(
        f"num_attention_heads: required for hidden_size={hidden}, depth={depth}, not a paper size ({sizes}), "
        "since the weights do not record the head count; pass num_attention_heads (--num-attention-heads) "
        "as the model was trained"
    )


def check_finite_weights(parts: list[tuple[dict, str]]) -> None:
    """Every floating tensor of each (state dict, name) part is finite; else one error naming them."""
    bad = [
        f"{name}:{key}"
        for state_dict, name in parts
        for key, tensor in state_dict.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"checkpoint: expected finite weights, got NaN/Inf in {len(bad)} tensor(s) ({shown}); the training run "
            "diverged or the file is damaged: convert an earlier checkpoint"
        )


def map_state_dict(
    original: dict[str, torch.Tensor], key_map, ignore: tuple[str, ...], name: str, prefix: str = ""
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename original keys to ours; returns the mapped dict and the original keys no rule matched."""
    mapped, unmatched = {}, []
    for key, tensor in original.items():
        if key in ignore:
            continue
        for pattern, rename in key_map:
            match = pattern.fullmatch(key)
            if match:
                mapped[prefix + rename(match)] = tensor
                break
        else:
            unmatched.append(f"{name}:{key}")
    return mapped, unmatched


def check_against_model(mapped: dict[str, torch.Tensor], unmatched: list[str], model: torch.nn.Module) -> None:
    """Every learned parameter of `model` provided with its shape, nothing left over; else one error listing all."""
    expected = {k: tuple(p.shape) for k, p in model.named_parameters()}
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(unmatched + [k for k in mapped if k not in expected])
    mis_shaped = sorted(
        f"{k}: expected {expected[k]}, got {tuple(v.shape)}"
        for k, v in mapped.items()
        if k in expected and tuple(v.shape) != expected[k]
    )
    if missing or unexpected or mis_shaped:
        lines = []
        if missing:
            lines.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if mis_shaped:
            lines.append(f"mis-shaped keys ({len(mis_shaped)}): {mis_shaped}")
        raise ValueError("checkpoint: does not match the inferred Brain-JEPA model:\n- " + "\n- ".join(lines))


def verify_time_table(
    saved: torch.Tensor,
    positions: torch.nn.Module,
    gradient: torch.Tensor,
    num_rois: int,
    num_time_patches: int,
    name: str,
) -> float:
    """Compare the original's saved time table with the time half of our positions; returns the max error."""
    with torch.no_grad():
        ours = positions(gradient[None], num_rois, num_time_patches)[0, :, : positions.width // 2]
    if tuple(saved.shape) != tuple(ours.shape):
        raise ValueError(
            f"checkpoint[{name!r}]: expected a time table of shape {tuple(ours.shape)}, got {tuple(saved.shape)}"
        )
    error = float((saved.float() - ours).abs().max())
    tolerance = _table_tolerance(saved)
    if error > tolerance:
        raise ValueError(
            f"checkpoint[{name!r}]: the saved time table differs from our sine-cosine time positions by up to "
            f"{error:.3g} (tolerance {tolerance:.3g}); the checkpoint's token layout is not ROI-major r*Tp+t"
        )
    return error


def read_gradient(path: str | Path, config: BrainJepaConfig) -> torch.Tensor:
    """The gradient CSV as a (num_rois, gradient_dim) tensor, shape checked against the checkpoint."""

    array = check_gradient(
        load_gradient_csv(path),
        config.num_rois,
        config.gradient_dim,
        name="gradient_csv",
        columns="gradient components, as the checkpoint implies",
        hint=f" in {path}",
    )
    return torch.from_numpy(np.ascontiguousarray(array))


def build_converted_model(
    checkpoint: OriginalCheckpoint,
    gradient_csv: str | Path,
    source: str = "target_encoder",
    with_predictor: bool = False,
    num_attention_heads: int | None = None,
):
    """A `BrainJepaModel` (or `BrainJepaForPreTraining` with the predictor) holding the checkpoint's weights."""

    if source not in SOURCES:
        raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")
    config = infer_config(checkpoint, source, num_attention_heads)
    gradient = read_gradient(gradient_csv, config)
    encoder_ignore = (ENCODER_TIME_TABLE,)
    mapped, unmatched = {}, []
    if with_predictor:
        model = BrainJepaForPreTraining(config)
        parts = [
            (checkpoint.state_dict(source), ENCODER_KEY_MAP, encoder_ignore, source, "brain_jepa."),
            (checkpoint.state_dict("encoder"), ENCODER_KEY_MAP, encoder_ignore, "encoder", "context_encoder."),
            (
                checkpoint.state_dict("predictor"),
                PREDICTOR_KEY_MAP,
                (PREDICTOR_TIME_TABLE,),
                "predictor",
                "predictor.",
            ),
        ]
    else:
        model = BrainJepaModel(config)
        parts = [(checkpoint.state_dict(source), ENCODER_KEY_MAP, encoder_ignore, source, "")]
    check_finite_weights([(state_dict, name) for state_dict, _, _, name, _ in parts])
    for state_dict, key_map, ignore, name, prefix in parts:
        part_mapped, part_unmatched = map_state_dict(state_dict, key_map, ignore, name, prefix)
        mapped.update(part_mapped)
        unmatched.extend(part_unmatched)
    check_against_model(mapped, unmatched, model)
    model.load_state_dict(mapped, strict=False)
    model.set_gradient(gradient)
    model.eval()

    encoders = (
        [(model.brain_jepa, source), (model.context_encoder, "encoder")] if with_predictor else [(model, source)]
    )
    for encoder, name in encoders:
        verify_time_table(
            checkpoint.state_dict(name)[ENCODER_TIME_TABLE],
            encoder.embeddings.position_embeddings,
            gradient,
            config.num_rois,
            config.num_time_patches,
            name,
        )
    if with_predictor:
        saved = checkpoint.state_dict("predictor").get(PREDICTOR_TIME_TABLE)
        if saved is None:
            raise ValueError(f"checkpoint['predictor']: missing key {PREDICTOR_TIME_TABLE!r} (the saved time table)")
        verify_time_table(
            saved, model.predictor.position_embeddings, gradient, config.num_rois, config.num_time_patches, "predictor"
        )
    return model


def convert_original_checkpoint(
    checkpoint_path: str | Path,
    gradient_csv: str | Path,
    output_dir: str | Path,
    source: str = "target_encoder",
    with_predictor: bool = False,
    overwrite: bool = False,
    repo_id: str | None = None,
    card_preset: str | None = None,
    num_attention_heads: int | None = None,
    sampling_rate: int = 3,
    scaling: str = "zscore",
    atlas="auto",
) -> Path:
    """Convert an original checkpoint + gradient CSV into a Hub-ready folder (see `hub.prepare_hub_folder`).

    Writes config (with `auto_map`), `model.safetensors`, the remote-code files, `preprocessor_config.json`
    and a model card. Refuses an existing `output_dir` unless `overwrite`; on any error nothing is left behind.
    `atlas` (stored in the config, see `brain_jepa_hf.atlas`): "auto" gives a 450-ROI model the released
    atlas and other sizes none; or "released", "none"/None, an `Atlas` or an atlas table path.
    """
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite)  # before any heavy work
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")
    steps = tqdm(total=3, desc="convert", unit="step")
    try:
        steps.set_postfix_str("reading checkpoint")
        checkpoint = load_original_checkpoint(checkpoint_path)
        if not Path(gradient_csv).is_file():
            raise FileNotFoundError(f"gradient_csv: {gradient_csv} does not exist or is not a file")
        steps.update()
        steps.set_postfix_str("mapping weights")
        model = build_converted_model(checkpoint, gradient_csv, source, with_predictor, num_attention_heads)
        set_atlas(model, default_atlas(model.config.num_rois) if atlas == "auto" else atlas)
        steps.update()
        steps.set_postfix_str("writing folder")
        config = model.config
        feature_extractor = BrainJepaFeatureExtractor(
            num_rois=config.num_rois,
            num_frames=config.num_frames,
            sampling_rate=sampling_rate,
            scaling=scaling,
            gradient=model.base_model.embeddings.gradient.numpy(),
        )
        path = prepare_hub_folder(
            model,
            output_dir,
            feature_extractor=feature_extractor,
            card_preset=card_preset or preset_for(config),
            repo_id=repo_id,
            converted_from=source,
            overwrite=overwrite,
        )
        steps.update()
    finally:
        steps.close()
    return path


__all__ = [
    "SOURCES",
    "ENCODER_KEY_MAP",
    "PREDICTOR_KEY_MAP",
    "OriginalCheckpoint",
    "load_original_checkpoint",
    "strip_ddp_prefix",
    "infer_config",
    "infer_time_patches",
    "map_state_dict",
    "check_against_model",
    "verify_time_table",
    "read_gradient",
    "build_converted_model",
    "convert_original_checkpoint",
]
