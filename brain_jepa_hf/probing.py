"""Linear probing of a frozen Brain-JEPA encoder.

Two engines:
- `BrainJepaLinearProbe`: the original's probe, trained with the fine-tuning Trainer pipeline
  (`run_finetuning` with mode="linear_probe"): frozen encoder in eval mode, mean-pooled features ->
  BatchNorm1d(affine=False) -> Linear, optimised with AdamW, or with LARS as in the original
  (`probe_optimizer="lars"`, `brain_jepa_hf.lars.Lars`: momentum 0.9, trust coefficient 0.001, bias
  neither decayed nor rescaled; at the original's lr it leaves the head at its initialisation).
- `run_sklearn_probe`: the fast path. Pooled embeddings are extracted once (centre clip); a
  standardised logistic regression (classes) or ridge regression (continuous targets) is fitted on
  train + validation with its regularisation chosen by k-fold cross-validation, then scored on test.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from .atomic_io import atomic_output_dir
from .configuration_brain_jepa import check_local_path
from .downstream_arguments import ModelArguments
from .downstream_data import (
    check_data_matches_model,
    check_splits_not_empty,
    give_model_gradient,
    infer_label_info,
    load_feature_extractor,
    load_splits,
)
from .embedding import compute_embeddings, distributed_state, load_encoder
from .eval_results import write_eval_results
from .metrics import task_metrics
from .modeling_brain_jepa import sequence_classification_loss
from .run_results import summarise, write_results


class BrainJepaLinearProbe(nn.Module):
    """Frozen encoder -> mean over tokens -> BatchNorm1d(affine=False) -> Linear. The encoder sits where
    the task models keep theirs (`brain_jepa`, the base model prefix), so `probe.base_model` is it."""

    base_model_prefix = "brain_jepa"

    def __init__(self, encoder, num_labels: int, problem_type: str):
        super().__init__()
        self.brain_jepa = encoder.eval().requires_grad_(False)
        self.problem_type = problem_type
        self.num_labels = num_labels
        hidden = encoder.config.hidden_size
        self.norm = nn.BatchNorm1d(hidden, affine=False, eps=1e-6)
        self.classifier = nn.Linear(hidden, num_labels)
        nn.init.trunc_normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self._register_load_state_dict_pre_hook(_rename_legacy_encoder_keys)

    @property
    def base_model(self):
        return self.brain_jepa

    @property
    def config(self):
        return self.brain_jepa.config

    def train(self, mode: bool = True):
        super().train(mode)
        self.brain_jepa.eval()  # frozen: no drop path / dropout in the features
        return self

    def describe(self) -> dict:
        return {
            "probe": "BatchNorm1d(affine=False) + Linear",
            "num_labels": self.num_labels,
            "problem_type": self.problem_type,
            "encoder": self.brain_jepa.config.to_dict(),
        }

    def forward(
        self, fmri_values: torch.Tensor, gradient: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> SequenceClassifierOutput:
        with torch.no_grad():
            features = self.brain_jepa(fmri_values, gradient=gradient).pooler_output
        logits = self.classifier(self.norm(features))
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.problem_type, self.num_labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _rename_legacy_encoder_keys(state_dict, prefix, *args) -> None:
    """Probes saved before the encoder was named `brain_jepa` kept it under `encoder.`: load those too."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}encoder.")]:
        state_dict[f"{prefix}brain_jepa.{key[len(prefix) + len('encoder.') :]}"] = state_dict.pop(key)


def _plain_l2_logistic_options() -> dict:
    """Keyword arguments that keep `LogisticRegressionCV` a plain L2 model without FutureWarnings on
    scikit-learn >= 1.8 (`l1_ratios`, `use_legacy_attributes`); none on older versions."""
    import inspect

    from sklearn.linear_model import LogisticRegressionCV

    parameters = inspect.signature(LogisticRegressionCV).parameters
    if "use_legacy_attributes" not in parameters:
        return {}
    return {"l1_ratios": (0.0,), "use_legacy_attributes": False}


def fit_sklearn_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    problem_type: str,
    cv: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Fit a standardised ridge (regression) or multinomial logistic regression (classification) with
    its regularisation strength chosen by `cv`-fold cross-validation (folds shuffled with `seed`);
    returns (test outputs: predictions, or class log-probabilities as logits, and {"alpha" or "C"})."""
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(train_features) < cv:
        raise ValueError(
            f"cv: expected at most {len(train_features)} folds for {len(train_features)} training samples, got {cv}"
        )
    if problem_type == "regression":
        head = RidgeCV(alphas=np.logspace(-2, 5, 15), cv=KFold(cv, shuffle=True, random_state=seed))
        with warnings.catch_warnings():
            # With more features than samples the smallest alphas give ill-conditioned solves; the
            # cross-validation then picks a larger alpha, so the warning per fold is noise.
            warnings.simplefilter("ignore", LinAlgWarning)
            pipeline = make_pipeline(StandardScaler(), head).fit(train_features, train_labels)
        return pipeline.predict(test_features), {"alpha": float(head.alpha_)}
    if problem_type != "single_label_classification":
        raise ValueError(
            f"problem_type: the scikit-learn probe supports regression and single-label classification, got {problem_type!r}"
        )
    head = LogisticRegressionCV(
        Cs=np.logspace(-4, 2, 13),
        cv=StratifiedKFold(cv, shuffle=True, random_state=seed),
        scoring="neg_log_loss",
        max_iter=5000,
        **_plain_l2_logistic_options(),
    )
    pipeline = make_pipeline(StandardScaler(), head).fit(train_features, train_labels)
    probabilities = pipeline.predict_proba(test_features)
    logits = np.full((len(test_features), int(train_labels.max()) + 1), -np.inf)
    logits[:, head.classes_] = np.log(np.clip(probabilities, 1e-12, None))
    logits[np.isinf(logits)] = np.log(1e-12)
    return logits, {"C": float(np.atleast_1d(head.C_)[0])}


def run_sklearn_probe(
    model_name_or_path,
    data_args,
    output_dir: str | None = None,
    seeds: int = 5,
    seed: int = 0,
    cv: int = 5,
    batch_size: int = 16,
    revision: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    model=None,
    dtype: str | torch.dtype | None = None,
) -> dict:
    """Fast linear probe: embeddings once, then `seeds` CV-tuned scikit-learn fits (the CV folds differ
    per seed); metrics on the test split in original units. Writes results.json / results.md to
    `output_dir` when given. `model` may be passed instead of loading `model_name_or_path`; `dtype`
    ("auto", "float32", "bfloat16") is the encoder's precision for the embeddings (None: as stored)."""

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: expected a positive integer, got {seeds!r}")
    if model is None:
        check_local_path(model_name_or_path)  # a mistyped folder fails before the data are read
    splits = load_splits(data_args)
    check_splits_not_empty(splits)
    info = infer_label_info(splits, data_args.label_column, data_args.problem_type)
    if info.problem_type == "multi_label_classification":
        raise ValueError(
            "problem_type: the scikit-learn probe supports regression and single-label classification, got 'multi_label_classification'"
        )
    state = distributed_state()  # under `accelerate launch` the processes share the embedding
    device = "cpu" if state is None or state.device.type == "cpu" else state.device
    encoder = load_encoder(
        model if model is not None else model_name_or_path, revision=revision, device=device, dtype=dtype
    )
    model_args = ModelArguments(model_name_or_path=None if model is not None else str(model_name_or_path))
    extractor = load_feature_extractor(model_args, data_args, encoder.config, splits["train"])
    check_data_matches_model(splits, encoder.config, extractor, data_args.fmri_column, str(model_name_or_path))
    give_model_gradient(encoder, extractor, data_args)
    features = {
        role: compute_embeddings(encoder, split, extractor, "mean", batch_size, data_args.fmri_column, progress, state)
        for role, split in splits.items()
    }
    labels = {role: np.asarray(split[data_args.label_column]) for role, split in splits.items()}
    fit_features = np.concatenate([features["train"], features["validation"]])
    fit_labels = np.concatenate([labels["train"], labels["validation"]])
    if info.problem_type == "regression":
        fit_labels = (fit_labels.astype(np.float64) - info.target_mean) / info.target_std
        test_labels = (labels["test"].astype(np.float64) - info.target_mean) / info.target_std
    else:
        fit_labels, test_labels = fit_labels.astype(np.int64), labels["test"].astype(np.int64)
    per_seed = []
    for k in range(seeds):
        outputs, chosen = fit_sklearn_probe(
            fit_features, fit_labels, features["test"], info.problem_type, cv, seed + k
        )
        metrics = task_metrics(
            info.problem_type, outputs, test_labels, info.target_mean, info.target_std, info.num_labels
        )
        per_seed.append({"seed": seed + k, "test": metrics, "hyperparameters": chosen})
    results = {
        "task": {
            "dataset": data_args.dataset,
            "label_column": data_args.label_column,
            "problem_type": info.problem_type,
            "num_samples": {role: len(split) for role, split in splits.items()},
        },
        "model": {
            "model_name_or_path": None if model_name_or_path is None else str(model_name_or_path),
            "engine": "sklearn",
            "cv_folds": cv,
            "dtype": str(encoder.dtype).removeprefix("torch."),
        },
        "per_seed": per_seed,
        "test": summarise(per_seed, "test"),
    }
    if output_dir is not None and (state is None or state.is_main_process):
        with atomic_output_dir(output_dir, overwrite=overwrite, flag="--overwrite_output_dir") as staging:
            write_results(staging, results, f"{data_args.label_column} (linear probe, sklearn)")
            write_eval_results(
                staging, results, dataset_id=getattr(data_args, "eval_dataset_id", None), mode="linear_probe"
            )
    return results


__all__ = ["BrainJepaLinearProbe", "fit_sklearn_probe", "run_sklearn_probe"]
