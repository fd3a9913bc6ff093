"""Calibration figures, from the calibration tables only: rates against their target bands, p-value QQ plots
under the null, and recovered exponents with their CIs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from astrostats.report import style
from astrostats.report.figures import find_table
from astrostats.claims import AuditedCircuit



def draw(tables: dict[str, pd.DataFrame], circuit: AuditedCircuit = AuditedCircuit()) -> dict[str, plt.Figure]:
    figures = {}
    rates = next((table for table in tables.values() if "within_target" in table), None)
    if rates is not None and not rates.empty:
        figures["calibration_rates"] = _rates(rates)
    simulations = find_table(tables, "_simulations")
    if simulations is not None and not simulations.empty:
        figures["calibration_null_p_values"] = _qq(simulations)
    recovery = find_table(tables, "_recovery")
    if recovery is not None and not recovery.empty:
        figures["calibration_recovery"] = _recovery(recovery)
    return figures


def _rates(rates: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH_IN, 3.0), gridspec_kw={"width_ratios": [1.6, 1]})
    for ax, kind in zip(axes, ("false_positive_rate", "coverage")):
        part = rates[rates["kind"] == kind].reset_index(drop=True)
        if part.empty:
            ax.set_visible(False)
            continue
        y = np.arange(len(part))
        ax.axvspan(part["target_low"].iloc[0], part["target_high"].iloc[0], color="0.9", label="target band")
        ax.axvline(part["nominal"].iloc[0], color="0.5", lw=0.8)
        colours = np.where(part["within_target"], "tab:blue", "tab:red")
        for row, colour in zip(part.itertuples(), colours):
            ax.plot([row.ci_low, row.ci_high], [row.Index, row.Index], color=colour, lw=1.5)
        ax.scatter(part["statistic"], y, c=colours, zorder=3)
        ax.set_yticks(y, part["check"])
        ax.set_xlabel(("rejection rate at 0.05" if kind == "false_positive_rate" else "95 % CI coverage")
                      + "\n(95 % CI; grey: target band)")
        ax.set_title(f"{kind.replace('_', ' ')}\n(n = {int(part['n'].iloc[0])} simulations)")
    style.finish(fig)
    return fig


def _qq(simulations: pd.DataFrame) -> plt.Figure:
    nulls = simulations[simulations["kind"] == "false_positive_rate"]
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    for check, group in nulls.groupby("check", sort=False):
        p = np.sort(group["outcome"].to_numpy())
        ax.plot(np.arange(1, p.size + 1) / (p.size + 1), p, lw=1.2, label=check)
    ax.plot([0, 1], [0, 1], color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("observed p-value quantile")
    ax.set_title("p-values under true nulls\n(on the diagonal = calibrated)")
    ax.legend(fontsize=7)
    style.finish(fig)
    return fig


def _recovery(recovery: pd.DataFrame) -> plt.Figure:
    scenarios = list(dict.fromkeys(recovery["scenario"]))
    rows, columns, size = style.grid(len(scenarios), 2, aspect=0.7)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax in axes.flat[len(scenarios):]:
        ax.set_visible(False)
    palette = sns.color_palette("colorblind", 2)
    for ax, scenario in zip(axes.flat, scenarios):
        part = recovery[recovery["scenario"] == scenario].reset_index(drop=True)
        colours = [palette[0] if covered else palette[1] for covered in part["covered"]]
        for row, colour in zip(part.itertuples(), colours):
            ax.plot([row.Index, row.Index], [row.ci_low, row.ci_high], color=colour, lw=1.2)
        ax.scatter(part.index, part["statistic"], c=colours, s=12, zorder=3)
        ax.axhline(part["true_alpha"].iloc[0], color="0.3", ls="--", lw=0.8, label="true alpha")
        ax.set_xlabel("replicate")
        ax.set_ylabel(part["parameter"].iloc[0])
        ax.set_title(f"{scenario.replace('_', ' ')}: {int(part['covered'].sum())}/{len(part)} CIs cover")
        ax.legend()
    style.finish(fig)
    return fig
