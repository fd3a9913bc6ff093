"""Figures per study kind, drawn from that analysis's tables only: ``draw(tables) -> {name: Figure}``."""
from __future__ import annotations

import importlib
import logging

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["figure.max_open_warning"] = 0  # figures stay open on purpose until the PDF is written

LOG = logging.getLogger(__name__)


def find_table(tables: dict, suffix: str):
    """The first non-empty table whose name ends with ``suffix`` (an analysis's tables share its name as prefix)."""
    for name, table in tables.items():
        if name.endswith(suffix) and not table.empty:
            return table
    return None


def draw_analysis(kind: str, tables: dict) -> dict:
    """The figures of one analysis; a kind without a figure module draws none."""
    try:
        module = importlib.import_module(f"astrostats.report.figures.{kind}")
    except ModuleNotFoundError:
        LOG.info("no figure module for kind %s", kind)
        return {}
    return module.draw(tables)

__all__ = ["find_table", "draw_analysis"]
