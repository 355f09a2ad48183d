"""The sections of an `analyze_model` report: each draws its figure, writes the table of numbers behind it
and adds one line of interpretation computed from those numbers (attention by network, contrasts between
classes, network x network attention, attention per ROI, gradient space, embeddings, pretraining
curves, attribution)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis_inputs import ReportLabel
from .atlas import released_atlas
from .brain_figures import (
    plot_embedding_scatter,
    plot_glass_brain,
    plot_gradient_space,
    plot_network_bars,
    plot_network_matrix,
)
from .network_statistics import network_attribution, permutation_test
from .training_figures import plot_training_curves, read_training_log


MAX_CONTRASTS = 6  # pairs of classes contrasted at most (4 classes)
FDR_LEVEL = 0.05


@dataclass
class ReportContext:
    """What every section needs: the atlas and network level, the cohort's attention, the label, and
    `figure(key, fig)` / `table(key, frame, index=False)` to write; sections append (heading, figure key,
    alt text, interpretation) to `sections`."""

    atlas: object
    level: str
    cohort: object
    label: ReportLabel | None
    count: int
    permutations: int
    seed: int
    figure: object
    table: object
    sections: list
    contrast_lines: list = field(default_factory=list)
    network_order: list = field(default_factory=list)
    dtype: object = None  # the model's precision


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
    released = released_atlas()
    usual = {
        name: k
        for k, name in enumerate(dict.fromkeys(released.network_order("coarse") + released.network_order("fine")))
    }
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
    frame = pd.DataFrame(
        {
            "index": np.arange(atlas.num_rois),
            "roi": list(atlas.roi_names),
            "hemisphere": list(atlas.hemispheres),
            "network": list(atlas.networks),
            "coarse_network": list(atlas.coarse_networks),
            "x": atlas.coords[:, 0],
            "y": atlas.coords[:, 1],
            "z": atlas.coords[:, 2],
        }
    )
    for name, column in values.items():
        frame[name] = column
    return frame


def _describe_roi(atlas, index: int, level: str) -> str:
    network = atlas.network_labels(level)[index]
    hemisphere = {"L": "left", "R": "right"}.get(atlas.hemispheres[index], "")
    where = ", ".join(part for part in (network, hemisphere) if part)
    return f"{atlas.roi_names[index]} ({where})"


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


def _class_groups(context: ReportContext, values: np.ndarray) -> tuple[dict, dict]:
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


def attention_sections(context: ReportContext) -> None:
    """Attention received per network (with the contrasts between classes), between networks, and per ROI."""
    cohort = context.cohort
    permutation = _display_order(cohort.networks)
    context.network_order = [cohort.networks[k] for k in permutation]
    layer_text = ", ".join(str(layer) for layer in cohort.layers)
    per_subject = cohort.subject_received.mean(axis=1)[:, permutation] * context.atlas.num_rois  # (S, K), x uniform
    _network_bars_section(context, per_subject, permutation, layer_text)
    _contrast_lines(context, per_subject)
    _network_matrix_section(context, permutation, layer_text)
    _roi_attention_section(context, layer_text)


def _network_bars_section(
    context: ReportContext, per_subject: np.ndarray, permutation: np.ndarray, layer_text: str
) -> None:
    """The paper's figure: attention received per network, per class of the label."""
    atlas, cohort, order = context.atlas, context.cohort, context.network_order
    sizes = [atlas.network_labels(context.level).count(name) for name in order]
    means, errors = _class_groups(context, per_subject)
    percent = {name: 100 * (value - 1) for name, value in means.items()}
    figure = plot_network_bars(
        percent,
        order,
        errors={name: 100 * e for name, e in errors.items()},
        ylabel="attention received vs uniform (%)",
        title=f"Attention received per network (layers {layer_text})",
        group_label=context.label.column if context.label is not None else "class",
    )
    context.figure("attention_by_network", figure)
    overall = per_subject.mean(axis=0)
    frame = pd.DataFrame(
        {"network": order, "num_rois": sizes, "attention_received_x_uniform": overall, "ci95": _ci95(per_subject)}
    )
    for layer_index, layer in enumerate(cohort.layers):
        frame[f"layer_{layer}"] = cohort.subject_received[:, layer_index][:, permutation].mean(axis=0) * atlas.num_rois
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
    context.sections.append(
        ("Attention received per network", "attention_by_network", "bar chart of attention received per network", line)
    )


def _contrast_lines(context: ReportContext, per_subject: np.ndarray) -> None:
    """Contrasts between each pair of classes, or the line saying why there are none."""
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


def _network_matrix_section(context: ReportContext, permutation: np.ndarray, layer_text: str) -> None:
    order = context.network_order
    matrix = context.cohort.network_matrix.mean(axis=0)[np.ix_(permutation, permutation)] * context.atlas.num_rois
    figure = plot_network_matrix(
        100 * (matrix - 1),
        order,
        title=f"Attention between networks (layers {layer_text})",
        colorbar_label="attention vs uniform (%)",
        row_label="query network (attending)",
        column_label="key network (attended)",
    )
    context.figure("network_matrix", figure)
    context.table(
        "network_matrix", pd.DataFrame(matrix, index=pd.Index(order, name="query_network"), columns=order), index=True
    )
    i, j = np.unravel_index(int(np.argmax(matrix)), matrix.shape)
    diagonal = float(np.mean(np.diag(matrix)))
    off = float((matrix.sum() - np.trace(matrix)) / max(matrix.size - len(order), 1))
    line = (
        f"Strongest pair: queries in {order[i]} attend to {order[j]} at {_pct(matrix[i, j])} vs uniform; within-network "
        f"attention averages {_pct(diagonal)} against {_pct(off)} between networks."
    )
    context.sections.append(
        ("Attention between networks", "network_matrix", "network by network attention heatmap", line)
    )


def _roi_attention_section(context: ReportContext, layer_text: str) -> None:
    atlas, cohort, num_rois = context.atlas, context.cohort, context.atlas.num_rois
    roi = cohort.subject_roi_received.mean(axis=(0, 1)) * num_rois
    figure = plot_glass_brain(
        100 * (roi - 1),
        atlas.coords,
        networks=atlas.network_labels(context.level),
        title=f"Attention received per ROI (layers {layer_text})",
        colorbar_label="vs uniform (%)",
    )
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
    context.sections.append(
        ("Attention received per ROI", "attention_glass_brain", "glass brain of attention per ROI", line)
    )


def _contrasts(context: ReportContext, per_subject: np.ndarray, pairs: list) -> None:
    label = context.label
    for first, second in pairs:
        keep = np.isin(label.values, [first, second])
        result = permutation_test(
            per_subject[keep],
            label.values[keep],
            n_permutations=context.permutations,
            seed=context.seed,
            names=context.network_order,
            order=(first, second),
        )
        name_a, name_b = label.names[first], label.names[second]
        key = f"contrast_{_slug(name_b)}_vs_{_slug(name_a)}"
        context.table(key, result.reset_index())
        significant = result[result["p_fdr"] < FDR_LEVEL]
        if len(significant):
            parts = [
                f"{network} ({100 * row.difference:+.2g} percentage points, p_fdr = {_fmt(row.p_fdr)})"
                for network, row in significant.sort_values("p_fdr").iterrows()
            ]
            line = (
                f"{name_b} vs {name_a}: {len(significant)} network(s) differ after FDR correction (q < {FDR_LEVEL}): "
                + ", ".join(parts)
                + "."
            )
        else:
            best = result["p_fdr"].idxmin()
            line = (
                f"{name_b} vs {name_a}: no network differs after FDR correction (smallest p_fdr = "
                f"{_fmt(result.loc[best, 'p_fdr'])}, {best}; n = {int(result['n_b'].iloc[0])} vs {int(result['n_a'].iloc[0])})."
            )
        context.contrast_lines.append(f"{line} Table: `tables/{key}.csv`.")


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in str(text)).strip("_")
    return cleaned or "class"


def gradient_section(context: ReportContext, encoder, config, feature_extractor) -> None:
    gradient, source = None, ""
    stored = getattr(getattr(encoder, "embeddings", None), "gradient", None)
    if (
        getattr(config, "position_embedding_type", "gradient") == "gradient"
        and stored is not None
        and bool(stored.abs().sum() > 0)
    ):
        gradient, source = stored.detach().float().cpu().numpy(), "the model's stored gradient"
    elif getattr(feature_extractor, "gradient", None) is not None:
        gradient, source = np.asarray(feature_extractor.gradient, dtype=np.float64), "the feature extractor's gradient"
    if gradient is None or gradient.shape[1] < 2:
        return
    networks = context.atlas.network_labels(context.level)
    figure = plot_gradient_space(gradient, networks, title=f"Brain gradient positioning ({source})")
    context.figure("gradient_space", figure)
    context.table(
        "roi_gradient",
        _roi_frame(context.atlas, {f"gradient_{k + 1}": gradient[:, k] for k in range(gradient.shape[1])}),
    )
    order = list(dict.fromkeys(networks))
    labels = np.array(networks)
    parts = []
    for column in (0, 1):
        means = np.array([gradient[labels == name, column].mean() for name in order])
        parts.append(
            f"gradient {column + 1} runs from {order[int(np.argmin(means))]} to {order[int(np.argmax(means))]}"
        )
    line = (
        f"In {source} (the ROI positions of the model's spatial embedding), "
        + "; ".join(parts)
        + " (network means; the sign of a gradient is arbitrary)."
    )
    context.sections.append(
        ("Brain gradient positioning", "gradient_space", "ROIs in gradient space coloured by network", line)
    )


def embedding_section(context: ReportContext, embeddings: np.ndarray, subset) -> None:
    if embeddings.shape[0] < 3:
        return
    label = context.label
    labels = label.display() if label is not None else np.array(["all subjects"] * embeddings.shape[0], dtype=object)
    name = label.column if label is not None else "subjects"
    figure = plot_embedding_scatter(
        embeddings,
        labels.astype(str) if label is None or label.categorical else labels,
        label_name=name,
        title="Pooled embeddings (PCA)",
        categorical=None if label is None else label.categorical,
    )
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


def training_section(context: ReportContext, folder: Path) -> None:
    records = read_training_log(folder)
    context.figure("training_curves", plot_training_curves(folder))
    first, last = records[0], records[-1]
    line = (
        f"Loss {_fmt(first['loss'])} at step {first['step']} -> {_fmt(last['loss'])} at step {last['step']}; "
        f"target std {_fmt(last['target_std'])} and effective rank {_fmt(last['target_effective_rank'])} at the end "
        "(both fall towards 0 and 1 on representation collapse)."
    )
    flagged = sum(1 for r in records if r.get("collapse_warning"))
    if flagged:
        line += f" The collapse monitor flagged {flagged} logged steps."
    context.sections.append(("Pretraining curves", "training_curves", "pretraining curves", line))


def attribution_section(
    context: ReportContext, attributions: dict, description: str, method: str, steps: int, classifier
) -> None:
    atlas = context.atlas
    values = attributions["values"]  # (S, R), signed
    magnitude = np.abs(values)
    roi_mean = magnitude.mean(axis=0)
    method_name = method.replace("_", " ")
    figure = plot_glass_brain(
        roi_mean,
        atlas.coords,
        networks=atlas.network_labels(context.level),
        title=f"Attribution per ROI ({method_name}, mean |value|)",
        colorbar_label="|attribution| (logit units)",
    )
    context.figure("attribution_glass_brain", figure)
    context.table(
        "roi_attribution",
        _roi_frame(atlas, {"mean_abs_attribution": roi_mean, "mean_attribution": values.mean(axis=0)}),
    )
    per_network, order = network_attribution(magnitude, atlas.network_labels(context.level), reduction="mean")
    permutation = _display_order(order)
    per_network, order = per_network[:, permutation], [order[k] for k in permutation]
    means, errors = _class_groups(context, per_network)
    figure = plot_network_bars(
        means,
        order,
        errors=errors,
        ylabel="mean |attribution| per ROI (logit units)",
        title=f"Attribution per network ({method_name})",
        group_label=context.label.column if context.label is not None else "class",
    )
    context.figure("attribution_by_network", figure)
    frame = pd.DataFrame(
        {"network": order, "mean_abs_attribution": per_network.mean(axis=0), "ci95": _ci95(per_network)}
    )
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
    context.sections.append(
        ("Attribution per ROI", "attribution_glass_brain", "glass brain of attribution per ROI", line)
    )
    context.sections.append(
        (
            "Attribution per network",
            "attribution_by_network",
            "bar chart of attribution per network",
            "Networks ranked by mean |attribution| per ROI: "
            + ", ".join(order[k] for k in np.argsort(-overall)[:3])
            + f" lead. Method: {description}.",
        )
    )
