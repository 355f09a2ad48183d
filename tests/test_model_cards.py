"""Model cards: valid Hub metadata, the paper's results as model-index, honest licence, runnable quick start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

from brain_jepa_hf import BrainJepaConfig, BrainJepaModel
from brain_jepa_hf.feature_extraction_brain_jepa import BrainJepaFeatureExtractor
from brain_jepa_hf.hub import prepare_hub_folder
from brain_jepa_hf.model_card import (
    count_encoder_parameters,
    quick_start_code,
    render_model_card,
    validate_model_card,
)

from helpers import make_config


# REFERENCE.md "Published results": (dataset, task, metric) -> value, mean over 5 seeds.
PAPER = {
    ("UK Biobank (held-out 20%)", "age", "mse"): 0.501,
    ("UK Biobank (held-out 20%)", "age", "pearsonr"): 0.718,
    ("UK Biobank (held-out 20%)", "sex", "accuracy"): 88.17,
    ("UK Biobank (held-out 20%)", "sex", "f1"): 88.58,
    ("HCP-Aging", "age", "mse"): 0.298,
    ("HCP-Aging", "age", "pearsonr"): 0.844,
    ("HCP-Aging", "sex", "accuracy"): 81.52,
    ("HCP-Aging", "sex", "f1"): 84.26,
    ("HCP-Aging", "neuroticism", "mse"): 0.897,
    ("HCP-Aging", "neuroticism", "pearsonr"): 0.307,
    ("HCP-Aging", "flanker", "mse"): 0.972,
    ("HCP-Aging", "flanker", "pearsonr"): 0.406,
    ("ADNI", "nc-vs-mci", "accuracy"): 76.84,
    ("ADNI", "nc-vs-mci", "f1"): 86.32,
    ("ADNI", "amyloid-positive-vs-negative", "accuracy"): 71.00,
    ("ADNI", "amyloid-positive-vs-negative", "f1"): 75.97,
    ("MACC (Asian cohort)", "nc-vs-mci", "accuracy"): 65.98,
    ("MACC (Asian cohort)", "nc-vs-mci", "f1"): 64.67,
}


def test_base_card_parses_as_hub_metadata_with_the_papers_results():
    card = ModelCard(render_model_card("vit-base", repo_id="someone/brain-jepa-base").content)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "feature-extraction"
    assert {"brain-jepa", "fmri", "custom_code"} <= set(data.tags)
    assert data.license == "other" and data.license_link == "https://github.com/Eric-LRL/Brain-JEPA"
    results = {(r.dataset_name, r.dataset_config, r.metric_type): r.metric_value for r in data.eval_results}
    assert results == PAPER
    assert all(r.source_url == "https://arxiv.org/abs/2409.19407" and r.verified is False for r in data.eval_results)
    text = card.text
    assert "ships **no\nlicence file**" in text
    assert "0.501 (0.034)" in text and "88.17 (0.06)" in text  # stds in the table
    assert "Tian Scale III atlas **first**" in text and "17-network order" in text
    assert "`(batch, 1, 450, 160)`" in text and "`(batch, 4500, 768)`" in text
    assert "@inproceedings{dong2024brainjepa" in text and "Juan Helen Zhou" in text
    assert 'repo = "someone/brain-jepa-base"' in quick_start_code(card.content)


@pytest.mark.parametrize("preset,hidden,layers,heads", [("vit-small", 384, 12, 6), ("vit-large", 1024, 24, 16)])
def test_small_and_large_cards_state_their_shapes_and_claim_no_results(preset, hidden, layers, heads):
    card = ModelCard(render_model_card(preset, converted_from=None).content)
    assert card.data.eval_results is None and "model-index" not in card.content
    assert f"({hidden} wide, {layers} layers,\n{heads} heads" in card.text
    assert "not converted from the authors' release" in card.text
    assert "## Evaluation results" not in card.text


def test_parameter_count_on_the_card_matches_the_model():
    for config in (
        make_config(),
        BrainJepaConfig.from_preset("tiny", qkv_bias=False, mlp_ratio=2.0),
        BrainJepaConfig.from_preset("tiny", position_embedding_type="sincos"),
    ):
        assert count_encoder_parameters(config) == BrainJepaModel(config).num_parameters()
    # ViT-B: 12 blocks x 7,087,872 + patch 13,056 + gradient Linear 11,904 + final LayerNorm 1,536 = 85,080,960
    assert "about 85.1 M parameters" in render_model_card("vit-base").content


def test_invalid_cards_are_rejected_with_the_reason():
    good = render_model_card("vit-base").content
    with pytest.raises(ValueError, match=r"library_name: expected 'transformers', got None"):
        validate_model_card(good.replace("library_name: transformers\n", ""))
    with pytest.raises(ValueError, match=r"sections: expected .* missing \['## Licence'\]"):
        validate_model_card(good.replace("## Licence", "## Terms"))
    with pytest.raises(ValueError, match=r"template: unrendered placeholders \['{{ repo_id }}'\]"):
        validate_model_card(good + "\n{{ repo_id }}\n")
    with pytest.raises(ValueError, match=r"model card: expected YAML metadata"):
        validate_model_card("# no metadata")
    with pytest.raises(ValueError, match=r"preset: expected one of .* got 'vit-huge'"):
        render_model_card("vit-huge")


def test_quick_start_runs_against_a_prepared_folder(tmp_path):
    config = make_config()
    model = BrainJepaModel(config)
    model.set_gradient(__import__("torch").randn(config.num_rois, config.gradient_dim))
    fe = BrainJepaFeatureExtractor(num_rois=config.num_rois, num_frames=config.num_frames, scaling="zscore")
    folder = prepare_hub_folder(model, tmp_path / "card-model", feature_extractor=fe, converted_from=None)
    code = quick_start_code((folder / "README.md").read_text())
    assert f'repo = "{folder.resolve()}"' in code
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "torch.Size([1, 64])" in result.stdout
