"""Where q, k, v come from, as :class:`TargetBatch`: synthetic heads, real Transformers (MiniLM, SmolLM2, the ViT
trained here, and any local transformers model folder, by the target-source registry of
:mod:`astrostats.targets.sources`) on real text and images, and astrocyte calcium recordings.
"""
from astrostats.targets.base import TargetBatch, labelled
from astrostats.targets.corpora import IMAGE_SOURCES, TEXT_SOURCES, english_text, image_set
from astrostats.targets.language import language_heads, load_language_model, text_sequences
from astrostats.targets.models import LoadedModel, load, model_shape, targets_of
from astrostats.targets.sources import (BUILTIN_SOURCES, HuggingFaceSource, TargetSource, check_sources,
                                        register_source, resolve_source, source_heads, source_names)
from astrostats.targets.recordings import load_recordings, load_reference_data
from astrostats.targets.synthetic import LOGIT_SCALES, synthetic_head
from astrostats.targets.vision import load_vit, test_images, vit_heads

MODELS = BUILTIN_SOURCES  # the built-in names, kept for old imports: studies validate against the registry

__all__ = ["TargetBatch", "labelled", "synthetic_head", "LOGIT_SCALES", "MODELS", "BUILTIN_SOURCES", "TargetSource",
           "HuggingFaceSource", "register_source", "resolve_source", "source_names", "source_heads", "check_sources",
           "LoadedModel", "load",
           "model_shape", "targets_of", "load_language_model", "text_sequences", "language_heads", "load_vit",
           "test_images", "vit_heads", "english_text", "image_set", "TEXT_SOURCES", "IMAGE_SOURCES",
           "load_recordings", "load_reference_data"]
