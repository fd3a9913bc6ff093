"""C6: big circuits agree and small ones do not: the m each real head needs, set against one astrocyte's synapses.

Reads only the ``*_required_m`` tables of the real_heads study (astrostats.studies.measured): per head, the error
measured directly at m up to 1e5 (and 2e6 where measured) and the bracket on the m needed for 10 % error. The
synthetic scaling fits belong to C1; the normaliser rows to C2; no row here decides another claim.

Every head labelled real (``target_kind`` "real") is judged, whatever its model is called; a table without the
label (written before it, or planted by the known-answers study) is judged whole, as before.
"""
from __future__ import annotations

import pandas as pd

from astrostats.constants import HUMAN_SYNAPSES, RODENT_SYNAPSES, TOLERANCE
from astrostats.claims.schemas import label, number, probability, table_schema
from astrostats.claims.rules import thresholds
from astrostats.claims import AuditedCircuit, finite, quote
from astrostats.claims.verdicts import ClaimVerdict, Evidence

CLAIM_ID = "C6"
STATEMENT = "Big circuits agree and small ones do not: the m each model, layer and head needs."
SHORT_NAME = 'the m each head needs'
#: what new evidence would change the verdict (the report shows it beside the verdict)
WOULD_CHANGE = ("If every model's heads needed fewer units than one astrocyte's synapses (with the CI's upper end), "
                'the verdict would turn SUPPORTED; it rests on the heads with the largest requirement and on floors, '
                'so better circuits, not more seeds, would change it.')
RULES = thresholds(CLAIM_ID)
MIN_SEQUENCES, MIN_SEEDS, ALPHA = RULES["min_sequences"], RULES["min_seeds"], RULES["alpha"]
RULE = (f"From the *_required_m tables (real heads: rows labelled target_kind 'real', whatever the model's name, "
        f"or every row of a table without the label; astrocyte circuit, positive features; one row per head): each "
        f"head is classed against one human astrocyte's {HUMAN_SYNAPSES:.0e} synapses (and, reported, one rodent's "
        f"{RODENT_SYNAPSES:.0e}) as 'within' / 'beyond' only from a direct measurement (one-sided crossed-design "
        f"t-test over sequences x feature draws, amendment 2026-12-06, Holm-adjusted over every head at that m, "
        f"< {ALPHA}: error below "
        f"{TOLERANCE:.0%} at an m <= the count, or above it at an m >= the count) or when the whole bracket on the m "
        f"for {TOLERANCE:.0%} (lower bound m_last (e_low/eps)^2 under the m^-1/2 rate assumption, the fitted "
        f"extrapolation's CI, the delta-method (C/eps)^2) lies on one side; a fitted floor counts only with a "
        f"Holm-adjusted floor test < {ALPHA} and its E_inf CI above {TOLERANCE:.0%}; otherwise 'undetermined'. "
        f"NOT_SUPPORTED if some head is 'beyond' one human astrocyte. SUPPORTED if every head is 'within' and every "
        f"head's error at the smallest m measured is above {TOLERANCE:.0%} (Holm-adjusted p < {ALPHA}: small circuits do "
        f"not agree). INCONCLUSIVE otherwise. Minimum data: one head measured on >= {MIN_SEQUENCES} sequences x "
        f">= {MIN_SEEDS} feature draws; INSUFFICIENT_DATA below it.")
COLUMNS = {"class_human", "class_rodent", "n_sequences", "n_seeds", "error_at_m_smallest_p_above_adjusted"}


REAL = "real"  # the target_kind of a real model's rows
#: the table the rule reads (checked before it judges)
SCHEMAS = {"_required_m": table_schema(
    COLUMNS, label("class_human", ("within", "beyond", "undetermined")),
    label("class_rodent", ("within", "beyond", "undetermined")), number("n_sequences", minimum=0),
    number("n_seeds", minimum=0), probability("error_at_m_smallest_p_above_adjusted"),
    number("error_at_m_last", minimum=0))}


def _tables(tables: dict) -> list[tuple[str, pd.DataFrame]]:
    found = []
    for name, table in tables.items():
        if name.endswith("_required_m") and COLUMNS <= set(table.columns) and not table.empty:
            if "target_kind" in table:
                table = table[table["target_kind"] == REAL]
            if not table.empty:
                found.append((name, table))
    return found


def judge(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> ClaimVerdict:
    found = _tables(tables)
    enough = [(name, table[(table["n_sequences"] >= MIN_SEQUENCES) & (table["n_seeds"] >= MIN_SEEDS)])
              for name, table in found]
    enough = [(name, table) for name, table in enough if not table.empty]
    if not enough:
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason=(f"no head measured on >= {MIN_SEQUENCES} sequences x >= {MIN_SEEDS} feature draws"
                                    if found else "no *_required_m table: run `python -m astrostats.analyze "
                                                  "fig3_language fig3_vision` (analysis 'measured')"),
                            analyses_needed=("fig3_language", "fig3_vision"))
    evidence, beyond, undetermined, small_agree = [], [], [], []
    counts: dict[str, dict[str, int]] = {}
    for name, table in enough:
        for _, row in table.iterrows():
            label = f"{row['target']} L{row['layer']} H{row['head']}"
            query = f"target == {quote(row['target'])} and layer == {row['layer']} and head == {row['head']}"
            status = row["class_human"]
            per_model = counts.setdefault(row["target"], {"within": 0, "beyond": 0, "undetermined": 0, "heads": 0})
            per_model[status] = per_model.get(status, 0) + 1
            per_model["heads"] += 1
            if status == "beyond":
                beyond.append(label)
            elif status != "within":
                undetermined.append(label)
            if not row["error_at_m_smallest_p_above_adjusted"] < ALPHA:
                small_agree.append(label)
            evidence.append(Evidence(
                name, query, "error_at_m_last", float(row["error_at_m_last"]),
                ci_low=finite(row.get("error_at_m_last_ci_low")), ci_high=finite(row.get("error_at_m_last_ci_high")),
                effect=(f"m for {TOLERANCE:.0%}: lower {row.get('m_required_lower', float('nan')):.3g}, fitted "
                        f"{row.get('m_required_fitted', float('nan')):.3g}, delta method "
                        f"{row.get('m_required_theory', float('nan')):.3g}"),
                note=f"{label} at m = {int(row['m_last']):,}: {status} one human astrocyte "
                     f"({row.get('basis_human', '')}); rodent: {row['class_rodent']}"))
    if beyond:
        verdict = "NOT_SUPPORTED"
        reason = (f"{len(beyond)} heads need more than one human astrocyte's {HUMAN_SYNAPSES:.0e} synapses for "
                  f"{TOLERANCE:.0%}: " + ", ".join(beyond[:8])
                  + (f" and {len(beyond) - 8} more (every one in audit.json)" if len(beyond) > 8 else ""))
    elif undetermined or small_agree:
        verdict = "INCONCLUSIVE"
        reason = "; ".join(part for part in (
            f"{len(undetermined)} heads undetermined within budget against {HUMAN_SYNAPSES:.0e}" if undetermined else "",
            f"{len(small_agree)} heads not shown above {TOLERANCE:.0%} at the smallest m" if small_agree else "")
            if part)
    else:
        verdict = "SUPPORTED"
        reason = f"every head reaches {TOLERANCE:.0%} within one human astrocyte and small circuits do not"
    headline = "; ".join(f"{model}: of {c['heads']} heads, {c['within']} within, {c['beyond']} beyond, "
                         f"{c['undetermined']} undetermined against {HUMAN_SYNAPSES:.0e}" for model, c in counts.items())
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, tuple(evidence), reason, headline=headline,
                        details={"beyond": beyond, "undetermined": undetermined, "small_m_agrees": small_agree,
                                 "per_model": counts})
