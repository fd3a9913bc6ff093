"""Any local transformers model folder as a source of real heads: the generic Hugging Face adapter.

A spec names a folder (what ``save_pretrained`` writes: ``config.json`` and the weights)::

    models = [{path = "/data/my-gpt2", family = "auto", name = "my_gpt2"}]   # or simply "/data/my-gpt2"

The folder is loaded with ``attn_implementation="eager"`` in float32 (the class its config names in
``architectures``, so a causal LM keeps its language-model head and a classifier its classifier; else
``AutoModel``). q, k, v are captured where the model hands them to its attention function, through transformers'
``AttentionInterface`` (:mod:`astrostats.targets.language`): after rotary positions, before the scale, with
shared key/value heads expanded to the query heads that read them. No per-family hooks: BERT-style encoders,
GPT-2 (fused ``c_attn``, Conv1D), Llama-style models (rotary, grouped key/value heads) and ViTs all go through
the same call, and every capture is checked against the model's own attention probabilities.

Families (``family``; "auto" reads ``model_type`` from the config):

* ``bert``  encoders (bert, roberta, electra, ...): non-causal (causal where the config says ``is_decoder``);
* ``gpt2``  GPT-2 and its kin: causal;
* ``llama`` Llama-style decoders (llama, mistral, qwen2, smollm3, ...): causal;
* ``vit``   vision Transformers (vit, deit, dinov2): non-causal, read images.

A model type outside these lists is taken as it is: causal if its config says ``is_decoder`` or its class is a
causal LM, vision if its config has an ``image_size``; the capture check still guards it.

Inputs: text windows from the folder's tokenizer when it has one, else the text's UTF-8 bytes folded into the
vocabulary (:func:`astrostats.targets.language.text_token_ids`); for a vision model, the held-out test images
of ``image_source`` (28 x 28 grey) resized to the configured ``image_size`` (bilinear), repeated over its
``num_channels`` and normalised as ViT image processors do ((x - 0.5) / 0.5).
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import re
import time
from pathlib import Path

import torch

from astrostats.targets import language
from astrostats.targets.base import TargetBatch
from astrostats.targets.models import LoadedModel, targets_of
from astrostats.validation import InputError, check_identifier, check_int, fail

FAMILIES = {  # family -> model types it covers, causal, modality
    "bert": (("bert", "roberta", "xlm-roberta", "electra", "camembert", "distilbert", "ernie", "mpnet"),
             False, "language"),
    "gpt2": (("gpt2", "gpt_neo", "gptj", "gpt_bigcode", "codegen", "biogpt"), True, "language"),
    "llama": (("llama", "mistral", "mixtral", "qwen2", "qwen3", "smollm3", "olmo", "olmo2", "granite", "phi3",
               "gemma", "starcoder2", "stablelm", "cohere", "glm"), True, "language"),
    "vit": (("vit", "deit", "dinov2", "vit_msn", "ijepa"), False, "vision"),
}
FAMILY_CHOICES = ("auto", *FAMILIES)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def check_known(parameter: str, value, choices) -> str:
    """``value`` if it is one of ``choices``, else an InputError naming the parameter, the value, the choices
    and the nearest (difflib)."""
    choices = list(choices)
    if isinstance(value, str) and value in choices:
        return value
    close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise fail(parameter, f"one of {choices}{hint}", value)


def default_name(path: Path) -> str:
    """A table-safe name from a folder's name: characters other than letters, digits, '_' and '-' become '_'."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", path.name)[:64]
    return name if name[:1].isalpha() else f"model_{name}"[:64]


def family_of(config, family: str = "auto", parameter: str = "model") -> str:
    """The family of a configuration: the one whose model types include ``config.model_type`` ("other" for a
    type no family lists); an explicit ``family`` that contradicts a listed type is an InputError."""
    model_type = getattr(config, "model_type", "")
    known = next((name for name, (types, _, _) in FAMILIES.items() if model_type in types), None)
    if family == "auto":
        return known or "other"
    if known is not None and known != family:
        raise fail(f"{parameter}.family", f"'auto' or {known!r} (the folder's config says model_type "
                                          f"{model_type!r})", family)
    return family


class HuggingFaceSource:
    """A transformers model folder as a target source (see the module docstring).

    Cheap to build: the folder is checked (it exists and holds a ``config.json``), nothing is read; the
    configuration is read on first need (:meth:`shape`, :attr:`causal`), the weights only by :meth:`load`.
    ``parameter`` is the spec parameter that named it, for error messages ("models", "real_models", ...).
    """

    def __init__(self, path, family: str = "auto", name: str | None = None, *, parameter: str = "model"):
        self.parameter = parameter
        if not isinstance(path, (str, Path)) or not str(path):
            raise fail(f"{parameter}.path", "a path to a transformers model folder", path)
        self._path = Path(path).expanduser()
        self.family_choice = check_known(f"{parameter}.family", family, FAMILY_CHOICES)
        self.name = (check_identifier(f"{parameter}.name", name) if name is not None
                     else default_name(self._path.resolve()))
        self.check_folder()

    # --------------------------------------------------------------------------------- what it is, from files
    def folder(self) -> Path:
        return self._path

    def check_folder(self) -> None:
        folder = self.folder()
        if not folder.exists():
            raise fail(f"{self.parameter}.path", "an existing model folder (what save_pretrained writes)", str(folder))
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise fail(f"{self.parameter}.path", "a transformers model folder with a config.json (what "
                                                 "save_pretrained writes)", str(folder))

    def read_config(self):
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(str(self.folder()))
        except Exception as error:  # a config.json transformers cannot read
            raise fail(f"{self.parameter}.path", f"a folder whose config.json transformers can read "
                                                 f"({type(error).__name__}: {error})", str(self.folder())) from None

    @functools.cached_property
    def config(self):
        return self.read_config()

    @functools.cached_property
    def family(self) -> str:
        return family_of(self.config, self.family_choice, self.parameter)

    @property
    def modality(self) -> str:
        if self.family in FAMILIES:
            return FAMILIES[self.family][2]
        return "vision" if hasattr(self.config, "image_size") and hasattr(self.config, "num_channels") else "language"

    @property
    def causal(self) -> bool:
        """From the configuration: ``is_decoder``, the family (gpt2, llama), or a causal-LM class name."""
        if getattr(self.config, "is_decoder", False):
            return True
        if self.family in FAMILIES:
            return FAMILIES[self.family][1]
        names = getattr(self.config, "architectures", None) or ()
        return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in names)

    @property
    def end_to_end_metric(self) -> str:
        """The metric claim C2 judges: next-token top-1 agreement (causal LMs, as SmolLM2), top-1 agreement with
        its own class predictions (a vision classifier, as the ViT), else the mean-pooled embedding's cosine
        (encoders, as MiniLM)."""
        if self.causal:
            return "top1_agreement"
        if self.modality == "vision" and any(name.endswith("ForImageClassification")
                                             for name in getattr(self.config, "architectures", None) or ()):
            return "top1_agreement"
        return "embedding_cosine"

    def shape(self, image_source: str = "mnist") -> language.ModelShape:
        config = self.config
        self.family  # an explicit family that contradicts the config fails here, before any weights are read
        n_heads = check_int(f"{self.parameter}: num_attention_heads", getattr(config, "num_attention_heads", None),
                            minimum=1)
        n_layers = check_int(f"{self.parameter}: num_hidden_layers", getattr(config, "num_hidden_layers", None),
                             minimum=1)
        return language.ModelShape(n_layers, n_heads, getattr(config, "num_key_value_heads", None) or n_heads)

    def max_tokens(self) -> int | None:
        for key in ("max_position_embeddings", "n_positions"):
            value = getattr(self.config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # --------------------------------------------------------------------------------------------- loading
    def model_class(self):
        """The class the config's ``architectures`` names (keeps an LM head or a classifier), else AutoModel."""
        import transformers

        for name in getattr(self.config, "architectures", None) or ():
            found = getattr(transformers, name, None)
            if isinstance(found, type):
                return found
        return transformers.AutoModel

    def load_model(self) -> language.LanguageModel:
        """The model in float32, eager attention, eval mode, with its tokenizer if the folder has one."""
        folder = self.folder()
        if not any(path.suffix in WEIGHT_SUFFIXES for path in folder.iterdir()):
            raise fail(f"{self.parameter}.path", "a model folder with weights (*.safetensors or *.bin)", str(folder))
        try:
            with _quiet_transformers():
                model = self.model_class().from_pretrained(str(folder), attn_implementation="eager",
                                                           dtype=torch.float32).eval()
        except InputError:
            raise
        except Exception as error:
            raise fail(f"{self.parameter}.path", f"a folder transformers can load ({type(error).__name__}: {error})",
                       str(folder)) from None
        tokenizer = None
        if self.modality == "language" and any((folder / name).exists() for name in TOKENIZER_FILES):
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(folder))
            except Exception as error:
                raise fail(f"{self.parameter}.path", f"a folder whose tokenizer files load "
                                                     f"({type(error).__name__}: {error})", str(folder)) from None
        return language.LanguageModel(self.name, model, tokenizer, causal=self.causal, modality=self.modality)

    def inputs(self, handle: language.LanguageModel, *, n_sequences: int, n_tokens: int, text_source: str,
               image_source: str) -> tuple[torch.Tensor, str]:
        """(inputs, the text or image source they came from)."""
        if self.modality == "vision":
            return vision_inputs(handle.model.config, image_source, n_sequences), image_source
        longest = self.max_tokens()
        if longest is not None and n_tokens > longest:
            raise fail("n_tokens", f"at most {longest} (the longest input {self.name} takes)", n_tokens)
        return language.text_sequences(handle, n_sequences=n_sequences, n_tokens=n_tokens,
                                       text_source=text_source), text_source

    def load(self, *, n_sequences: int, n_tokens: int = 197, text_source: str = "pydoc",
             image_source: str = "mnist") -> LoadedModel:
        start = time.perf_counter()
        handle = self.load_model()
        inputs, source = self.inputs(handle, n_sequences=n_sequences, n_tokens=n_tokens, text_source=text_source,
                                     image_source=image_source)
        return LoadedModel(self.name, handle, inputs, source, time.perf_counter() - start, target=self.name,
                           modality=self.modality)

    def heads(self, *, n_sequences: int = 8, n_tokens: int = 197, layers=(), heads=(), text_source: str = "pydoc",
              image_source: str = "mnist") -> list[TargetBatch]:
        """One TargetBatch per chosen (layer, head) on real inputs."""
        loaded = self.load(n_sequences=n_sequences, n_tokens=n_tokens, text_source=text_source,
                           image_source=image_source)
        return targets_of(loaded, layers, heads)

    def __repr__(self) -> str:
        return f"HuggingFaceSource({str(self._path)!r}, family={self.family_choice!r}, name={self.name!r})"


def vision_inputs(config, image_source: str, n_images: int) -> torch.Tensor:
    """(S, C, H, W) pixel values: the first held-out test images of ``image_source``, resized to the model's
    image size, repeated over its channels, normalised to [-1, 1] (see the module docstring)."""
    from astrostats.targets.vision import test_images

    images, _ = test_images(image_source, n_images)
    size = config.image_size if isinstance(config.image_size, int) else tuple(config.image_size)[0]
    pixels = images.unsqueeze(1)
    if pixels.shape[-1] != size:
        pixels = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    pixels = pixels.expand(-1, getattr(config, "num_channels", 3), -1, -1).contiguous()
    return (pixels - 0.5) / 0.5


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' load report and progress bars say nothing the capture check does not."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)
        if bars:
            transformers_logging.enable_progress_bar()


def load_pretrained(path, family: str = "auto", name: str | None = None) -> language.LanguageModel:
    """A model folder loaded as the adapter loads it (for a look at it outside an analysis)."""
    return HuggingFaceSource(path, family, name).load_model()


__all__ = ["HuggingFaceSource", "FAMILIES", "FAMILY_CHOICES", "family_of", "load_pretrained", "vision_inputs",
           "default_name"]
