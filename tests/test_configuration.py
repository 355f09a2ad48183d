"""BrainJepaConfig: defaults are the released ViT-B, presets, and clear errors for impossible sizes."""

import json
import logging
import warnings

import pytest
from transformers import AutoConfig

from brain_jepa_hf import BrainJepaConfig


def test_default_is_released_vit_base_and_builds_silently(caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING):
            config = BrainJepaConfig()
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert (config.num_rois, config.num_frames, config.patch_size, config.gradient_dim) == (450, 160, 16, 30)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.predictor_hidden_size, config.predictor_num_hidden_layers) == (384, 6)
    assert config.predictor_num_attention_heads == config.num_attention_heads
    assert config.layer_norm_eps == 1e-6 and config.qkv_bias and config.mlp_ratio == 4.0
    assert config.num_time_patches == 10 and config.num_patches == 4500


@pytest.mark.parametrize(
    "name, width, depth, heads",
    [("vit-small", 384, 12, 6), ("vit-base", 768, 12, 12), ("vit-large", 1024, 24, 16), ("vit_large", 1024, 24, 16)],
)
def test_presets_match_the_paper(name, width, depth, heads):
    config = BrainJepaConfig.from_preset(name)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (width, depth, heads)
    assert config.predictor_num_attention_heads == heads and config.predictor_hidden_size == 384


def test_preset_overrides_and_unknown_name():
    assert BrainJepaConfig.from_preset("vit-small", num_rois=100).num_rois == 100
    with pytest.raises(ValueError, match=r"preset: expected one of .*'vit-base'.* got 'vit-huge'"):
        BrainJepaConfig.from_preset("vit-huge")


def test_round_trip_through_auto_config(tmp_path):
    config = BrainJepaConfig.from_preset("vit-small", num_rois=200, position_embedding_type="sincos")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is BrainJepaConfig
    strip = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert strip(loaded.to_dict()) == strip(config.to_dict())


def test_config_json_with_the_dropped_pooling_field_still_loads(tmp_path):
    """config.json files written before the unused `pooling` field was dropped carry `"pooling": "mean"`
    (the only value it took): they load as before, the key kept as a plain attribute."""
    config = BrainJepaConfig.from_preset("tiny", num_rois=20)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "pooling" not in saved
    (tmp_path / "config.json").write_text(json.dumps({**saved, "pooling": "mean"}))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is BrainJepaConfig and loaded.pooling == "mean"
    strip = lambda d: {k: v for k, v in d.items() if k not in ("_name_or_path", "pooling")}  # noqa: E731
    assert strip(loaded.to_dict()) == strip(config.to_dict())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_frames": 150}, r"num_frames: expected a multiple of patch_size=16, got 150; use num_frames=144"),
        ({"hidden_size": 770, "num_attention_heads": 11}, r"hidden_size: expected a multiple of 4 .* got 770"),
        (
            {"hidden_size": 96, "num_attention_heads": 5},
            r"hidden_size: expected a multiple of num_attention_heads=5, got 96",
        ),
        ({"predictor_hidden_size": 90}, r"predictor_hidden_size: expected a multiple of 4 .* got 90"),
        (
            {"predictor_num_attention_heads": 7},
            r"predictor_hidden_size: expected a multiple of predictor_num_attention_heads=7, got 384",
        ),
        ({"num_rois": 0}, r"num_rois: expected a positive integer, got 0"),
        (
            {"position_embedding_type": "learned"},
            r"position_embedding_type: expected 'gradient' or 'sincos', got 'learned'",
        ),
        ({"drop_path_rate": 1.5}, r"drop_path_rate: expected a probability in \[0, 1\), got 1.5"),
    ],
)
def test_impossible_combinations_say_what_to_change(overrides, message):
    with pytest.raises(ValueError, match=message):
        BrainJepaConfig(**overrides)
