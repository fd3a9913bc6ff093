"""The library face: run an audit, or open a finished run, and get its tables and verdicts as Python objects.

>>> import astrostats
>>> run = astrostats.audit(analyses=["scaling"], profile="smoke", out="/tmp/astrostats-doc")  # doctest: +SKIP
>>> run.verdicts.loc["C1", "verdict"]                                                                    # doctest: +SKIP
'SUPPORTED'
>>> astrostats.load_run("/tmp/astrostats-doc").tables["scaling_asymptotic"].head()                      # doctest: +SKIP

Both return the same :class:`Audit` the command line writes to disk: ``audit`` is
``python -m astrostats.analyze ANALYSES --circuit CIRCUIT --profile PROFILE --out OUT`` followed by
``load_run(OUT)``. Verdicts are judged again from the stored tables, each checked against its recorded SHA-256
first, so what ``load_run`` returns is what the tables say, not what a file claims.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from astrostats.constants import DEFAULT_CIRCUIT
from astrostats.validation import InputError


@dataclass(frozen=True)
class Audit:
    """One finished run: its folder, manifest, tables (name -> DataFrame) and one verdict per claim."""

    folder: Path
    manifest: dict
    tables: dict
    verdicts: pd.DataFrame  # index claim id; columns verdict, statement, headline, reason

    @property
    def audited_circuit(self) -> str:
        """The circuit under audit, as the manifest names it."""
        return (self.manifest.get("audited_circuit") or {}).get("name", DEFAULT_CIRCUIT)

    def to_pdf(self, path: str | Path | None = None) -> Path:
        """The run's report (report.pdf in its folder), copied to ``path`` when one is given."""
        report = self.folder / "report.pdf"
        if not report.is_file():
            raise InputError(f"report: {str(report)!r} is missing (rebuild it: python -m astrostats.analyze "
                             f"--audit-only --from {self.folder})")
        if path is None:
            return report
        return Path(shutil.copyfile(report, path))


def load_run(folder: str | Path) -> Audit:
    """A finished run from its folder: manifest, tables and figures verified against their recorded SHA-256
    (an InputError names the first that fails), verdicts judged again from the tables."""
    from astrostats.claims.judging import judge_all
    from astrostats.report.build import load_tables, verified_manifest

    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise InputError(f"folder: {str(folder)!r} holds no manifest.json of a finished run")
    manifest = verified_manifest(folder)
    tables, _ = load_tables(folder, manifest)
    rows = [{"claim": v.claim_id, "verdict": v.verdict, "statement": v.statement, "headline": v.headline,
             "reason": v.reason} for v in judge_all(tables, manifest)]
    return Audit(folder, manifest, tables, pd.DataFrame(rows).set_index("claim"))


def toml_value(key: str, value) -> str:
    """A Python value as the TOML text ``--set`` reads (numbers, booleans, strings and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(key, item) for item in value) + "]"
    raise InputError(f"overrides: {key!r} expected a number, boolean, string or list of them, got "
                     f"{type(value).__name__} {value!r}")


def audit(circuit: str = DEFAULT_CIRCUIT, *, analyses: list[str] | tuple[str, ...] = (), profile: str = "smoke",
          out: str | Path = "reports", seed: int | None = None, jobs: int = 1, overrides: dict | None = None,
          csv: bool = False) -> Audit:
    """Run the audit on ``circuit`` (a registered name, an entry point or 'package.module:callable') over
    ``analyses`` (names or spec paths; default every analysis) at ``profile``, into ``out``; the finished run.

    ``overrides`` are the command line's ``--set``: ``{"m": [8, 16, 32], "scaling.n_seeds": 4}`` (a key for every
    analysis that has it, ANALYSIS.KEY for one); ``csv`` writes every table as CSV too (``--csv``).
    Bad input raises :class:`~astrostats.validation.InputError` before anything is written; an analysis that
    fails leaves its claims INSUFFICIENT_DATA, with the reason, as on the command line."""
    from astrostats.analysis_run import quiet_progress
    from astrostats.analyze import parse_arguments, run

    if overrides is not None and not isinstance(overrides, dict):
        raise InputError(f"overrides: expected a dict of parameter -> value, got {overrides!r}")
    settings = [item for key, value in (overrides or {}).items()
                for item in ("--set", f"{key}={toml_value(key, value)}")]
    argv = [*map(str, analyses), "--circuit", str(circuit), "--profile", str(profile), "--out", str(out),
            "--jobs", str(jobs), "--quiet", *settings] + ([] if seed is None else ["--seed", str(seed)])
    argv += ["--csv"] if csv else []
    quiet_progress()
    run(parse_arguments(argv))
    return load_run(out)


__all__ = ["Audit", "audit", "load_run"]
