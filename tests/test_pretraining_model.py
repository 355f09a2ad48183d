"""BrainJepaForPreTraining: predictor, JEPA loss, EMA target encoder, and index validation."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoModelForPreTraining

from brain_jepa_hf import BrainJepaForPreTraining, BrainJepaModel

from helpers import disjoint_indices, make_config, make_inputs


def pretraining_model(config, seed=0, attn="sdpa"):
    torch.manual_seed(seed)
    model = BrainJepaForPreTraining(copy.deepcopy(config))
    model.set_attn_implementation(attn)
    return model


def test_target_encoder_starts_as_a_copy_and_has_no_trainable_parameters(tiny_config):
    model = pretraining_model(tiny_config)
    for (name, target), (_, context) in zip(
        model.brain_jepa.named_parameters(), model.context_encoder.named_parameters()
    ):
        assert torch.equal(target, context), name
        assert not target.requires_grad
    assert model.target_encoder is model.brain_jepa
    model.train()
    assert not any(p.requires_grad for p in model.brain_jepa.parameters())
    assert all(p.requires_grad for p in model.context_encoder.parameters())


def test_loss_is_smooth_l1_against_layernormed_target_features(tiny_config):
    model = pretraining_model(tiny_config).eval()
    fmri, gradient = make_inputs(tiny_config)
    context, targets = disjoint_indices(3, tiny_config.num_patches, 40, 25)
    out = model(fmri, context, targets, gradient=gradient)
    assert out.predictions.shape == out.targets.shape == (3, 25, tiny_config.hidden_size)
    full = model.brain_jepa(fmri, gradient=gradient).last_hidden_state
    expected_targets = torch.gather(
        F.layer_norm(full, (full.shape[-1],)), 1, targets[..., None].expand(-1, -1, full.shape[-1])
    )
    torch.testing.assert_close(out.targets, expected_targets)
    torch.testing.assert_close(out.loss, F.smooth_l1_loss(out.predictions, expected_targets, beta=1.0))
    torch.testing.assert_close(out.target_pooled_output, full.mean(1))
    # The predictor's output depends on the context tokens it is given.
    context_states = model.context_encoder(fmri, gradient=gradient, context_indices=context).last_hidden_state
    torch.testing.assert_close(out.context_hidden_states, context_states)
    again = model.predictor(
        context_states, context, targets, gradient[None], tiny_config.num_rois, tiny_config.num_time_patches
    )
    torch.testing.assert_close(again, out.predictions)
    shuffled = model.predictor(
        context_states.flip(1), context, targets, gradient[None], tiny_config.num_rois, tiny_config.num_time_patches
    )
    assert not torch.allclose(shuffled, out.predictions)


def test_hidden_states_and_attentions_are_the_context_encoders(tiny_config):
    model = pretraining_model(tiny_config, attn="eager").eval()
    fmri, gradient = make_inputs(tiny_config)
    context, targets = disjoint_indices(3, tiny_config.num_patches, 40, 25)
    out = model(fmri, context, targets, gradient=gradient, output_hidden_states=True, output_attentions=True)
    encoder = model.context_encoder(
        fmri, gradient=gradient, context_indices=context, output_hidden_states=True, output_attentions=True
    )
    assert len(out.hidden_states) == tiny_config.num_hidden_layers + 1
    for ours, expected in zip(out.hidden_states + out.attentions, encoder.hidden_states + encoder.attentions):
        torch.testing.assert_close(ours, expected)
    plain = model(fmri, context, targets, gradient=gradient, return_dict=False)
    assert len(plain) == 5 and model(fmri, context, targets, gradient=gradient).hidden_states is None
    with pytest.raises(TypeError, match="output_hidden_state"):
        model(fmri, context, targets, gradient=gradient, output_hidden_state=True)


def test_backward_reaches_context_encoder_and_predictor_only(tiny_config):
    model = pretraining_model(tiny_config).train()
    fmri, gradient = make_inputs(tiny_config)
    context, targets = disjoint_indices(3, tiny_config.num_patches, 40, 25)
    targets_before = {n: p.clone() for n, p in model.brain_jepa.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(fmri, context, targets, gradient=gradient).loss.backward()
    assert all(p.grad is None for p in model.brain_jepa.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert model.predictor.mask_token.grad.abs().sum() > 0
    assert model.context_encoder.embeddings.position_embeddings.gradient_proj.weight.grad.abs().sum() > 0
    optimizer.step()
    for name, param in model.brain_jepa.named_parameters():
        assert torch.equal(param, targets_before[name]), f"{name} moved without update_target_encoder"

    context_now = {n: p.clone() for n, p in model.context_encoder.named_parameters()}
    model.update_target_encoder(0.9)
    for name, param in model.brain_jepa.named_parameters():
        torch.testing.assert_close(param, 0.9 * targets_before[name] + 0.1 * context_now[name])
    model.update_target_encoder(1.0)
    model.update_target_encoder(0.0)
    for name, param in model.brain_jepa.named_parameters():
        assert torch.equal(param, context_now[name])
    with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\], got 1.5"):
        model.update_target_encoder(1.5)


def test_eager_and_sdpa_agree_through_the_predictor(tiny_config):
    fmri, gradient = make_inputs(tiny_config)
    context, targets = disjoint_indices(3, tiny_config.num_patches, 30, 20)
    eager = pretraining_model(tiny_config, attn="eager").eval()
    sdpa = pretraining_model(tiny_config, attn="sdpa").eval()
    a, b = eager(fmri, context, targets, gradient=gradient), sdpa(fmri, context, targets, gradient=gradient)
    torch.testing.assert_close(a.predictions, b.predictions, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)


def test_saved_pretraining_folder_loads_target_encoder_as_the_base_model(tmp_path, tiny_config):
    model = pretraining_model(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    model.set_gradient(gradient)
    with torch.no_grad():
        for p in model.context_encoder.parameters():
            p.add_(0.01)  # make the two encoders differ
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert isinstance(reloaded, BrainJepaForPreTraining)
    assert not any(p.requires_grad for p in reloaded.brain_jepa.parameters())
    for (n, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), n
    encoder = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(encoder, BrainJepaModel)
    torch.testing.assert_close(
        encoder(fmri).last_hidden_state, model.brain_jepa.eval()(fmri).last_hidden_state, atol=0, rtol=0
    )


def test_sincos_mode_pretrains_without_a_gradient():
    config = make_config(position_embedding_type="sincos")
    model = pretraining_model(config)
    fmri, _ = make_inputs(config)
    context, targets = disjoint_indices(3, config.num_patches, 40, 20)
    model(fmri, context, targets).loss.backward()


def test_index_errors_name_the_argument(tiny_config):
    model = pretraining_model(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    context, targets = disjoint_indices(3, tiny_config.num_patches, 40, 20)
    overlapping = torch.cat([targets[:, :-1], context[:, :1]], dim=1)
    with pytest.raises(
        ValueError,
        match=r"target_indices: expected no index shared with context_indices, got 3 shared \(first in sample 0\)",
    ):
        model(fmri, context, overlapping, gradient=gradient)
    with pytest.raises(ValueError, match=r"target_indices: expected indices in \[0, 114\], got values in \[.*, 115\]"):
        model(fmri, context, targets.clamp(max=100).index_fill(1, torch.tensor([0]), 115), gradient=gradient)
    with pytest.raises(ValueError, match=r"context_indices: expected shape \(3, num_kept\), got \(40,\)"):
        model(fmri, context[0], targets, gradient=gradient)
    with pytest.raises(
        ValueError, match=r"target_indices: expected at least one index per sample, got shape \(3, 0\)"
    ):
        model(fmri, context, targets[:, :0], gradient=gradient)
