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
    "C1": (("paper", "fig2b"), ("scaling", "nulls"), ("scaling", "main"), ("scaling", "normaliser_error"),
           ("calibration", "*")),
    "C2": (("paper", "fig3"), ("real_heads", "end_to_end"), ("real_heads", "error_vs_m"),
           ("real_heads", "response_*")),
    "C3": (("overfitting", "comparisons"), ("overfitting", "learning_curves"), ("overfitting", "*")),
    "C4": (("biology", "m_required"), ("biology", "error_vs_m_*")),
    "C5": (("biology", "calibration"),),
    "C6": (("real_heads", "head_difficulty"),),
    "C7": (("circuits", "resource_ratios"), ("circuits", "error_vs_resources")),
}
VALIDATION = ("known_answers", "rates")  # the validation section's figure
MAX_APPENDIX_FIGURES = 8  # two a page: the appendix stays within five pages; the rest are named, in figures/

CAPTIONS = (  # (kind, name pattern, caption): the first match wins; {detail} is what the pattern's * matched,
    # {analysis} the analysis that drew it, so that no two figures share a caption
    ("paper", "fig2b", "The paper's Figure 2B reproduced (left) and what the audit adds (right). Left: relative "
     "output error of the circuit against m on the synthetic heads named in its title, median with a 5-95 % band "
     "over feature seeds and sequences, with random-feature theory (dashed). Right: every logit scale, the nulls at the same m "
     "(uniform attention, elu+1, no astrocyte) and one astrocyte's synapse counts. Look at whether the bands "
     "follow the dashed m^-1/2 lines, and where peaked heads sit relative to the synapse counts."),
    ("paper", "fig3", "The paper's Figure 3 reproduced (left block) and extended (right). Left: for one language "
     "and one vision head, the astrocyte response a_t (blue, median and 5-95 % band over feature seeds) "
     "against the exact softmax normaliser (black) over tokens, at the smallest and largest m. Right: the relative "
     "error of the response for every head the sweep analysed against m (thin: each head; bold: mean over heads "
     "with a 95 % CI), with the 10 % tolerance. Look at the spread between heads: the paper shows one head on "
     "one input."),
    ("scaling", "main", "Error of the circuit against m for each feature map, one panel per logit scale (95 % CI "
     "bands, each panel its own y-range), with the delta-method theory (dashed), the fitted law and the uniform "
     "and elu+1 nulls as levels. Look at the slope on log axes: -1/2 is the random-feature rate."),
    ("scaling", "nulls", "The circuit against its nulls at equal m, one panel per logit scale (95 % CI bands). "
     "Look at the gap between the blue circuit and the pink no-astrocyte null: it measures what the astrocyte's "
     "division contributes."),
    ("scaling", "normaliser_error", "Relative error of the astrocyte response a_t against the exact softmax "
     "normaliser, per feature map and logit scale. Look at whether the normaliser, not only the output, "
     "converges."),
    ("calibration", "calibration_rates", "False-positive rates and CI coverage of every test the rules use, on "
     "simulated data with known answers (95 % CIs; grey: the target band). Red marks a test outside its band."),
    ("calibration", "calibration_null_p_values", "Quantiles of the tests' p-values on simulated true nulls "
     "against the uniform: a calibrated test lies on the diagonal, an anti-conservative one below it."),
    ("calibration", "calibration_recovery", "Fitted exponent alpha with its 95 % CI on each simulated replicate, "
     "against the true alpha (dashed), per scenario. Look for CIs that miss the line more often than 1 in 20."),
    ("real_heads", "error_vs_m", "Output error against m for each {analysis} head analysed (median and 5-95 % "
     "over seeds and sequences), with the m^-1/2 line from the smallest m and the 10 % tolerance. Look for heads "
     "whose curves flatten: a floor means no m suffices."),
    ("real_heads", "end_to_end", "End to end on {analysis}: every attention layer replaced by the circuit, against "
     "m (median and 5-95 % over seeds). Dashed: the exact model. Look at how far the circuit stays from the model "
     "at the largest m."),
    ("real_heads", "head_difficulty", "Where the {analysis} heads sit: the theory's m for 10 % error against the "
     "heads' largest |q + k| and their attention entropy, with one astrocyte's synapse counts (purple). Heads "
     "above the lines need more hidden units than an astrocyte has synapses."),
    ("real_heads", "response_*", "Astrocyte response against the exact normaliser over the tokens of one "
     "sequence of {detail}, for a spread of layers and heads, at each m (median and 5-95 % over seeds). Look at "
     "where the coloured bands leave the black line."),
    ("overfitting", "comparisons", "Error ratio control / circuit at matched m, one panel per evaluation split, "
     "with 95 % hierarchical-bootstrap CIs. Above 1: the circuit is closer to the target. Look at the capacity "
     "nulls (pale) and the fitted controls at the largest m."),
    ("overfitting", "comparisons_*", "The same error ratios for the single head {detail}: control / circuit at "
     "matched m per split, 95 % CIs. Look at whether this head repeats the pooled picture."),
    ("overfitting", "learning_curves", "In-sample and held-out error against the parameter budget, pooled over "
     "heads. The circuit fits nothing, so its two curves coincide; a fitted control that overfits shows a gap."),
    ("overfitting", "learning_curves_*", "Learning curves for the single head {detail}: in-sample (dashed) and "
     "held-out (solid) error against the parameter budget."),
    ("overfitting", "training", "Training and validation loss of every fitted control under the fixed budget, "
     "per width m: curves still falling at the last epoch mean the control has not converged."),
    ("overfitting", "training_*", "Training and validation loss of the fitted controls on the single head "
     "{detail}: a gap between solid and dashed curves is overfitting."),
    ("biology", "m_required", "m needed for 10 % error per realistic astrocyte variant and head (95 % CI; crosses: "
     "variants that never reach it, a floor), with rodent and human synapse counts. Look at variants to the "
     "right of the synapse lines."),
    ("biology", "error_vs_m_*", "Error against m on {detail} heads for each family of realistic astrocyte "
     "variants, beside the ideal circuit and the no-astrocyte null (95 % CI bands; each panel its own y-range). "
     "Look for curves that flatten above the 10 % line."),
    ("biology", "calibration", "The noise and event model against the culture Ca2+ traces: model medians beside "
     "the data's with 95 % CIs, one panel per statistic (fitted ones cannot test the model; predicted ones can)."),
    ("circuits", "resource_ratios", "C7's pre-registered comparisons: plastic synapses a neurons-only circuit "
     "needs for 10 % error, relative to the astrocyte circuit, per comparator and head (95 % CIs; bounds where "
     "censored). Red: the neurons-only circuit is cheaper, its CI excluding the claim."),
    ("circuits", "error_vs_resources", "Error against each resource (plastic synapses, cells, hidden neurons) for "
     "every circuit of the comparison, one column per head. Look at which curve reaches the 10 % line (dashed) "
     "first along each resource."),
    ("known_answers", "rates", "Each claim's rule on data with a planted answer: the share of replicates in which "
     "it returned the planted verdict (dots, Clopper-Pearson 95 % CIs) and its opposite (crosses), per scenario. "
     "Aim: 95 % (dotted). Red: the aim missed; amber: beyond the design; hollow: reruns."),
)
GENERIC_CAPTION = "{name} of the analysis {analysis}: see its tables for the numbers drawn."


@dataclass(frozen=True)
class FigureRef:
    kind: str
    name: str
    analysis: str
    path: str  # relative to the run folder, e.g. figures/scaling_nulls.svg

    @property
    def stem(self) -> str:
        return self.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _words(text: str) -> str:
    return text.replace("_", " ").replace("/", " ")


def caption(figure: FigureRef) -> str:
    """What the figure shows and what to look for, naming its analysis or head where the kind has several."""
    for kind, pattern, text in CAPTIONS:
        if figure.kind == kind and fnmatch(figure.name, pattern):
            detail = figure.name[len(pattern) - 1:] if pattern.endswith("*") else ""
            return text.format(detail=_words(detail), analysis=_words(figure.analysis))
    return GENERIC_CAPTION.format(analysis=figure.analysis, name=_words(figure.name).capitalize())


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
    """Main figures per claim (each figure shown once, in the first claim that wants it) and the rest in order
    of importance: the claims' further figures first, then any other (the validation figure is neither)."""
    used = {f.path for f in figures if (f.kind, f.name) == VALIDATION}
    main, further = {}, []
    for verdict in verdicts:
        candidates = [f for f in claim_figures(verdict, figures, table_owner) if f.path not in used]
        main[verdict.claim_id] = candidates[:MAIN_FIGURES_PER_CLAIM]
        used |= {f.path for f in main[verdict.claim_id]}
        further += [f for f in candidates[MAIN_FIGURES_PER_CLAIM:] if f not in further]
    further += [f for f in figures if f not in further]
    return main, [f for f in further if f.path not in used]


def validation_figure(figures: list[FigureRef]) -> FigureRef | None:
    return next((f for f in figures if (f.kind, f.name) == VALIDATION), None)
