"""What drives a fine-tuned classification head: integrated gradients or input x gradient of one output,
summed over time per ROI (`roi_attribution`). Attributions are sensitivities of that output to the
input, not causal effects (docs/analysis.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


ATTRIBUTION_METHODS = {
    "integrated_gradients": (
        "integrated gradients: (x - baseline) times the gradient of the chosen output averaged along the straight "
        "path from the baseline to x, summed over time per ROI; a sensitivity of that output to the input, "
        "not a causal effect"
    ),
    "input_x_gradient": (
        "input x gradient: x times the gradient of the chosen output at x, summed over time per ROI; a local, "
        "first-order sensitivity, not a causal effect"
    ),
}


@dataclass
class RoiAttribution:
    """Per-ROI attribution with what it is: `values` (B, R), the method's honest description, the target
    output per sample, the model output at x and at the baseline, and for integrated gradients the
    completeness gap sum(values) - (f(x) - f(baseline)) per sample (small when `steps` suffices)."""

    values: np.ndarray
    method: str
    description: str
    target: np.ndarray
    output: np.ndarray
    baseline_output: np.ndarray | None
    completeness_gap: np.ndarray | None


def _check_classifier(model) -> None:
    head = getattr(model, "classifier", None)
    if head is None or isinstance(head, torch.nn.Identity) or not hasattr(model, "brain_jepa"):
        raise ValueError(
            f"model: expected a fine-tuned model with a classification head (BrainJepaForSequenceClassification, "
            f"num_labels >= 1), got {type(model).__name__}"
            + (" without a head (num_labels=0)" if head is not None else "")
            + "; pass e.g. BrainJepaForSequenceClassification.from_pretrained(<fine-tuned folder>)"
        )


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    batch, num_outputs = logits.shape
    if target is None:
        return logits.argmax(dim=-1) if num_outputs > 1 else torch.zeros(batch, dtype=torch.long, device=logits.device)
    chosen = torch.as_tensor(target, device=logits.device)
    if chosen.is_floating_point() or chosen.dtype == torch.bool or chosen.dim() > 1:
        raise ValueError(f"target: expected an output index or one index per sample, got {target!r}")
    chosen = chosen.long().expand(batch) if chosen.dim() == 0 else chosen.long()
    if chosen.shape != (batch,):
        raise ValueError(f"target: expected one index per sample ({batch}), got {chosen.numel()}")
    if int(chosen.min()) < 0 or int(chosen.max()) >= num_outputs:
        raise ValueError(f"target: expected output indices in [0, {num_outputs - 1}], got {chosen.tolist()}")
    return chosen


def roi_attribution(
    model,
    fmri_values,
    target=None,
    method: str = "integrated_gradients",
    steps: int = 32,
    gradient=None,
    baseline: str | torch.Tensor = "zero",
    internal_batch_size: int | None = None,
    return_details: bool = False,
):
    """
    Per-ROI attribution (B, R) of one output of a fine-tuned classification head to the input, summed over
    channels and time. `method`: "integrated_gradients" ((x - baseline) x the gradient averaged over
    `steps` midpoints of the straight path from the baseline to x; attributions add up to
    f(x) - f(baseline)) or "input_x_gradient" (x x the gradient at x). `baseline`: "zero", "mean" (each
    ROI's own time average, i.e. the signal without its fluctuations) or a tensor like `fmri_values`.
    `target`: output index (int or one per sample); default the predicted class (output 0 for regression).
    `internal_batch_size`: samples per forward along the path (default B: one path point at a time).
    `return_details=True` returns a `RoiAttribution` (method description, outputs, completeness gap).
    """
    _check_attribution_arguments(model, method, steps, internal_batch_size, fmri_values)
    x = fmri_values.detach()
    reference = _baseline(baseline, x)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x, gradient=gradient).logits
        chosen = _targets(target, logits)
        output = logits.gather(1, chosen[:, None])[:, 0]
        path = _OutputPath(model, x, gradient, chosen)
        baseline_output = None
        if method == "input_x_gradient":
            attribution = x * path.gradient_at(x.clone())
        else:
            attribution = _integrated_gradients(path, x, reference, steps, internal_batch_size)
            with torch.no_grad():
                baseline_output = path.output(reference)
    finally:
        model.train(was_training)
    per_roi = attribution.sum(dim=(1, 3)).detach().float().cpu().numpy()
    if not return_details:
        return per_roi
    gap = None
    if baseline_output is not None:
        gap = per_roi.sum(axis=1) - (output - baseline_output).float().cpu().numpy()
    description = ATTRIBUTION_METHODS[method]
    if method == "integrated_gradients":
        description += f" (baseline {baseline if isinstance(baseline, str) else 'given'}, {steps} steps)"
    return RoiAttribution(
        values=per_roi,
        method=method,
        description=description,
        target=chosen.cpu().numpy(),
        output=output.float().cpu().numpy(),
        baseline_output=None if baseline_output is None else baseline_output.float().cpu().numpy(),
        completeness_gap=gap,
    )


def _check_attribution_arguments(model, method, steps, internal_batch_size, fmri_values) -> None:
    _check_classifier(model)
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"method: expected one of {sorted(ATTRIBUTION_METHODS)}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool)
        or not isinstance(internal_batch_size, (int, np.integer))
        or internal_batch_size < 1
    ):
        raise ValueError(f"internal_batch_size: expected a positive integer or None, got {internal_batch_size!r}")
    if not isinstance(fmri_values, torch.Tensor) or fmri_values.dim() != 4 or not fmri_values.is_floating_point():
        shape = tuple(fmri_values.shape) if hasattr(fmri_values, "shape") else type(fmri_values).__name__
        raise ValueError(f"fmri_values: expected a float tensor of shape (batch, channels, rois, frames), got {shape}")


def _baseline(baseline, x: torch.Tensor) -> torch.Tensor:
    """The reference input: zeros, each ROI's time average ("mean") or a given tensor like `x`."""
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != x.shape:
            raise ValueError(
                f"baseline: expected a tensor of shape {tuple(x.shape)} like fmri_values, got {tuple(baseline.shape)}"
            )
        return baseline.detach().to(x)
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=-1, keepdim=True).expand_as(x).clone()
    raise ValueError(f"baseline: expected 'zero', 'mean' or a tensor like fmri_values, got {baseline!r}")


class _OutputPath:
    """The chosen output of each sample of `x` as a function of the input, for inputs that stack k
    points per sample (k * B rows: k path points of the B samples)."""

    def __init__(self, model, x: torch.Tensor, gradient, chosen: torch.Tensor):
        self.model, self.batch, self.gradient, self.chosen = model, x.shape[0], gradient, chosen

    def output(self, inputs: torch.Tensor) -> torch.Tensor:
        repeats = inputs.shape[0] // self.batch
        sample_gradient = self.gradient
        if isinstance(self.gradient, torch.Tensor) and self.gradient.dim() == 3 and repeats > 1:
            sample_gradient = self.gradient.repeat(repeats, 1, 1)
        logits = self.model(inputs, gradient=sample_gradient).logits
        return logits.gather(1, self.chosen.repeat(repeats)[:, None])[:, 0]

    def gradient_at(self, points: torch.Tensor) -> torch.Tensor:
        """Gradient of the summed chosen outputs with respect to `points`."""
        points.requires_grad_(True)
        (grad,) = torch.autograd.grad(self.output(points).sum(), points)
        return grad


def _integrated_gradients(
    path: _OutputPath, x: torch.Tensor, reference: torch.Tensor, steps: int, internal_batch_size: int | None
) -> torch.Tensor:
    """(x - reference) times the gradient averaged over `steps` midpoints of the straight path."""
    total = torch.zeros_like(x)
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    per_forward = max(1, (internal_batch_size or x.shape[0]) // x.shape[0])
    for first in range(0, steps, per_forward):
        chunk = alphas[first : first + per_forward].view(-1, 1, 1, 1, 1)
        points = (reference + chunk * (x - reference)).reshape(-1, *x.shape[1:])
        total += path.gradient_at(points).view(-1, *x.shape).sum(dim=0)
    return (x - reference) * total / steps


__all__ = ["ATTRIBUTION_METHODS", "RoiAttribution", "roi_attribution"]
