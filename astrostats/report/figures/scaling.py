"""Figure 2B done properly: log-log error against m with 95 % bands, theory and fitted laws drawn over it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrostats.report import style
from astrostats.report.figures import find_table, mean_ci_lines
from astrostats.claims import AuditedCircuit



def _measurements(tables: dict) -> pd.DataFrame:
    return next(table for name, table in tables.items()
                if not name.endswith(("_theory", "_fits")) and "metric" in table)


def draw(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    measurements = _measurements(tables)
    theory, fits = find_table(tables, "_theory"), find_table(tables, "_fits")
    errors = measurements[measurements["metric"] == "relative_error"]
    figures = {"main": _error_vs_m(errors, theory, fits, circuit), "nulls": _nulls(errors, circuit)}
    normaliser = measurements[(measurements["metric"] == "normaliser_error") & (measurements["circuit"] == circuit.name)]
    if not normaliser.empty:
        figures["normaliser_error"] = _by_feature(normaliser, "relative error of a_t")
    return figures


def _scales(table):
    return list(dict.fromkeys(table["logit_scale"]))


def _by_feature(table: pd.DataFrame, ylabel: str):
    scales = _scales(table)
    fig, axes = _panels(scales)
    for ax, scale in zip(axes.flat, scales):
        part = table[table["logit_scale"] == scale].astype({"m": float})
        mean_ci_lines(ax, part, "feature_map")
        ax.set(xscale="log", yscale="log", title=scale.replace("_", " "), xlabel="m (hidden units)",
               ylabel=ylabel if ax.get_subplotspec().is_first_col() else "")
    style.finish(fig)
    return fig


def _panels(scales: list):
    """One panel per logit scale, three a row at the page's width, each with its own y-range (the scales'
    errors differ by decades); unused panels hidden."""
    rows, columns, size = style.grid(len(scales), 3)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax in axes.flat[len(scales):]:
        ax.set_visible(False)
    return fig, axes


def _error_vs_m(errors, theory, fits, audited: AuditedCircuit):
    circuit = errors[errors["circuit"] == audited.name]
    fig = _by_feature(circuit, "relative output error")
    m_grid = np.geomspace(float(circuit["m"].min()), float(circuit["m"].max()), 100)
    for ax, scale in zip(fig.axes, _scales(circuit)):
        if theory is not None:
            constants = theory.loc[theory["logit_scale"] == scale, "predicted_constant"]
            rms = float(np.sqrt(np.mean(constants**2)))
            ax.plot(m_grid, rms / np.sqrt(m_grid), **style.THEORY_STYLE, label="theory (delta method)")
        if fits is not None and "alpha" in fits:
            row = fits[(fits["circuit"] == audited.name) & (fits["feature_map"] == audited.feature_map)
                       & (fits["logit_scale"] == scale)]
            if len(row) and row["status"].iloc[0] == "ok":
                row = row.iloc[0]
                ax.plot(m_grid, row["e_inf"] + row["a"] * m_grid ** (-row["alpha"]), color="0.4", lw=0.8,
                        label=f"fitted law ({audited.feature_map})")
                ax.set_title(f"{ax.get_title()}\nfitted alpha = {row['alpha']:.2f}")
        baselines = errors[(errors["logit_scale"] == scale) & errors["m"].isna()]
        for name, line in (("uniform", ":"), ("elu_linear", "-.")):
            level = baselines.loc[baselines["circuit"] == name, "value"].mean()
            if np.isfinite(level):
                ax.axhline(level, color=style.colour(name), ls=line, lw=1, label=f"{name} (null)")
        levels = baselines.loc[baselines["circuit"].isin(["uniform", "elu_linear"]), "value"]
        _data_range(ax, pd.concat([circuit.loc[circuit["logit_scale"] == scale, "value"], levels]))  # not theory's
    _one_legend(fig, fig.axes[0])
    fig.tight_layout(rect=(0, 0.09, 1, 1), pad=0.4)
    return fig


def _data_range(ax, values: pd.Series) -> None:
    """The panel's y-range from its measurements and null levels, never from the theory line, which for peaked
    heads runs thirty decades above them."""
    positive = values[values > 0]
    if len(positive):
        low, high = float(positive.quantile(0.005)), float(positive.quantile(0.995))
        ax.set_ylim(low / 2, high * 2)


def _one_legend(fig, ax) -> None:
    """The legend once, below the panels (every panel has the same lines)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)))


def _nulls(errors, audited: AuditedCircuit):
    """The circuit with its own features beside the nulls and other circuits."""
    own = (errors["circuit"] != audited.name) | (errors["feature_map"] == audited.feature_map)
    positive = errors[own & errors["m"].notna()]
    scales = _scales(positive)
    fig, axes = _panels(scales)
    for ax, scale in zip(axes.flat, scales):
        part = positive[positive["logit_scale"] == scale].astype({"m": float})
        mean_ci_lines(ax, part, "circuit")
        ax.set(xscale="log", yscale="log", title=f"{scale.replace('_', ' ')}", xlabel="m (hidden units)",
               ylabel="relative output error")
    _one_legend(fig, axes.flat[0])
    style.finish(fig, rect=(0, 0.09, 1, 1))
    return fig
