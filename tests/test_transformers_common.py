"""transformers' own common tests (ModelTesterMixin, ConfigTester) on the Brain-JEPA classes, run as
for a model inside transformers. The test files come from the installed transformers' sdist
(tests/transformers_sdist.py); every skip below says why the test does not apply."""

from __future__ import annotations

import unittest
from unittest import mock

import pytest
import torch

from brain_jepa_hf import (
    BrainJepaConfig,
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
)

from transformers_sdist import import_common


# Needs `parameterized` (dev extra) and, on first use, pip access to fetch the sdist.
modeling_common = import_common("test_modeling_common")
configuration_common = import_common("test_configuration_common")
ModelTesterMixin = modeling_common.ModelTesterMixin
ConfigTester = configuration_common.ConfigTester

# An in-tree model lists its classes in transformers' auto name maps; the common tests read them
# (e.g. to leave base models out of training tests, to add labels for classifiers).
IN_TREE_NAMES = {
    "MODEL_MAPPING_NAMES": "BrainJepaModel",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "BrainJepaForPreTraining",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES": "BrainJepaForSequenceClassification",
}


class BrainJepaModelTester:
    """Tiny configs and inputs: 5 ROIs x 2 time patches = 10 tokens, width 16. For pretraining, the
    encoder whose outputs the model returns (the context encoder) sees 6 of them."""

    def __init__(
        self, parent, batch_size=3, num_rois=5, num_frames=16, patch_size=8, gradient_dim=3, pretraining=False
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.num_rois = num_rois
        self.num_frames = num_frames
        self.patch_size = patch_size
        self.gradient_dim = gradient_dim
        self.hidden_size = 16
        self.num_hidden_layers = 2
        self.num_attention_heads = 2
        self.num_labels = 3
        self.is_training = True
        self.num_tokens = num_rois * (num_frames // patch_size)
        self.num_context = 6
        self.num_targets = 3
        self.seq_length = self.num_context if pretraining else self.num_tokens

    def get_config(self) -> BrainJepaConfig:
        return BrainJepaConfig(
            num_rois=self.num_rois,
            num_frames=self.num_frames,
            patch_size=self.patch_size,
            gradient_dim=self.gradient_dim,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            predictor_hidden_size=8,
            predictor_num_hidden_layers=1,
            predictor_num_attention_heads=2,
            num_labels=self.num_labels,
        )

    def prepare_config_and_inputs_for_common(self):
        generator = torch.Generator().manual_seed(0)
        fmri = torch.randn(self.batch_size, 1, self.num_rois, self.num_frames, generator=generator)
        # One gradient per sample (batch, rois, gradient_dim): the common tests grow or cut every
        # input of `additional_model_inputs` along dim 0 with the batch.
        gradient = torch.randn(self.batch_size, self.num_rois, self.gradient_dim, generator=generator)
        return self.get_config(), {"fmri_values": fmri, "gradient": gradient}

    def pretraining_indices(self, batch_size):
        generator = torch.Generator().manual_seed(1)
        order = torch.stack([torch.randperm(self.num_tokens, generator=generator) for _ in range(batch_size)])
        context = order[:, : self.num_context]
        targets = order[:, self.num_context : self.num_context + self.num_targets]
        return context, targets


class BrainJepaCommonTests(ModelTesterMixin):
    # The mixin skips some tests by itself; each run shows why (`pytest -rs`). All are GPU or
    # not-applicable cases: accelerator/multi-GPU/MPS/DeepSpeed/kernels/flash-attention/grouped_mm
    # hardware tests, RUN_SLOW-only tests, RoPE/sliding-window/MoE/KV-cache/tensor-parallel/composite
    # model/keep-in-fp32/inputs_embeds/LM-head/vocabulary-resizing tests (Brain-JEPA has none of these),
    # weight-conversion mappings (checkpoints are converted by `brain-jepa convert` instead), and the
    # input-embedding-weight check (the patch embedding keeps its weight in a Conv2d, as ViT's does). The
    # `capture_outputs` tests run: the encoder collects hidden states and attentions with it.
    # The model's files carry no "# Copyright <year>" line, from which the mixin would date it as pre-2023
    # and skip this check of `_init_weights`:
    test_can_init_all_missing_weights_before_2023 = True
    # The patch embedding is a Conv2d over (ROI, frame) patches: there is no vocabulary to resize.
    test_resize_embeddings = False
    # The models need each ROI's gradient (a fresh model stores none); tests that build their own
    # inputs take it from here.
    additional_model_inputs = ["gradient"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._name_patches = [
            mock.patch.dict(getattr(modeling_common, maps), {"brain_jepa": name})
            for maps, name in IN_TREE_NAMES.items()
        ]
        for patch in cls._name_patches:
            patch.start()

    @classmethod
    def tearDownClass(cls):
        for patch in cls._name_patches:
            patch.stop()
        super().tearDownClass()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if model_class is BrainJepaForPreTraining:
            context, targets = self.model_tester.pretraining_indices(inputs_dict["fmri_values"].shape[0])
            inputs_dict["context_indices"] = context
            inputs_dict["target_indices"] = targets
        return inputs_dict

    def test_model_get_set_embeddings(self):
        # The mixin's version expects a token nn.Embedding; as transformers' ViT tests do for patch
        # embeddings, check the input embedding is the patch embedding module and there is no output one.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), torch.nn.Module)
            self.assertIsInstance(model.get_input_embeddings().projection, torch.nn.Conv2d)
            self.assertIsNone(model.get_output_embeddings())


class BrainJepaModelTest(BrainJepaCommonTests, unittest.TestCase):
    all_model_classes = (BrainJepaModel, BrainJepaForSequenceClassification)

    def setUp(self):
        self.model_tester = BrainJepaModelTester(self)
        self.config_tester = ConfigTester(self, config_class=BrainJepaConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(
        "Not applicable: it sets `vocab_size` (Brain-JEPA has no vocabulary) and expects the base model to fail "
        "loading because of it; a head with another num_labels is checked in test_mismatched_head_needs_opt_in"
    )
    def test_load_with_mismatched_shapes(self):
        pass


class BrainJepaForPreTrainingTest(BrainJepaCommonTests, unittest.TestCase):
    all_model_classes = (BrainJepaForPreTraining,)

    def setUp(self):
        self.model_tester = BrainJepaModelTester(self, pretraining=True)

    @unittest.skip(
        "Not applicable: ForPreTraining holds two encoders of the base class; the target encoder `brain_jepa` is "
        "the base model (base_model_prefix) and the context encoder is the other, which the test takes for a "
        "misnamed base model. Loading the base model from a pretraining folder is checked in "
        "tests/test_pretraining_model.py"
    )
    def test_base_model_prefix_loads_base_weights(self):
        pass

    # Not applicable: the test instruments the first checkpointing layer in module order, the target encoder's,
    # which runs under torch.no_grad (an EMA copy, never trained) and so is never checkpointed. Checkpointing
    # of a trained encoder is covered by BrainJepaModelTest (ForSequenceClassification) and tests/test_modeling.py.
    _NO_GRAD_TARGET = "Not applicable: the first checkpointing layer belongs to the no-grad target encoder"

    @unittest.skip(_NO_GRAD_TARGET)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(_NO_GRAD_TARGET)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(_NO_GRAD_TARGET)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass


def test_mismatched_head_needs_opt_in(tmp_path):
    """The applicable half of the mixin's test_load_with_mismatched_shapes: another num_labels fails to
    load unless ignore_mismatched_sizes=True, which gives a fresh head and keeps the encoder."""
    config, _ = BrainJepaModelTester(None).prepare_config_and_inputs_for_common()
    BrainJepaForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        BrainJepaForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    saved = BrainJepaForSequenceClassification.from_pretrained(tmp_path)
    fresh = BrainJepaForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert fresh.classifier.out_features == 5
    torch.testing.assert_close(fresh.brain_jepa.state_dict(), saved.brain_jepa.state_dict())
