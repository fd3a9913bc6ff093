"""Real Transformers as sources of targets: load a model with its inputs, read its shape, and cut the
chosen layers and heads into :class:`~astrostats.targets.base.TargetBatch` es.

Models: ``minilm`` and ``smollm2`` (language, :mod:`astrostats.targets.language`, on text windows) and
``vit`` (the ViT trained here, :mod:`astrostats.targets.vision`, on held-out test images). Every study that
reads real heads loads them here, so all see the same inputs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from astrostats.targets import language, vision
from astrostats.targets.base import TargetBatch
from astrostats.targets.heads import LayerAttention, head_targets, select

MODELS = ("minilm", "smollm2", "vit")


def model_shape(name: str, image_source: str = "mnist") -> language.ModelShape:
    """Layers and heads from the model's configuration (no weights): seconds, before any heavy work."""
    if name == "vit":
        config = vision.vit_config(image_source)
        return language.ModelShape(config.n_layers, config.n_heads, config.n_heads)
    return language.language_model_shape(name)


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model, its inputs and where they came from, and how to get its heads."""

    name: str
    handle: object  # language.LanguageModel or vision.ViT
    inputs: torch.Tensor  # token ids (S, N) or images (S, 28, 28)
    source: str  # the text source (language) or image source (vision) of the inputs
    load_seconds: float

    @property
    def is_vision(self) -> bool:
        return self.name == "vit"

    def layer_attention(self, layers=()) -> list[LayerAttention]:
        if self.is_vision:
            every = vision.vit_attention(self.handle, self.inputs)
            return [every[i] for i in select("layers", layers, len(every))]
        return language.language_attention(self.handle, self.inputs, layers)


def load(name: str, *, n_sequences: int, n_tokens: int = 197, text_source: str = "pydoc",
         image_source: str = "mnist") -> LoadedModel:
    """The model and its first ``n_sequences`` inputs: text windows of ``n_tokens`` tokens, or test images."""
    start = time.perf_counter()
    if name == "vit":
        model = vision.load_vit(image_source)
        images, _ = vision.test_images(image_source, n_sequences)
        return LoadedModel(name, model, images, image_source, time.perf_counter() - start)
    model = language.load_language_model(name)
    ids = language.text_sequences(model, n_sequences=n_sequences, n_tokens=n_tokens, text_source=text_source)
    return LoadedModel(name, model, ids, text_source, time.perf_counter() - start)


def targets_of(loaded: LoadedModel, layers, heads, *, require_alternative: bool = False) -> list[TargetBatch]:
    """TargetBatches of the chosen layers and heads (labels as the synthetic targets')."""
    if loaded.is_vision:
        target = f"vit_{loaded.source}"
        extra, groups = {"n_kv_heads": loaded.handle.config.n_heads, "source": loaded.source}, 1
    else:
        target = loaded.name
        extra = {"n_kv_heads": loaded.handle.n_kv_heads, "source": loaded.source}
        groups = loaded.handle.n_heads // loaded.handle.n_kv_heads
    return head_targets(target, loaded.layer_attention(layers), heads, extra=extra, kv_groups=groups,
                                 require_alternative=require_alternative)


__all__ = ["MODELS", "LoadedModel", "load", "model_shape", "targets_of"]
