"""Build checkpoints in the authors' layout from a tiny model of ours, for the conversion tests.

Written from REFERENCE.md (keys, `module.` prefixes, extra entries) and the original's stored time
table shape (R*Tp, width/2), independently of `brain_jepa_hf.conversion`'s mapping tables.
"""

from __future__ import annotations

import numpy as np
import torch


# our block sub-module name -> the original's
BLOCK_PARTS = {
    "norm1": "norm1",
    "attention.qkv": "attn.qkv",
    "attention.proj": "attn.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def original_time_table(num_rois: int, num_time_patches: int, width: int) -> torch.Tensor:
    """The original's `emb_h`: row r*Tp + t holds sin(t*w_k) (k < width/4) then cos(t*w_k), width/2 wide."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    t = np.tile(np.arange(num_time_patches, dtype=np.float64), num_rois)
    angles = t[:, None] * omega[None, :]
    return torch.from_numpy(np.concatenate([np.sin(angles), np.cos(angles)], axis=1)).float()


def _blocks(ours: dict, our_prefix: str, original_prefix: str, depth: int) -> dict:
    out = {}
    for i in range(depth):
        for our_part, original_part in BLOCK_PARTS.items():
            for param in ("weight", "bias"):
                out[f"module.{original_prefix}{i}.{original_part}.{param}"] = ours[
                    f"{our_prefix}{i}.{our_part}.{param}"
                ]
    return out


def original_encoder_state(ours: dict, config) -> dict:
    """An encoder state dict in the original layout from a `BrainJepaModel` state dict."""
    out = {
        "module.patch_embed.proj.weight": ours["embeddings.patch_embeddings.projection.weight"],
        "module.patch_embed.proj.bias": ours["embeddings.patch_embeddings.projection.bias"],
        "module.pos_embed_proj.emb_h": original_time_table(
            config.num_rois, config.num_time_patches, config.hidden_size
        ),
        "module.pos_embed_proj.predictor_pos_embed_proj.weight": ours[
            "embeddings.position_embeddings.gradient_proj.weight"
        ],
        "module.pos_embed_proj.predictor_pos_embed_proj.bias": ours[
            "embeddings.position_embeddings.gradient_proj.bias"
        ],
        "module.norm.weight": ours["layernorm.weight"],
        "module.norm.bias": ours["layernorm.bias"],
    }
    out.update(_blocks(ours, "layers.", "blocks.", config.num_hidden_layers))
    return out


def original_predictor_state(ours: dict, config) -> dict:
    """A predictor state dict in the original layout from our `predictor.*` entries (prefix removed)."""
    out = {
        "module.mask_token": ours["mask_token"],
        "module.predictor_embed.weight": ours["input_proj.weight"],
        "module.predictor_embed.bias": ours["input_proj.bias"],
        "module.predictor_2dpe_proj.emb_h": original_time_table(
            config.num_rois, config.num_time_patches, config.predictor_hidden_size
        ),
        "module.predictor_2dpe_proj.predictor_pos_embed_proj.weight": ours["position_embeddings.gradient_proj.weight"],
        "module.predictor_2dpe_proj.predictor_pos_embed_proj.bias": ours["position_embeddings.gradient_proj.bias"],
        "module.predictor_norm.weight": ours["layernorm.weight"],
        "module.predictor_norm.bias": ours["layernorm.bias"],
        "module.predictor_proj.weight": ours["output_proj.weight"],
        "module.predictor_proj.bias": ours["output_proj.bias"],
    }
    out.update(_blocks(ours, "layers.", "predictor_blocks.", config.predictor_num_hidden_layers))
    return out


def original_checkpoint(pretraining_model) -> dict:
    """The whole original file: three DDP-prefixed state dicts plus the optimiser/bookkeeping entries."""
    state = {k: v.detach().clone() for k, v in pretraining_model.state_dict().items()}

    def part(prefix):
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    config = pretraining_model.config
    return {
        "encoder": original_encoder_state(part("context_encoder."), config),
        "predictor": original_predictor_state(part("predictor."), config),
        "target_encoder": original_encoder_state(part("brain_jepa."), config),
        "opt": {"state": {}, "param_groups": [{"lr": 1e-3, "weight_decay": 0.04, "params": [0, 1, 2]}]},
        "scaler": None,
        "epoch": 300,
        "loss": 0.0123,
        "batch_size": 16,
        "world_size": 4,
        "lr": 1e-3,
    }
