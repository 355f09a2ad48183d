"""`analyze_model`: what a Brain-JEPA model attends to in a cohort, as figures, tables and a report.

One call runs the cohort through the encoder once for ROI-pooled attention (`analysis.cohort_attention`)
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

import copy

import itertools
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LEVELS = ("coarse", "fine")
ATTRIBUTION_METHODS = ("integrated_gradients", "input_x_gradient")
MAX_CLASSES = 20  # a label with more distinct numeric values is treated as continuous
MAX_CONTRASTS = 6  # pairs of classes contrasted at most (4 classes)
FDR_LEVEL = 0.05
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


@dataclass
class _Label:
    column: str
    values: np.ndarray  # (S,) raw values of the analysed rows
    categorical: bool
    classes: list  # sorted distinct values (categorical only)
    names: dict  # value -> display name

    def display(self) -> np.ndarray:
        if not self.categorical:
            return self.values.astype(np.float64)
        return np.array([self.names[v] for v in self.values.tolist()], dtype=object)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def parse_layers(text):
    """`--layers` value: "all" / None -> None; "0,5,11" or "-1" -> list of ints."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "all"):
        return None
    if isinstance(text, str):
        try:
            return [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"layers: expected 'all' or comma-separated layer indices like 0,5,11, got {text!r}") from None
    return list(text)


def _check_output_dir(output_dir, overwrite: bool) -> Path:
    output_dir = Path(output_dir)
    if output_dir.exists():
        if not output_dir.is_dir():
            raise FileExistsError(f"output_dir: {output_dir} exists and is not a folder")
        if any(output_dir.iterdir()) and not overwrite:
            raise FileExistsError(f"output_dir: {output_dir} is not empty; pass --overwrite (overwrite=True) to replace it")
    return output_dir


def _model_config(model, attribution):
    """(config, has a classification head, folder or None) without loading weights."""
    import torch

    from .configuration_brain_jepa import BrainJepaConfig
    from .modeling_brain_jepa import BrainJepaForSequenceClassification

    folder = None
    if isinstance(model, torch.nn.Module):
        encoder = getattr(model, "base_model", model)
        config = getattr(encoder, "config", None)
        if not isinstance(config, BrainJepaConfig):
            raise ValueError(f"model: expected a Brain-JEPA model, folder or Hub id, got {type(model).__name__}")
        has_head = isinstance(model, BrainJepaForSequenceClassification) and model.config.num_labels > 0
        architectures = [type(model).__name__]
    else:
        source = str(model)
        if Path(source).exists():
            folder = Path(source)
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"model: expected a model folder with config.json, got {source} without one")
        config = BrainJepaConfig.from_pretrained(source)
        architectures = list(getattr(config, "architectures", None) or [])
        has_head = "BrainJepaForSequenceClassification" in architectures and config.num_labels > 0
    if attribution and not has_head:
        raise ValueError(
            f"attribution: the model has no classification head (architectures {architectures}); attribution needs a "
            "fine-tuned classifier (a `brain-jepa finetune` output); drop --attribution to analyse attention only"
        )
    return config, has_head, folder


def _load_models(model, with_head: bool, device, dtype):
    """(encoder, classifier or None) on `device` in `dtype`, in eval mode."""
    import torch

    from .modeling_brain_jepa import BrainJepaForSequenceClassification, BrainJepaModel

    if isinstance(model, torch.nn.Module):
        classifier = model if with_head else None
        encoder = getattr(model, "base_model", model)
    elif with_head:
        classifier = BrainJepaForSequenceClassification.from_pretrained(str(model))
        encoder = classifier.brain_jepa
    else:
        classifier, encoder = None, BrainJepaModel.from_pretrained(str(model))
    encoder = encoder.to(device, dtype).eval()
    if classifier is not None:
        classifier = classifier.to(device, dtype).eval()
    return encoder, classifier


def _check_layers(layers, num_layers: int) -> None:
    for layer in layers or []:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -num_layers <= layer < num_layers:
            raise ValueError(f"layers: expected indices in [{-num_layers}, {num_layers - 1}] (the model has {num_layers} layers), got {layer!r}")


def _resolve_atlas(atlas_spec, config):
    from .atlas import EXAMPLE, RELEASED, atlas_from_config_value, resolve_atlas

    if atlas_spec is not None:
        return resolve_atlas(atlas_spec, num_rois=config.num_rois)
    atlas = atlas_from_config_value(getattr(config, "atlas", None))
    if atlas is None:
        raise ValueError(
            f"atlas: the model carries no atlas (its config.atlas is empty), so its {config.num_rois} ROIs have no names or "
            f"networks; pass --atlas PATH (a CSV/TSV table: index,name,network[,coarse_network,hemisphere,x,y,z]), "
            f"--atlas {RELEASED} (the released 450-ROI layout) or --atlas {EXAMPLE} (the embedded example cohort)"
        )
    if atlas.num_rois != config.num_rois:
        raise ValueError(f"atlas: expected {config.num_rois} rows (the model's num_rois), got {atlas.num_rois} in {atlas.name!r}")
    return atlas


def _label(dataset, label_column, count) -> _Label | None:
    if label_column is None:
        return None
    if label_column not in dataset.column_names:
        raise ValueError(f"label_column: expected one of the dataset's columns {dataset.column_names}, got {label_column!r}")
    raw = dataset.select(range(count))[label_column]
    missing = sum(1 for v in raw if v is None or (isinstance(v, float) and math.isnan(v)))
    if missing:
        raise ValueError(f"label_column: {missing} of the {count} analysed rows have no {label_column!r} value; drop them first")
    values = np.asarray(raw, dtype=object)
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in raw[:1]):
        raise ValueError(f"label_column: expected one value per subject, got sequences in {label_column!r}")
    distinct = list(dict.fromkeys(values.tolist()))
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in distinct)
    categorical = not numeric or len(distinct) <= MAX_CLASSES and all(float(v).is_integer() for v in distinct)
    if not categorical:
        return _Label(label_column, values.astype(np.float64), False, [], {})
    try:
        classes = sorted(distinct)
    except TypeError:
        classes = sorted(distinct, key=str)
    if len(classes) > MAX_CLASSES:
        raise ValueError(
            f"label_column: {label_column!r} has {len(classes)} distinct values, more than {MAX_CLASSES}; "
            "per-class summaries need a categorical label (bin it first, e.g. with dataset.map)"
        )
    feature = dataset.features.get(label_column)
    class_names = getattr(feature, "names", None)
    names = {}
    for value in classes:
        if class_names is not None and isinstance(value, (int, np.integer)) and 0 <= value < len(class_names):
            names[value] = str(class_names[value])
        elif isinstance(value, str):
            names[value] = value
        else:
            names[value] = f"{label_column}={value}"
    return _Label(label_column, values, True, classes, names)


def _fmri_rows(dataset, fmri_column) -> int | None:
    feature = dataset.features.get(fmri_column)
    shape = getattr(feature, "shape", None)
    return int(shape[0]) if shape else None


# ----------------------------------------------------------------------------------------------
# Small numeric summaries for the report lines
# ----------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _pct(ratio: float) -> str:
    """A ratio to uniform as a signed percentage: 1.012 -> '+1.2%'."""
    return f"{100 * (ratio - 1):+.2g}%"


def _display_order(names: list[str]) -> np.ndarray:
    """Positions of `names` in the usual order (Subcortical, Vis, SomMot, DorsAttn, SalVentAttn, Limbic,
    Cont, Default, then the 17 networks in Schaefer order); names outside it keep their order, last."""
    from .atlas import released_atlas

    released = released_atlas()
    usual = {name: k for k, name in enumerate(dict.fromkeys(released.network_order("coarse") + released.network_order("fine")))}
    return np.array(sorted(range(len(names)), key=lambda k: (usual.get(names[k], len(usual)), k)), dtype=np.int64)


def _ci95(values: np.ndarray) -> np.ndarray:
    """Half-width of a normal 95% interval of the mean over axis 0 (0 for a single subject)."""
    if values.shape[0] < 2:
        return np.zeros(values.shape[1:])
    return 1.96 * values.std(axis=0, ddof=1) / math.sqrt(values.shape[0])


def _pca(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = embeddings - embeddings.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centred @ components[:2].T, explained


def _roi_frame(atlas, values: dict):
    import pandas as pd

    frame = pd.DataFrame({
        "index": np.arange(atlas.num_rois), "roi": list(atlas.roi_names), "hemisphere": list(atlas.hemispheres),
        "network": list(atlas.networks), "coarse_network": list(atlas.coarse_networks),
        "x": atlas.coords[:, 0], "y": atlas.coords[:, 1], "z": atlas.coords[:, 2],
    })
    for name, column in values.items():
        frame[name] = column
    return frame


def _describe_roi(atlas, index: int, level: str) -> str:
    network = atlas.network_labels(level)[index]
    hemisphere = {"L": "left", "R": "right"}.get(atlas.hemispheres[index], "")
    where = ", ".join(part for part in (network, hemisphere) if part)
    return f"{atlas.roi_names[index]} ({where})"


# ----------------------------------------------------------------------------------------------
# The analysis
# ----------------------------------------------------------------------------------------------


def analyze_model(
    model, dataset, output_dir, *, label_column: str | None = None, atlas=None, level: str = "coarse", layers=None,
    max_subjects: int | None = None, batch_size: int = 4, permutations: int = 5000, seed: int = 0,
    device: str = "cpu", attribution: bool | None = None, attribution_method: str = "integrated_gradients",
    attribution_steps: int = 32, feature_extractor=None, fmri_column: str = "fmri", split: str | None = None,
    overwrite: bool = False, progress: bool = True, dtype: str = "float32", sampling_rate: int | None = None,
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
    from .analysis import ATTRIBUTION_METHODS as ATTRIBUTION_TEXT
    from .analysis import cohort_attention
    from .atomic_io import atomic_output_dir
    from .data import open_dataset
    from .embedding import compute_embeddings
    from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor
    from .series_fit import check_series_fit, series_lengths, set_series_options

    if level not in LEVELS:
        raise ValueError(f"level: expected one of {LEVELS}, got {level!r}")
    if attribution_method not in ATTRIBUTION_METHODS:
        raise ValueError(f"attribution_method: expected one of {ATTRIBUTION_METHODS}, got {attribution_method!r}")
    for name, value, low in (("permutations", permutations, 0), ("batch_size", batch_size, 1),
                             ("attribution_steps", attribution_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if max_subjects is not None and (isinstance(max_subjects, bool) or not isinstance(max_subjects, int) or max_subjects < 1):
        raise ValueError(f"max_subjects: expected a positive integer or None, got {max_subjects!r}")
    layers = parse_layers(layers)
    from .modeling_brain_jepa import resolve_dtype

    dtype = resolve_dtype(dtype, device)
    output_dir = _check_output_dir(output_dir, overwrite)

    config, has_head, folder = _model_config(model, attribution)
    _check_layers(layers, config.num_hidden_layers)
    atlas = _resolve_atlas(atlas, config)
    warnings = []
    dataset_name = dataset if isinstance(dataset, str) else ("a datasets.Dataset" if not isinstance(dataset, os.PathLike) else str(dataset))
    dataset = open_dataset(dataset, split=split, example_subjects=max_subjects, progress=progress)
    if dataset_name == "example" and atlas.name == "released":
        warnings.append(
            "the embedded example cohort's cortical rows are in brainspace's 7-network order, not the released order: "
            "labelling it with the released atlas mislabels about 30% of the cortical ROIs (use --atlas example)"
        )
    if fmri_column not in dataset.column_names:
        raise ValueError(f"fmri_column: expected a column {fmri_column!r}, got columns {dataset.column_names}")
    rows = _fmri_rows(dataset, fmri_column)
    if rows is not None and rows != config.num_rois:
        raise ValueError(f"dataset: its {fmri_column!r} series have {rows} ROIs (rows), the model expects num_rois={config.num_rois}")
    count = len(dataset) if max_subjects is None else min(len(dataset), max_subjects)
    if count == 0:
        raise ValueError("dataset: expected at least one row, got 0")
    label = _label(dataset, label_column, count)
    if label is not None and label.categorical and len(label.classes) < 2 and permutations > 0:
        raise ValueError(
            f"label_column: {label.column!r} has one class ({label.classes[0]!r}) in the {count} analysed subjects; a "
            "contrast needs two (analyse more subjects with --max_subjects, another label, or --permutations 0 to skip it)"
        )
    if label is not None and label.categorical and len(label.classes) >= 2 and permutations > 0:
        counts = {value: int(np.sum(label.values == value)) for value in label.classes}
        rare = [value for value, n in counts.items() if n < 2]
        if rare:
            raise ValueError(
                f"label_column: class {rare[0]!r} of {label.column!r} has {counts[rare[0]]} subject among the {count} analysed; "
                "a contrast needs at least 2 per class (more --max_subjects, or --permutations 0 to skip it)"
            )
    if feature_extractor is None:
        if folder is None and not isinstance(model, str):
            raise ValueError("feature_extractor: expected one for a model instance (a folder or Hub id brings its own)")
        feature_extractor = BrainJepaFeatureExtractor.from_pretrained(str(model))
    elif sampling_rate is not None or short_series is not None:
        feature_extractor = copy.deepcopy(feature_extractor)  # the caller's stays as it was
    set_series_options(feature_extractor, sampling_rate=sampling_rate, short_series=short_series)
    subset = dataset.select(range(count))
    check_series_fit(series_lengths(subset, fmri_column), feature_extractor, fmri_column)  # before any model work
    networks = atlas.network_labels(level)
    encoder, classifier = _load_models(model, has_head and attribution is not False, device, dtype)

    cohort = cohort_attention(
        encoder, subset, feature_extractor, networks, layers=layers,
        label_column=label.column if label is not None and label.categorical else None,
        batch_size=batch_size, progress=progress, fmri_column=fmri_column,
    )
    embeddings = compute_embeddings(encoder, subset, feature_extractor, batch_size=batch_size,
                                    fmri_column=fmri_column, progress=progress)
    attributions = None
    if classifier is not None:
        attributions = _attributions(classifier, subset, feature_extractor, attribution_method, attribution_steps,
                                     batch_size, fmri_column, progress)

    from .figures import save_figure

    with atomic_output_dir(output_dir, overwrite=True) as staging:
        (staging / "figures").mkdir()
        (staging / "tables").mkdir()
        result = AnalysisResult(output_dir=output_dir, report=output_dir / "report.md", warnings=warnings)
        sections: list[tuple[str, str, str, str]] = []  # (heading, figure key, alt text, interpretation)

        def figure(key: str, fig) -> None:
            save_figure(fig, staging / "figures" / f"{key}.png")
            result.figures[key] = output_dir / "figures" / f"{key}.png"

        def table(key: str, frame, index: bool = False) -> None:
            frame.to_csv(staging / "tables" / f"{key}.csv", index=index)
            result.tables[key] = output_dir / "tables" / f"{key}.csv"

        context = _Context(atlas, level, cohort, label, count, permutations, seed, figure, table, sections,
                           dtype=encoder.dtype)
        _attention_sections(context)
        _gradient_section(context, encoder, config, feature_extractor)
        _embedding_section(context, embeddings, subset)
        if folder is not None and (folder / "pretraining_log.jsonl").is_file():
            _training_section(context, folder)
        if attributions is not None:
            _attribution_section(context, attributions, ATTRIBUTION_TEXT[attribution_method], attribution_method,
                                 attribution_steps, classifier)
        text = _report_text(context, model, dataset_name, config, warnings, classifier is not None, sorted(result.tables))
        (staging / "report.md").write_text(text)
        result.findings = {key: line for _, key, _, line in sections}
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return result


def _attributions(classifier, dataset, feature_extractor, method, steps, batch_size, fmri_column, progress):
    """Per-subject ROI attribution of the predicted class's output (dict of arrays)."""
    import torch
    from tqdm.auto import tqdm

    from .analysis import roi_attribution

    device = next(classifier.parameters()).device
    gradient = getattr(feature_extractor, "gradient", None)
    gradient = None if gradient is None else torch.as_tensor(gradient, device=device)
    view = dataset.with_format("numpy", columns=[fmri_column])
    values, targets, gaps, spans = [], [], [], []
    with tqdm(total=len(dataset), desc="attribution", unit="subject", disable=not progress) as bar:
        for first in range(0, len(dataset), batch_size):
            series = view[first: first + batch_size][fmri_column]
            features = feature_extractor(series, time_axis=-1, training=False, return_tensors="pt")
            details = roi_attribution(classifier, features["fmri_values"].to(device), method=method, steps=steps,
                                      gradient=gradient, return_details=True)
            values.append(details.values)
            targets.append(details.target)
            if details.completeness_gap is not None:
                gaps.append(details.completeness_gap)
                spans.append(details.output - details.baseline_output)
            bar.update(len(details.values))
    return {
        "values": np.concatenate(values), "target": np.concatenate(targets),
        "gap": np.concatenate(gaps) if gaps else None, "span": np.concatenate(spans) if spans else None,
    }


@dataclass
class _Context:
    atlas: object
    level: str
    cohort: object
    label: _Label | None
    count: int
    permutations: int
    seed: int
    figure: object
    table: object
    sections: list
    contrast_lines: list = field(default_factory=list)
    network_order: list = field(default_factory=list)
    dtype: object = None  # the model's precision


def _class_groups(context: _Context, values: np.ndarray) -> tuple[dict, dict]:
    """Per-class means and 95% intervals of per-subject values (S, K); one 'all subjects' group without a label."""
    label = context.label
    if label is None or not label.categorical or len(label.classes) < 2:
        return {"all subjects": values.mean(axis=0)}, {"all subjects": _ci95(values)}
    means, errors = {}, {}
    for value in label.classes:
        rows = label.values == value
        name = f"{label.names[value]} (n={int(rows.sum())})"
        means[name] = values[rows].mean(axis=0)
        errors[name] = _ci95(values[rows])
    return means, errors


def _attention_sections(context: _Context) -> None:
    import pandas as pd

    from .figures import plot_glass_brain, plot_network_bars, plot_network_matrix

    atlas, cohort = context.atlas, context.cohort
    num_rois = atlas.num_rois
    permutation = _display_order(cohort.networks)
    order = [cohort.networks[k] for k in permutation]
    context.network_order = order
    sizes = [atlas.network_labels(context.level).count(name) for name in order]
    layer_text = ", ".join(str(layer) for layer in cohort.layers)
    per_subject = cohort.subject_received.mean(axis=1)[:, permutation] * num_rois  # (S, K), x uniform

    # network bars: the paper's figure
    means, errors = _class_groups(context, per_subject)
    percent = {name: 100 * (value - 1) for name, value in means.items()}
    figure = plot_network_bars(percent, order, errors={name: 100 * e for name, e in errors.items()},
                               ylabel="attention received vs uniform (%)",
                               title=f"Attention received per network (layers {layer_text})",
                               group_label=context.label.column if context.label is not None else "class")
    context.figure("attention_by_network", figure)
    overall = per_subject.mean(axis=0)
    frame = pd.DataFrame({"network": order, "num_rois": sizes, "attention_received_x_uniform": overall,
                          "ci95": _ci95(per_subject)})
    for layer_index, layer in enumerate(cohort.layers):
        frame[f"layer_{layer}"] = cohort.subject_received[:, layer_index][:, permutation].mean(axis=0) * num_rois
    if len(means) > 1:
        for name, value in means.items():
            frame[f"class {name}"] = value
    context.table("network_attention", frame)
    context.table("subject_network_attention", cohort.received_table())
    top, bottom = int(np.argmax(overall)), int(np.argmin(overall))
    line = (
        f"{order[top]} receives the most attention ({_pct(overall[top])} vs uniform, size-normalised: 0% = every ROI "
        f"equally), {order[bottom]} the least ({_pct(overall[bottom])}), mean over {context.count} subjects and "
        f"layers {layer_text}."
    )
    context.sections.append(("Attention received per network", "attention_by_network",
                             "bar chart of attention received per network", line))

    # contrasts between classes
    label = context.label
    if label is not None and not label.categorical:
        context.contrast_lines.append(
            f"{label.column!r} is continuous: no per-class bars and no contrast (bin it into classes first, e.g. with "
            "dataset.map); it colours the embedding PCA below."
        )
    if label is not None and label.categorical and len(label.classes) >= 2 and context.permutations > 0:
        pairs = list(itertools.combinations(label.classes, 2))
        if len(pairs) > MAX_CONTRASTS:
            context.contrast_lines.append(
                f"{len(label.classes)} classes: contrasts skipped (at most {MAX_CONTRASTS} pairs); "
                "select two classes (dataset.filter) to test them."
            )
        else:
            _contrasts(context, per_subject, pairs)

    # network x network
    matrix = cohort.network_matrix.mean(axis=0)[np.ix_(permutation, permutation)] * num_rois
    figure = plot_network_matrix(100 * (matrix - 1), order, title=f"Attention between networks (layers {layer_text})",
                                 colorbar_label="attention vs uniform (%)", row_label="query network (attending)",
                                 column_label="key network (attended)")
    context.figure("network_matrix", figure)
    context.table("network_matrix", pd.DataFrame(matrix, index=pd.Index(order, name="query_network"), columns=order), index=True)
    i, j = np.unravel_index(int(np.argmax(matrix)), matrix.shape)
    diagonal = float(np.mean(np.diag(matrix)))
    off = float((matrix.sum() - np.trace(matrix)) / max(matrix.size - len(order), 1))
    line = (
        f"Strongest pair: queries in {order[i]} attend to {order[j]} at {_pct(matrix[i, j])} vs uniform; within-network "
        f"attention averages {_pct(diagonal)} against {_pct(off)} between networks."
    )
    context.sections.append(("Attention between networks", "network_matrix", "network by network attention heatmap", line))

    # per ROI
    roi = cohort.subject_roi_received.mean(axis=(0, 1)) * num_rois
    figure = plot_glass_brain(100 * (roi - 1), atlas.coords, networks=atlas.network_labels(context.level),
                              title=f"Attention received per ROI (layers {layer_text})", colorbar_label="vs uniform (%)")
    context.figure("attention_glass_brain", figure)
    values = {"attention_received_x_uniform": roi}
    for layer_index, layer in enumerate(cohort.layers):
        values[f"layer_{layer}"] = cohort.subject_roi_received[:, layer_index].mean(axis=0) * num_rois
    context.table("roi_attention", _roi_frame(atlas, values))
    ranked = np.argsort(-roi)
    top_networks = [atlas.network_labels(context.level)[k] for k in ranked[:10]]
    common = max(set(top_networks), key=top_networks.count)
    line = (
        f"Most attended ROI: {_describe_roi(atlas, int(ranked[0]), context.level)} at {_pct(roi[ranked[0]])} vs uniform; "
        f"{top_networks.count(common)} of the 10 most attended ROIs are in {common}."
    )
    missing = int((~np.isfinite(atlas.coords).all(axis=1)).sum())
    if missing:
        line += f" {missing} ROIs without coordinates are shown in the strip below the brain."
    context.sections.append(("Attention received per ROI", "attention_glass_brain", "glass brain of attention per ROI", line))


def _contrasts(context: _Context, per_subject: np.ndarray, pairs: list) -> None:
    from .analysis import permutation_test

    label = context.label
    for first, second in pairs:
        keep = np.isin(label.values, [first, second])
        result = permutation_test(per_subject[keep], label.values[keep], n_permutations=context.permutations,
                                  seed=context.seed, names=context.network_order, order=(first, second))
        name_a, name_b = label.names[first], label.names[second]
        key = f"contrast_{_slug(name_b)}_vs_{_slug(name_a)}"
        context.table(key, result.reset_index())
        significant = result[result["p_fdr"] < FDR_LEVEL]
        if len(significant):
            parts = [f"{network} ({100 * row.difference:+.2g} percentage points, p_fdr = {_fmt(row.p_fdr)})"
                     for network, row in significant.sort_values("p_fdr").iterrows()]
            line = f"{name_b} vs {name_a}: {len(significant)} network(s) differ after FDR correction (q < {FDR_LEVEL}): " + ", ".join(parts) + "."
        else:
            best = result["p_fdr"].idxmin()
            line = (f"{name_b} vs {name_a}: no network differs after FDR correction (smallest p_fdr = "
                    f"{_fmt(result.loc[best, 'p_fdr'])}, {best}; n = {int(result['n_b'].iloc[0])} vs {int(result['n_a'].iloc[0])}).")
        context.contrast_lines.append(f"{line} Table: `tables/{key}.csv`.")


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in str(text)).strip("_")
    return cleaned or "class"


def _gradient_section(context: _Context, encoder, config, feature_extractor) -> None:
    from .figures import plot_gradient_space

    gradient, source = None, ""
    stored = getattr(getattr(encoder, "embeddings", None), "gradient", None)
    if getattr(config, "position_embedding_type", "gradient") == "gradient" and stored is not None and bool(stored.abs().sum() > 0):
        gradient, source = stored.detach().float().cpu().numpy(), "the model's stored gradient"
    elif getattr(feature_extractor, "gradient", None) is not None:
        gradient, source = np.asarray(feature_extractor.gradient, dtype=np.float64), "the feature extractor's gradient"
    if gradient is None or gradient.shape[1] < 2:
        return
    networks = context.atlas.network_labels(context.level)
    figure = plot_gradient_space(gradient, networks, title=f"Brain gradient positioning ({source})")
    context.figure("gradient_space", figure)
    context.table("roi_gradient", _roi_frame(context.atlas, {f"gradient_{k + 1}": gradient[:, k] for k in range(gradient.shape[1])}))
    order = list(dict.fromkeys(networks))
    labels = np.array(networks)
    parts = []
    for column in (0, 1):
        means = np.array([gradient[labels == name, column].mean() for name in order])
        parts.append(f"gradient {column + 1} runs from {order[int(np.argmin(means))]} to {order[int(np.argmax(means))]}")
    line = (f"In {source} (the ROI positions of the model's spatial embedding), " + "; ".join(parts)
            + " (network means; the sign of a gradient is arbitrary).")
    context.sections.append(("Brain gradient positioning", "gradient_space", "ROIs in gradient space coloured by network", line))


def _embedding_section(context: _Context, embeddings: np.ndarray, subset) -> None:
    import pandas as pd

    from .figures import plot_embedding_scatter

    if embeddings.shape[0] < 3:
        return
    label = context.label
    labels = label.display() if label is not None else np.array(["all subjects"] * embeddings.shape[0], dtype=object)
    name = label.column if label is not None else "subjects"
    figure = plot_embedding_scatter(embeddings, labels.astype(str) if label is None or label.categorical else labels,
                                    label_name=name, title="Pooled embeddings (PCA)", categorical=None if label is None else label.categorical)
    context.figure("embeddings_pca", figure)
    points, explained = _pca(embeddings)
    frame = pd.DataFrame({"pc1": points[:, 0], "pc2": points[:, 1]})
    if "subject_id" in subset.column_names:
        frame.insert(0, "subject_id", subset["subject_id"])
    if label is not None:
        frame.insert(1 if "subject_id" in frame else 0, label.column, label.values)
    context.table("embeddings_pca", frame)
    line = f"PC1 and PC2 hold {100 * explained[0]:.0f}% and {100 * explained[1]:.0f}% of the variance of the {embeddings.shape[1]}-d pooled embeddings"
    if label is not None and label.categorical and len(label.classes) >= 2:
        first, second = label.classes[0], label.classes[-1]
        a, b = points[label.values == first, 0], points[label.values == second, 0]
        pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2) if len(a) > 1 and len(b) > 1 else 0.0
        d = (b.mean() - a.mean()) / pooled if pooled > 0 else float("nan")
        line += f"; along PC1, {label.names[second]} vs {label.names[first]} differ by Cohen's d = {_fmt(d)}"
    elif label is not None and not label.categorical:
        r1 = np.corrcoef(points[:, 0], label.values)[0, 1]
        r2 = np.corrcoef(points[:, 1], label.values)[0, 1]
        line += f"; {label.column} correlates with PC1 at r = {_fmt(r1)} and with PC2 at r = {_fmt(r2)}"
    line += " (a linear probe, `brain-jepa probe`, measures how decodable the label is)."
    context.sections.append(("Embeddings", "embeddings_pca", "PCA of pooled embeddings", line))


def _training_section(context: _Context, folder: Path) -> None:
    from .figures import plot_training_curves, read_training_log

    records = read_training_log(folder)
    context.figure("training_curves", plot_training_curves(folder))
    first, last = records[0], records[-1]
    line = (f"Loss {_fmt(first['loss'])} at step {first['step']} -> {_fmt(last['loss'])} at step {last['step']}; "
            f"target std {_fmt(last['target_std'])} and effective rank {_fmt(last['target_effective_rank'])} at the end "
            "(both fall towards 0 and 1 on representation collapse).")
    flagged = sum(1 for r in records if r.get("collapse_warning"))
    if flagged:
        line += f" The collapse monitor flagged {flagged} logged steps."
    context.sections.append(("Pretraining curves", "training_curves", "pretraining curves", line))


def _attribution_section(context: _Context, attributions: dict, description: str, method: str, steps: int, classifier) -> None:
    import pandas as pd

    from .analysis import network_attribution
    from .figures import plot_glass_brain, plot_network_bars

    atlas = context.atlas
    values = attributions["values"]  # (S, R), signed
    magnitude = np.abs(values)
    roi_mean = magnitude.mean(axis=0)
    method_name = method.replace("_", " ")
    figure = plot_glass_brain(roi_mean, atlas.coords, networks=atlas.network_labels(context.level),
                              title=f"Attribution per ROI ({method_name}, mean |value|)",
                              colorbar_label="|attribution| (logit units)")
    context.figure("attribution_glass_brain", figure)
    context.table("roi_attribution", _roi_frame(atlas, {"mean_abs_attribution": roi_mean, "mean_attribution": values.mean(axis=0)}))
    per_network, order = network_attribution(magnitude, atlas.network_labels(context.level), reduction="mean")
    permutation = _display_order(order)
    per_network, order = per_network[:, permutation], [order[k] for k in permutation]
    means, errors = _class_groups(context, per_network)
    figure = plot_network_bars(means, order, errors=errors, ylabel="mean |attribution| per ROI (logit units)",
                               title=f"Attribution per network ({method_name})",
                               group_label=context.label.column if context.label is not None else "class")
    context.figure("attribution_by_network", figure)
    frame = pd.DataFrame({"network": order, "mean_abs_attribution": per_network.mean(axis=0), "ci95": _ci95(per_network)})
    if len(means) > 1:
        for name, value in means.items():
            frame[f"class {name}"] = value
    context.table("network_attribution", frame)
    overall = per_network.mean(axis=0)
    top = int(np.argmax(overall))
    id2label = getattr(classifier.config, "id2label", {}) or {}
    targets = sorted(set(int(t) for t in attributions["target"]))
    target_names = ", ".join(str(id2label.get(t, t)) for t in targets)
    ranked = np.argsort(-roi_mean)
    line = (
        f"The predicted class's logit (classes {target_names}) is most sensitive to {order[top]} "
        f"({_fmt(overall[top])} mean |attribution| per ROI); top ROI {_describe_roi(atlas, int(ranked[0]), context.level)}."
    )
    if attributions["gap"] is not None:
        span = np.abs(attributions["span"])
        relative = np.median(np.abs(attributions["gap"]) / np.maximum(span, 1e-12))
        line += f" Completeness check ({steps} steps): median |sum - (f(x) - f(baseline))| = {100 * relative:.1f}% of |f(x) - f(baseline)|."
    context.sections.append(("Attribution per ROI", "attribution_glass_brain", "glass brain of attribution per ROI", line))
    context.sections.append(("Attribution per network", "attribution_by_network", "bar chart of attribution per network",
                             "Networks ranked by mean |attribution| per ROI: "
                             + ", ".join(order[k] for k in np.argsort(-overall)[:3]) + f" lead. Method: {description}."))


# ----------------------------------------------------------------------------------------------
# report.md
# ----------------------------------------------------------------------------------------------


def _report_text(context: _Context, model, dataset_name, config, warnings, has_attribution, table_names) -> str:
    from .analysis import ATTENTION_METHOD

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
        kind = f"categorical, classes {', '.join(context.label.names[v] for v in context.label.classes)}" if context.label.categorical else "continuous"
        lines.append(f"- Label: `{context.label.column}` ({kind})")
    lines += ["", "## Methods", "",
              f"- **Attention** ({ATTENTION_METHOD}). Values are shown relative to uniform attention (x uniform: 1 = "
              "every ROI receives the same; figures show the percentage above or below it), averaged over the ROIs of a network so that large networks are not favoured "
              "for their size. Attention weights are not explanations: a highly attended network is not shown to drive "
              "the model's output."]
    if context.label is not None and context.label.categorical and context.permutations > 0:
        lines.append(f"- **Group contrast**: {PERMUTATION_TEXT.format(n=context.permutations, seed=context.seed)}; "
                     f"significant at q < {FDR_LEVEL}. Pairs of classes are not corrected for each other.")
    if has_attribution:
        lines.append("- **Attribution** of the fine-tuned head's predicted-class output (see its section); a sensitivity "
                     "of that output to the input, not a causal effect.")
    lines.append("- **Embeddings**: mean over all tokens of the encoder's last layer, deterministic centre clip; PCA to 2-D.")
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
