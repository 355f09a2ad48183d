"""LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017), the optimizer of the
original linear probe.

SGD with momentum in which every matrix (ndim > 1) moves by a step proportional to its own norm:
its update `g + weight_decay * p` is rescaled by the trust ratio
`trust_coefficient * ||p|| / ||g + weight_decay * p||` (1 when either norm is 0). Vectors and scalars
(biases) take the plain gradient: no weight decay, no rescaling. Then
`buffer = momentum * buffer + update` and `p -= lr * buffer`, with each group's current `lr`, so
`transformers` / `torch` learning-rate schedulers drive it like any other optimizer.
"""

from __future__ import annotations

import math

import torch


def _check_number(name: str, value, expected: str, valid) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not valid(value):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


class Lars(torch.optim.Optimizer):
    """LARS: momentum SGD with a per-matrix trust ratio; biases and other 1-D parameters take plain
    momentum SGD without weight decay. Per-group `lr`, `momentum`, `weight_decay` and
    `trust_coefficient` override the defaults."""

    def __init__(
        self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001
    ):
        _check_number("lr", lr, "a learning rate >= 0", lambda v: v >= 0)
        _check_number("momentum", momentum, "a value in [0, 1)", lambda v: 0 <= v < 1)
        _check_number("weight_decay", weight_decay, "a value >= 0", lambda v: v >= 0)
        _check_number("trust_coefficient", trust_coefficient, "a value > 0", lambda v: v > 0)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _adapted_update(
        parameter: torch.Tensor, gradient: torch.Tensor, weight_decay: float, trust_coefficient: float
    ) -> torch.Tensor:
        """(g + weight_decay * p) * trust ratio, computed on the device without a host sync."""
        update = gradient.add(parameter, alpha=weight_decay)
        parameter_norm = torch.linalg.vector_norm(parameter)
        update_norm = torch.linalg.vector_norm(update)
        both_positive = (parameter_norm > 0) & (update_norm > 0)
        ratio = torch.where(
            both_positive, trust_coefficient * parameter_norm / update_norm, torch.ones_like(parameter_norm)
        )
        return update.mul_(ratio)

    @torch.no_grad()
    def step(self, closure=None):
        """One LARS update of every parameter that has a gradient; returns closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                gradient = parameter.grad
                if gradient is None:
                    continue
                if gradient.is_sparse:
                    raise ValueError("grad: Lars expected dense gradients, got a sparse gradient")
                if parameter.ndim > 1:
                    update = self._adapted_update(
                        parameter, gradient, group["weight_decay"], group["trust_coefficient"]
                    )
                else:
                    update = gradient
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(update)
                parameter.add_(buffer, alpha=-group["lr"])
        return loss


__all__ = ["Lars"]
