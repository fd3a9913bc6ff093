"""Figure 3 done properly, from the real_heads tables only: the response panel (a representative grid of
layers and heads; the tables hold all), error against m per head, where heads sit (theory's m_required
against logit spread), and end-to-end agreement against m."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from astrostats.constants import HUMAN_SYNAPSES, RODENT_SYNAPSES
from astrostats.report import style
from astrostats.report.figures import find_table, interval_lines
from astrostats.claims import AuditedCircuit

END_TO_END_LABELS = {"embedding_cosine": "sentence-embedding cosine", "next_token_kl": "next-token KL (nats)",
                     "top1_agreement": "top-1 agreement with the model", "correct": "test accuracy",
                     "logit_relative_error": "logit relative error"}



def draw(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    figures = {}
    response, sweep = find_table(tables, "_response"), find_table(tables, "_sweep")
    head_stats, end_to_end = find_table(tables, "_head_stats"), find_table(tables, "_end_to_end")
    if response is not None:
        for target in dict.fromkeys(response["target"]):
            figures[f"response_{target}"] = _response_grid(response[response["target"] == target], target)
    if sweep is not None:
        figures["error_vs_m"] = _error_vs_m(sweep, circuit)
    if head_stats is not None:
        figures["head_difficulty"] = _head_difficulty(head_stats)
    if end_to_end is not None:
        figures["end_to_end"] = _end_to_end(end_to_end, circuit)
    return figures


def _spread(values: list, count: int = 3) -> list:
    """First, middle and last of a sorted list (a representative grid)."""
    values = sorted(values)
    return sorted({values[int(round(i))] for i in np.linspace(0, len(values) - 1, min(count, len(values)))})


def _response_grid(table: pd.DataFrame, target: str):
    table = table[table["sequence_id"] == table["sequence_id"].min()]
    layers, heads = _spread(table["layer"].unique()), _spread(table["head"].unique())
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(style.PAGE_WIDTH_IN * min(1.0, 0.34 * len(heads)),
                                                               min(style.MAX_HEIGHT_IN, 1.5 * len(layers) + 0.5)),
                             squeeze=False, sharex=True)
    colours = dict(zip(sorted(table["m"].unique()), sns.color_palette("colorblind")))
    for row, layer in enumerate(layers):
        for column, head in enumerate(heads):
            ax = axes[row][column]
            part = table[(table["layer"] == layer) & (table["head"] == head)]
            exact = part.drop_duplicates("token").sort_values("token")
            ax.plot(exact["token"], exact["log_normaliser"], color=style.colour("exact"), lw=1.2, label="exact")
            for m, group in part.groupby("m"):
                group = group.sort_values("token")
                ax.plot(group["token"], group["log_response_median"], color=colours[m], lw=0.8, label=f"m = {m:g}")
                ax.fill_between(group["token"], group["log_response_low"], group["log_response_high"],
                                color=colours[m], alpha=0.25, lw=0)
            ax.set_title(f"layer {layer}, head {head}")
            if column == 0:
                ax.set_ylabel("log normaliser")
            if row == len(layers) - 1:
                ax.set_xlabel("token")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels))
    n_seeds = int(table["n_seeds"].iloc[0])
    fig.suptitle(f"{target}: response vs exact normaliser\n(median, 5-95 % over {n_seeds} seeds)")
    style.finish(fig, rect=(0, 0.06, 1, 1))
    return fig


def _error_vs_m(sweep: pd.DataFrame, audited: AuditedCircuit):
    errors = sweep[(sweep["metric"] == "relative_error") & (sweep["circuit"] == audited.name)].copy()
    errors["head_label"] = "L" + errors["layer"].astype(str) + " H" + errors["head"].astype(str)
    targets = list(dict.fromkeys(errors["target"]))
    rows, columns, size = style.grid(len(targets), 2, aspect=0.85)
    if len(targets) == 1:  # one model: half the page's width, not a page-wide single panel
        size = (style.PAGE_WIDTH_IN * 0.6, 3.2)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    for ax, target in zip(axes.flat, targets):
        part = errors[errors["target"] == target].astype({"m": float})
        heads = list(dict.fromkeys(part["head_label"]))
        colours = dict(zip(heads, sns.color_palette("husl", len(heads))))
        for head, lines in part.groupby("head_label", sort=False):
            interval_lines(ax, lines, None, colour=colours[head])
            ax.lines[-1].set_label(head)
        m = np.array(sorted(part["m"].unique()))
        start = part[part["m"] == m[0]]["value"].median()
        ax.plot(m, start * np.sqrt(m[0] / m), **style.THEORY_STYLE, label="m^-1/2 from the smallest m")
        ax.set(xscale="log", yscale="log", xlabel="m (hidden units)", ylabel="relative output error", title=target)
        ax.axhline(0.1, **style.TOLERANCE_STYLE)
        ax.legend(fontsize=7, ncol=3 if len(heads) > 8 else 2, handlelength=1.0, columnspacing=0.8)
    style.finish(fig)
    return fig


def _head_difficulty(head_stats: pd.DataFrame):
    wide = head_stats.pivot_table(index=["target", "layer", "head"], columns="metric", values="value",
                                  aggfunc="median").reset_index()
    wide["log10_m_required"] = np.log10(wide["m_required_theory_10pct"])
    fig, axes = plt.subplots(1, 2, figsize=(style.PAGE_WIDTH_IN, 3.0))
    sns.scatterplot(wide, x="q_plus_k_norm_max", y="log10_m_required", hue="target", style="target", ax=axes[0])
    axes[0].set(xlabel="max |q_t + k_tau| (median over sequences)", ylabel="log10 m for 10 % error (theory)")
    for value, label, side in ((np.log10(RODENT_SYNAPSES), "rodent astrocyte synapses", "top"),
                               (np.log10(HUMAN_SYNAPSES), "human astrocyte synapses", "bottom")):
        axes[0].axhline(value, **style.SYNAPSE_STYLE)  # the rodent's label below its line, the human's above
        axes[0].annotate(f" {label}", (axes[0].get_xlim()[1], value), fontsize=7, va=side, ha="right",
                         color=style.SYNAPSE_STYLE["color"])
    sns.scatterplot(wide, x="attention_entropy", y="log10_m_required", hue="target", style="target", ax=axes[1],
                    legend=False)
    axes[1].set(xlabel="attention entropy (nats)", ylabel="")
    fig.suptitle("Where real heads sit: the theory's m for 10 % error, per layer and head", fontsize=8)
    style.finish(fig)
    return fig


def _end_to_end(table: pd.DataFrame, audited: AuditedCircuit):
    circuit = table[table["circuit"] == audited.name].copy()
    circuit["m"] = circuit["m"].astype(float)
    panels = list(dict.fromkeys(zip(circuit["target"], circuit["metric"])))
    rows, columns, size = style.grid(len(panels), 3, aspect=0.8, extra=0.3)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (target, metric) in zip(axes.flat, panels):
        part = circuit[(circuit["target"] == target) & (circuit["metric"] == metric)]
        per_seed = part.groupby(["m", "seed"], as_index=False)["value"].mean()
        interval_lines(ax, per_seed, None, colour=style.colour(audited.name))
        exact = table[(table["target"] == target) & (table["metric"] == metric) & (table["circuit"] == "exact")]
        if not exact.empty:
            ax.axhline(exact["value"].mean(), color="black", ls="--", lw=0.8, label="exact model")
            ax.legend(fontsize=7)
        ax.set(xscale="log", xlabel="m (hidden units per head)", ylabel=END_TO_END_LABELS.get(metric, metric),
               title=target)
    fig.suptitle("End to end: every attention layer replaced by the circuit")
    style.finish(fig)
    return fig
