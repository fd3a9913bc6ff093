"""The overfitting critique in three pictures, drawn from the overfitting tables only.

* learning_curves: in-sample (train) and held-out (test) error against the fitted-parameter budget m*d, fitted
  controls beside the circuit (which fits nothing: its two curves coincide up to sampling noise);
* comparisons: error ratio control / circuit with 95 % CIs against m, per evaluation split (> 1: circuit better),
  with the pre-registered threshold 1 + margin;
* training: per-epoch training and validation loss of every fit (the fixed budget, and where it stopped).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from astrostats.report import style
from astrostats.report.figures import find_table
from astrostats.claims import AuditedCircuit



def _per_head(table: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The primary head under the plain figure names; each secondary head with its name as a suffix."""
    if table is None:
        return {}
    if "analysed_head" not in table:
        return {"": table}
    parts = {}
    for (role, head), part in table.groupby(["role", "analysed_head"], sort=False):
        parts["" if role == "primary" else "_" + head.replace("/", "_")] = part
    return parts


def draw(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    """The comparisons for every head (they decide C3); learning curves and training for the primary head only
    (a secondary head's are in its tables: drawing them doubled this module's time for figures no page shows)."""
    figures = {}
    curves = _per_head(find_table(tables, "_learning_curves")).get("")
    if curves is not None:
        figures["learning_curves"] = _learning_curves(curves)
    for suffix, tests in _per_head(find_table(tables, "_tests")).items():
        figures[f"comparisons{suffix}"] = _comparisons(tests)
    history = _per_head(find_table(tables, "_history")).get("")
    if history is not None and history.groupby("circuit")["epoch"].nunique().gt(1).any():  # something was trained
        figures["training"] = _training(history)
    return figures


def _learning_curves(curves: pd.DataFrame):
    null = curves["circuit"].str.endswith("_shuffled")
    in_sample = curves["split"] == "train"
    # capacity nulls: in-sample against the shuffled targets they fitted; held-out against the truth
    keep = (curves["scored_against"] == "true") & ~(null & in_sample) | (curves["scored_against"] == "shuffled") & in_sample
    rows = curves[keep].copy()
    rows["budget"] = rows["n_fitted"].where(rows["n_fitted"] > 0, rows["n_fixed_random"])
    rows["sem"] = rows["error_sd"] / np.sqrt(rows["n"])
    fig, ax = plt.subplots(figsize=(style.PAGE_WIDTH_IN, style.MAX_HEIGHT_IN))
    palette = style.palette(rows["circuit"].unique())
    for (circuit, split), group in rows.groupby(["circuit", "split"]):
        group = group.sort_values("budget")
        ax.errorbar(group["budget"], group["error"], yerr=1.96 * group["sem"], color=palette[circuit],
                    linestyle="-" if split == "test" else "--", marker="o" if split == "test" else "s",
                    label=f"{circuit} ({'held-out' if split == 'test' else 'in-sample'})", capsize=2)
    ax.text(0.01, 0.01, "capacity nulls (_shuffled): in-sample error against the shuffled targets they fitted",
            transform=ax.transAxes, fontsize=7, va="bottom")
    ax.set(xscale="log", yscale="log", xlabel="parameters: fitted (controls) or fixed random (circuit) = m·d",
           ylabel="relative error (mean, 95 % CI)",
           title="Learning curves: fitted controls vs the circuit (fits nothing)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, handlelength=2.2, columnspacing=1.0)
    rows = -(-len(labels) // 3)
    style.finish(fig, rect=(0, min(0.6, (0.14 * rows + 0.1) / fig.get_size_inches()[1]), 1, 1))
    return fig


def _comparisons(tests: pd.DataFrame):
    rows = tests[tests["ratio"].notna()]
    splits = list(dict.fromkeys(rows["split"]))
    rows_, columns, size = style.grid(len(splits), 3, aspect=0.9, extra=0.6)
    fig, axes = plt.subplots(rows_, columns, figsize=size, sharey=True, squeeze=False)
    for ax in axes.flat[len(splits):]:
        ax.set_visible(False)
    controls = sorted(rows["control"].unique())
    palette = style.palette(controls)
    margin = float(tests["margin"].max())
    for ax, split in zip(axes.flat, splits):
        for control, group in rows[rows["split"] == split].groupby("control"):
            group = group.drop_duplicates("m").sort_values("m")
            ax.errorbar(group["m"], group["ratio"], yerr=[group["ratio"] - group["ci_low"],
                                                          group["ci_high"] - group["ratio"]],
                        color=palette[control], marker="o", capsize=2, label=control)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.0 + margin, color="grey", linestyle=":", linewidth=0.8, label=f"1 + margin ({margin:g})")
        ax.set(xscale="log", yscale="log", xlabel="m (hidden units)", title=split.replace("_", " "))
    axes[0][0].set_ylabel("error ratio control / circuit\n(> 1: circuit closer)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)))
    fig.suptitle("Paired comparisons with the circuit at matched m (95 % hierarchical-bootstrap CIs)")
    style.finish(fig, rect=(0, 0.16, 1, 1))
    return fig


def _training(history: pd.DataFrame):
    """One panel per fitted circuit: mean loss over seeds per epoch, colour by m, solid training, dashed validation."""
    epochs = history.groupby("circuit", sort=False)["epoch"].nunique()
    circuits = list(epochs.index[epochs > 1])  # a closed-form fit (ridge) has no training curve
    rows, columns, size = style.grid(len(circuits), 3, aspect=0.7, extra=0.9)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    widths = sorted(history["m"].unique())
    colours = dict(zip(widths, sns.color_palette("viridis", len(widths))))
    means = history.groupby(["circuit", "m", "epoch"], sort=False)[["train_loss", "validation_loss"]].mean()
    for ax, circuit in zip(axes.flat, circuits):
        for m, curve in means.loc[circuit].groupby(level="m", sort=False):
            epoch = curve.index.get_level_values("epoch")
            ax.plot(epoch, curve["train_loss"], color=colours[m], lw=1.0, label=f"m={m} train")
            ax.plot(epoch, curve["validation_loss"], color=colours[m], lw=1.0, ls="--", label=f"m={m} validation")
        ax.set(yscale="log", xlabel="epoch", title=circuit.replace("_", " "))
    for ax in axes.flat[len(circuits):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("mean squared relative error")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)))
    closed = ", ".join(epochs.index[epochs <= 1])
    fig.suptitle("Training under the fixed budget (mean over seeds; solid: training, dashed: validation)"
                 f"{chr(10) + 'closed form, no epochs: ' + closed if closed else ''}", fontsize=8)
    style.finish(fig, rect=(0, 0.14, 1, 0.97))
    return fig
