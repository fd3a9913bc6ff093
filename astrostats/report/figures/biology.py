"""Realistic astrocytes: error against m per variant family, m_required against synapse counts, calibration."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrostats.report import style
from astrostats.report.figures import find_table, mean_ci_lines
from astrostats.claims import AuditedCircuit
from astrostats.constants import DEFAULT_CIRCUIT


def _errors(tables: dict) -> pd.DataFrame | None:
    return next((table for name, table in tables.items()
                 if "variant" in table and "metric" in table and "value" in table), None)


def _panels(table: pd.DataFrame) -> pd.Series:
    """One panel per head: the logit scale for synthetic heads, target/layer/head for real ones."""
    if "layer" not in table:
        return table["logit_scale"].astype(str)
    real = table["target"] != "synthetic"
    named = table["target"] + "_layer" + table["layer"].astype(str) + "_head" + table["head"].astype(str)
    return named.where(real, table["logit_scale"].astype(str))


def draw(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    figures = {}
    errors = _errors(tables)
    if errors is not None:
        usable = errors[(errors["metric"] == "relative_error") & (errors["status"] == "ok")]
        panels = _panels(usable)
        for panel in _drawn_heads(list(dict.fromkeys(panels)), usable.get("target")):
            figures[f"error_vs_m_{panel}"] = _error_vs_m(usable[panels == panel], panel)
    floors = find_table(tables, "_floors")
    if floors is not None and "m_required_10pct" in floors:
        figures["m_required"] = _m_required(floors, find_table(tables, "_synapse_counts"))
    calibration = find_table(tables, "_calibration")
    if calibration is not None and "model" in calibration and (calibration["status"] == "ok").any():
        figures["calibration"] = _calibration(calibration[calibration["status"] == "ok"])
    return figures


def _drawn_heads(panels: list, targets) -> list:
    """The heads whose error curves are drawn: the first synthetic and the first real one (each such figure
    has a panel per variant family, the report's slowest to draw; every head's numbers are in the tables and
    the m_required figure shows them all)."""
    real = [panel for panel in panels if "_layer" in panel]
    synthetic = [panel for panel in panels if panel not in real]
    return synthetic[:1] + real[:1]


def _error_vs_m(errors: pd.DataFrame, scale: str):
    families = [f for f in dict.fromkeys(errors["family"]) if f not in ("ideal", "no_astrocyte")]
    # two columns, each panel's legend to its right (the variants differ per family); own y-range per family
    rows, columns, size = style.grid(len(families), 2, aspect=0.6, extra=0.35)
    fig, axes = plt.subplots(rows, columns, figsize=size, sharex=True, squeeze=False)
    references = errors[errors["family"].isin(["ideal", "no_astrocyte"])].astype({"m": float})
    for ax, family in zip(axes.flat, families):
        part = errors[errors["family"] == family].astype({"m": float})
        mean_ci_lines(ax, part, "variant")
        for name, dashes in (("ideal", "-"), ("no_astrocyte", ":")):
            line = references[references["family"] == name].groupby("m")["value"].mean()
            ax.plot(line.index, line.values, ls=dashes, color=style.colour(name), lw=1.2, label=name)
        ax.axhline(0.10, **style.TOLERANCE_STYLE)
        first_column, last_row = ax.get_subplotspec().is_first_col(), ax.get_subplotspec().is_last_row()
        ax.set(xscale="log", yscale="log", title=family.replace("_", " "),
               xlabel="m (processes / units)" if last_row or ax is axes.flat[len(families) - 1] else "",
               ylabel="relative error" if first_column else "")
        handles, labels = ax.get_legend_handles_labels()
        variants = [(h, label) for h, label in zip(handles, labels) if label not in ("ideal", "no_astrocyte")]
        ax.legend([h for h, _ in variants],
                  [textwrap.fill(label.removeprefix(family + "_").replace("_", " "), 26) for _, label in variants],
                  fontsize=7, handlelength=1.0, loc="upper left", bbox_to_anchor=(1.0, 1.05), labelspacing=0.1,
                  borderaxespad=0.2)
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    fig.suptitle(f"Realistic astrocytes, {scale.replace('_', ' ')} attention\n(solid blue: the ideal circuit; "
                 "dotted pink: no astrocyte; dotted grey: 10 %)")
    style.finish(fig)
    return fig


def _m_required(floors: pd.DataFrame, counts: pd.DataFrame | None):
    ok = floors[floors["status"] == "ok"].copy()
    ok["m_required"] = ok["m_required_10pct"].replace(np.inf, np.nan)
    ok["logit_scale"] = _panels(ok)  # one column of panels per head
    if ok["feature_map"].nunique() > 1:  # one row per variant and feature map
        ok["variant"] = ok["variant"] + " (" + ok["feature_map"] + ")"
    scales = list(dict.fromkeys(ok["logit_scale"]))
    columns = min(4, len(scales))  # the variant names once, on the left; one narrow panel per head
    rows = -(-len(scales) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(style.PAGE_WIDTH_IN, (0.11 * ok["variant"].nunique() + 0.9) * rows),
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(scales):]:
        ax.set_visible(False)
    order = sorted(ok["variant"].unique())
    # extrapolated CI ends can reach 1e100 and more: the axis stops two decades beyond the largest estimate (and
    # beyond one human astrocyte), and the bars are clipped there
    estimates = ok["m_required"].dropna()
    ceiling = 100 * max(float(estimates.max()) if len(estimates) else 1e7, 2e6)
    for ax, scale in zip(axes.flat, scales):
        part = ok[ok["logit_scale"] == scale].set_index("variant").reindex(order)
        y = np.arange(len(order))
        finite = part["m_required"].notna()
        low = (part["m_required"] - part["m_required_10pct_ci_low"]).clip(lower=0)
        high = (part["m_required_10pct_ci_high"] - part["m_required"]).clip(lower=0)
        ax.errorbar(part["m_required"][finite], y[finite.to_numpy()], xerr=[low[finite], high[finite].fillna(0)],
                    fmt="o", ms=3, color=style.colour(DEFAULT_CIRCUIT))
        never = ~finite & part["status"].notna()
        ax.plot(np.full(never.sum(), ceiling / 3), y[never.to_numpy()], "x", color=style.colour("uniform"),
                label="never reaches 10 % (floor)")
        if counts is not None:
            for index, (_, row) in enumerate(counts.iterrows()):
                ax.axvline(row["synapses"], **style.SYNAPSE_STYLE, label="_nolegend_" if index else
                           "synapses of one astrocyte (" + ", ".join(counts["species"].astype(str)) + ")")
        ax.set(xscale="log", yticks=y, yticklabels=order, xlabel="m for 10 % error",
               title=textwrap.fill(scale.replace("_", " "), 16))
        ax.set_xlim(right=ceiling)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2)
    style.finish(fig, rect=(0, 0.25 / fig.get_size_inches()[1], 1, 1))
    return fig


def _calibration(calibration: pd.DataFrame):
    rows, columns, size = style.grid(len(calibration), 4, aspect=1.1, extra=0.3)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax in axes.flat[len(calibration):]:
        ax.set_visible(False)
    for ax, (_, row) in zip(axes.flat, calibration.iterrows()):
        ax.bar([0, 1], [row["data"], row["model"]], color=["0.6", style.colour(DEFAULT_CIRCUIT)])
        ax.errorbar([0], [row["data"]], yerr=[[row["data"] - row["data_ci_low"]], [row["data_ci_high"] - row["data"]]],
                    color="k", capsize=3)
        ax.set(xticks=[0, 1], xticklabels=["culture data", "model"],
               title=f"{row['metric'].replace('_', ' ')}\n({'fitted' if row['fitted'] else 'predicted'})")
    fig.suptitle("Noise and event model against culture Ca2+ traces (medians; data with 95 % CI)")
    style.finish(fig)
    return fig
