"""Which figures go with which claim, and what each caption tells the reader to look at.

A figure is named by its analysis kind and its name within that kind ('scaling', 'nulls'); the report's own
cross-analysis figures have kind 'paper'. A claim without a plan here (a new claim in the registry) gets the
figures of the analyses whose tables its evidence cites.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch

MAIN_FIGURES_PER_CLAIM = 2

PLAN = {  # claim -> (kind, name pattern) in order of importance; the first two go in the main part
    "C1": (("paper", "fig2b"), ("scaling", "main"), ("scaling", "nulls"), ("scaling", "normaliser_error"),
           ("calibration", "*")),
    "C2": (("paper", "fig3"), ("real_heads", "error_vs_m"), ("real_heads", "end_to_end"),
           ("real_heads", "response_*")),
    "C3": (("overfitting", "comparisons"), ("overfitting", "learning_curves"), ("overfitting", "*")),
    "C4": (("biology", "m_required"), ("biology", "error_vs_m_typical"), ("biology", "error_vs_m_*")),
    "C5": (("biology", "calibration"),),
    "C6": (("real_heads", "head_difficulty"), ("paper", "fig2b_scale")),
}

CAPTIONS = (  # (kind, name pattern, caption): the first match wins
    ("paper", "fig2b", "The paper's Figure 2B reproduced (left) and what the audit adds (right). Left: relative "
     "output error of the circuit against m on typical synthetic heads, median with a 95 % band over feature seeds "
     "and sequences, with random-feature theory (dashed). Right: every logit scale, the nulls at the same m "
     "(uniform attention, elu+1, no astrocyte) and one astrocyte's synapse counts. Look at whether the blue bands "
     "follow the dashed m^-1/2 line, and where peaked heads sit relative to the synapse counts."),
    ("paper", "fig3", "The paper's Figure 3 reproduced (left block) and extended (right). Left: for one language "
     "and one vision head, the astrocyte response a_t (coloured, median and 5-95 % band over feature seeds) "
     "against the exact softmax normaliser (black) over tokens, at m = 1e3 and 1e5. Right: the relative error of "
     "the response for every head the sweep analysed against m (thin: each head; bold: mean over heads with a 95 % "
     "CI), with the 10 % tolerance. Look at the spread between heads and inputs: the paper shows one head on one "
     "input."),
    ("scaling", "main", "Error against m for each feature map and logit scale (95 % CI bands), with the "
     "delta-method theory (dashed), the fitted law and the trivial nulls. Look at the slope on log axes: -1/2 is "
     "the random-feature rate."),
    ("scaling", "nulls", "The circuit against its nulls at equal m (95 % CI bands). Look at the gap between the "
     "blue circuit and the no-astrocyte null: it measures what the astrocyte's division contributes."),
    ("scaling", "normaliser_error", "Error of the astrocyte response against the exact normaliser, per feature map."),
    ("calibration", "*", "Calibration of the statistical machinery on simulated data with known answers: rates "
     "should fall inside the target band."),
    ("real_heads", "error_vs_m", "Output error against m for each real head analysed (90 % interval over seeds "
     "and sequences), with the m^-1/2 line from the smallest m and the 10 % tolerance. Look for heads whose "
     "curves flatten: a floor means no m suffices."),
    ("real_heads", "end_to_end", "End to end: every attention layer replaced by the circuit, against m. Dashed: "
     "the exact model. Look at how far the circuit's curve stays from the model at the largest m."),
    ("real_heads", "head_difficulty", "Where real heads sit: the theory's m for 10 % error against the heads' "
     "logit spread and attention entropy, with one astrocyte's synapse counts. Heads above the lines need more "
     "hidden units than an astrocyte has synapses."),
    ("real_heads", "response_*", "Astrocyte response against the exact normaliser over tokens for a grid of "
     "layers and heads."),
    ("overfitting", "comparisons*", "Error ratio control / circuit at matched m, per evaluation split, with 95 % "
     "hierarchical-bootstrap CIs. Above 1: the circuit is closer to the target. Look at the capacity nulls "
     "(pale) and the baselines at the largest m."),
    ("overfitting", "learning_curves*", "In-sample and held-out error against the parameter budget. The circuit "
     "fits nothing, so its two curves coincide; a fitted control that overfits shows a gap."),
    ("overfitting", "training*", "Training and validation loss of every fitted control under the fixed budget: "
     "curves still falling at the last epoch mean the control has not converged."),
    ("biology", "m_required", "m needed for 10 % error per realistic astrocyte variant (95 % CI), crosses for "
     "variants that never reach it (a floor), with rodent and human synapse counts. Look at variants to the right "
     "of the synapse lines."),
    ("biology", "error_vs_m_*", "Error against m for each family of realistic astrocyte variants, beside the ideal "
     "circuit and the no-astrocyte null, 95 % CI bands. Look for curves that flatten above the 10 % line."),
    ("biology", "calibration", "The noise and event model against the culture Ca2+ traces: model medians beside "
     "the data's with 95 % CIs."),
)
GENERIC_CAPTION = "Figure of analysis {analysis} ({name})."


@dataclass(frozen=True)
class FigureRef:
    kind: str
    name: str
    analysis: str
    path: str  # relative to the run folder, e.g. figures/scaling_nulls.png

    @property
    def stem(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".png")


def caption(figure: FigureRef) -> str:
    for kind, pattern, text in CAPTIONS:
        if figure.kind == kind and fnmatch(figure.name, pattern):
            return text
    return GENERIC_CAPTION.format(analysis=figure.analysis, name=figure.name.replace("_", " "))


def claim_figures(verdict, figures: list[FigureRef], table_owner: dict) -> list[FigureRef]:
    """The figures of a claim in order of importance: by the plan, else those of the analyses it cites."""
    plan = PLAN.get(verdict.claim_id)
    chosen: list[FigureRef] = []
    if plan:
        for kind, pattern in plan:
            chosen += [f for f in figures if f.kind == kind and fnmatch(f.name, pattern) and f not in chosen]
        return chosen
    cited = {table_owner.get(item.table) for item in verdict.evidence}
    return [f for f in figures if f.analysis in cited]


def assign(verdicts, figures: list[FigureRef], table_owner: dict) -> tuple[dict, list[FigureRef]]:
    """Main figures per claim (each figure shown once, in the first claim that wants it) and the appendix rest."""
    used, main = set(), {}
    for verdict in verdicts:
        candidates = [f for f in claim_figures(verdict, figures, table_owner) if f.path not in used]
        main[verdict.claim_id] = candidates[:MAIN_FIGURES_PER_CLAIM]
        used |= {f.path for f in main[verdict.claim_id]}
    return main, [f for f in figures if f.path not in used]
