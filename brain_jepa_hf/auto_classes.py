"""Registration of the Brain-JEPA classes with transformers' Auto classes, and the `auto_map` their saved
folders carry. Package code, not remote code: the copy of the model files saved beside the weights
never needs it (a folder's config.json already holds the full `auto_map`).

`register_auto_classes()` (run by `import brain_jepa_hf`) makes AutoConfig / AutoModel /
AutoModelForPreTraining / AutoModelForSequenceClassification build our classes, marks each class for
its Auto class so `save_pretrained` copies the remote-code files, and makes `save_pretrained` list every
Brain-JEPA Auto class in `auto_map`, so e.g. a pretraining folder also loads with AutoModel (its target
encoder) through remote code.
"""

from __future__ import annotations

import functools

import transformers
from transformers import AutoConfig, PreTrainedModel

from .configuration_brain_jepa import BrainJepaConfig
from .modeling_brain_jepa import (
    BrainJepaForPreTraining,
    BrainJepaForSequenceClassification,
    BrainJepaModel,
    BrainJepaPreTrainedModel,
)


# Auto class name -> the Brain-JEPA class it builds.
BRAIN_JEPA_AUTO_CLASSES: dict[str, type[BrainJepaPreTrainedModel]] = {
    "AutoModel": BrainJepaModel,
    "AutoModelForPreTraining": BrainJepaForPreTraining,
    "AutoModelForSequenceClassification": BrainJepaForSequenceClassification,
}


def _code_reference(cls: type) -> str:
    """ "<file stem>.<class name>", as `auto_map` names a class of a remote-code file."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def brain_jepa_auto_map() -> dict[str, str]:
    """The `auto_map` of a saved Brain-JEPA folder: AutoConfig and every model Auto class."""
    return {"AutoConfig": _code_reference(BrainJepaConfig)} | {
        auto: _code_reference(cls) for auto, cls in BRAIN_JEPA_AUTO_CLASSES.items()
    }


@functools.wraps(PreTrainedModel.save_pretrained)
def _save_pretrained_with_every_auto_class(self, save_directory, *args, **kwargs):
    if self._auto_class is not None:
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **brain_jepa_auto_map()}
    return PreTrainedModel.save_pretrained(self, save_directory, *args, **kwargs)


def register_auto_classes() -> None:
    """Register the config and model classes with the Auto classes and for remote code (idempotent)."""
    AutoConfig.register(BrainJepaConfig.model_type, BrainJepaConfig, exist_ok=True)
    BrainJepaConfig.register_for_auto_class()
    for auto_name, model_class in BRAIN_JEPA_AUTO_CLASSES.items():
        getattr(transformers, auto_name).register(BrainJepaConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_name)
    BrainJepaPreTrainedModel.save_pretrained = _save_pretrained_with_every_auto_class


__all__ = ["BRAIN_JEPA_AUTO_CLASSES", "brain_jepa_auto_map", "register_auto_classes"]
