"""Brain-JEPA for Hugging Face: configuration, models and Auto-class registration.

Importing this package registers `model_type="brain_jepa"` with AutoConfig, AutoModel,
AutoModelForPreTraining, AutoModelForSequenceClassification and AutoFeatureExtractor, registers the
Brain-JEPA pipelines, and marks the classes so that `save_pretrained` writes `auto_map` and copies
the remote-code files next to the weights (`brain_jepa_hf.auto_classes`).
"""

from .auto_classes import register_auto_classes
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

register_auto_classes()
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
