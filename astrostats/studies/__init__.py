"""Studies turn a resolved spec into named tidy tables (spec -> runner -> tables -> stats).

One module per spec ``kind``, each with ``Parameters`` (a frozen dataclass bound from the spec) and
``run(spec, context) -> dict[str, pandas.DataFrame]``. Figures are drawn from the tables by
``astrostats.report.figures``; verdicts by ``astrostats.report.audit``.
"""
from __future__ import annotations

import importlib

from astrostats.validation import fail

STUDY_MODULES = {
    "scaling": "astrostats.studies.scaling",
    "calibration": "astrostats.studies.calibration",
    "overfitting": "astrostats.studies.overfitting",
    "real_heads": "astrostats.studies.real_heads",
    "biology": "astrostats.studies.biology",
    "known_answers": "astrostats.studies.known_answers",
    "circuits": "astrostats.studies.circuits",
}


def get_study(kind: str):
    if kind not in STUDY_MODULES:
        raise fail("kind", f"one of {sorted(STUDY_MODULES)}", kind)
    return importlib.import_module(STUDY_MODULES[kind])

__all__ = ["STUDY_MODULES", "get_study"]
