"""Figures per study kind, drawn from that analysis's tables only: ``draw(tables) -> {name: Figure}``."""
from __future__ import annotations

import importlib
import logging

from astrostats.extras import require

matplotlib = require("matplotlib")  # without astrostats[report]: one line naming the extra
matplotlib.use("Agg")
matplotlib.rcParams["figure.max_open_warning"] = 0  # figures stay open on purpose until the PDF is written

LOG = logging.getLogger(__name__)


def find_table(tables: dict, suffix: str):
    """The first non-empty table whose name ends with ``suffix`` (an analysis's tables share its name as prefix)."""
    for name, table in tables.items():
        if name.endswith(suffix) and not table.empty:
            return table
    return None


def mean_ci_lines(ax, table, hue: str, x: str = "m", y: str = "value", marker: str = "o") -> None:
    """One line per hue level: the mean of y at each x with a 95 % normal-theory band (1.96 standard errors),
    coloured by the shared palette. pandas aggregates in one pass (seaborn's per-group errorbars are ~10x slower
    on the tens of thousands of rows behind a panel)."""
    from astrostats.report import style

    stats = (table.groupby([hue, x], sort=False)[y].agg(["mean", "sem", "count"]).reset_index()
             .sort_values([hue, x]))
    for level, part in stats.groupby(hue, sort=False):
        colour = style.colour(level)
        half = 1.96 * part["sem"].fillna(0.0)
        ax.fill_between(part[x], (part["mean"] - half).clip(lower=part["mean"] * 1e-3), part["mean"] + half,
                        color=colour, alpha=0.25, lw=0)
        ax.plot(part[x], part["mean"], marker=marker, color=colour, label=str(level))


def interval_lines(ax, table, hue: str | None, x: str = "m", y: str = "value", colour=None) -> None:
    """One line per hue level: the median of y at each x with its 5-95 % interval, from one pandas groupby
    (seaborn's lineplot does the same per group, several times slower)."""
    from astrostats.report import style

    keys = [hue, x] if hue else [x]
    grouped = table.groupby(keys, sort=True)[y]
    stats = grouped.quantile([0.05, 0.5, 0.95]).unstack().reset_index()
    for level, part in (stats.groupby(hue, sort=False) if hue else ((None, stats),)):
        line_colour = colour or style.colour(level)
        ax.fill_between(part[x], part[0.05], part[0.95], color=line_colour, alpha=0.2, lw=0)
        ax.plot(part[x], part[0.5], marker="o", color=line_colour, label=None if level is None else str(level))


def draw_analysis(kind: str, tables: dict, circuit=None) -> dict:
    """The figures of one analysis (``circuit``: the circuit under audit, an AuditedCircuit; default the paper's);
    a kind without a figure module draws none."""
    from astrostats.claims import AuditedCircuit

    try:
        module = importlib.import_module(f"astrostats.report.figures.{kind}")
    except ModuleNotFoundError:
        LOG.debug("no figure module for kind %s", kind)
        return {}
    from astrostats.report import style

    circuit = circuit or AuditedCircuit()
    with style.drawing_for(circuit.name):
        return module.draw(tables, circuit)

__all__ = ["find_table", "draw_analysis", "interval_lines", "mean_ci_lines"]
