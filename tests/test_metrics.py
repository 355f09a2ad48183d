"""Each metric equals a direct scikit-learn / scipy computation on the same numbers."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn import metrics as skm
from transformers import EvalPrediction

from brain_jepa_hf.metrics import (
    classification_metrics,
    make_compute_metrics,
    multilabel_metrics,
    regression_metrics,
    task_metrics,
)


@pytest.fixture
def regression_data():
    rng = np.random.default_rng(0)
    targets = rng.uniform(45, 80, size=57)
    predictions = targets + rng.normal(0, 6, size=57)
    return predictions, targets


def test_regression_metrics_match_sklearn_and_scipy(regression_data):
    predictions, targets = regression_data
    result = regression_metrics(predictions, targets, target_variance=25.0)
    assert result["mse"] == pytest.approx(skm.mean_squared_error(targets, predictions), rel=1e-12)
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(targets, predictions), rel=1e-12)
    assert result["r2"] == pytest.approx(skm.r2_score(targets, predictions), rel=1e-10)
    assert result["pearson_r"] == pytest.approx(pearsonr(predictions, targets).statistic, rel=1e-10)
    assert result["normalized_mse"] == pytest.approx(result["mse"] / 25.0)
    # Pearson r and R^2 differ (the original printed "r2" but computed Pearson r).
    assert abs(result["pearson_r"] - result["r2"]) > 1e-3


def test_regression_metrics_in_original_units_from_standardised_outputs(regression_data):
    predictions, targets = regression_data
    mean, std = targets.mean(), targets.std()
    result = task_metrics("regression", (predictions - mean) / std, (targets - mean) / std, mean, std)
    assert result["mse"] == pytest.approx(skm.mean_squared_error(targets, predictions), rel=1e-9)
    assert result["normalized_mse"] == pytest.approx(
        skm.mean_squared_error((targets - mean) / std, (predictions - mean) / std), rel=1e-9
    )


def test_binary_classification_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=80)
    logits = rng.normal(size=(80, 2)) + np.stack([1 - labels, labels], axis=1) * 1.2
    result = classification_metrics(logits, labels)
    predicted = logits.argmax(1)
    probability = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert result["f1"] == pytest.approx(skm.f1_score(labels, predicted))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, predicted))
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(labels, probability))
    assert 0.5 < result["accuracy"] < 1.0


def test_multiclass_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, size=90)
    logits = np.round(rng.normal(size=(90, 4)), 1)  # rounding creates tied scores
    logits[np.arange(90), labels] += 0.8
    result = classification_metrics(logits, labels)
    predicted = logits.argmax(1)
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    probabilities = shifted / shifted.sum(1, keepdims=True)
    assert result["f1"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, predicted))
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(labels, probabilities, multi_class="ovr"))


def test_multilabel_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=(60, 3))
    logits = rng.normal(size=(60, 3)) + (labels - 0.5) * 1.5
    result = multilabel_metrics(logits, labels)
    predicted = (logits > 0).astype(int)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert result["f1"] == pytest.approx(skm.f1_score(labels, predicted, average="macro"))
    assert result["auroc"] == pytest.approx(skm.roc_auc_score(labels, logits, average="macro"))


def test_compute_metrics_for_trainer_uses_logits_and_label_ids():
    labels = np.array([0, 1, 1, 0, 1])
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.1], [0.0, 3.0]])
    compute = make_compute_metrics("single_label_classification", num_labels=2)
    result = compute(EvalPrediction(predictions=(logits,), label_ids=labels))
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["f1"] == pytest.approx(skm.f1_score(labels, logits.argmax(1)))


def test_metric_input_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"predictions: expected the shape of targets \(3, 1\), got \(2, 1\)"):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="labels: expected integer class ids"):
        classification_metrics(np.zeros((2, 2)), [0.5, 1.0])
    with pytest.raises(ValueError, match="problem_type: expected 'regression'.*got 'ranking'"):
        task_metrics("ranking", [1.0], [1.0])


def test_one_metric_table_names_the_columns_the_card_and_the_hub_entries():
    from brain_jepa_hf.eval_results import eval_result_entries
    from brain_jepa_hf.metrics import greater_is_better
    from brain_jepa_hf.model_card import finetune_eval_results
    from brain_jepa_hf.run_results import results_table

    regression = {
        "mse": {"mean": 2.0, "std": 0.5},
        "pearson_r": {"mean": 0.7, "std": 0.1},
        "normalized_mse": {"mean": 0.4, "std": 0.1},
        "r2": {"mean": float("nan"), "std": 0.0},
        "loss": {"mean": 0.3, "std": 0.0},
    }
    classification = {"accuracy": {"mean": 0.8125, "std": 0.0125}, "f1": {"mean": 0.5, "std": 0.0}}
    table = results_table([("age", "regression", regression), ("sex", "single_label_classification", classification)])
    assert "| Model / task | MSE | rho | MSE (std. units) | MAE | R^2 |" in table
    assert "| age | 2.000 (0.500) | 0.700 (0.100) | 0.400 (0.100) | n/a | nan (0.000) |" in table
    assert "| Model / task | ACC (%) | F1 (%) | BACC (%) | AUROC (%) |" in table
    assert "| sex | 81.25 (1.25) | 50.00 (0.00) | n/a | n/a |" in table

    results = {
        "task": {"dataset": "example", "label_column": "age", "problem_type": "regression"},
        "model": {"mode": "finetune"},
        "per_seed": [{}, {}],
        "test": regression,
    }
    # Hub entries: the headline metrics in table order, without the standardised MSE or NaN values.
    assert [e.task_id for e in eval_result_entries(results)] == ["age-mse", "age-pearson_r"]
    # Card model-index: every named metric with a value, the loss left out.
    card = {(r.metric_type, r.metric_name) for r in finetune_eval_results(results)}
    assert card == {
        ("mse", "MSE (mean of 2 seeds)"),
        ("pearsonr", "Pearson r (mean of 2 seeds)"),
        ("mse", "MSE (standardised units) (mean of 2 seeds)"),
    }
    assert not greater_is_better("eval_mse") and greater_is_better("auroc") and not greater_is_better("eval_loss")
