"""The paper's two figures in their own layout, each beside what the audit adds, drawn across analyses.

* fig2b: the paper's Figure 2B (error against m on one kind of synthetic head, band over feature seeds and
  sequences, theory overlay) beside every logit scale with 95 % CIs, the nulls at equal m and the biological
  scale (one astrocyte's synapse counts);
* fig3: the paper's Figure 3 (astrocyte response against the exact softmax normaliser over tokens at m = 1e3
  and 1e5, one language and one vision head) beside the error of the response (or output) for every head
  analysed against m.

Aggregates are computed with pandas (quantiles, normal-theory CIs of means) rather than seaborn's bootstrap:
these figures summarise tens of thousands of rows and must draw in well under a second.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrostats.constants import HUMAN_SYNAPSES, RODENT_SYNAPSES, TOLERANCE
from astrostats.report import style
from astrostats.claims import AuditedCircuit

PAPER_SCALE = "typical"
NULL_LEVELS = ("uniform", "elu_linear")  # nulls without m: horizontal lines
NULL_CURVES = ("no_astrocyte",)  # nulls with m: curves


def draw(by_kind: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    """by_kind: analysis kind -> {table name: DataFrame} (the scaling study's tables for Fig. 2B, the real-heads
    studies' for Fig. 3)."""
    figures = {}
    scaling = by_kind.get("scaling", {})
    measurements = _scaling_measurements(scaling)
    if measurements is not None:
        figures["fig2b"] = fig2b(measurements, _ending(scaling, "_theory", "predicted_constant"), circuit)
    tables = by_kind.get("real_heads", {})
    responses = [t for name, t in tables.items() if name.endswith("_response") and "log_normaliser" in t and len(t)]
    if responses:
        sweeps = [t for name, t in tables.items() if name.endswith("_sweep") and "metric" in t and len(t)]
        figures["fig3"] = fig3(responses, sweeps, circuit)
    return figures


def _ending(tables: dict, suffix: str, column: str):
    return next((t for name, t in tables.items() if name.endswith(suffix) and column in t and len(t)), None)


def _scaling_measurements(tables: dict):
    """The synthetic scaling study's measurements: metric rows with a logit scale and no real target."""
    for name, table in tables.items():
        if name.endswith(("_theory", "_fits")) or not {"metric", "logit_scale", "circuit", "m"} <= set(table):
            continue
        if "variant" in table or ("target" in table and (table["target"] != "synthetic").any()):
            continue
        if (table["metric"] == "relative_error").any():
            return table[table["metric"] == "relative_error"]
    return None


def _band(rows: pd.DataFrame, low: float, high: float) -> pd.DataFrame:
    grouped = rows.groupby("m")["value"]
    return pd.DataFrame({"median": grouped.median(), "low": grouped.quantile(low),
                         "high": grouped.quantile(high)}).reset_index()


def _mean_ci(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean with a normal 95 % CI over the sequence means (sequences are the independent units)."""
    keys = ["m", "sequence_id"] if "sequence_id" in rows else ["m"]
    per_unit = rows.groupby(keys)["value"].mean().reset_index()
    grouped = per_unit.groupby("m")["value"]
    mean, sem = grouped.mean(), grouped.sem().fillna(0)
    return pd.DataFrame({"mean": mean, "low": mean - 1.96 * sem, "high": mean + 1.96 * sem}).reset_index()


def _log_axes(ax, xlabel="m (hidden units = random features)", ylabel="relative output error"):
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)


def fig2b(errors: pd.DataFrame, theory: pd.DataFrame | None, audited: AuditedCircuit = AuditedCircuit()):
    circuit = errors[(errors["circuit"] == audited.name) & errors["m"].notna()]
    if "feature_map" in circuit:
        circuit = circuit[circuit["feature_map"] == audited.feature_map]
    circuit = circuit.astype({"m": float})
    scales = list(dict.fromkeys(circuit["logit_scale"]))
    paper_scale = PAPER_SCALE if PAPER_SCALE in scales else scales[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH_IN, 4.0), gridspec_kw={"width_ratios": [1, 1.25]})
    part = circuit[circuit["logit_scale"] == paper_scale]
    band = _band(part, 0.05, 0.95)
    left.fill_between(band["m"], band["low"], band["high"], color=style.colour(audited.name), alpha=0.25, lw=0)
    left.plot(band["m"], band["median"], "o-", color=style.colour(audited.name), label="circuit: median, 5-95 %")
    m_grid = np.geomspace(band["m"].min(), band["m"].max(), 60)
    constant = _theory_constant(theory, paper_scale)
    if constant is not None:
        left.plot(m_grid, constant / np.sqrt(m_grid), **style.THEORY_STYLE, label="theory C/sqrt(m)")
    left.axhline(TOLERANCE, **style.TOLERANCE_STYLE, label="10 % error")
    _log_axes(left)
    left.set_title(f"Paper's Fig. 2B: {paper_scale.replace('_', ' ')} heads\n(band over seeds and sequences)")
    left.legend(loc="lower left")

    for scale in scales:
        ci = _mean_ci(circuit[circuit["logit_scale"] == scale])
        colour = style.LOGIT_SCALE_COLOURS.get(scale, style.colour(scale))
        right.fill_between(ci["m"], ci["low"].clip(lower=1e-6), ci["high"], color=colour, alpha=0.3, lw=0)
        right.plot(ci["m"], ci["mean"], "o-", color=colour, label=f"circuit, {scale} (95 % CI)")
        constant = _theory_constant(theory, scale)
        if constant is not None:
            grid = np.geomspace(ci["m"].min(), HUMAN_SYNAPSES * 2, 80)
            right.plot(grid, constant / np.sqrt(grid), color=colour, ls="--", lw=0.8)
    nulls = errors[errors["circuit"].isin(NULL_CURVES) & errors["m"].notna()]
    for name, rows in nulls.groupby("circuit"):
        rows = rows[rows["logit_scale"] == paper_scale].astype({"m": float})
        if len(rows):
            ci = _mean_ci(rows)
            right.plot(ci["m"], ci["mean"], "s:", color=style.colour(name), ms=2.5, label=f"{name} null ({paper_scale})")
    for name in NULL_LEVELS:
        level = errors.loc[(errors["circuit"] == name) & (errors["logit_scale"] == paper_scale), "value"].mean()
        if np.isfinite(level):
            right.axhline(level, color=style.colour(name), lw=1.0, ls="-", label=f"{name} null ({paper_scale})")
    for height, (count, label) in zip((1.0, 0.8), ((RODENT_SYNAPSES, "rodent astrocyte"), (HUMAN_SYNAPSES, "human"))):
        right.axvline(count, **style.SYNAPSE_STYLE)  # the labels one above the other: the lines are a decade apart
        right.annotate(f"{label}: {count:.0e} synapses ", (count, height), xycoords=("data", "axes fraction"),
                       fontsize=7, ha="right", va="top", color=style.SYNAPSE_STYLE["color"])
    right.axhline(TOLERANCE, **style.TOLERANCE_STYLE)
    _log_axes(right)
    observed = circuit["value"][circuit["value"] > 0]
    if len(observed):  # the theory lines run on to the synapse counts; the data set the vertical range
        right.set_ylim(min(observed.quantile(0.01), TOLERANCE) / 3, max(observed.quantile(0.99), TOLERANCE) * 3)
    right.set_title("Audit: every logit scale (95 % CIs), nulls,\ntheory to the biological scale (dashed)")
    handles, labels = right.get_legend_handles_labels()
    rows = -(-len(labels) // 2)
    style.finish(fig, rect=(0, (0.14 * rows + 0.05) / fig.get_size_inches()[1], 1, 1))
    fig.legend(handles, [label.replace("_", " ") for label in labels], loc="lower center", ncol=2, fontsize=7)
    return fig


def _theory_constant(theory, scale):
    if theory is None or "logit_scale" not in theory:
        return None
    constants = theory.loc[theory["logit_scale"] == scale, "predicted_constant"].astype(float)
    constants = constants[np.isfinite(constants)]
    return float(np.sqrt(np.mean(constants**2))) if len(constants) else None


def _panel_head(response: pd.DataFrame) -> pd.DataFrame:
    """The paper's panel: one head (the first listed) on one input."""
    first = response.iloc[0]
    keep = (response["target"] == first["target"]) & (response["sequence_id"] == first["sequence_id"])
    for key in ("layer", "head"):
        if key in response:
            keep &= response[key] == first[key]
    return response[keep]


def fig3(responses: list, sweeps: list, audited: AuditedCircuit = AuditedCircuit()):
    rows = responses[:2]
    ms = sorted({float(m) for table in rows for m in table["m"].unique()})
    shown_m = [ms[0], ms[-1]] if len(ms) > 1 else ms
    fig = plt.figure(figsize=(style.PAGE_WIDTH_IN, min(style.MAX_HEIGHT_IN, 2.0 * len(rows) + 0.5)))
    grid = fig.add_gridspec(len(rows), len(shown_m) + 1, width_ratios=[1] * len(shown_m) + [1.25])
    for row, table in enumerate(rows):
        panel = _panel_head(table)
        head = panel.iloc[0]
        where = f"{head['target']}" + (f" L{head['layer']} H{head['head']}" if "layer" in panel else "")
        for column, m in enumerate(shown_m):
            ax = fig.add_subplot(grid[row, column])
            exact = panel.drop_duplicates("token").sort_values("token")
            ax.plot(exact["token"], np.exp(exact["log_normaliser"]), color=style.colour("exact"), lw=1.1,
                    label="exact normaliser")
            part = panel[panel["m"].astype(float) == m].sort_values("token")
            ax.fill_between(part["token"], np.exp(part["log_response_low"]), np.exp(part["log_response_high"]),
                            color=style.colour(audited.name), alpha=0.3, lw=0)
            ax.plot(part["token"], np.exp(part["log_response_median"]), color=style.colour(audited.name), lw=0.8,
                    label="astrocyte response (median, 5-95 %)")
            ax.set_yscale("log")
            ax.set_title(f"{where}, m = {m:.0e}", fontsize=7.5)
            ax.set_xlabel("token")
            if column == 0:
                ax.set_ylabel("normaliser (log)")
        _all_heads(fig.add_subplot(grid[row, -1]), table, sweeps, row, audited)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7)
    style.finish(fig, rect=(0, 0.25 / fig.get_size_inches()[1], 1, 1))
    return fig


def _all_heads(ax, response: pd.DataFrame, sweeps: list, row: int, audited: AuditedCircuit):
    """Error against m for every head of this model that the sweep analysed: thin lines per head, the median
    over heads bold, nulls as levels, the tolerance and the synapse counts."""
    target = response["target"].iloc[0]
    sweep = next((s for s in sweeps if (s["target"] == target).any()), None)
    if sweep is None:
        ax.set_visible(False)
        return
    metric = "normaliser_error" if (sweep["metric"] == "normaliser_error").any() else "relative_error"
    rows = sweep[(sweep["target"] == target) & (sweep["metric"] == metric)]
    circuit = rows[(rows["circuit"] == audited.name) & rows["m"].notna()].astype({"m": float})
    per_head = circuit.groupby(["layer", "head", "m"])["value"].median().reset_index()
    for _, head in per_head.groupby(["layer", "head"]):
        ax.plot(head["m"], head["value"], color=style.colour(audited.name), lw=0.5, alpha=0.45)
    ci = _mean_ci(circuit)
    ax.fill_between(ci["m"], ci["low"].clip(lower=1e-6), ci["high"], color=style.colour(audited.name), alpha=0.3, lw=0)
    ax.plot(ci["m"], ci["mean"], "o-", color=style.colour(audited.name),
            label=f"mean of {per_head.groupby(['layer', 'head']).ngroups} heads (95 % CI)")
    for name, part in rows[rows["circuit"] != audited.name].groupby("circuit"):
        ax.axhline(part["value"].mean(), color=style.colour(name), lw=1.0, label=f"{name} null")
    ax.axhline(TOLERANCE, **style.TOLERANCE_STYLE, label="10 % error")
    for count in (RODENT_SYNAPSES, HUMAN_SYNAPSES):
        if ax.get_xlim()[1] >= count / 10:
            ax.axvline(count, **style.SYNAPSE_STYLE)
    _log_axes(ax, ylabel="relative error of a_t" if metric == "normaliser_error" else "relative output error")
    ax.set_title(f"Audit: {target}, every head analysed", fontsize=7.5)
    if row == 0:
        ax.legend(loc="lower left", fontsize=7, handlelength=1.2)
