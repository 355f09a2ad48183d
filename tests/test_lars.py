"""LARS: each step equals the written-out formula (trust ratio on matrices, plain momentum SGD on
biases, the group's current lr), zero norms take ratio 1, bad arguments are refused, it fits a
separable problem, and the linear probe is trained with it through the real Trainer (AdamW on request)."""

import copy
import re

import pytest
import torch

from brain_jepa_hf import BrainJepaForSequenceClassification, BrainJepaModel
from brain_jepa_hf.downstream_arguments import FinetuningArguments, parse_arguments
from brain_jepa_hf.finetuning import BrainJepaTrainer, FmriCollator
from brain_jepa_hf.lars import Lars
from brain_jepa_hf.probing import BrainJepaLinearProbe

from helpers import make_config


def lars_direction(weight, grad, weight_decay, trust_coefficient):
    """g' = g + wd * w, scaled by eta * ||w|| / ||g'|| (both norms are positive in these tests)."""
    update = grad + weight_decay * weight
    return trust_coefficient * weight.norm() / update.norm() * update


# ------------------------------------------------------------------------------ the update rule


def test_one_and_two_steps_equal_the_lars_formula():
    generator = torch.Generator().manual_seed(0)
    weight0 = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    bias0 = torch.randn(3, generator=generator, dtype=torch.float64)
    grads = [
        (
            torch.randn(3, 4, generator=generator, dtype=torch.float64),
            torch.randn(3, generator=generator, dtype=torch.float64),
        )
        for _ in range(2)
    ]
    lrs, momentum, weight_decay, eta = (0.5, 0.2), 0.9, 0.1, 0.02
    weight, bias = weight0.clone().requires_grad_(), bias0.clone().requires_grad_()
    untouched = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)  # no gradient: no update
    optimizer = Lars(
        [weight, bias, untouched], lr=lrs[0], momentum=momentum, weight_decay=weight_decay, trust_coefficient=eta
    )

    # step 1: buffer = g' (weight) or g (bias, no decay, no trust ratio)
    weight.grad, bias.grad = grads[0][0].clone(), grads[0][1].clone()
    optimizer.step()
    buffer_w = lars_direction(weight0, grads[0][0], weight_decay, eta)
    weight1, bias1 = weight0 - lrs[0] * buffer_w, bias0 - lrs[0] * grads[0][1]
    torch.testing.assert_close(weight.detach(), weight1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias.detach(), bias1, rtol=1e-12, atol=1e-12)

    # step 2 with the group's lr changed, as a scheduler does
    optimizer.param_groups[0]["lr"] = lrs[1]
    weight.grad, bias.grad = grads[1][0].clone(), grads[1][1].clone()
    optimizer.step()
    buffer_w = momentum * buffer_w + lars_direction(weight1, grads[1][0], weight_decay, eta)
    buffer_b = momentum * grads[0][1] + grads[1][1]
    torch.testing.assert_close(weight.detach(), weight1 - lrs[1] * buffer_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias.detach(), bias1 - lrs[1] * buffer_b, rtol=1e-12, atol=1e-12)
    assert torch.equal(untouched.detach(), torch.ones(2, 2, dtype=torch.float64))


def test_zero_weight_or_zero_gradient_takes_trust_ratio_one():
    grad = torch.tensor([[3.0, -4.0], [0.0, 12.0]])
    weight = torch.zeros(2, 2, requires_grad=True)
    optimizer = Lars([weight], lr=0.1, weight_decay=0.5)
    weight.grad = grad.clone()
    optimizer.step()  # ||w|| = 0: the full gradient step, not eta * 0 / ||g|| = 0
    torch.testing.assert_close(weight.detach(), -0.1 * grad)

    weight = torch.full((2, 2), 2.0, requires_grad=True)
    optimizer = Lars([weight], lr=0.1, momentum=0.5, trust_coefficient=0.01)
    weight.grad = grad.clone()
    optimizer.step()
    after_first = weight.detach().clone()
    first_update = 0.01 * 4.0 / 13.0 * grad  # eta * ||w|| / ||g|| * g with ||w|| = 4, ||g|| = 13
    torch.testing.assert_close(after_first, torch.full((2, 2), 2.0) - 0.1 * first_update)
    weight.grad = torch.zeros(2, 2)
    optimizer.step()  # ||g'|| = 0: ratio 1 (no 0/0), only the momentum moves the weight
    assert torch.isfinite(weight).all()
    torch.testing.assert_close(weight.detach(), after_first - 0.1 * 0.5 * first_update)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -0.1}, "lr: expected a learning rate >= 0, got -0.1"),
        ({"lr": float("nan")}, "lr: expected a learning rate >= 0, got nan"),
        ({"momentum": 1.0}, "momentum: expected a value in [0, 1), got 1.0"),
        ({"momentum": -0.1}, "momentum: expected a value in [0, 1), got -0.1"),
        ({"weight_decay": -1e-4}, "weight_decay: expected a value >= 0, got -0.0001"),
        ({"trust_coefficient": 0.0}, "trust_coefficient: expected a value > 0, got 0.0"),
        ({"trust_coefficient": "0.001"}, "trust_coefficient: expected a value > 0, got '0.001'"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, message):
    arguments = {"lr": 0.1} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        Lars([torch.zeros(2, 2, requires_grad=True)], **arguments)


def test_lars_fits_a_linearly_separable_problem():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 10, generator=generator)
    direction = torch.randn(10, generator=generator)
    labels = (features @ direction > 0).long()
    model = torch.nn.Linear(10, 2)
    with torch.no_grad():  # start pointing the wrong way: every sample misclassified
        model.weight.copy_(0.1 * torch.stack([direction, -direction]))  # row c scores class c
        model.bias.zero_()
    assert (model(features).argmax(1) == labels).float().mean() == 0.0
    optimizer = Lars(model.parameters(), lr=10.0)  # default momentum 0.9, eta 0.001, no decay
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    assert (model(features).argmax(1) == labels).float().mean() == 1.0


# ------------------------------------------------------------------------------ the Trainer


def tiny_probe(seed: int = 0) -> BrainJepaLinearProbe:
    config = make_config()
    torch.manual_seed(seed)
    encoder = BrainJepaModel(config)
    encoder.set_gradient(torch.randn(config.num_rois, config.gradient_dim))
    return BrainJepaLinearProbe(encoder, num_labels=2, problem_type="single_label_classification")


def tiny_samples(config, count: int = 16) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    return [
        {
            "fmri_values": torch.randn(1, config.num_rois, config.num_frames, generator=generator),
            "labels": torch.tensor(index % 2),
        }
        for index in range(count)
    ]


def probe_args(tmp_path, **overrides) -> FinetuningArguments:
    values = {
        "output_dir": str(tmp_path),
        "learning_rate": 1.0,
        "max_steps": 4,
        "warmup_steps": 0,
        "per_device_train_batch_size": 8,
        "use_cpu": True,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_strategy": "no",
        "load_best_model_at_end": False,
    }
    return FinetuningArguments(**(values | overrides))


def test_trainer_trains_the_probe_head_with_lars_and_leaves_the_encoder_alone(tmp_path):
    probe = tiny_probe()
    encoder_before = copy.deepcopy(probe.base_model.state_dict())
    head_before = copy.deepcopy(probe.classifier.state_dict())
    args = probe_args(tmp_path, probe_optimizer="lars")
    trainer = BrainJepaTrainer(
        model=probe, args=args, train_dataset=tiny_samples(probe.config), data_collator=FmriCollator(), layer_decay=1.0
    )
    trainer.train()

    optimizer = trainer.optimizer.optimizer  # accelerate's wrapper around ours
    assert isinstance(optimizer, Lars)
    names = sorted(name for group in optimizer.param_groups for name in group["param_names"])
    assert names == ["classifier.bias", "classifier.weight"]
    decay = {name: group["weight_decay"] for group in optimizer.param_groups for name in group["param_names"]}
    assert decay == {"classifier.weight": args.weight_decay, "classifier.bias": 0.0}
    for group in optimizer.param_groups:  # the Trainer's cosine schedule drove each group's lr to its end value
        assert group["lr"] == pytest.approx(args.min_learning_rate)
    for name, tensor in probe.base_model.state_dict().items():
        assert torch.equal(tensor, encoder_before[name]), name
    for name, tensor in probe.classifier.state_dict().items():
        assert not torch.equal(tensor, head_before[name]), name


def test_probe_optimizer_adamw_and_unknown_values(tmp_path):
    _, _, args, _ = parse_arguments(
        [
            "--output_dir",
            str(tmp_path),
            "--probe_optimizer",
            "adamw",
            "--use_cpu",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
        ]
    )
    trainer = BrainJepaTrainer(model=tiny_probe(), args=args, layer_decay=1.0)
    assert isinstance(trainer.create_optimizer(), torch.optim.AdamW)

    default = probe_args(tmp_path)
    assert default.probe_optimizer == "adamw"
    finetune = BrainJepaTrainer(model=BrainJepaForSequenceClassification(make_config()), args=default)
    assert isinstance(finetune.create_optimizer(), torch.optim.AdamW)  # fine-tuning keeps AdamW + layer decay

    with pytest.raises(ValueError, match=re.escape("probe_optimizer: expected one of ('lars', 'adamw'), got 'sgd'")):
        parse_arguments(["--output_dir", str(tmp_path), "--probe_optimizer", "sgd"])
