"""Real Transformers as sources of targets: load a model with its inputs, read its shape, and cut the
chosen layers and heads into :class:`~astrostats.targets.base.TargetBatch` es.

Which models exist is the registry's business (:mod:`astrostats.targets.sources`): the built-ins ``minilm``,
``smollm2`` and ``vit``, anything registered or installed as an entry point, and any local transformers model
folder (:mod:`astrostats.targets.huggingface`). A spec names one by a registered name, a path, or a table
``{path = "...", family = "auto", name = "..."}``; :func:`load` and :func:`model_shape` take any of them. Every
study that reads real heads loads them here, so all see the same inputs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from astrostats.targets import language, vision
from astrostats.targets.base import TargetBatch
from astrostats.targets.heads import LayerAttention, head_targets, real_labels, select


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model, its inputs and where they came from, and how to get its heads.

    ``target`` is the name its heads carry in every table (the source's name; ``vit_<image source>`` for the
    ViT trained here); ``modality`` "language" or "vision"."""

    name: str
    handle: object  # language.LanguageModel (any transformers model) or vision.ViT (the ViT trained here)
    inputs: torch.Tensor  # token ids (S, N), images (S, 28, 28) for the ViT, pixel values (S, C, H, W)
    source: str  # the text source (language) or image source (vision) of the inputs
    load_seconds: float
    target: str = ""
    modality: str = "language"

    def __post_init__(self):
        if not self.target:
            object.__setattr__(self, "target", self.name)

    @property
    def is_vision(self) -> bool:
        """The ViT trained here (its own forward and attention callable), not a transformers model."""
        return isinstance(self.handle, vision.ViT)

    @property
    def causal(self) -> bool:
        return False if self.is_vision else self.handle.causal

    @property
    def labels(self) -> dict:
        """The labels of a real model's heads: target_kind "real" and the modality."""
        return real_labels(self.modality)

    @functools.cached_property
    def every_layer(self) -> list[LayerAttention]:
        """Every layer's heads on the inputs, from one forward pass, kept: a capture is a whole forward pass
        whatever layers are chosen (SmolLM2: seconds), and one model's analyses all read the same inputs."""
        if self.is_vision:
            return vision.vit_attention(self.handle, self.inputs)
        return language.language_attention(self.handle, self.inputs)

    def layer_attention(self, layers=()) -> list[LayerAttention]:
        every = self.every_layer
        return [every[i] for i in select("layers", layers, len(every))]


def model_shape(entry, image_source: str = "mnist") -> language.ModelShape:
    """Layers and heads from the model's configuration (no weights): seconds, before any heavy work.
    ``entry``: a registered name, a model folder's path, or a table {path, family, name}."""
    from astrostats.targets.sources import resolve_source  # the registry imports this module

    return resolve_source(entry).shape(image_source)


def load(entry, *, n_sequences: int, n_tokens: int = 197, text_source: str = "pydoc",
         image_source: str = "mnist") -> LoadedModel:
    """The model and its first ``n_sequences`` inputs: text windows of ``n_tokens`` tokens, or test images."""
    from astrostats.extras import require_extra
    from astrostats.targets.sources import resolve_source

    require_extra("models")  # without astrostats[models]: one line naming the extra
    return resolve_source(entry).load(n_sequences=n_sequences, n_tokens=n_tokens, text_source=text_source,
                                      image_source=image_source)


def targets_of(loaded: LoadedModel, layers, heads, *, require_alternative: bool = False) -> list[TargetBatch]:
    """TargetBatches of the chosen layers and heads (labels as the synthetic targets', plus ``n_kv_heads``,
    ``source`` and the real-model labels ``target_kind`` and ``modality``)."""
    if loaded.is_vision:
        n_kv_heads, groups = loaded.handle.config.n_heads, 1
    else:
        n_kv_heads = loaded.handle.n_kv_heads
        groups = loaded.handle.n_heads // n_kv_heads
    extra = {"n_kv_heads": n_kv_heads, "source": loaded.source, **loaded.labels}
    return head_targets(loaded.target, loaded.layer_attention(layers), heads, extra=extra, kv_groups=groups,
                        require_alternative=require_alternative)


def label_real_tables(tables: dict, labels_by_target: dict[str, dict]) -> None:
    """Give every table with a ``target`` column the real-model labels (``target_kind``, ``modality``) of its
    targets, where it lacks them (summaries and end-to-end tables are built from rows without the head labels),
    in place, right after ``target``."""
    for table in tables.values():
        if "target" not in table or table.empty:
            continue
        at = list(table.columns).index("target") + 1
        for offset, key in enumerate(("target_kind", "modality")):
            if key not in table:
                table.insert(at + offset, key, table["target"].map(
                    lambda target, key=key: labels_by_target.get(target, {}).get(key)))


def __getattr__(name: str):
    if name == "MODELS":  # the built-in names, as before the registry: kept for old imports
        from astrostats.targets.sources import BUILTIN_SOURCES

        return BUILTIN_SOURCES
    raise AttributeError(name)


__all__ = ["LoadedModel", "load", "model_shape", "targets_of", "label_real_tables"]
