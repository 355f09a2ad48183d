"""Model cards (README.md) of Brain-JEPA Hub repositories, rendered from the templates in `model_cards/`
and validated as the Hub parses them. Two kinds:

- "encoder" (`render_model_card`): a pretrained or converted encoder, with the paper's results as
  `model-index` for the converted ViT-B weights;
- "fine-tuned" (`render_finetune_card`, `write_finetune_card`): a model from `run_finetuning`, with the
  mean over seeds of every test metric as `model-index` (original units, accuracy-type metrics as fractions).

Both carry the same Hub metadata (`library_name`, `pipeline_tag`, tags, licence) from `build_card_data`
and state the input contract the weights expect.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .configuration_brain_jepa import BrainJepaConfig
from .metrics import METRICS
from .run_results import task_table


# In the source tree the templates are in the top-level model_cards/; an installed wheel carries them
# as the data package brain_jepa_hf/model_cards/ (see pyproject.toml).
TEMPLATE_FOLDER = next(
    (
        folder
        for folder in (
            Path(__file__).resolve().parent / "model_cards",
            Path(__file__).resolve().parents[1] / "model_cards",
        )
        if (folder / "brain-jepa.md").is_file()
    ),
    Path(__file__).resolve().parents[1] / "model_cards",
)
CARD_TEMPLATES = {"encoder": "brain-jepa.md", "fine-tuned": "brain-jepa-finetuned.md"}
CARD_TAGS = {
    "encoder": [
        "brain-jepa",
        "fmri",
        "neuroscience",
        "neuroimaging",
        "jepa",
        "self-supervised",
        "foundation-model",
        "custom_code",
    ],
    "fine-tuned": ["brain-jepa", "fmri", "neuroscience", "neuroimaging", "fine-tuned", "custom_code"],
}
PAPER_URL = "https://arxiv.org/abs/2409.19407"
PAPER_SOURCE = "Brain-JEPA (Dong, Li et al., NeurIPS 2024), reported results"
ORIGINAL_REPOSITORY = "https://github.com/Eric-LRL/Brain-JEPA"
REQUIRED_SECTIONS = (
    "## Input contract",
    "## Quick start",
    "## Intended uses",
    "## Limitations",
    "## Licence",
    "## Citation",
)

# Card facts per encoder size; the authors released ViT-B weights only, so the paper's results go
# into model-index only for converted ViT-B weights. "custom" covers any other shape.
CARD_PRESETS: dict[str, dict] = {
    "vit-small": {"size_name": "ViT-S", "repo_name": "brain-jepa-small", "released": False},
    "vit-base": {"size_name": "ViT-B", "repo_name": "brain-jepa-base", "released": True},
    "vit-large": {"size_name": "ViT-L", "repo_name": "brain-jepa-large", "released": False},
    "custom": {"size_name": "custom size", "repo_name": "brain-jepa-custom", "released": False},
}


@dataclass(frozen=True)
class PaperResult:
    """One number of the paper's fine-tuning tables (mean over 5 seeds, std where reported)."""

    dataset: str
    dataset_type: str
    task: str
    task_type: str
    metric: str
    metric_type: str
    value: float
    std: float | None = None

    @property
    def task_slug(self) -> str:
        """Distinguishes tasks on one dataset in model-index (the Hub groups results by dataset config)."""
        return re.sub(r"[^a-z0-9]+", "-", self.task.lower()).strip("-")

    @property
    def value_text(self) -> str:
        return f"{self.value} ({self.std})" if self.std is not None else f"{self.value}"


def _regression(dataset, dataset_type, task, mse, rho, mse_std=None, rho_std=None):
    return [
        PaperResult(dataset, dataset_type, task, "regression", "MSE", "mse", mse, mse_std),
        PaperResult(dataset, dataset_type, task, "regression", "Pearson r", "pearsonr", rho, rho_std),
    ]


def _classification(dataset, dataset_type, task, acc, f1, acc_std=None, f1_std=None):
    return [
        PaperResult(dataset, dataset_type, task, "classification", "Accuracy (%)", "accuracy", acc, acc_std),
        PaperResult(dataset, dataset_type, task, "classification", "F1 (%)", "f1", f1, f1_std),
    ]


PAPER_RESULTS: list[PaperResult] = [
    *_regression("UK Biobank (held-out 20%)", "ukbiobank", "Age", 0.501, 0.718, 0.034, 0.021),
    *_classification("UK Biobank (held-out 20%)", "ukbiobank", "Sex", 88.17, 88.58, 0.06, 0.11),
    *_regression("HCP-Aging", "hcp-aging", "Age", 0.298, 0.844),
    *_classification("HCP-Aging", "hcp-aging", "Sex", 81.52, 84.26),
    *_regression("HCP-Aging", "hcp-aging", "Neuroticism", 0.897, 0.307),
    *_regression("HCP-Aging", "hcp-aging", "Flanker", 0.972, 0.406),
    *_classification("ADNI", "adni", "NC vs MCI", 76.84, 86.32),
    *_classification("ADNI", "adni", "Amyloid positive vs negative", 71.00, 75.97),
    *_classification("MACC (Asian cohort)", "macc", "NC vs MCI", 65.98, 64.67),
]


def count_encoder_parameters(config: BrainJepaConfig) -> int:
    """Learned parameters of `BrainJepaModel(config)`, from the layer shapes alone."""
    d, hidden = config.hidden_size, config.intermediate_size
    total = d * config.num_channels * config.patch_size + d  # patch embedding
    if config.position_embedding_type == "gradient":
        total += config.gradient_dim * (d // 2) + d // 2
    qkv_bias = 3 * d if config.qkv_bias else 0
    block = 2 * 2 * d + (3 * d * d + qkv_bias) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    return total + config.num_hidden_layers * block + 2 * d


def build_card_data(
    kind: str,
    model_name: str,
    pipeline_tag: str,
    eval_results: list[EvalResult] | None = None,
    base_model: str | None = None,
) -> ModelCardData:
    """Hub metadata of a card of `kind` ("encoder", "fine-tuned"): library, task, tags, licence, the
    base model and, with `eval_results`, model-index under `model_name`."""
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license="other",
        license_name="no-license-file",
        license_link=ORIGINAL_REPOSITORY,
        tags=list(CARD_TAGS[kind]),
        base_model=base_model,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )


def render_card(
    kind: str, card_data: ModelCardData, template_path: str | Path | None = None, **variables
) -> ModelCard:
    """Render the template of `kind` ("encoder", "fine-tuned"; or `template_path`) with `card_data` as
    its YAML header and `variables` in the text, and validate the result."""
    if kind not in CARD_TEMPLATES:
        raise ValueError(f"kind: expected one of {sorted(CARD_TEMPLATES)}, got {kind!r}")
    template_path = Path(template_path) if template_path is not None else TEMPLATE_FOLDER / CARD_TEMPLATES[kind]
    if not template_path.is_file():
        raise FileNotFoundError(f"template_path: model card template not found at {template_path}")
    card = ModelCard.from_template(card_data, template_path=str(template_path), **variables)
    validate_model_card(card.content)
    return card


def paper_eval_results() -> list[EvalResult]:
    """The paper's results of the released ViT-B weights, as model-index entries."""
    return [
        EvalResult(
            task_type=r.task_type,
            task_name=f"{r.task} ({r.dataset})",
            dataset_type=r.dataset_type,
            dataset_name=r.dataset,
            dataset_config=r.task_slug,
            metric_type=r.metric_type,
            metric_name=r.metric,
            metric_value=r.value,
            source_name=PAPER_SOURCE,
            source_url=PAPER_URL,
            verified=False,
        )
        for r in PAPER_RESULTS
    ]


def render_model_card(
    preset: str = "vit-base",
    config: BrainJepaConfig | None = None,
    repo_id: str | None = None,
    converted_from: str | None = "target_encoder",
    sampling_rate: int = 3,
    scaling: str = "zscore",
    template_path: str | Path | None = None,
    space_id: str | None = None,
) -> ModelCard:
    """The README.md of a Brain-JEPA Hub repository for an encoder size (`vit-small|base|large|custom`).

    `config` defaults to the preset's configuration; pass the model's config so that the card states
    its real shapes. `repo_id` is what the quick start loads (a Hub id or a folder).
    `converted_from` names the original state dict the weights came from ("target_encoder",
    "encoder"), or None for weights trained with this package; the paper's results are listed
    (model-index) only for ViT-B weights converted from the authors' release. `space_id` names the
    demo Space (`brain-jepa space create`) the card links to.
    """
    facts = _preset_facts(preset)
    if converted_from not in (None, "target_encoder", "encoder"):
        raise ValueError(f"converted_from: expected 'target_encoder', 'encoder' or None, got {converted_from!r}")
    if config is None:
        if preset == "custom":
            raise ValueError("config: expected a BrainJepaConfig for preset 'custom', got None")
        config = BrainJepaConfig.from_preset(preset)
    with_results = facts["released"] and converted_from is not None
    if not isinstance(sampling_rate, int) or sampling_rate < 1:
        raise ValueError(f"sampling_rate: expected a positive integer, got {sampling_rate!r}")
    repo_id = repo_id or f"brain-jepa/{facts['repo_name']}"
    model_name = repo_id.rstrip("/").split("/")[-1]
    card_data = build_card_data(
        "encoder", model_name, "feature-extraction", paper_eval_results() if with_results else None
    )
    clip_length = sampling_rate * config.num_frames
    return render_card(
        "encoder",
        card_data,
        template_path,
        title=f"Brain-JEPA {facts['size_name']}",
        size_name=facts["size_name"],
        converted=converted_from is not None,
        source=converted_from,
        repo_id=repo_id,
        num_rois=config.num_rois,
        num_frames=config.num_frames,
        patch_size=config.patch_size,
        num_time_patches=config.num_time_patches,
        num_patches=config.num_patches,
        gradient_dim=config.gradient_dim,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_parameters_millions=f"{count_encoder_parameters(config) / 1e6:.1f}",
        sampling_rate=sampling_rate,
        clip_length=clip_length,
        example_frames=clip_length + 10,
        scaling=scaling,
        results=PAPER_RESULTS if with_results else [],
        space_id=space_id,
    )


def finetune_eval_results(results: dict) -> list[EvalResult]:
    """model-index entries of a fine-tuning `results.json`: one per test metric (mean over seeds)."""
    task = results["task"]
    regression = task["problem_type"] == "regression"
    dataset = str(task["dataset"])
    dataset_name = "Brain-JEPA synthetic example cohort" if dataset == "example" else Path(dataset).name
    seeds = len(results["per_seed"])
    return [
        EvalResult(
            task_type="tabular-regression" if regression else "tabular-classification",
            task_name=f"{task['label_column']} ({'regression' if regression else 'classification'})",
            dataset_type="brain-jepa-example" if dataset == "example" else dataset_name,
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type=METRICS[name].hub_type,
            metric_name=f"{METRICS[name].card_name} (mean of {seeds} seeds)",
            metric_value=round(values["mean"], 6),
        )
        for name, values in results["test"].items()
        if name in METRICS and values["mean"] == values["mean"]  # skip NaN
    ]


def render_finetune_card(
    results: dict,
    config: dict,
    preprocessor: dict,
    repo_id: str | None = None,
    folder_name: str = "brain-jepa-finetuned",
) -> ModelCard:
    """The card of a fine-tuned model from `results.json`, its config.json and preprocessor_config.json."""
    task, training, model = results["task"], results["training"], results["model"]
    repo = repo_id or folder_name
    model_name = repo.rstrip("/").split("/")[-1]
    regression = task["problem_type"] == "regression"
    base_model = model.get("model_name_or_path")
    is_hub_id = isinstance(base_model, str) and base_model.count("/") == 1 and not Path(base_model).exists()
    card_data = build_card_data(
        "fine-tuned",
        model_name,
        "tabular-regression" if regression else "tabular-classification",
        finetune_eval_results(results),
        base_model if is_hub_id else None,
    )
    target = results.get("regression_target") or {}
    return render_card(
        "fine-tuned",
        card_data,
        model_name=model_name,
        repo=repo,
        label_column=task["label_column"],
        problem_type=task["problem_type"].replace("_", " "),
        base=base_model or f"random init ({model.get('preset')})",
        num_test=task["num_samples"].get("test", "?"),
        num_samples=json.dumps(task["num_samples"]),
        num_labels=task["num_labels"],
        seeds=len(results["per_seed"]),
        selected_seed=results.get("selected_seed"),
        table=task_table(results),
        training=training,
        learning_rate=f"{training['learning_rate']:.3g}",
        regression=regression,
        target_std=f"{target.get('std', float('nan')):.4g}",
        target_mean=f"{target.get('mean', float('nan')):.4g}",
        num_rois=config.get("num_rois"),
        num_frames=config.get("num_frames"),
        sampling_rate=preprocessor.get("sampling_rate"),
        scaling=preprocessor.get("scaling"),
        example_frames=preprocessor.get("sampling_rate", 1) * config.get("num_frames", 1) + 10,
        paper_url=PAPER_URL,
        original_repository=ORIGINAL_REPOSITORY,
    )


def write_finetune_card(folder: str | Path, results: dict, repo_id: str | None = None) -> Path:
    """Render the card from the files in `folder` and save it as `folder/README.md`."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    preprocessor_path = folder / "preprocessor_config.json"
    preprocessor = json.loads(preprocessor_path.read_text()) if preprocessor_path.is_file() else {}
    card = render_finetune_card(
        results, config, preprocessor, repo_id=repo_id, folder_name=folder.name.split(".tmp-")[0].lstrip(".")
    )
    path = folder / "README.md"
    card.save(path)
    return path


def validate_model_card(content: str) -> ModelCard:
    """Parse a card as the Hub does and check what users and the Hub rely on; raise ValueError listing problems."""
    if not content.startswith("---\n"):
        raise ValueError("model card: expected YAML metadata between '---' lines at the top, got none")
    card = ModelCard(content)
    data = card.data
    problems = []
    if data.library_name != "transformers":
        problems.append(f"library_name: expected 'transformers', got {data.library_name!r}")
    if not data.pipeline_tag:
        problems.append("pipeline_tag: expected a task name, got none")
    if not data.license:
        problems.append("license: expected a licence entry (use 'other' and say why), got none")
    if not data.tags:
        problems.append("tags: expected a non-empty list, got none")
    if data.get("model-index") is not None or getattr(data, "eval_results", None):
        for result in data.eval_results or []:
            if result.metric_value is None:
                problems.append(f"model-index: result {result.task_name!r} has no metric value")
    missing = [s for s in REQUIRED_SECTIONS if s not in card.text]
    if missing:
        problems.append(f"sections: expected {list(REQUIRED_SECTIONS)}, missing {missing}")
    leftovers = re.findall(r"{{.*?}}|{%.*?%}", card.content)
    if leftovers:
        problems.append(f"template: unrendered placeholders {leftovers[:5]}")
    if problems:
        raise ValueError("model card is invalid:\n- " + "\n- ".join(problems))
    return card


def quick_start_code(content: str) -> str:
    """The first ```python block under '## Quick start' (what users copy first)."""
    section = content.split("## Quick start", 1)
    if len(section) != 2:
        raise ValueError("model card: expected a '## Quick start' section, got none")
    match = re.search(r"```python\n(.*?)```", section[1], flags=re.S)
    if match is None:
        raise ValueError("model card: expected a ```python block in '## Quick start', got none")
    return match.group(1)


def _preset_facts(preset: str) -> dict:
    key = preset.lower().replace("_", "-")
    if key not in CARD_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(CARD_PRESETS)}, got {preset!r}")
    return CARD_PRESETS[key]


__all__ = [
    "CARD_PRESETS",
    "CARD_TEMPLATES",
    "PAPER_RESULTS",
    "PaperResult",
    "build_card_data",
    "count_encoder_parameters",
    "finetune_eval_results",
    "paper_eval_results",
    "quick_start_code",
    "render_card",
    "render_finetune_card",
    "render_model_card",
    "validate_model_card",
    "write_finetune_card",
]
