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


def draw(tables: dict) -> dict:
    figures = {}
    for suffix, curves in _per_head(find_table(tables, "_learning_curves")).items():
        figures[f"learning_curves{suffix}"] = _learning_curves(curves)
    for suffix, tests in _per_head(find_table(tables, "_tests")).items():
        figures[f"comparisons{suffix}"] = _comparisons(tests)
    for suffix, history in _per_head(find_table(tables, "_history")).items():
        figures[f"training{suffix}"] = _training(history)
    return figures


def _learning_curves(curves: pd.DataFrame):
    null = curves["circuit"].str.endswith("_shuffled")
    in_sample = curves["split"] == "train"
    # capacity nulls: in-sample against the shuffled targets they fitted; held-out against the truth
    keep = (curves["scored_against"] == "true") & ~(null & in_sample) | (curves["scored_against"] == "shuffled") & in_sample
    rows = curves[keep].copy()
    rows["budget"] = rows["n_fitted"].where(rows["n_fitted"] > 0, rows["n_fixed_random"])
    rows["sem"] = rows["error_sd"] / np.sqrt(rows["n"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    palette = style.palette(rows["circuit"].unique())
    for (circuit, split), group in rows.groupby(["circuit", "split"]):
        group = group.sort_values("budget")
        ax.errorbar(group["budget"], group["error"], yerr=1.96 * group["sem"], color=palette[circuit],
                    linestyle="-" if split == "test" else "--", marker="o" if split == "test" else "s",
                    label=f"{circuit} ({'held-out' if split == 'test' else 'in-sample'})", capsize=2)
    ax.text(0.01, 0.01, "capacity nulls (_shuffled): in-sample error against the shuffled targets they fitted",
            transform=ax.transAxes, fontsize=6)
    ax.set(xscale="log", yscale="log", xlabel="parameters: fitted (controls) or fixed random (circuit) = m·d",
           ylabel="relative error (mean, 95 % CI)",
           title="Learning curves: fitted controls vs the circuit (fits nothing)")
    ax.legend(fontsize=7, ncol=2)
    style.finish(fig)
    return fig


def _comparisons(tests: pd.DataFrame):
    rows = tests[tests["ratio"].notna()]
    splits = list(dict.fromkeys(rows["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(4.0 * len(splits), 4.0), sharey=True, squeeze=False)
    controls = sorted(rows["control"].unique())
    palette = style.palette(controls)
    margin = float(tests["margin"].max())
    for ax, split in zip(axes[0], splits):
        for control, group in rows[rows["split"] == split].groupby("control"):
            group = group.drop_duplicates("m").sort_values("m")
            ax.errorbar(group["m"], group["ratio"], yerr=[group["ratio"] - group["ci_low"],
                                                          group["ci_high"] - group["ratio"]],
                        color=palette[control], marker="o", capsize=2, label=control)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1.0 + margin, color="grey", linestyle=":", linewidth=0.8, label=f"1 + margin ({margin:g})")
        ax.set(xscale="log", yscale="log", xlabel="m (hidden units)", title=split)
    axes[0][0].set_ylabel("error ratio control / circuit (> 1: circuit closer)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Paired comparisons with the circuit at matched m (95 % hierarchical-bootstrap CIs)")
    style.finish(fig)
    return fig


def _training(history: pd.DataFrame):
    long = history.melt(id_vars=["circuit", "m", "seed", "epoch"], value_vars=["train_loss", "validation_loss"],
                        var_name="loss", value_name="value")
    grid = sns.relplot(data=long, x="epoch", y="value", hue="m", style="loss", col="circuit", kind="line",
                       col_wrap=min(4, long["circuit"].nunique()), height=3.0, errorbar=None,
                       palette="viridis", facet_kws={"sharey": False})
    grid.set(yscale="log", ylabel="mean squared relative error")
    grid.figure.suptitle("Training under the fixed budget (capacity nulls: against shuffled targets)", y=1.02)
    return grid.figure
