"""Brain-JEPA for Hugging Face: configuration, models and Auto-class registration.

Importing this package registers `model_type="brain_jepa"` with AutoConfig, AutoModel,
AutoModelForPreTraining, AutoModelForSequenceClassification and AutoFeatureExtractor, registers the
Brain-JEPA pipelines, and marks the classes so that `save_pretrained` writes `auto_map` and copies
the remote-code files next to the weights.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from .configuration_brain_jepa import BRAIN_JEPA_PRESETS, BrainJepaConfig
from .feature_extraction_brain_jepa import BrainJepaFeatureExtractor, register_feature_extractor
from .modeling_brain_jepa import (
    BrainJepaForPreTraining,
    BrainJepaForPreTrainingOutput,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
    BrainJepaPredictor,
    BrainJepaPreTrainedModel,
    cpu_has_fast_bf16,
    resolve_dtype,
)

__version__ = "0.1.0"

AutoConfig.register(BrainJepaConfig.model_type, BrainJepaConfig, exist_ok=True)
AutoModel.register(BrainJepaConfig, BrainJepaModel, exist_ok=True)
AutoModelForPreTraining.register(BrainJepaConfig, BrainJepaForPreTraining, exist_ok=True)
AutoModelForSequenceClassification.register(BrainJepaConfig, BrainJepaForSequenceClassification, exist_ok=True)

BrainJepaConfig.register_for_auto_class()
BrainJepaModel.register_for_auto_class("AutoModel")
BrainJepaForPreTraining.register_for_auto_class("AutoModelForPreTraining")
BrainJepaForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
register_feature_extractor()


def register_pipelines() -> None:
    """Registers the "brain-jepa-feature-extraction" and "brain-jepa-classification" pipelines."""
    from .pipelines import register_pipelines as register

    register()


register_pipelines()

__all__ = [
    "BRAIN_JEPA_PRESETS",
    "BrainJepaConfig",
    "BrainJepaFeatureExtractor",
    "BrainJepaModel",
    "BrainJepaPredictor",
    "BrainJepaPreTrainedModel",
    "BrainJepaForPreTraining",
    "BrainJepaForPreTrainingOutput",
    "BrainJepaForSequenceClassification",
    "cpu_has_fast_bf16",
    "resolve_dtype",
]
