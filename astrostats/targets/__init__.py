"""Where q, k, v come from, as :class:`TargetBatch`: synthetic heads, real Transformers (MiniLM, SmolLM2 and
the ViT trained here) on real text and images, and astrocyte calcium recordings.
"""
from astrostats.targets.base import TargetBatch, labelled
from astrostats.targets.corpora import IMAGE_SOURCES, TEXT_SOURCES, english_text, image_set
from astrostats.targets.language import language_heads, load_language_model, text_sequences
from astrostats.targets.models import MODELS, LoadedModel, load, model_shape, targets_of
from astrostats.targets.recordings import load_recordings, load_reference_data
from astrostats.targets.synthetic import LOGIT_SCALES, synthetic_head
from astrostats.targets.vision import load_vit, test_images, vit_heads

__all__ = ["TargetBatch", "labelled", "synthetic_head", "LOGIT_SCALES", "MODELS", "LoadedModel", "load",
           "model_shape", "targets_of", "load_language_model", "text_sequences", "language_heads", "load_vit",
           "test_images", "vit_heads", "english_text", "image_set", "TEXT_SOURCES", "IMAGE_SOURCES",
           "load_recordings", "load_reference_data"]
