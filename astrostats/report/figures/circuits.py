"""What the astrocyte buys (C7): error against each biological resource per circuit and head, and the
pre-registered resource ratios at equal error with their CIs."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrostats.report import style
from astrostats.report.figures import find_table
from astrostats.claims import AuditedCircuit

RESOURCES = {"plastic_synapses": "plastic synapses", "hidden_neurons": "hidden neurons", "total_cells": "cells (all types)",
             "fixed_random_synapses": "fixed random synapses", "max_fan_in": "largest fan-in of one cell"}
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
    fig, axes = plt.subplots(len(RESOURCES), len(heads), figsize=(3.2 * len(heads), 2.6 * len(RESOURCES)),
                             squeeze=False, sharey="col")
    for column, head in enumerate(heads):
        part = data[data["analysed_head"] == head]
        for row, (resource, label) in enumerate(RESOURCES.items()):
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
                ax.set_title(head, fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7)
    fig.suptitle(f"Error against each resource (dashed: 10 %; errors below {FLOOR:g} (exact circuits) drawn at it; a resource that is 0 "
                 "for a circuit is not drawn; the interneuron tree lies on the astrocyte circuit)", fontsize=8)
    style.finish(fig, rect=(0, 0.05, 1, 0.98))
    return fig


def _ratios(primary: pd.DataFrame):
    primary = primary[primary["status"] == "ok"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(primary) + 1.5))
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
    ax.set(xscale="log", xlabel="plastic synapses at equal error, comparator / astrocyte circuit (95 % CI; "
                                "dashed: 1 / (1 + margin))")
    ax.set_title("C7: below the line a neurons-only circuit is cheaper (red), above it the astrocyte (green)", fontsize=8)
    style.finish(fig)
    return fig
