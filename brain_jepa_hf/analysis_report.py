"""`analyze_model`: what a Brain-JEPA model attends to in a cohort, as figures, tables and a report.

One call runs the cohort through the encoder once for ROI-pooled attention (`cohort_attention`)
and once for pooled embeddings, adds a gradient attribution when the model has a classification head,
and writes to `output_dir`:

- `figures/*.png`: attention received per network (per class of a label: the Brain-JEPA paper's
  figure), network x network attention, a glass brain of the attention each ROI receives, the gradient
  space of the model's stored gradient, a PCA of the pooled embeddings, the pretraining curves (when
  the model folder has `pretraining_log.jsonl`), the attribution glass brain and network bars;
- `tables/*.csv`: the numbers behind every figure (ROI rows carry name, hemisphere, both network
  levels and x/y/z);
- `report.md`: every figure with one line of interpretation computed from those numbers, the atlas
  and each method named as what it is.

The output folder appears whole or not at all (built in a staging folder, renamed at the end).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .analysis_inputs import (
    analysis_atlas,
    analysis_feature_extractor,
    check_arguments,
    check_cohort,
    check_contrast_classes,
    check_output_dir,
    load_models,
    model_config,
    read_label,
)
from .analysis_sections import (
    FDR_LEVEL,
    ReportContext,
    attention_sections,
    attribution_section,
    embedding_section,
    gradient_section,
    training_section,
)
from .atomic_io import atomic_output_dir
from .attention_pooling import ATTENTION_METHOD, select_layers
from .attribution import ATTRIBUTION_METHODS, roi_attribution
from .cohort_attention import cohort_attention
from .data import open_dataset
from .embedding import compute_embeddings
from .figure_style import save_figure
from .modeling_brain_jepa import resolve_dtype
from .series_fit import check_series_fit, series_lengths


PERMUTATION_TEXT = (
    "two-sided permutation test of the difference in class means per network ({n} label permutations, seed {seed}), "
    "Benjamini-Hochberg FDR over the networks"
)


@dataclass
class AnalysisResult:
    """Where `analyze_model` wrote its outputs, and the interpretation line of each figure."""

    output_dir: Path
    report: Path
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    findings: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_layers(text):
    """`--layers` value: "all" / None -> None; "0,5,11" or "-1" -> list of ints."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return None
    if isinstance(text, str):
        try:
            return [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"layers: expected 'all' or comma-separated layer indices like 0,5,11, got {text!r}"
            ) from None
    return list(text)


def analyze_model(
    model,
    dataset,
    output_dir,
    *,
    label_column: str | None = None,
    atlas=None,
    level: str = "coarse",
    layers=None,
    max_subjects: int | None = None,
    batch_size: int = 4,
    permutations: int = 5000,
    seed: int = 0,
    device: str = "cpu",
    attribution: bool | None = None,
    attribution_method: str = "integrated_gradients",
    attribution_steps: int = 32,
    feature_extractor=None,
    fmri_column: str = "fmri",
    split: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    dtype: str = "float32",
    sampling_rate: int | None = None,
    short_series: str | None = None,
) -> AnalysisResult:
    """
    Analyse `model` (folder, Hub id or model instance) on `dataset` ("example", a save_to_disk /
    build-dataset folder, or a `datasets.Dataset`) and write figures, tables and report.md to
    `output_dir` (refused when it exists and is not empty, unless `overwrite`).

    `atlas`: None (the model's own, `atlas_for`), "released", "example", a table path or an Atlas.
    `level`: "coarse" (7 networks + Subcortical) or "fine" (the atlas's finest labels).
    `layers`: encoder layers to analyse (None = all; negative counts from the end); figures average them.
    `label_column`: a categorical label gives per-class figures and, for each pair of classes, a
    permutation test per network (`permutations` label shuffles; 0 skips it); a continuous one only
    colours the embedding PCA. `attribution`: None = when the model has a classification head,
    True = required (error without a head), False = never. `dtype`: the model's precision ("float32",
    the default, so that figures do not depend on the machine; "bfloat16"; "auto", see `resolve_dtype`).
    `sampling_rate` / `short_series` override the feature extractor's clip stride and short-series rule.
    """
    check_arguments(level, attribution_method, permutations, batch_size, attribution_steps, max_subjects)
    layers = parse_layers(layers)
    dtype = resolve_dtype(dtype, device)
    output_dir = check_output_dir(output_dir, overwrite)

    config, has_head, folder = model_config(model, attribution)
    select_layers(layers, config.num_hidden_layers)  # checked before any work
    atlas = analysis_atlas(atlas, config)
    warnings = []
    dataset_name = (
        dataset
        if isinstance(dataset, str)
        else ("a datasets.Dataset" if not isinstance(dataset, os.PathLike) else str(dataset))
    )
    dataset = open_dataset(dataset, split=split, example_subjects=max_subjects, progress=progress)
    if dataset_name == "example" and atlas.name == "released":
        warnings.append(
            "the embedded example cohort's cortical rows are in brainspace's 7-network order, not the released order: "
            "labelling it with the released atlas mislabels about 30% of the cortical ROIs (use --atlas example)"
        )
    count = check_cohort(dataset, fmri_column, config, max_subjects)
    label = read_label(dataset, label_column, count)
    check_contrast_classes(label, permutations, count)
    feature_extractor = analysis_feature_extractor(model, folder, feature_extractor, sampling_rate, short_series)
    subset = dataset.select(range(count))
    check_series_fit(series_lengths(subset, fmri_column), feature_extractor, fmri_column)  # before any model work
    networks = atlas.network_labels(level)
    encoder, classifier = load_models(model, has_head and attribution is not False, device, dtype)

    cohort = cohort_attention(
        encoder,
        subset,
        feature_extractor,
        networks,
        layers=layers,
        label_column=label.column if label is not None and label.categorical else None,
        batch_size=batch_size,
        progress=progress,
        fmri_column=fmri_column,
    )
    embeddings = compute_embeddings(
        encoder, subset, feature_extractor, batch_size=batch_size, fmri_column=fmri_column, progress=progress
    )
    attributions = None
    if classifier is not None:
        attributions = _attributions(
            classifier,
            subset,
            feature_extractor,
            attribution_method,
            attribution_steps,
            batch_size,
            fmri_column,
            progress,
        )

    with atomic_output_dir(output_dir, overwrite=True) as staging:
        result = AnalysisResult(output_dir=output_dir, report=output_dir / "report.md", warnings=warnings)
        context = _report_context(
            staging, result, atlas, level, cohort, label, count, permutations, seed, encoder.dtype
        )
        attention_sections(context)
        gradient_section(context, encoder, config, feature_extractor)
        embedding_section(context, embeddings, subset)
        if folder is not None and (folder / "pretraining_log.jsonl").is_file():
            training_section(context, folder)
        if attributions is not None:
            attribution_section(
                context,
                attributions,
                ATTRIBUTION_METHODS[attribution_method],
                attribution_method,
                attribution_steps,
                classifier,
            )
        text = _report_text(
            context, model, dataset_name, config, warnings, classifier is not None, sorted(result.tables)
        )
        (staging / "report.md").write_text(text)
        result.findings = {key: line for _, key, _, line in context.sections}
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return result


def _report_context(
    staging: Path, result: AnalysisResult, atlas, level, cohort, label, count, permutations, seed, dtype
) -> ReportContext:
    """The sections' context, writing figures and tables into `staging` and recording their final paths in `result`."""
    (staging / "figures").mkdir()
    (staging / "tables").mkdir()
    output_dir = result.output_dir

    def figure(key: str, fig) -> None:
        save_figure(fig, staging / "figures" / f"{key}.png")
        result.figures[key] = output_dir / "figures" / f"{key}.png"

    def table(key: str, frame, index: bool = False) -> None:
        frame.to_csv(staging / "tables" / f"{key}.csv", index=index)
        result.tables[key] = output_dir / "tables" / f"{key}.csv"

    return ReportContext(atlas, level, cohort, label, count, permutations, seed, figure, table, [], dtype=dtype)


def _attributions(classifier, dataset, feature_extractor, method, steps, batch_size, fmri_column, progress):
    """Per-subject ROI attribution of the predicted class's output (dict of arrays)."""
    device = next(classifier.parameters()).device
    gradient = getattr(feature_extractor, "gradient", None)
    gradient = None if gradient is None else torch.as_tensor(gradient, device=device)
    view = dataset.with_format("numpy", columns=[fmri_column])
    values, targets, gaps, spans = [], [], [], []
    with tqdm(total=len(dataset), desc="attribution", unit="subject", disable=not progress) as bar:
        for first in range(0, len(dataset), batch_size):
            series = view[first : first + batch_size][fmri_column]
            features = feature_extractor(series, time_axis=-1, training=False, return_tensors="pt")
            details = roi_attribution(
                classifier,
                features["fmri_values"].to(device),
                method=method,
                steps=steps,
                gradient=gradient,
                return_details=True,
            )
            values.append(details.values)
            targets.append(details.target)
            if details.completeness_gap is not None:
                gaps.append(details.completeness_gap)
                spans.append(details.output - details.baseline_output)
            bar.update(len(details.values))
    return {
        "values": np.concatenate(values),
        "target": np.concatenate(targets),
        "gap": np.concatenate(gaps) if gaps else None,
        "span": np.concatenate(spans) if spans else None,
    }


# ----------------------------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------------------------


def _report_text(context: ReportContext, model, dataset_name, config, warnings, has_attribution, table_names) -> str:
    atlas, cohort = context.atlas, context.cohort
    model_name = str(model) if not hasattr(model, "config") else type(model).__name__
    lines = [
        "# Brain-JEPA analysis",
        "",
        f"- Model: `{model_name}` ({config.num_hidden_layers} layers, hidden size {config.hidden_size}, {config.num_rois} ROIs)",
        f"- Dataset: `{dataset_name}`, {context.count} subjects analysed",
        f"- Atlas: `{atlas.name}` at the {context.level} level ({len(cohort.networks)} networks: {', '.join(context.network_order)})",
        f"- Layers analysed: {', '.join(str(layer) for layer in cohort.layers)} (figures average them; per-layer values in the tables)",
        f"- Precision: {str(context.dtype).removeprefix('torch.')}",
    ]
    if context.label is not None:
        kind = (
            f"categorical, classes {', '.join(context.label.names[v] for v in context.label.classes)}"
            if context.label.categorical
            else "continuous"
        )
        lines.append(f"- Label: `{context.label.column}` ({kind})")
    lines += [
        "",
        "## Methods",
        "",
        f"- **Attention** ({ATTENTION_METHOD}). Values are shown relative to uniform attention (x uniform: 1 = "
        "every ROI receives the same; figures show the percentage above or below it), averaged over the ROIs of a network so that large networks are not favoured "
        "for their size. Attention weights are not explanations: a highly attended network is not shown to drive "
        "the model's output.",
    ]
    if context.label is not None and context.label.categorical and context.permutations > 0:
        lines.append(
            f"- **Group contrast**: {PERMUTATION_TEXT.format(n=context.permutations, seed=context.seed)}; "
            f"significant at q < {FDR_LEVEL}. Pairs of classes are not corrected for each other."
        )
    if has_attribution:
        lines.append(
            "- **Attribution** of the fine-tuned head's predicted-class output (see its section); a sensitivity "
            "of that output to the input, not a causal effect."
        )
    lines.append(
        "- **Embeddings**: mean over all tokens of the encoder's last layer, deterministic centre clip; PCA to 2-D."
    )
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    for heading, key, alt, interpretation in context.sections:
        lines += ["", f"## {heading}", "", f"![{alt}](figures/{key}.png)", "", interpretation]
        if key == "attention_by_network" and context.contrast_lines:
            lines += [""] + [f"- {line}" for line in context.contrast_lines]
    lines += ["", "## Tables", ""]
    lines += [f"- `tables/{name}.csv`" for name in table_names]
    return "\n".join(lines) + "\n"


__all__ = ["AnalysisResult", "analyze_model", "parse_layers"]
