"""astrostats: is a neuron–astrocyte circuit's agreement with Transformer attention real, or what any model with
enough tunable units would give? A referee-style audit (Kozachkov, Kastanenka & Krotov, PNAS 2023).

``astrostats.audit(circuit, ...)`` runs the audit and ``astrostats.load_run(folder)`` opens a finished one
(:mod:`astrostats.api`); ``astrostats.circuits.register_circuit`` adds a circuit of your own.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astrostats")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name):  # the library face loads the runner and the report only when used
    if name in ("audit", "load_run", "Audit"):
        from astrostats import api

        return getattr(api, name)
    raise AttributeError(f"module 'astrostats' has no attribute {name!r}")


__all__ = ["audit", "load_run", "Audit", "__version__"]
