"""Model card (README.md) of a fine-tuned Brain-JEPA model, with its test results as `model-index`.

The card carries the Hub metadata the release cards carry (validated with `model_card.validate_model_card`)
and the mean over seeds of every test metric, in original units (accuracy-type metrics as fractions).
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .model_card import ORIGINAL_REPOSITORY, PAPER_URL, validate_model_card

METRIC_NAMES = {
    "mse": "MSE", "mae": "MAE", "pearson_r": "Pearson r", "r2": "R^2", "normalized_mse": "MSE (standardised units)",
    "accuracy": "Accuracy", "f1": "F1", "balanced_accuracy": "Balanced accuracy", "auroc": "AUROC",
}
METRIC_TYPES = {"mse": "mse", "mae": "mae", "pearson_r": "pearsonr", "r2": "r_squared", "normalized_mse": "mse",
                "accuracy": "accuracy", "f1": "f1", "balanced_accuracy": "balanced_accuracy", "auroc": "roc_auc"}


def build_card_data(results: dict, model_name: str) -> ModelCardData:
    """Hub metadata with `model-index`: one entry per test metric (mean over seeds)."""
    task = results["task"]
    regression = task["problem_type"] == "regression"
    task_type = "tabular-regression" if regression else "tabular-classification"
    dataset = str(task["dataset"])
    dataset_name = "Brain-JEPA synthetic example cohort" if dataset == "example" else Path(dataset).name
    seeds = len(results["per_seed"])
    eval_results = [
        EvalResult(
            task_type=task_type,
            task_name=f"{task['label_column']} ({'regression' if regression else 'classification'})",
            dataset_type="brain-jepa-example" if dataset == "example" else dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=METRIC_TYPES.get(name, name),
            metric_name=f"{METRIC_NAMES.get(name, name)} (mean of {seeds} seeds)",
            metric_value=round(values["mean"], 6),
        )
        for name, values in results["test"].items()
        if name in METRIC_NAMES and values["mean"] == values["mean"]  # skip NaN
    ]
    base_model = results["model"].get("model_name_or_path")
    is_hub_id = isinstance(base_model, str) and base_model.count("/") == 1 and not Path(base_model).exists()
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=task_type,
        license="other",
        license_name="no-license-file",
        license_link=ORIGINAL_REPOSITORY,
        tags=["brain-jepa", "fmri", "neuroscience", "neuroimaging", "fine-tuned", "custom_code"],
        base_model=base_model if is_hub_id else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )


def render_finetune_card(results: dict, config: dict, preprocessor: dict, repo_id: str | None = None,
                         folder_name: str = "brain-jepa-finetuned") -> ModelCard:
    """The card of a fine-tuned model from `results.json`, its config.json and preprocessor_config.json."""
    from .finetuning import results_table

    task, training = results["task"], results["training"]
    repo = repo_id or folder_name
    model_name = repo.rstrip("/").split("/")[-1]
    data = build_card_data(results, model_name)
    seeds = len(results["per_seed"])
    regression = task["problem_type"] == "regression"
    target = results.get("regression_target") or {}
    output_note = (
        f"The head predicts the standardised target; multiply by `config.regression_target_std` "
        f"({target.get('std', float('nan')):.4g}) and add `config.regression_target_mean` ({target.get('mean', float('nan')):.4g}) "
        "for original units (done below)."
        if regression else f"The head outputs logits over {task['num_labels']} classes."
    )
    postprocess = (
        "prediction = logits[:, 0] * model.config.regression_target_std + model.config.regression_target_mean"
        if regression else "prediction = logits.argmax(-1)"
    )
    table = results_table([(task["label_column"], task["problem_type"], results["test"])])
    base = results["model"].get("model_name_or_path") or f"random init ({results['model'].get('preset')})"
    body = f"""
# {model_name}

Brain-JEPA encoder fine-tuned to predict `{task['label_column']}` ({task['problem_type'].replace('_', ' ')}) from
parcellated resting-state fMRI, starting from `{base}`. Brain-JEPA: [paper]({PAPER_URL}).

## Results

Test split ({task['num_samples'].get('test', '?')} samples), mean (std) over {seeds} seed(s), metrics in original units;
the model in this repository is the seed with the best validation {training['metric_for_best_model']}
(seed {results.get('selected_seed')}).

{table}
## Training procedure

AdamW, peak learning rate {training['learning_rate']:.3g}, layer-wise decay {training['layer_decay']},
weight decay {training['weight_decay']} (none on biases and norms), drop path {training['drop_path_rate']},
warmup then cosine decay, batch {training['batch_size']}, {training['num_train_epochs']} epoch(s)
(max_steps {training['max_steps']}), best checkpoint on validation, deterministic centre-clip evaluation.
Samples: {json.dumps(task['num_samples'])}.

## Input contract

`fmri_values` of shape (batch, 1, {config.get('num_rois')}, {config.get('num_frames')}): {config.get('num_rois')} ROIs
in the atlas order of the stored gradient, {config.get('num_frames')} frames (the feature extractor takes every
{preprocessor.get('sampling_rate')}th volume of the centre clip and applies `{preprocessor.get('scaling')}` scaling).
{output_note}

## Quick start

```python
import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

repo = "{repo}"
model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True).eval()
extractor = AutoFeatureExtractor.from_pretrained(repo, trust_remote_code=True)
series = np.random.randn({config.get('num_rois')}, {preprocessor.get('sampling_rate', 1) * config.get('num_frames', 1) + 10}).astype("float32")  # (ROI, time)
inputs = extractor(series, time_axis=-1, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
{postprocess}
```

## Intended uses

Research on fMRI representation learning and on the label above, in data preprocessed like the training
data. Not for clinical decisions.

## Limitations

Results hold for the data it was trained on; other scanners, atlases, TRs or preprocessing shift the
inputs. Small test sets give wide confidence intervals: read the seed standard deviations.

## Licence

The original Brain-JEPA code carries no licence file ({ORIGINAL_REPOSITORY}); ask the authors before
commercial use.

## Citation

```bibtex
@inproceedings{{dong2024brainjepa,
  title={{Brain-JEPA: Brain Dynamics Foundation Model with Gradient Positioning and Spatiotemporal Masking}},
  author={{Dong, Zijian and Li, Ruilin and Wu, Yilei and Nguyen, Thuan Tinh and Chong, Joanna Su Xian and Ji, Fang and Tong, Nathanael Ren Jie and Chen, Christopher Li Hsian and Zhou, Juan Helen}},
  booktitle={{Advances in Neural Information Processing Systems}},
  year={{2024}}
}}
```
"""
    content = f"---\n{data.to_yaml()}\n---\n{body}"
    validate_model_card(content)
    return ModelCard(content)


def write_finetune_card(folder: str | Path, results: dict, repo_id: str | None = None) -> Path:
    """Render the card from the files in `folder` and save it as `folder/README.md`."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    preprocessor_path = folder / "preprocessor_config.json"
    preprocessor = json.loads(preprocessor_path.read_text()) if preprocessor_path.is_file() else {}
    card = render_finetune_card(results, config, preprocessor, repo_id=repo_id, folder_name=folder.name.split(".tmp-")[0].lstrip("."))
    path = folder / "README.md"
    card.save(path)
    return path


__all__ = ["build_card_data", "render_finetune_card", "write_finetune_card"]
