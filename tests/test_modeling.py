"""BrainJepaModel and BrainJepaForSequenceClassification: tokens, positions, attention paths,
batching, gradient checkpointing, initialisation and input validation."""

import copy
import math

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from brain_jepa_hf import (
    BrainJepaConfig,
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)

from helpers import make_config, make_inputs


ATOL = 1e-5


def model_with(config, attn="sdpa", seed=0):
    torch.manual_seed(seed)
    model = BrainJepaModel(copy.deepcopy(config)).eval()
    model.set_attn_implementation(attn)
    return model


def reference_sincos(positions, width):
    """Independent numpy sine-cosine table: sin(p * w_k) for k < width/2, then cos, w_k = 1e4^(-k/(width/2))."""
    quarter = width // 2
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
    angles = np.asarray(positions, dtype=np.float64)[:, None] * omega[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


# ------------------------------------------------------------------ tokens and positions


def test_tokens_are_roi_major_patches_of_consecutive_frames(tiny_config):
    model = model_with(tiny_config)
    fmri, _ = make_inputs(tiny_config, batch=2)
    tokens = model.embeddings.patch_embeddings(fmri)
    conv = model.embeddings.patch_embeddings.projection
    p, tp = tiny_config.patch_size, tiny_config.num_time_patches
    assert tokens.shape == (2, tiny_config.num_rois * tp, tiny_config.hidden_size)
    weight = conv.weight.detach().reshape(tiny_config.hidden_size, p)
    for b, r, t in [(0, 0, 0), (1, 5, 3), (0, tiny_config.num_rois - 1, tp - 1)]:
        expected = weight @ fmri[b, 0, r, t * p : (t + 1) * p] + conv.bias.detach()
        torch.testing.assert_close(tokens[b, r * tp + t], expected, atol=ATOL, rtol=0)


def test_time_half_is_sincos_of_time_patch_and_space_half_is_rescaled_gradient_projection(tiny_config):
    model = model_with(tiny_config)
    _, gradient = make_inputs(tiny_config)
    r, tp, d = tiny_config.num_rois, tiny_config.num_time_patches, tiny_config.hidden_size
    table = model.embeddings.position_embeddings(gradient[None], r, tp)[0].detach().numpy()
    assert table.shape == (r * tp, d)

    time_ref = reference_sincos(np.arange(tp), d // 2)
    proj = model.embeddings.position_embeddings.gradient_proj
    space = (
        gradient.numpy().astype(np.float64) @ proj.weight.detach().numpy().T.astype(np.float64)
        + proj.bias.detach().numpy()
    )
    space_ref = 2 * (space - space.min()) / (space.max() - space.min()) - 1
    for roi in range(r):
        for t in range(tp):
            row = table[roi * tp + t]
            np.testing.assert_allclose(row[: d // 2], time_ref[t], atol=ATOL)
            np.testing.assert_allclose(row[d // 2 :], space_ref[roi], atol=ATOL)
    assert table[:, d // 2 :].min() == pytest.approx(-1.0) and table[:, d // 2 :].max() == pytest.approx(1.0)


def test_positions_are_added_before_context_tokens_are_dropped(tiny_config):
    """Keeping every token in a shuffled order must give the shuffled full output: each kept token
    carries the position of its original index, not of its new slot."""
    model = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config, batch=2)
    n = tiny_config.num_patches
    order = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(s)) for s in range(2)])
    full = model(fmri, gradient=gradient).last_hidden_state
    shuffled = model(fmri, gradient=gradient, context_indices=order).last_hidden_state
    torch.testing.assert_close(shuffled, torch.gather(full, 1, order[..., None].expand_as(full)), atol=ATOL, rtol=0)


def test_per_sample_gradients_are_rescaled_per_sample(tiny_config):
    model = model_with(tiny_config)
    fmri, _ = make_inputs(tiny_config, batch=3)
    gradients = torch.randn(
        3, tiny_config.num_rois, tiny_config.gradient_dim, generator=torch.Generator().manual_seed(7)
    )
    batched = model(fmri, gradient=gradients).last_hidden_state
    for i in range(3):
        single = model(fmri[i : i + 1], gradient=gradients[i]).last_hidden_state
        torch.testing.assert_close(batched[i : i + 1], single, atol=ATOL, rtol=0)
    shared = model(fmri, gradient=gradients[0]).last_hidden_state
    assert not torch.allclose(shared[1], batched[1], atol=1e-3)


def test_stored_gradient_is_the_default_and_is_saved_with_the_weights(tmp_path, tiny_config):
    model = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    model.set_gradient(gradient)
    explicit = model(fmri, gradient=gradient).last_hidden_state
    torch.testing.assert_close(model(fmri).last_hidden_state, explicit, atol=0, rtol=0)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.embeddings.gradient, gradient)
    torch.testing.assert_close(loaded(fmri).last_hidden_state, explicit, atol=0, rtol=0)


def test_another_roi_set_runs_with_its_own_gradient(tiny_config):
    model = model_with(tiny_config)
    fmri = torch.randn(2, 1, 11, 3 * tiny_config.patch_size)
    out = model(fmri, gradient=torch.randn(11, tiny_config.gradient_dim))
    assert out.last_hidden_state.shape == (2, 11 * 3, tiny_config.hidden_size)


def test_sincos_ablation_mode_uses_roi_index_positions(tiny_config):
    config = make_config(position_embedding_type="sincos")
    model = model_with(config)
    assert not any("gradient_proj" in k for k in model.state_dict())
    r, tp, d = config.num_rois, config.num_time_patches, config.hidden_size
    table = model.embeddings.position_embeddings(None, r, tp)[0].numpy()
    space_ref = reference_sincos(np.arange(r), d // 2)
    np.testing.assert_allclose(
        table.reshape(r, tp, d)[:, :, d // 2 :], np.repeat(space_ref[:, None], tp, 1), atol=ATOL
    )
    fmri, _ = make_inputs(config)
    assert model(fmri).last_hidden_state.shape == (3, r * tp, d)  # no gradient needed


# ------------------------------------------------------------------ attention paths and batching


@pytest.mark.parametrize("num_rois, num_frames, patch_size", [(23, 40, 8), (9, 64, 16)])
def test_eager_and_sdpa_agree_with_and_without_context(num_rois, num_frames, patch_size):
    config = make_config(num_rois=num_rois, num_frames=num_frames, patch_size=patch_size)
    eager, sdpa = model_with(config, "eager"), model_with(config, "sdpa")
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    fmri, gradient = make_inputs(config)
    context = torch.stack([torch.randperm(config.num_patches)[: config.num_patches // 2] for _ in range(3)])
    for kwargs in ({}, {"context_indices": context}):
        a = eager(fmri, gradient=gradient, **kwargs).last_hidden_state
        b = sdpa(fmri, gradient=gradient, **kwargs).last_hidden_state
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_heads_are_not_scrambled_against_a_plain_attention(tiny_config):
    """The known fork defect: reshaping SDPA's (B, heads, N, d) output without the transpose."""
    model = model_with(tiny_config, "sdpa")
    layer = model.layers[0].attention
    x = torch.randn(2, 17, tiny_config.hidden_size)
    heads, d = layer.num_heads, layer.head_dim
    q, k, v = layer.qkv(x).view(2, 17, 3, heads, d).permute(2, 0, 3, 1, 4)
    plain = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v  # (B, heads, N, d)
    expected = layer.proj(plain.transpose(1, 2).reshape(2, 17, heads * d))
    torch.testing.assert_close(layer(x)[0], expected, atol=ATOL, rtol=0)


def test_batch_equals_per_sample(tiny_config):
    model = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config, batch=4)
    batched = model(fmri, gradient=gradient)
    for i in range(4):
        single = model(fmri[i : i + 1], gradient=gradient)
        torch.testing.assert_close(batched.last_hidden_state[i], single.last_hidden_state[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(batched.pooler_output[i], single.pooler_output[0], atol=ATOL, rtol=0)


def test_pooler_output_is_mean_of_normed_tokens(tiny_config):
    model = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    out = model(fmri, gradient=gradient)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state.mean(1))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    config = make_config(num_labels=1, problem_type="regression")
    fmri, gradient = make_inputs(config)
    labels = torch.randn(3)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = BrainJepaForSequenceClassification(config).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.brain_jepa.layers)
        model(fmri, gradient=gradient, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_hidden_states_and_attentions_follow_transformers_conventions(tiny_config):
    model = model_with(tiny_config, "eager")
    fmri, gradient = make_inputs(tiny_config)
    out = model(fmri, gradient=gradient, output_hidden_states=True, output_attentions=True)
    n, layers = tiny_config.num_patches, tiny_config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1 and len(out.attentions) == layers
    assert out.attentions[0].shape == (3, tiny_config.num_attention_heads, n, n)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(3, tiny_config.num_attention_heads, n))
    torch.testing.assert_close(model.layernorm(out.hidden_states[-1]), out.last_hidden_state)
    as_tuple = model(fmri, gradient=gradient, return_dict=False)
    torch.testing.assert_close(as_tuple[0], out.last_hidden_state)


def test_sdpa_returns_no_attention_weights_and_warns_as_transformers_does(tiny_config, caplog):
    fmri, gradient = make_inputs(tiny_config)
    eager = model_with(tiny_config, "eager")(fmri, gradient=gradient, output_hidden_states=True)
    with caplog.at_level("WARNING"):
        out = model_with(tiny_config, "sdpa")(
            fmri, gradient=gradient, output_attentions=True, output_hidden_states=True
        )
    assert out.attentions == ()
    assert "attn_implementation='eager'" in caplog.text
    torch.testing.assert_close(out.last_hidden_state, eager.last_hidden_state, atol=1e-5, rtol=1e-4)
    assert len(out.hidden_states) == tiny_config.num_hidden_layers + 1


def test_models_build_on_the_meta_device():
    config = make_config(drop_path_rate=0.2)
    with torch.device("meta"):
        model = BrainJepaForPreTraining(config)
    rates = [layer.drop_path.drop_prob for layer in model.context_encoder.layers]
    assert rates == torch.linspace(0, 0.2, config.num_hidden_layers).tolist()


@pytest.mark.parametrize("model_class", [BrainJepaModel, BrainJepaForSequenceClassification])
def test_unknown_keyword_arguments_are_refused(tiny_config, model_class):
    fmri, gradient = make_inputs(tiny_config)
    with pytest.raises(TypeError, match="context_indice"):
        model_class(tiny_config)(fmri, gradient=gradient, context_indice=None)


def test_classification_pools_over_the_given_context_tokens():
    torch.manual_seed(0)
    classifier = BrainJepaForSequenceClassification(make_config(num_labels=2)).eval()
    fmri, gradient = make_inputs(classifier.config)
    keep = torch.arange(0, classifier.config.num_patches, 2).expand(fmri.shape[0], -1)
    subset = classifier(fmri, gradient=gradient, context_indices=keep).logits
    encoded = classifier.brain_jepa(fmri, gradient=gradient, context_indices=keep).pooler_output
    torch.testing.assert_close(subset, classifier.classifier(classifier.fc_norm(encoded)))
    assert not torch.allclose(subset, classifier(fmri, gradient=gradient).logits)


def test_drop_path_is_stochastic_in_training_only():
    config = make_config(drop_path_rate=0.5)
    model = model_with(config)
    assert [layer.drop_path.drop_prob for layer in model.layers] == pytest.approx([0.0, 0.5])
    fmri, gradient = make_inputs(config, batch=8)
    torch.testing.assert_close(
        model(fmri, gradient=gradient).last_hidden_state, model(fmri, gradient=gradient).last_hidden_state
    )
    model.train()
    a, b = model(fmri, gradient=gradient).last_hidden_state, model(fmri, gradient=gradient).last_hidden_state
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------ initialisation


def test_init_is_the_effective_init_of_the_original():
    config = BrainJepaConfig.from_preset("tiny", hidden_size=256, num_attention_heads=4, num_hidden_layers=4)
    torch.manual_seed(0)
    model = BrainJepaModel(config)
    for name, param in model.named_parameters():
        if "norm" in name:
            expected = 1.0 if name.endswith("weight") else 0.0
            assert torch.all(param == expected), name
        elif name.endswith("bias"):
            assert torch.all(param == 0), name
        else:
            assert param.std().item() == pytest.approx(0.02 * 0.88, rel=0.15), (
                name
            )  # truncated at +-2 (std 0.88 sigma)
            assert param.abs().max() <= 2.0 + 1e-6, name
    # No depth rescaling: the last block's output projections have the same std as the first's.
    first, last = model.layers[0].mlp.fc2.weight.std(), model.layers[-1].mlp.fc2.weight.std()
    assert last.item() == pytest.approx(first.item(), rel=0.1)
    assert torch.all(model.embeddings.gradient == 0)


def test_classification_head_from_an_encoder_checkpoint(tmp_path, tiny_config):
    encoder = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    encoder.set_gradient(gradient)
    encoder.save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3).eval()
    assert isinstance(model, BrainJepaForSequenceClassification)
    torch.testing.assert_close(model.brain_jepa(fmri).last_hidden_state, encoder(fmri).last_hidden_state)
    assert model.classifier.weight.std().item() == pytest.approx(2e-5 * 0.88, rel=0.3)
    assert torch.all(model.classifier.bias == 0) and torch.all(model.fc_norm.weight == 1)
    expected = model.classifier(model.fc_norm(encoder(fmri).last_hidden_state.mean(1)))
    torch.testing.assert_close(model(fmri).logits, expected)


# ------------------------------------------------------------------ classification losses


@pytest.mark.parametrize(
    "problem_type, num_labels, labels, loss_fn",
    [
        (
            "regression",
            1,
            torch.tensor([0.5, -1.0, 2.0]),
            lambda lo, la: torch.nn.functional.mse_loss(lo.squeeze(-1), la),
        ),
        ("single_label_classification", 3, torch.tensor([0, 2, 1]), torch.nn.functional.cross_entropy),
        (
            "multi_label_classification",
            2,
            torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]),
            torch.nn.functional.binary_cross_entropy_with_logits,
        ),
    ],
)
def test_each_problem_type_uses_its_loss(problem_type, num_labels, labels, loss_fn):
    config = make_config(num_labels=num_labels, problem_type=problem_type)
    torch.manual_seed(0)
    model = BrainJepaForSequenceClassification(config).eval()
    fmri, gradient = make_inputs(config)
    out = model(fmri, gradient=gradient, labels=labels)
    assert out.logits.shape == (3, num_labels)
    torch.testing.assert_close(out.loss, loss_fn(out.logits, labels))
    out.loss.backward()
    assert model.classifier.weight.grad is not None


def test_label_errors_name_the_problem():
    model = BrainJepaForSequenceClassification(make_config(num_labels=3)).eval()
    fmri, gradient = make_inputs(model.config)
    with pytest.raises(ValueError, match=r"labels: expected class ids in \[0, 2\], got values in \[0, 5\]"):
        model(fmri, gradient=gradient, labels=torch.tensor([0, 5, 1]))
    with pytest.raises(
        ValueError, match=r"labels: expected integer class ids .* got dtype torch.float32 with fractional"
    ):
        model.config.problem_type = "single_label_classification"
        model(fmri, gradient=gradient, labels=torch.tensor([0.5, 1.0, 1.0]))
    regression = BrainJepaForSequenceClassification(make_config(num_labels=1)).eval()
    with pytest.raises(ValueError, match=r"labels: expected 3 regression targets .* got shape \(2,\)"):
        regression(fmri, gradient=gradient, labels=torch.tensor([1.0, 2.0]))


def test_the_probe_scores_labels_with_the_heads_loss_and_checks(tiny_config):
    """One loss for the head and the linear probe: same value on the same logits, same label checks."""
    from brain_jepa_hf.probing import BrainJepaLinearProbe

    fmri, gradient = make_inputs(tiny_config)
    probe = BrainJepaLinearProbe(BrainJepaModel(tiny_config), num_labels=3, problem_type="single_label_classification")
    labels = torch.tensor([0, 2, 1])
    out = probe.eval()(fmri, gradient=gradient, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    with pytest.raises(ValueError, match=r"labels: expected class ids in \[0, 2\], got values in \[0, 5\]"):
        probe(fmri, gradient=gradient, labels=torch.tensor([0, 5, 1]))


def test_base_model_is_the_encoder_of_every_model_and_of_the_probe(tiny_config):
    from brain_jepa_hf.probing import BrainJepaLinearProbe

    encoder = BrainJepaModel(tiny_config)
    classifier = BrainJepaForSequenceClassification(make_config(num_labels=2))
    pretraining = BrainJepaForPreTraining(tiny_config)
    probe = BrainJepaLinearProbe(encoder, num_labels=2, problem_type="single_label_classification")
    assert encoder.base_model is encoder and classifier.base_model is classifier.brain_jepa
    assert pretraining.base_model is pretraining.target_encoder and probe.base_model is encoder


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (
            lambda c: torch.randn(c.num_rois, c.num_frames),
            r"fmri_values: expected shape \(batch, 1, rois, frames\), got rank 2 shape \(23, 40\)",
        ),
        (lambda c: torch.randn(2, c.num_rois, c.num_frames), r"fmri_values: expected shape .* got rank 3"),
        (
            lambda c: torch.randn(2, 3, c.num_rois, c.num_frames),
            r"fmri_values: expected 1 channel\(s\) in dim 1, got shape \(2, 3, 23, 40\)",
        ),
        (
            lambda c: torch.randn(2, 1, c.num_rois, 42),
            r"fmri_values: expected a number of frames that is a positive multiple of patch_size=8, got 42",
        ),
        (
            lambda c: torch.ones(2, 1, c.num_rois, 40, dtype=torch.long),
            r"fmri_values: expected a floating-point tensor, got dtype torch.int64",
        ),
        (
            lambda c: torch.randn(2, 1, c.num_rois, 40).index_fill_(3, torch.tensor([4]), float("nan")),
            r"fmri_values: expected finite values, got 46 NaN/Inf",
        ),
        (lambda c: torch.full((1, 1, c.num_rois, 40), float("inf")), r"fmri_values: expected finite values"),
        (lambda c: np.zeros((1, 1, c.num_rois, 40)), r"fmri_values: expected a torch.Tensor, got ndarray"),
    ],
)
def test_bad_fmri_values(tiny_config, make_bad, message):
    model = model_with(tiny_config)
    _, gradient = make_inputs(tiny_config)
    with pytest.raises(ValueError, match=message):
        model(make_bad(tiny_config), gradient=gradient)


@pytest.mark.parametrize(
    "gradient, message",
    [
        (torch.randn(22, 6), r"gradient: expected 23 rows \(one per ROI of fmri_values\), got 22"),
        (torch.randn(23, 5), r"gradient: expected 6 columns \(config.gradient_dim\), got 5"),
        (torch.randn(2, 23, 6), r"gradient: expected shape \(23, 6\) or \(3, 23, 6\), got \(2, 23, 6\)"),
        (torch.randn(23), r"gradient: expected shape \(23, 6\) or \(3, 23, 6\), got \(23,\)"),
        (torch.full((23, 6), float("nan")), r"gradient: expected finite values, got 138 NaN/Inf"),
    ],
)
def test_bad_gradient(tiny_config, gradient, message):
    model = model_with(tiny_config)
    fmri, _ = make_inputs(tiny_config)
    with pytest.raises(ValueError, match=message):
        model(fmri, gradient=gradient)


def test_missing_gradient_is_explained(tiny_config):
    model = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    with pytest.raises(ValueError, match=r"gradient: the model holds no atlas gradient .* model.set_gradient"):
        model(fmri)
    model.set_gradient(gradient)
    with pytest.raises(
        ValueError, match=r"gradient: fmri_values has 11 ROIs but the model's stored gradient has 23 rows"
    ):
        model(torch.randn(1, 1, 11, 40))
    with pytest.raises(
        ValueError, match=r"gradient: expected shape \(23, 6\) \(config.num_rois, config.gradient_dim\), got \(23, 7\)"
    ):
        model.set_gradient(torch.randn(23, 7))


@pytest.mark.parametrize(
    "indices, message",
    [
        (
            torch.tensor([[0, 5, 184]] * 3),
            r"context_indices: expected indices in \[0, 114\], got values in \[0, 184\]",
        ),
        (torch.tensor([[-1, 5]] * 3), r"context_indices: expected indices in \[0, 114\], got values in \[-1, 5\]"),
        (torch.tensor([[0, 5]] * 2), r"context_indices: expected shape \(3, num_kept\), got \(2, 2\)"),
        (torch.tensor([[0.0, 5.0]] * 3), r"context_indices: expected an integer tensor, got dtype torch.float32"),
    ],
)
def test_bad_context_indices(tiny_config, indices, message):
    model = model_with(tiny_config)
    fmri, gradient = make_inputs(tiny_config)
    with pytest.raises(ValueError, match=message):
        model(fmri, gradient=gradient, context_indices=indices)


def test_trainer_divides_the_loss_over_gradient_accumulation_steps(tmp_path, tiny_config):
    """A forward taking **kwargs tells Trainer it normalises by `num_items_in_batch` itself; ours take
    none, so Trainer averages the loss over accumulation steps."""
    from transformers import Trainer, TrainingArguments

    from brain_jepa_hf.probing import BrainJepaLinearProbe

    args = TrainingArguments(output_dir=str(tmp_path), gradient_accumulation_steps=2, report_to=[], use_cpu=True)
    classifier = BrainJepaForSequenceClassification(make_config(num_labels=2))
    probe = BrainJepaLinearProbe(BrainJepaModel(tiny_config), num_labels=2, problem_type="single_label_classification")
    for model in (classifier, probe):
        assert Trainer(model=model, args=args).model_accepts_loss_kwargs is False
