"""The rules on planted truth (known_answers): per claim and scenario, how often the rule returned the planted
verdict (Clopper-Pearson 95 % CI) and how often its opposite, against the 95 % aim, so that a reader sees at a
glance which rules recover what was planted and where they abstain; where a missed scenario was run again with
more feature draws or (C1) a wider sweep (the power table), its rate there beside it, so that a miss the design's
power or reach explains is told from one it does not."""
from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrostats.claims import AuditedCircuit
from astrostats.report import style
from astrostats.report.audit import rerun_label, reruns
from astrostats.report.figures import find_table

AIM = 0.95


def draw(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> dict:
    summary = find_table(tables, "known_answers_summary")
    if summary is None or not {"claim", "scenario", "planted_rate", "ci_low", "ci_high"} <= set(summary):
        return {}
    return {"rates": _rates(summary.reset_index(drop=True), find_table(tables, "known_answers_power"))}


#: a marker per kind of rerun (each number of draws, each sweep), in the power table's order
RERUN_MARKERS = ("o", "s", "^", "D", "v", "P")


def _rates(summary: pd.DataFrame, power: pd.DataFrame | None = None):
    rows = len(summary)
    fig, ax = plt.subplots(figsize=(style.PAGE_WIDTH_IN, 0.105 * rows + 0.9))
    y = np.arange(rows)[::-1]  # the table's order, top to bottom
    met = summary["meets_aim"].astype(bool) if "meets_aim" in summary else summary["ci_low"] >= AIM
    colours = np.where(met, style.VERDICT_COLOURS["SUPPORTED"], style.VERDICT_COLOURS["NOT_SUPPORTED"]).astype(object)
    if "design_resolves" in summary:  # beyond this design and the opposite rare (all that is asked there)
        colours[~summary["design_resolves"].astype(bool).to_numpy() & met.to_numpy()] = style.VERDICT_COLOURS["INCONCLUSIVE"]
    ax.hlines(y, summary["ci_low"], summary["ci_high"], colors=colours, lw=1.4)
    ax.scatter(summary["planted_rate"], y, c=colours, s=10, zorder=3, label="planted verdict returned (95 % CI)")
    if "opposite_rate" in summary:
        ax.scatter(summary["opposite_rate"], y, marker="x", s=12, color="0.35", zorder=3,
                   label="opposite verdict returned")
    if power is not None and {"claim", "scenario", "draws", "design_draws", "planted_rate"} <= set(power):
        place = {key: position for key, position in zip(zip(summary["claim"], summary["scenario"]), y)}
        shown = reruns(power)
        labels = pd.Series([rerun_label(run, short=True) for run in shown.to_dict("records")], index=shown.index,
                           dtype=object)
        for marker, (how, runs) in zip(itertools.cycle(RERUN_MARKERS), shown.groupby(labels, sort=False)):
            runs = runs[[key in place for key in zip(runs["claim"], runs["scenario"])]]
            ax.scatter(runs["planted_rate"], [place[key] for key in zip(runs["claim"], runs["scenario"])],
                       marker=marker, s=16, facecolors="none", edgecolors="0.2", linewidths=0.7, zorder=4,
                       label=f"rerun: {how}")
    ax.axvline(AIM, **style.TOLERANCE_STYLE, label="aim: 95 %")
    labels = [f"{claim}  {str(scenario).replace('_', ' ')}" for claim, scenario in zip(summary["claim"], summary["scenario"])]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, rows - 0.3)
    ax.set(xlim=(-0.02, 1.02), xlabel="share of replicates")
    ax.set_title("Planted truth through each claim's rule\n(green: the aim met, red: missed, amber: beyond this design)")
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=3)
    style.finish(fig, rect=(0, 0.5 / fig.get_size_inches()[1], 1, 1))
    return fig
