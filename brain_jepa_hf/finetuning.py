"""Fine-tuning Brain-JEPA on labelled fMRI with `transformers.Trainer`, the paper's downstream recipe.

`BrainJepaForSequenceClassification` starts from a pretrained folder or Hub id (the EMA target encoder
of a pretraining folder) and is trained with AdamW (weight decay 0.05 except biases, norms and other
1-D parameters), layer-wise learning-rate decay 0.75 that really applies (each group's lr is
`lr * 0.75 ** (num_layers + 1 - layer_id)`), drop path 0.1, warmup then cosine to 1e-6, base lr
1e-3 * batch / 256, 50 epochs, batch 16. Regression targets are standardised on the training split
(mean and std stored in the saved config as `regression_target_mean` / `regression_target_std`, the
label column's name as `id2label[0]`) and metrics are reported in original units. Evaluation uses the
deterministic centre clip. The best checkpoint on validation is kept and evaluated on the test split.
`seeds` runs repeat the whole procedure and `results.json` / `results.md` report mean (std), as in the paper.

The arguments live in `downstream_arguments`, the splits, labels and checks before training in
`downstream_data` (both shared with `probing`), the results files in `run_results` and the model card
in `model_card`; this module holds the Trainer with layer decay, the samples and the runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from .atlas import resolve_atlas, set_atlas
from .atomic_io import atomic_output_dir, check_output_dir
from .configuration_brain_jepa import check_local_path
from .console import show_training_progress
from .downstream_arguments import DataArguments, FinetuningArguments, ModelArguments
from .downstream_data import (
    LabelInfo,
    check_data_matches_model,
    check_splits_not_empty,
    give_model_gradient,
    infer_label_info,
    load_config,
    load_feature_extractor,
    load_splits,
    resolve_example_atlas,
    series_shape,
)
from .eval_results import write_eval_results
from .hub import push_folder_to_hub
from .lars import Lars
from .metrics import default_metric_for_best_model, greater_is_better, make_compute_metrics
from .model_card import write_finetune_card
from .modeling_brain_jepa import BrainJepaForSequenceClassification, BrainJepaModel
from .pipelines import save_pipelines
from .probing import BrainJepaLinearProbe
from .run_results import summarise, write_results
from .samples import FmriSamples


# ----------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay
# ----------------------------------------------------------------------------------------------

_LAYER_PATTERN = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def layer_id_for_parameter(name: str, num_layers: int) -> int:
    """0 for the embeddings (patch projection, gradient projection), i + 1 for encoder block i, and
    num_layers + 1 for everything after the blocks (final norm, fc_norm, head)."""
    if ".embeddings." in f".{name}":
        return 0
    match = _LAYER_PATTERN.search(name)
    if match and not name.startswith("predictor."):
        return int(match.group(1)) + 1
    return num_layers + 1


def layer_decay_parameter_groups(
    model: torch.nn.Module,
    learning_rate: float,
    weight_decay: float,
    layer_decay: float,
    num_layers: int | None = None,
) -> list[dict]:
    """AdamW parameter groups, one per (layer, decay / no decay): `lr` = learning_rate * `lr_scale`,
    `lr_scale` = layer_decay ** (num_layers + 1 - layer_id); biases, norms and other 1-D parameters get
    no weight decay. Frozen parameters are left out."""
    if num_layers is None:
        num_layers = model.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer_id = layer_id_for_parameter(name, num_layers)
        decayed = parameter.ndim > 1 and not name.endswith(".bias")
        key = (layer_id, decayed)
        if key not in groups:
            scale = layer_decay ** (num_layers + 1 - layer_id)
            groups[key] = {
                "params": [],
                "param_names": [],
                "layer_id": layer_id,
                "lr_scale": scale,
                "lr": learning_rate * scale,
                "weight_decay": weight_decay if decayed else 0.0,
            }
        groups[key]["params"].append(parameter)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


class BrainJepaTrainer(Trainer):
    """`Trainer` whose optimizer gets layer-wise lr decay groups (the scheduler scales each group's
    own initial lr, so the per-layer ratios hold throughout warmup and cosine decay). A
    `BrainJepaLinearProbe` is trained with AdamW, or with LARS as in the original when
    `args.probe_optimizer` is "lars"."""

    def __init__(self, *args, layer_decay: float = 0.75, **kwargs):
        self.layer_decay = layer_decay
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        model = self.model if model is None else model
        if self.optimizer is None:
            groups = layer_decay_parameter_groups(
                model,
                self.args.learning_rate,
                self.args.weight_decay,
                self.layer_decay,
                num_layers=_encoder_config(model).num_hidden_layers,
            )
            probe_optimizer = getattr(self.args, "probe_optimizer", "adamw")
            if isinstance(self.accelerator.unwrap_model(model), BrainJepaLinearProbe) and probe_optimizer == "lars":
                self.optimizer = Lars(groups, lr=self.args.learning_rate)
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
                self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


def _optimizer_name(model_args: ModelArguments, training_args: FinetuningArguments) -> str:
    """What `BrainJepaTrainer.create_optimizer` builds for this mode: "lars" or the `--optim` name."""
    if model_args.mode == "linear_probe" and training_args.probe_optimizer == "lars":
        return "lars"
    return str(getattr(training_args.optim, "value", training_args.optim))


def _encoder_config(model):
    config = getattr(model, "config", None)
    return config if config is not None else model.base_model.config


# ----------------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------------


class FmriCollator:
    """Stacks samples into a batch; adds the feature extractor's atlas gradient when it holds one."""

    def __init__(self, gradient: np.ndarray | None = None):
        self.gradient = None if gradient is None else torch.as_tensor(np.asarray(gradient, dtype=np.float32))

    def __call__(self, samples: list[dict]) -> dict:
        batch = {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
        if self.gradient is not None:
            batch["gradient"] = self.gradient
        return batch


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


def build_model(model_args: ModelArguments, config, label_info: LabelInfo, pretrained_gradient=None):
    """BrainJepaForSequenceClassification (mode finetune) or a frozen-encoder linear probe."""
    overrides = {
        "num_labels": label_info.num_labels,
        "problem_type": label_info.problem_type,
        "drop_path_rate": model_args.drop_path_rate if model_args.mode == "finetune" else 0.0,
    }
    if model_args.mode not in ("finetune", "linear_probe"):
        raise ValueError(f"mode: expected 'finetune' or 'linear_probe', got {model_args.mode!r}")
    if model_args.model_name_or_path and not model_args.random_init:
        model = BrainJepaForSequenceClassification.from_pretrained(
            model_args.model_name_or_path, revision=model_args.revision, **overrides
        )
    else:
        config = copy.deepcopy(config)
        for key, value in overrides.items():
            setattr(config, key, value)
        model = BrainJepaForSequenceClassification(config)
        if pretrained_gradient is not None:
            model.brain_jepa.set_gradient(pretrained_gradient)
    if model_args.atlas is not None:
        set_atlas(model, model_args.atlas)
    if label_info.problem_type == "regression":
        model.config.regression_target_mean = label_info.target_mean
        model.config.regression_target_std = label_info.target_std
    if label_info.label_names is not None:  # pipelines report predictions under these names
        model.config.id2label = dict(enumerate(label_info.label_names))
        model.config.label2id = {name: i for i, name in enumerate(label_info.label_names)}
    if model_args.mode == "linear_probe":
        return BrainJepaLinearProbe(model.brain_jepa, label_info.num_labels, label_info.problem_type)
    return model


def _stored_gradient(model_args: ModelArguments):
    """The atlas gradient held by a pretrained checkpoint (for random init of the same architecture)."""
    if not (model_args.random_init and model_args.model_name_or_path):
        return None
    encoder = BrainJepaModel.from_pretrained(model_args.model_name_or_path, revision=model_args.revision)
    gradient = encoder.embeddings.gradient.detach().clone()
    return gradient if torch.any(gradient) else None


# ----------------------------------------------------------------------------------------------
# Processes (`accelerate launch` / torchrun)
# ----------------------------------------------------------------------------------------------


def process_state(args: TrainingArguments):
    """The `accelerate.PartialState` the Trainer runs under (one process outside a launch)."""
    from accelerate import PartialState

    return args.distributed_state or PartialState()


@contextlib.contextmanager
def shared_output_dir(output_dir: str | Path, overwrite: bool, state):
    """`atomic_output_dir` for every process of a launch: the main process creates one staging folder
    and tells the others its path (checkpoints and rng states of all ranks go there); it is moved into
    place only after every process has finished with it."""
    from accelerate.utils import broadcast_object_list

    flag = "--overwrite_output_dir"
    check_output_dir(output_dir, overwrite, flag)  # every process stops alike on an existing folder
    if state.num_processes == 1:
        with atomic_output_dir(output_dir, overwrite=overwrite, flag=flag) as staging:
            yield staging
        return
    if state.is_main_process:
        with atomic_output_dir(output_dir, overwrite=overwrite, flag=flag) as staging:
            broadcast_object_list([str(staging)])
            yield staging
            state.wait_for_everyone()
    else:
        path = [None]
        broadcast_object_list(path)
        yield Path(path[0])
        state.wait_for_everyone()
    state.wait_for_everyone()  # the output folder is in place when any process goes on


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


@dataclass
class PreparedRun:
    """Everything a seed needs, checked once before any training."""

    splits: dict
    config: Any
    feature_extractor: Any
    label_info: LabelInfo
    labels: dict
    pretrained_gradient: Any = None
    source: str = ""


def prepare_run(model_args: ModelArguments, data_args: DataArguments) -> PreparedRun:
    """Load data, config and feature extractor and check they fit together; every data or checkpoint
    problem raises here, before a model is built or trained."""
    check_local_path(model_args.model_name_or_path)  # a mistyped folder fails before the data are read
    splits = load_splits(data_args)
    check_splits_not_empty(splits)
    label_info = infer_label_info(splits, data_args.label_column, data_args.problem_type)
    rois, _ = series_shape(splits["train"], data_args.fmri_column)
    source = model_args.model_name_or_path or f"preset {model_args.preset}"
    config = load_config(model_args, data_args, rois)
    feature_extractor = load_feature_extractor(model_args, data_args, config, splits["train"])
    check_data_matches_model(splits, config, feature_extractor, data_args.fmri_column, source)
    if model_args.atlas is not None:
        resolve_atlas(model_args.atlas, num_rois=config.num_rois)  # a bad table fails before training
    labels = {}
    for role, split in splits.items():
        array = np.asarray(split[data_args.label_column])
        if label_info.problem_type == "regression":
            labels[role] = ((array.astype(np.float64) - label_info.target_mean) / label_info.target_std).astype(
                np.float32
            )
        elif label_info.problem_type == "single_label_classification":
            labels[role] = array.astype(np.int64)
        else:
            labels[role] = array.astype(np.float32)
    return PreparedRun(splits, config, feature_extractor, label_info, labels, _stored_gradient(model_args), source)


def _finalise_training_args(args: FinetuningArguments, problem_type: str, seed: int, output_dir: Path):
    args = copy.copy(args)
    args.seed = seed
    args.output_dir = str(output_dir)
    args.push_to_hub = False  # pushing happens once, for the selected model, after all seeds
    if not getattr(args, "metric_chosen_by_user", True):
        args.metric_for_best_model = default_metric_for_best_model(problem_type)
    args.greater_is_better = greater_is_better(args.metric_for_best_model)
    return args


def run_seed(
    prepared: PreparedRun,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: FinetuningArguments,
    seed: int,
    seed_dir: Path,
) -> dict:
    """Train one seed: returns {"seed", "validation", "test" (metrics), "num_test_predictions", "train"};
    the main process saves the best model (validation) into `seed_dir`. Under a launch, every process
    runs this; evaluation gathers the predictions of all processes, each test sample counted once."""
    from transformers import set_seed

    args = _finalise_training_args(training_args, prepared.label_info.problem_type, seed, seed_dir)
    set_seed(seed)
    model = build_model(model_args, prepared.config, prepared.label_info, prepared.pretrained_gradient)
    give_model_gradient(model, prepared.feature_extractor, data_args)
    resolve_example_atlas(model, model_args, data_args)
    extractor = prepared.feature_extractor
    datasets = {
        role: FmriSamples(
            split, extractor, data_args.fmri_column, prepared.labels[role], training=(role == "train"), seed=seed
        )
        for role, split in prepared.splits.items()
    }
    info = prepared.label_info
    trainer = BrainJepaTrainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=FmriCollator(getattr(extractor, "gradient", None)),
        compute_metrics=make_compute_metrics(info.problem_type, info.target_mean, info.target_std, info.num_labels),
        layer_decay=training_args.layer_decay if model_args.mode == "finetune" else 1.0,
        callbacks=[_EpochSetter(datasets["train"])],
    )
    show_training_progress(trainer, f"seed {seed}")
    trainer.train()
    validation = _strip_prefix(trainer.evaluate(datasets["validation"], metric_key_prefix="eval"), "eval_")
    prediction = trainer.predict(datasets["test"], metric_key_prefix="test")  # gathered over all processes
    test = _strip_prefix(prediction.metrics, "test_")
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    result = {
        "seed": seed,
        "validation": validation,
        "test": test,
        "num_test_predictions": len(logits),
        "train": {"global_step": trainer.state.global_step, "epoch": float(trainer.state.epoch or 0.0)},
    }
    if trainer.is_world_process_zero():
        for checkpoint in seed_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
        _save_model(trainer.model, extractor, seed_dir)
        (seed_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    trainer.accelerator.wait_for_everyone()
    return result


class _EpochSetter(TrainerCallback):
    """Trainer callback giving the training samples a new random clip per epoch."""

    def __init__(self, samples: FmriSamples):
        self.samples = samples

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.samples.set_epoch(int(state.epoch or 0))


def _strip_prefix(metrics: dict, prefix: str) -> dict:
    keep = {}
    for key, value in metrics.items():
        name = key.removeprefix(prefix)
        if name in ("runtime", "samples_per_second", "steps_per_second", "epoch"):
            continue
        keep[name] = float(value)
    return keep


def _save_model(model, feature_extractor, folder: Path) -> None:
    """save_pretrained (remote code, every Auto class in auto_map) + the feature extractor + the
    pipelines this model serves (code file and `custom_pipelines`, replacing any inherited from the
    pretrained folder); a linear probe saves its head and encoder state dict."""
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    feature_extractor.save_pretrained(folder)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
        save_pipelines(folder)
    else:
        save_model(model, str(folder / "model.safetensors"))
        (folder / "probe_config.json").write_text(json.dumps(model.describe(), indent=2))


def _best_seed(per_seed: list[dict], metric: str, greater_is_better: bool) -> int:
    values = [result["validation"].get(metric, math.nan) for result in per_seed]
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not finite:
        return 0
    return (max(finite) if greater_is_better else min(finite))[1]


def _keep_selected_seed_model(staging: Path, per_seed: list[dict], best: int, keep_seed_models: bool) -> None:
    """Copy the selected seed's model to the top of `staging`; drop the other seed models unless kept."""
    best_dir = staging / f"seed-{per_seed[best]['seed']}"
    for path in best_dir.iterdir():
        if path.is_file() and path.name not in ("metrics.json", "trainer_state.json", "training_args.bin"):
            shutil.copy2(path, staging / path.name)
    if not keep_seed_models:
        for result in per_seed:
            for path in (staging / f"seed-{result['seed']}").iterdir():
                if path.is_file() and path.name != "metrics.json":
                    path.unlink()


def run_finetuning(model_args: ModelArguments, data_args: DataArguments, training_args: FinetuningArguments) -> dict:
    """Fine-tune `training_args.seeds` times and write `output_dir` atomically: results.json,
    results.md, the best-validation seed's model with its model card (README.md), and per-seed
    metrics under seed-<k>/. Returns the results dictionary. Under `accelerate launch` every process
    trains each seed data-parallel; only the main process writes files and pushes to the Hub."""
    prepared = prepare_run(model_args, data_args)  # every input error is raised here
    if training_args.push_to_hub and model_args.mode == "linear_probe":
        raise ValueError("push_to_hub: a linear probe is not a transformers model; push a fine-tuned model instead")
    if training_args.push_to_hub and not training_args.hub_model_id:
        raise ValueError(
            "hub_model_id: expected a repository id like 'user/brain-jepa-age' with --push_to_hub, got None"
        )
    output_dir = Path(training_args.output_dir)
    info = prepared.label_info
    metric = _finalise_training_args(
        training_args, info.problem_type, training_args.seed, output_dir
    ).metric_for_best_model
    metric = metric.removeprefix("eval_")
    state = process_state(training_args)
    with shared_output_dir(output_dir, training_args.overwrite_output_dir, state) as staging:
        per_seed = []
        seeds = [training_args.seed + k for k in range(training_args.seeds)]
        for seed in seeds:  # one progress bar per seed (console.TrainingProgress)
            per_seed.append(run_seed(prepared, model_args, data_args, training_args, seed, staging / f"seed-{seed}"))
        best = _best_seed(per_seed, metric, greater_is_better(metric))
        results = _results(prepared, model_args, data_args, training_args, per_seed, best, metric)
        results["training"]["num_processes"] = state.num_processes  # the batch is split over them
        if state.is_main_process:
            _keep_selected_seed_model(staging, per_seed, best, training_args.keep_seed_models)
            write_results(staging, results, f"{data_args.label_column} ({model_args.mode})")
            if model_args.mode == "finetune":
                write_finetune_card(staging, results, repo_id=training_args.hub_model_id)
            write_eval_results(
                staging, results, dataset_id=data_args.eval_dataset_id, repo_id=training_args.hub_model_id
            )
    if training_args.push_to_hub and state.is_main_process:
        push_folder_to_hub(
            output_dir,
            training_args.hub_model_id,
            token=training_args.hub_token,
            private=training_args.hub_private_repo,
            commit_message=f"Fine-tuned Brain-JEPA on {data_args.label_column}",
        )
    return results


def _results(
    prepared: PreparedRun,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: FinetuningArguments,
    per_seed: list[dict],
    best: int,
    metric: str,
) -> dict:
    """The results.json dictionary: task, model, training settings, per-seed and summarised metrics."""
    info = prepared.label_info
    return {
        "task": {
            "dataset": data_args.dataset,
            "label_column": data_args.label_column,
            "problem_type": info.problem_type,
            "num_labels": info.num_labels,
            "num_samples": {role: len(split) for role, split in prepared.splits.items()},
        },
        "model": {
            "model_name_or_path": model_args.model_name_or_path,
            "preset": model_args.preset,
            "random_init": model_args.random_init,
            "mode": model_args.mode,
        },
        "training": {
            "learning_rate": training_args.learning_rate,
            "layer_decay": training_args.layer_decay,
            "weight_decay": training_args.weight_decay,
            "num_train_epochs": training_args.num_train_epochs,
            "max_steps": training_args.max_steps,
            "batch_size": training_args.per_device_train_batch_size,
            "drop_path_rate": model_args.drop_path_rate,
            "seeds": [result["seed"] for result in per_seed],
            "metric_for_best_model": metric,
            "optimizer": _optimizer_name(model_args, training_args),
        },
        "regression_target": {"mean": info.target_mean, "std": info.target_std}
        if info.problem_type == "regression"
        else None,
        "per_seed": per_seed,
        "test": summarise(per_seed, "test"),
        "validation": summarise(per_seed, "validation"),
        "selected_seed": per_seed[best]["seed"],
    }


__all__ = [
    "layer_id_for_parameter",
    "layer_decay_parameter_groups",
    "BrainJepaTrainer",
    "FmriSamples",
    "FmriCollator",
    "build_model",
    "process_state",
    "shared_output_dir",
    "prepare_run",
    "run_seed",
    "run_finetuning",
]
