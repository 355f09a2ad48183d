"""Attention by network, group contrasts and attribution (attention_pooling, network_statistics, cohort_attention,
attribution), on tiny models."""

import numpy as np
import pandas as pd
import pytest
import torch

from brain_jepa_hf import (
    BrainJepaConfig,
    BrainJepaFeatureExtractor,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)
from brain_jepa_hf.attention_pooling import (
    ROI_POOLED_ATTENTION,
    _pooled_attention_forward,
    record_roi_attention,
    roi_attention,
    roi_pooled_attention,
)
from brain_jepa_hf.attribution import ATTRIBUTION_METHODS, roi_attribution
from brain_jepa_hf.cohort_attention import cohort_attention
from brain_jepa_hf.network_statistics import (
    attention_received,
    benjamini_hochberg,
    network_attribution,
    network_matrix,
    permutation_test,
)

from helpers import make_config, make_inputs


def naive_pooled(attentions, num_rois: int) -> torch.Tensor:
    """(L, B, R, R) from full eager attention matrices: head mean, key tokens summed, query tokens averaged."""
    pooled = []
    for weights in attentions:
        batch, _, tokens, _ = weights.shape
        tp = tokens // num_rois
        pooled.append(weights.mean(dim=1).view(batch, num_rois, tp, num_rois, tp).sum(dim=4).mean(dim=2))
    return torch.stack(pooled)


def eager_model(num_rois: int, time_patches: int, seed: int = 0, **overrides) -> BrainJepaModel:
    config = make_config(num_rois=num_rois, num_frames=4 * time_patches, patch_size=4, **overrides)
    torch.manual_seed(seed)
    model = BrainJepaModel(config).eval()
    model.set_attn_implementation("eager")
    return model


# ----------------------------------------------------------------------------------------------
# ROI-pooled attention
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_rois, time_patches, chunk", [(23, 5, 20), (13, 3, 12), (7, 1, 3), (9, 4, None), (5, 2, 1000)]
)
def test_pooled_attention_equals_naive_from_eager_weights(num_rois, time_patches, chunk):
    model = eager_model(num_rois, time_patches)
    fmri, gradient = make_inputs(model.config, batch=2)
    with torch.no_grad():
        reference = model(fmri, gradient=gradient, output_attentions=True)
    pooled, outputs = roi_attention(model, fmri, gradient=gradient, query_chunk_size=chunk, return_outputs=True)
    expected = naive_pooled(reference.attentions, num_rois)
    assert pooled.shape == (model.config.num_hidden_layers, 2, num_rois, num_rois)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled.sum(dim=-1), torch.ones(pooled.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.last_hidden_state, reference.last_hidden_state, atol=1e-5, rtol=0)
    assert model.config._attn_implementation == "eager"


def test_chunked_and_unchunked_agree_and_layers_select():
    model = eager_model(13, 3, num_hidden_layers=3)
    fmri, gradient = make_inputs(model.config, batch=3)
    whole = roi_attention(model, fmri, gradient=gradient, query_chunk_size=10_000)
    for chunk in (1, 4, 7, 30):
        torch.testing.assert_close(
            roi_attention(model, fmri, gradient=gradient, query_chunk_size=chunk), whole, atol=1e-6, rtol=0
        )
    chosen = roi_attention(model, fmri, gradient=gradient, layers=[-1, 0])
    torch.testing.assert_close(chosen, whole[[2, 0]], atol=1e-6, rtol=0)


def test_worker_threads_follow_the_callers_inference_mode():
    # The demo runs the model under torch.inference_mode; the workers must write its output tensor there too.
    generator = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(1, 2, 5 * 3, 4, generator=generator) for _ in range(3))
    expected, expected_pooled = roi_pooled_attention(query, key, value, 0.5, num_rois=5, num_workers=1)
    with torch.inference_mode():
        output, pooled = roi_pooled_attention(query, key, value, 0.5, num_rois=5, num_workers=2)
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled, expected_pooled, atol=1e-6, rtol=0)


def test_worker_threads_agree_and_thread_count_is_restored():
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 3, 6 * 4, 8, generator=generator) * 3 for _ in range(3))
    threads = torch.get_num_threads()
    single, pooled_single = roi_pooled_attention(query, key, value, 0.35, num_rois=6, num_workers=1)
    many, pooled_many = roi_pooled_attention(query, key, value, 0.35, num_rois=6, query_chunk_size=8, num_workers=4)
    assert torch.get_num_threads() == threads
    reference = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=0.35).transpose(1, 2)
    torch.testing.assert_close(single, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(many, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled_many, pooled_single, atol=1e-6, rtol=0)
    # Scores far outside the range where exp is safe without subtracting the row maximum.
    large, pooled_large = roi_pooled_attention(query * 40, key, value, 0.35, num_rois=6)
    assert torch.isfinite(large).all() and torch.isfinite(pooled_large).all()
    exact = torch.softmax((query * 40).double() @ key.double().transpose(-1, -2) * 0.35, dim=-1) @ value.double()
    torch.testing.assert_close(
        large.double(), exact.transpose(1, 2), atol=1e-3, rtol=0
    )  # logits of ~1e3: float32 rounding
    with pytest.raises(ValueError, match="num_rois: the sequence has 24 tokens, not a multiple of 5 ROIs"):
        roi_pooled_attention(query, key, value, 0.35, num_rois=5)


def test_outputs_unchanged_with_sdpa_and_classifier_model():
    config = make_config(num_rois=11, num_frames=24, patch_size=8, num_labels=2)
    torch.manual_seed(1)
    classifier = BrainJepaForSequenceClassification(config).eval()
    fmri, gradient = make_inputs(config, batch=2)
    assert classifier.config._attn_implementation == "sdpa"
    with torch.no_grad():
        plain = classifier(fmri, gradient=gradient).logits
        plain_hidden = classifier.brain_jepa(fmri, gradient=gradient).last_hidden_state
        with record_roi_attention(classifier, num_rois=11, layers=[1]) as recording:
            recorded = classifier(fmri, gradient=gradient).logits
        pooled = recording.take()
    _, outputs = roi_attention(classifier, fmri, gradient=gradient, return_outputs=True)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.last_hidden_state, plain_hidden, atol=1e-5, rtol=0)
    assert pooled.shape == (1, 2, 11, 11)
    torch.testing.assert_close(
        pooled[0], roi_attention(classifier, fmri, gradient=gradient, layers=1)[0], atol=1e-6, rtol=0
    )
    assert classifier.config._attn_implementation == "sdpa"


def test_implementation_restored_after_an_error_and_misuse_errors():
    model = eager_model(7, 2)
    fmri, gradient = make_inputs(model.config, batch=1)
    with pytest.raises(RuntimeError, match="boom"):
        with record_roi_attention(model, num_rois=7):
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "eager"
    with record_roi_attention(model, num_rois=7) as recording:
        with pytest.raises(RuntimeError, match="nested recordings"):
            with record_roi_attention(model, num_rois=7):
                pass
        with pytest.raises(RuntimeError, match=r"layers \[0, 1\]: no attention was recorded"):
            recording.take()
        with pytest.raises(RuntimeError, match=r"computes no gradients; run the forward under torch.no_grad\(\)"):
            model(fmri, gradient=gradient)
    with record_roi_attention(model, num_rois=7, num_time_patches=2), torch.no_grad():
        context = torch.arange(7)[None]  # 7 tokens: a multiple of R but not all tokens
        with pytest.raises(
            ValueError, match=r"expected all 14 tokens \(7 ROIs x 2 time patches\).*got 7.*no context_indices"
        ):
            model(fmri, gradient=gradient, context_indices=context)
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match=r"layers: expected indices in \[-2, 1\] \(the model has 2 layers\), got 2"):
        roi_attention(model, fmri, gradient=gradient, layers=[2])
    with pytest.raises(ValueError, match="layers: expected distinct layers"):
        roi_attention(model, fmri, gradient=gradient, layers=[0, -2])
    with pytest.raises(ValueError, match="layers: expected at least one layer"):
        roi_attention(model, fmri, gradient=gradient, layers=[])
    with pytest.raises(ValueError, match="query_chunk_size: expected a positive integer or None, got 0"):
        roi_attention(model, fmri, gradient=gradient, query_chunk_size=0)
    with pytest.raises(
        ValueError, match=r"fmri_values: expected a tensor of shape \(batch, channels, rois, frames\), got \(7, 8\)"
    ):
        roi_attention(model, fmri[0, 0], gradient=gradient)
    with pytest.raises(ValueError, match="model: expected a BrainJepaModel or a model holding one as `.brain_jepa`"):
        roi_attention(torch.nn.Linear(2, 2), fmri)
    with pytest.raises(ValueError, match="num_rois: expected a positive integer, got 0"):
        with record_roi_attention(model, num_rois=0):
            pass
    with pytest.raises(ValueError, match="layers: expected None, an int or a sequence of ints, got float"):
        roi_attention(model, fmri, gradient=gradient, layers=1.5)


def test_attention_function_misuse_errors():
    model = eager_model(7, 2, attention_probs_dropout_prob=0.5)
    fmri, gradient = make_inputs(model.config, batch=1)
    model.config._attn_implementation = ROI_POOLED_ATTENTION  # set by hand, outside a recording
    with pytest.raises(RuntimeError, match="only works inside brain_jepa_hf.attention_pooling.record_roi_attention"):
        with torch.no_grad():
            model(fmri, gradient=gradient)
    model.config._attn_implementation = "eager"
    model.train()
    with record_roi_attention(model, num_rois=7) as recording, torch.no_grad():
        with pytest.raises(
            ValueError,
            match="dropout: the ROI-pooled attention needs the model in eval mode, got attention dropout 0.5",
        ):
            model(fmri, gradient=gradient)
        attention = model.layers[0].attention
        query = torch.zeros(1, attention.num_heads, 14, attention.head_dim)
        with pytest.raises(
            ValueError, match="attention_mask: the ROI-pooled attention supports no attention mask, got one"
        ):
            _pooled_attention_forward(attention, query, query, query, torch.zeros(1, 1, 14, 14), scaling=1.0)
    assert recording.layers == [0, 1]


# ----------------------------------------------------------------------------------------------
# Networks, and a planted pattern
# ----------------------------------------------------------------------------------------------


def test_network_matrix_and_received_by_hand():
    rng = np.random.default_rng(0)
    roi = rng.random((2, 5, 5))
    roi /= roi.sum(-1, keepdims=True)
    networks = ["B", "A", "B", "C", "A"]
    matrix, order = network_matrix(roi, networks)
    assert order == ["B", "A", "C"]
    members = {"B": [0, 2], "A": [1, 4], "C": [3]}
    for a, name_a in enumerate(order):
        for b, name_b in enumerate(order):
            block = roi[:, members[name_a]][:, :, members[name_b]]
            np.testing.assert_allclose(matrix[:, a, b], block.mean(axis=(1, 2)))
    shares, _ = network_matrix(roi, networks, key_pooling="sum")
    np.testing.assert_allclose(shares.sum(-1), 1.0)
    received, order = attention_received(roi, networks)
    per_roi = roi.mean(axis=1)
    np.testing.assert_allclose(received[:, 1], per_roi[:, [1, 4]].mean(axis=1))
    uniform, _ = attention_received(np.full((5, 5), 0.2), networks, relative_to_uniform=True)
    np.testing.assert_allclose(uniform, 1.0)  # no network favoured for its size
    totals, _ = network_attribution(np.arange(5.0), networks, reduction="sum")
    np.testing.assert_allclose(totals, [2.0, 5.0, 3.0])
    with pytest.raises(ValueError, match="networks: expected 5 labels \\(one per ROI\\), got 4"):
        network_matrix(roi, networks[:4])
    with pytest.raises(ValueError, match="key_pooling: expected one of"):
        network_matrix(roi, networks, key_pooling="max")
    with pytest.raises(ValueError, match=r"roi_matrix: expected shape \(..., R, R\), got \(5, 4\)"):
        attention_received(roi[0, :, :4], networks)
    with pytest.raises(ValueError, match="networks: expected a sequence of network names"):
        network_matrix(roi, "ABBCA")
    with pytest.raises(ValueError, match="reduction: expected 'mean' or 'sum'"):
        network_attribution(np.arange(5.0), networks, reduction="max")


def planted_model(networks: list[str], source: str, target: str, strength: float = 30.0):
    """A real tiny encoder whose every head makes the ROIs of `source` attend to those of `target`: the
    gradient marks the two networks (space half of the positions), queries read the source mark,
    keys the target mark; attention and MLP outputs are zeroed so every layer sees the same tokens."""
    num_rois = len(networks)
    config = make_config(num_rois=num_rois, num_frames=16, patch_size=8, num_hidden_layers=2)
    torch.manual_seed(0)
    model = BrainJepaModel(config).eval()
    width, half = config.hidden_size, config.hidden_size // 2
    head_dim = width // config.num_attention_heads
    gradient = torch.zeros(num_rois, config.gradient_dim)
    gradient[:, 0] = torch.tensor([n == source for n in networks], dtype=torch.float32)
    gradient[:, 1] = torch.tensor([n == target for n in networks], dtype=torch.float32)
    with torch.no_grad():
        projection = model.embeddings.position_embeddings.gradient_proj
        projection.weight.zero_()
        projection.bias.zero_()
        projection.weight[0, 0] = projection.weight[1, 1] = 1.0
        for layer in model.layers:
            layer.attention.qkv.weight.zero_()
            layer.attention.qkv.bias.zero_()
            for head in range(config.num_attention_heads):
                layer.attention.qkv.weight[head * head_dim, half] = strength  # query: "is source"
                layer.attention.qkv.weight[width + head * head_dim, half + 1] = 1.0  # key: "is target"
            layer.attention.proj.weight.zero_()
            layer.mlp.fc2.weight.zero_()
    return model, gradient


def test_planted_pattern_ranks_the_planted_pair_first():
    sizes = {"Vis": 5, "Default": 8, "Limbic": 4, "Cont": 6}
    networks = [name for name, size in sizes.items() for _ in range(size)]
    networks = [networks[i] for i in np.random.default_rng(3).permutation(len(networks))]  # not contiguous
    model, gradient = planted_model(networks, source="Vis", target="Limbic")
    fmri = 0.1 * torch.randn(2, 1, len(networks), 16, generator=torch.Generator().manual_seed(0))
    pooled = roi_attention(model, fmri, gradient=gradient)
    for key_pooling in ("mean", "sum"):
        matrix, order = network_matrix(pooled.mean(dim=(0, 1)), networks, key_pooling=key_pooling)
        first = np.unravel_index(np.argmax(matrix), matrix.shape)
        assert (order[first[0]], order[first[1]]) == ("Vis", "Limbic")
    received, order = attention_received(pooled.mean(dim=(0, 1)), networks)
    assert order[int(np.argmax(received))] == "Limbic"
    # The same weights with the pair reversed: the analysis follows the model, not the labels' order.
    model, gradient = planted_model(networks, source="Limbic", target="Cont")
    matrix, order = network_matrix(roi_attention(model, fmri, gradient=gradient).mean(dim=(0, 1)), networks)
    first = np.unravel_index(np.argmax(matrix), matrix.shape)
    assert (order[first[0]], order[first[1]]) == ("Limbic", "Cont")


# ----------------------------------------------------------------------------------------------
# A cohort
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_cohort():
    from brain_jepa_hf.example_data import load_example_dataset

    return load_example_dataset(num_subjects=6, num_timepoints=60)


def test_cohort_attention_matches_per_batch_analysis(example_cohort):
    config = BrainJepaConfig.from_preset("tiny", num_rois=450, num_frames=16, patch_size=8, gradient_dim=4)
    torch.manual_seed(0)
    model = BrainJepaModel(config).eval()
    gradient = np.random.default_rng(0).standard_normal((450, 4)).astype(np.float32)
    extractor = BrainJepaFeatureExtractor(
        num_rois=450, num_frames=16, sampling_rate=3, scaling="zscore", gradient=gradient
    )
    networks = ["Subcortical"] * 50 + [f"Net{k}" for k in np.arange(400) // 50]
    result = cohort_attention(
        model,
        example_cohort,
        extractor,
        networks,
        layers=[-1],
        label_column="sex",
        max_subjects=5,
        batch_size=2,
        progress=False,
    )
    assert result.layers == [1] and result.networks == ["Subcortical"] + [f"Net{k}" for k in range(8)]
    assert result.subject_received.shape == (5, 1, 9) and result.subject_network_matrix.shape == (5, 1, 9, 9)
    assert result.subject_ids == list(example_cohort["subject_id"][:5])
    series = example_cohort.with_format("numpy")[:5]["fmri"]
    features = extractor(series, time_axis=-1, training=False, return_tensors="pt")
    pooled = roi_attention(model, features["fmri_values"], gradient=torch.as_tensor(gradient), layers=[1])
    expected, _ = attention_received(pooled.transpose(0, 1), networks)
    np.testing.assert_allclose(result.subject_received, expected, atol=1e-6)
    np.testing.assert_allclose(result.roi_matrix[0], pooled[0].double().mean(0).numpy(), atol=1e-6)
    labels = np.asarray(example_cohort["sex"][:5])
    by_class = result.received_by_class()
    assert sorted(by_class) == sorted(set(labels.tolist()))
    for label, value in by_class.items():
        np.testing.assert_allclose(value, expected[labels == label, 0].mean(axis=0), atol=1e-6)
    table = result.received_table()
    assert list(table.columns) == ["subject", "sex", "subject_id", "layer", "network", "attention_received"]
    assert len(table) == 5 * 1 * 9
    assert "not why it decides" in result.method


def test_cohort_attention_errors(example_cohort):
    config = BrainJepaConfig.from_preset("tiny", num_rois=450, num_frames=16, patch_size=8, gradient_dim=4)
    model = BrainJepaModel(config).eval()
    extractor = BrainJepaFeatureExtractor(num_rois=450, num_frames=16, scaling="zscore", gradient=np.ones((450, 4)))
    networks = ["N"] * 450
    with pytest.raises(ValueError, match=r"label_column: expected one of the dataset's columns .*, got 'dx'"):
        cohort_attention(model, example_cohort, extractor, networks, label_column="dx", progress=False)
    with pytest.raises(ValueError, match="label_column: 'age' has 6 distinct values, more than max_classes=3"):
        cohort_attention(model, example_cohort, extractor, networks, label_column="age", max_classes=3, progress=False)
    with pytest.raises(ValueError, match="networks: expected 450 labels \\(one per ROI\\), got 400"):
        cohort_attention(model, example_cohort, extractor, networks[:400], progress=False)
    with pytest.raises(ValueError, match="max_subjects: expected a positive integer or None, got 0"):
        cohort_attention(model, example_cohort, extractor, networks, max_subjects=0, progress=False)
    with pytest.raises(ValueError, match="feature_extractor: produces 400 ROIs but the model expects num_rois=450"):
        cohort_attention(
            model, example_cohort, BrainJepaFeatureExtractor(num_rois=400, num_frames=16), networks, progress=False
        )
    with pytest.raises(ValueError, match="fmri_column: expected a column 'bold'"):
        cohort_attention(model, example_cohort, extractor, networks, fmri_column="bold", progress=False)
    missing = example_cohort.cast_column("sex", __import__("datasets").Value("float64")).map(
        lambda row, i: {"sex": float("nan") if i == 1 else row["sex"]}, with_indices=True
    )
    with pytest.raises(
        ValueError, match="label_column: 1 of the 6 analysed rows have no 'sex' value; drop them first"
    ):
        cohort_attention(model, missing, extractor, networks, label_column="sex", progress=False)
    result = cohort_attention(model, example_cohort, extractor, networks, max_subjects=2, progress=False)
    with pytest.raises(ValueError, match="label_column: this CohortAttention was computed without a label column"):
        result.received_by_class()
    with pytest.raises(ValueError, match="label_column: a contrast needs labels"):
        result.contrast()
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, got 0"):
        cohort_attention(model, example_cohort, extractor, networks, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="dataset: expected at least one row, got 0"):
        cohort_attention(model, example_cohort.select([]), extractor, networks, progress=False)
    with pytest.raises(ValueError, match=r"layer: expected one of the analysed layers \[0, 1\], got 5"):
        result._layer_view(result.subject_received, 5)


# ----------------------------------------------------------------------------------------------
# Permutation test
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statistic", ["mean_difference", "t"])
def test_permutation_test_is_calibrated_under_the_null(statistic):
    rng = np.random.default_rng(0)
    p_values = []
    for run in range(100):
        values = rng.standard_normal((20, 5))
        groups = rng.permutation(["NC"] * 10 + ["MCI"] * 10)
        result = permutation_test(values, groups, n_permutations=199, seed=run, statistic=statistic)
        p_values.append(result["p_value"].to_numpy())
    fraction = float((np.concatenate(p_values) < 0.05).mean())
    assert 0.01 <= fraction <= 0.1, fraction


@pytest.mark.parametrize("statistic", ["mean_difference", "t"])
def test_permutation_test_finds_a_planted_difference(statistic):
    rng = np.random.default_rng(1)
    values = pd.DataFrame(rng.standard_normal((30, 6)), columns=[f"Net{k}" for k in range(6)])
    groups = np.array(["NC"] * 15 + ["MCI"] * 15)
    values.loc[groups == "MCI", "Net2"] += 2.0
    result = permutation_test(values, groups, n_permutations=999, seed=0, statistic=statistic)
    assert list(result.index) == list(values.columns)
    assert (result["group_a"].iloc[0], result["group_b"].iloc[0]) == ("MCI", "NC")
    assert result.loc["Net2", "p_fdr"] < 0.05
    assert result["p_value"].idxmin() == "Net2"
    assert result.loc["Net2", "difference"] < 0  # NC minus MCI
    assert result["p_value"].min() >= 1 / 1000  # the +1 correction
    again = permutation_test(values, groups, n_permutations=999, seed=0, statistic=statistic)
    pd.testing.assert_frame_equal(result, again)
    flipped = permutation_test(values, groups, n_permutations=999, seed=0, statistic=statistic, order=["NC", "MCI"])
    np.testing.assert_allclose(flipped["difference"], -result["difference"])


def test_benjamini_hochberg_by_hand():
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.04, 0.03, 0.5]), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    np.testing.assert_allclose(benjamini_hochberg([0.9, 0.8]), [0.9, 0.9])


def test_permutation_test_errors():
    values = np.zeros((6, 2))
    with pytest.raises(
        ValueError, match=r"groups: expected two groups to contrast, got one \('NC'\) for all 6 subjects"
    ):
        permutation_test(values, ["NC"] * 6)
    with pytest.raises(
        ValueError,
        match=r"groups: expected exactly two groups, got 3 \(\['AD', 'MCI', 'NC'\]\); contrast two at a time",
    ):
        permutation_test(values, ["NC", "NC", "MCI", "MCI", "AD", "AD"])
    with pytest.raises(ValueError, match=r"groups: expected at least 2 subjects per group, got \{'MCI': 1, 'NC': 5\}"):
        permutation_test(values, ["NC"] * 5 + ["MCI"])
    with pytest.raises(ValueError, match=r"groups: expected 6 labels \(one per row of values\), got 5"):
        permutation_test(values, ["NC"] * 3 + ["MCI"] * 2)
    with pytest.raises(ValueError, match="groups: expected a label for every subject, got 1 missing"):
        permutation_test(values, ["NC"] * 3 + ["MCI"] * 2 + [None])
    with pytest.raises(ValueError, match="n_permutations: expected a positive integer, got 0"):
        permutation_test(values, ["NC"] * 3 + ["MCI"] * 3, n_permutations=0)
    with pytest.raises(ValueError, match="statistic: expected one of"):
        permutation_test(values, ["NC"] * 3 + ["MCI"] * 3, statistic="u")
    with pytest.raises(ValueError, match="values: expected finite values, got 1 NaN/Inf"):
        permutation_test(np.array([[np.nan], [0], [0], [0]]), ["a", "a", "b", "b"])
    with pytest.raises(ValueError, match=r"order: expected the two groups \['MCI', 'NC'\]"):
        permutation_test(values, ["NC"] * 3 + ["MCI"] * 3, order=["NC", "AD"])
    with pytest.raises(ValueError, match=r"values: expected shape \(subjects, networks\), got \(6, 2, 1\)"):
        permutation_test(values[..., None], ["NC"] * 3 + ["MCI"] * 3)
    with pytest.raises(ValueError, match="names: expected 2 names"):
        permutation_test(values, ["NC"] * 3 + ["MCI"] * 3, names=["x"])


# ----------------------------------------------------------------------------------------------
# Attribution
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    config = make_config(num_rois=9, num_frames=16, patch_size=8, num_labels=3, classifier_init_range=0.5)
    torch.manual_seed(0)
    return BrainJepaForSequenceClassification(config).eval()


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_completeness(classifier, baseline):
    fmri, gradient = make_inputs(classifier.config, batch=2)
    details = roi_attribution(
        classifier, fmri, gradient=gradient, steps=64, baseline=baseline, internal_batch_size=64, return_details=True
    )
    assert details.values.shape == (2, 9) and details.method == "integrated_gradients"
    change = details.output - details.baseline_output
    assert np.all(np.abs(change) > 1e-3)
    np.testing.assert_allclose(details.values.sum(axis=1), change, rtol=0.02, atol=1e-4)
    assert np.abs(details.completeness_gap).max() <= 0.02 * np.abs(change).max() + 1e-4
    with torch.no_grad():
        predicted = classifier(fmri, gradient=gradient).logits.argmax(-1).numpy()
    np.testing.assert_array_equal(details.target, predicted)
    assert "not a causal effect" in details.description and f"baseline {baseline}" in details.description


def test_input_x_gradient_and_a_silent_roi(classifier):
    fmri, gradient = make_inputs(classifier.config, batch=2)
    fmri[:, :, 4] = 0.0  # ROI 4 carries nothing: zero attribution against a zero baseline
    values = roi_attribution(classifier, fmri, gradient=gradient, method="input_x_gradient", target=1)
    point = fmri.clone().requires_grad_(True)
    classifier(point, gradient=gradient).logits[:, 1].sum().backward()
    np.testing.assert_allclose(values, (fmri * point.grad).sum(dim=(1, 3)).numpy(), rtol=1e-5, atol=1e-7)
    assert np.all(values[:, 4] == 0.0)
    ig = roi_attribution(classifier, fmri, gradient=gradient, target=[0, 2], steps=4)
    assert np.all(ig[:, 4] == 0.0) and np.any(ig != 0.0)
    per_sample_gradient = gradient.expand(2, -1, -1)  # a (B, R, G) gradient, repeated along the path
    batched = roi_attribution(
        classifier, fmri, gradient=per_sample_gradient, target=[0, 2], steps=4, internal_batch_size=5
    )
    np.testing.assert_allclose(batched, ig, rtol=1e-4, atol=1e-6)
    assert not classifier.training and set(ATTRIBUTION_METHODS) == {"integrated_gradients", "input_x_gradient"}


def test_attribution_errors(classifier):
    fmri, gradient = make_inputs(classifier.config, batch=2)
    encoder = classifier.brain_jepa
    with pytest.raises(
        ValueError,
        match=r"model: expected a fine-tuned model with a classification head .* got BrainJepaModel; pass e\.g\. BrainJepaForSequenceClassification",
    ):
        roi_attribution(encoder, fmri, gradient=gradient)
    headless = BrainJepaForSequenceClassification(make_config(num_rois=9, num_frames=16, patch_size=8, num_labels=0))
    with pytest.raises(ValueError, match=r"got BrainJepaForSequenceClassification without a head \(num_labels=0\)"):
        roi_attribution(headless, fmri, gradient=gradient)
    with pytest.raises(ValueError, match="method: expected one of"):
        roi_attribution(classifier, fmri, gradient=gradient, method="saliency")
    with pytest.raises(ValueError, match="steps: expected a positive integer, got 0"):
        roi_attribution(classifier, fmri, gradient=gradient, steps=0)
    with pytest.raises(ValueError, match=r"target: expected output indices in \[0, 2\], got \[3, 3\]"):
        roi_attribution(classifier, fmri, gradient=gradient, target=3)
    with pytest.raises(ValueError, match=r"target: expected one index per sample \(2\), got 3"):
        roi_attribution(classifier, fmri, gradient=gradient, target=[0, 1, 2])
    with pytest.raises(ValueError, match="target: expected an output index or one index per sample, got 0.5"):
        roi_attribution(classifier, fmri, gradient=gradient, target=0.5)
    with pytest.raises(ValueError, match="baseline: expected 'zero', 'mean' or a tensor"):
        roi_attribution(classifier, fmri, gradient=gradient, baseline="median")
    with pytest.raises(ValueError, match=r"baseline: expected a tensor of shape \(2, 1, 9, 16\)"):
        roi_attribution(classifier, fmri, gradient=gradient, baseline=torch.zeros(1, 1, 9, 16))
    with pytest.raises(ValueError, match="internal_batch_size: expected a positive integer or None, got 0"):
        roi_attribution(classifier, fmri, gradient=gradient, internal_batch_size=0)
    with pytest.raises(ValueError, match="fmri_values: expected a float tensor"):
        roi_attribution(classifier, fmri.long(), gradient=gradient)
