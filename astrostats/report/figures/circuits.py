"""What the astrocyte buys (C7): error against each biological resource per circuit and head, and the
pre-registered resource ratios at equal error with their CIs."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrostats.report import style
from astrostats.report.figures import find_table
from astrostats.claims import AuditedCircuit

RESOURCES = {"plastic_synapses": "plastic synapses", "hidden_neurons": "hidden neurons", "total_cells": "cells (all types)",
             "fixed_random_synapses": "fixed random synapses", "max_fan_in": "largest fan-in of one cell"}
PLOTTED = ("plastic_synapses", "total_cells", "hidden_neurons")  # C7's co-primary resources and the units
MAX_HEADS = 3
MAX_RATIOS = 30  # rows of the ratio figure: the lowest and highest ratios (every one is in the tests table)
KEYS = ["analysed_head", "circuit", "fan_in_limit", "m"]
FLOOR = 1e-3  # errors below (the memory with one unit per token is exact to float32 rounding) are drawn here


def _measurements(tables: dict) -> pd.DataFrame | None:
    return next((table for name, table in tables.items() if not name.endswith(("_accounting", "_required", "_tests"))
                 and {"analysed_head", "circuit", "fan_in_limit", "value"} <= set(table.columns)), None)


def draw(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    figures = {}
    measurements, accounting = _measurements(tables), find_table(tables, "_accounting")
    if measurements is not None and accounting is not None:
        figures["error_vs_resources"] = _error_vs_resources(measurements, accounting, circuit)
    tests = find_table(tables, "_tests")
    if tests is not None and "comparator" in tests and (tests["family"] == "primary").any():
        figures["resource_ratios"] = _ratios(tests[tests["family"] == "primary"])
    return figures


def _error_vs_resources(measurements: pd.DataFrame, accounting: pd.DataFrame, audited: AuditedCircuit):
    means = measurements.groupby(KEYS, dropna=False)["value"].mean().clip(lower=FLOOR).reset_index()
    data = means.merge(accounting[KEYS + list(RESOURCES)], on=KEYS, how="left")
    limit = data["fan_in_limit"].astype("string")
    data["curve"] = data["circuit"].where(data["fan_in_limit"].isna(), data["circuit"] + "@" + limit)
    heads = list(dict.fromkeys(data["analysed_head"]))
    curves = list(dict.fromkeys(data["curve"]))
    palette = style.palette(curves)  # the report's colours: the astrocyte circuit blue, uniform red, ...
    # one colour per circuit; its fan-in limits told apart by line style and marker, smallest limit solid
    limits = sorted(data["fan_in_limit"].dropna().unique())
    looks = {limit: (("-", "o"), ("--", "^"), (":", "s"), ("-.", "D"))[i % 4] for i, limit in enumerate(limits)}
    look_of = {curve: looks.get(limit, ("-", "o")) for curve, limit in
               data.drop_duplicates("curve").set_index("curve")["fan_in_limit"].items()}
    shown = heads[:MAX_HEADS]  # the page's width holds this many; every head is in the tables and C7's rows
    fig, axes = plt.subplots(len(PLOTTED), len(shown), figsize=(style.PAGE_WIDTH_IN, style.MAX_HEIGHT_IN),
                             squeeze=False, sharey="col")
    for column, head in enumerate(shown):
        part = data[data["analysed_head"] == head]
        for row, (resource, label) in enumerate((key, RESOURCES[key]) for key in PLOTTED):
            ax = axes[row, column]
            for curve, line in part.groupby("curve", sort=False):
                line = line[line[resource] > 0].sort_values(resource)
                reference = curve == audited.name
                dashes, marker = look_of[curve]
                ax.plot(line[resource].astype(float), line["value"], marker=marker if len(line) > 1 else "s",
                        ms=3 if len(line) > 1 else 6, lw=2.8 if reference else 1.2, ls=dashes, color=palette[curve],
                        label=curve, zorder=1 if reference else 2)
            ax.axhline(0.10, color="0.5", ls="--", lw=0.8)
            ax.set(xscale="log", yscale="log", xlabel=label, ylabel="relative error" if column == 0 else "")
            if row == 0:
                ax.set_title(textwrap.fill(head.replace("/", " ").replace("_", " "), 26), fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=7)
    more = f"; {len(heads) - len(shown)} more heads in the tables" if len(heads) > len(shown) else ""
    fig.suptitle(f"Error against each resource (dashed: 10 %;\nerrors below {FLOOR:g} drawn at it{more})", fontsize=8)
    style.finish(fig, rect=(0, 0.03 + 0.16 * -(-len(labels) // 3) / style.MAX_HEIGHT_IN, 1, 0.98))
    return fig


def _ratios(primary: pd.DataFrame):
    primary = primary[primary["status"] == "ok"]
    total = len(primary)
    if total > MAX_RATIOS:  # the two ends the rule checks: the cheapest comparators and the dearest
        ordered = primary.assign(key=primary["ci_high"].fillna(primary["statistic"])).sort_values("key")
        primary = pd.concat([ordered.head(MAX_RATIOS // 2), ordered.tail(MAX_RATIOS // 2)])
    primary = primary.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(style.PAGE_WIDTH_IN, 0.12 * len(primary) + 1.0))
    finite_low = primary["ci_low"].where(primary["ci_low"] > 0)
    floor = float(np.nanmin(finite_low)) / 10 if finite_low.notna().any() else 1e-3
    top = primary["ci_high"].replace(np.inf, np.nan)
    ceiling = float(np.nanmax(top)) * 10 if top.notna().any() else 1e3
    for index, row in primary.iterrows():
        low = max(row["ci_low"], floor)
        high = min(row["ci_high"], ceiling)
        colour = "#cf222e" if row["ci_high"] < row["threshold"] else "#1a7f37" if row["ci_low"] > row["threshold"] else "0.4"
        ax.plot([low, high], [index, index], color=colour, lw=2)
        point = row["statistic"] if np.isfinite(row["statistic"]) else np.nan
        ax.plot(point, index, "o", color=colour)
    ax.axvline(float(primary["threshold"].iloc[0]) if len(primary) else 1.0, color="k", ls="--", lw=0.8)
    ax.set_yticks(range(len(primary)), [f"{r['comparator']} | {r['analysed_head']}" for _, r in primary.iterrows()],
                  fontsize=7)
    ax.set_ylim(-0.7, len(primary) - 0.3)
    ax.set(xscale="log", xlabel="plastic synapses at equal error, comparator / astrocyte\n"
                                "(95 % CI; dashed: 1 / (1 + margin))")
    shown = f"The {len(primary) // 2} lowest and {len(primary) - len(primary) // 2} highest of {total} ratios. " \
        if total > len(primary) else ""
    fig.suptitle(f"{shown}Left of the line a neurons-only circuit is cheaper (red),\nright of it the astrocyte "
                 "(green)", fontsize=8)  # over the figure: the long row labels leave the axes too narrow for it
    style.finish(fig)
    return fig
