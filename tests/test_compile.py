"""`torch.compile` traces every model into one graph (no graph breaks from our input checks) and
computes what eager mode computes, forward and backward; eager mode keeps the value checks.

Uses the "eager" / "aot_eager" compiler backends: they run dynamo's tracing (and AOT autograd)
without generating kernels, so the test takes seconds on CPU; a graph break fails `fullgraph=True`.
"""

import pytest
import torch

from brain_jepa_hf import (
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)

from helpers import disjoint_indices, make_config, make_inputs


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_encoder_compiles_to_one_graph_with_and_without_context():
    config = make_config()
    fmri, gradient = make_inputs(config, batch=2)
    model = BrainJepaModel(config).eval()
    model.set_gradient(gradient)
    context, _ = disjoint_indices(2, config.num_patches, 30, 10)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    for kwargs in ({}, {"context_indices": context}, {"gradient": gradient, "output_hidden_states": True}):
        expected = model(fmri, **kwargs)
        got = compiled(fmri, **kwargs)
        torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, rtol=0, atol=1e-6)
        torch.testing.assert_close(got.pooler_output, expected.pooler_output, rtol=0, atol=1e-6)


def test_pretraining_step_compiles_to_one_graph_forward_and_backward():
    config = make_config()
    fmri, gradient = make_inputs(config, batch=2)
    context, targets = disjoint_indices(2, config.num_patches, 40, 20)
    torch.manual_seed(0)
    eager = BrainJepaForPreTraining(config)
    eager.set_gradient(gradient)
    compiled_model = BrainJepaForPreTraining(config)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, backend="aot_eager", fullgraph=True)

    eager(fmri, context, targets).loss.backward()
    compiled(fmri, context, targets).loss.backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled_model.named_parameters()):
        if a.grad is None:
            assert b.grad is None, name
            continue
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_classifier_compiles_to_one_graph():
    config = make_config(num_labels=3)
    fmri, gradient = make_inputs(config, batch=4)
    model = BrainJepaForSequenceClassification(config).eval()
    model.set_gradient(gradient)
    labels = torch.tensor([0, 2, 1, 2])
    expected = model(fmri, labels=labels)
    got = torch.compile(model, backend="eager", fullgraph=True)(fmri, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.loss, expected.loss, rtol=0, atol=1e-6)


def test_eager_mode_still_checks_values():
    config = make_config()
    fmri, gradient = make_inputs(config, batch=2)
    model = BrainJepaForPreTraining(config)
    with pytest.raises(ValueError, match=r"gradient: the model holds no atlas gradient"):
        model.brain_jepa(fmri)
    model.set_gradient(gradient)
    fmri[1, 0, 3, 5] = float("nan")
    context, targets = disjoint_indices(2, config.num_patches, 40, 20)
    with pytest.raises(ValueError, match=r"fmri_values: expected finite values, got 1 NaN/Inf entries"):
        model(fmri, context, targets)
    fmri[1, 0, 3, 5] = 0.0
    with pytest.raises(ValueError, match=r"target_indices: expected no index shared with context_indices"):
        model(fmri, context, torch.cat([targets[:, :-1], context[:, :1]], dim=1))
    with pytest.raises(ValueError, match=rf"context_indices: expected indices in \[0, {config.num_patches - 1}\]"):
        model(fmri, context + config.num_patches, targets)
