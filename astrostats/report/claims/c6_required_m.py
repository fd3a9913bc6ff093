"""C6: big circuits agree and small ones do not: the m each target (logit scale, model, layer, head) needs."""
from __future__ import annotations

import math

import pandas as pd

from astrostats.constants import HUMAN_SYNAPSES, RODENT_SYNAPSES, TOLERANCE
from astrostats.report.claims import astrocyte_positive, finite, is_floor, quote
from astrostats.report.verdicts import ClaimVerdict, Evidence

CLAIM_ID = "C6"
STATEMENT = "Big circuits agree and small ones do not: the m each model, layer and head needs."
RULE = (f"From every scaling-fit table (names ending in _fits) with an m_required_10pct column, astrocyte circuit, "
        f"positive features: m_required is the m at which the fitted law reaches {TOLERANCE:.0%} relative error. "
        f"SUPPORTED if every target reaches {TOLERANCE:.0%} at a finite m whose 95 % CI upper bound is finite, "
        f"and the smallest m swept gives an error above {TOLERANCE:.0%} (small circuits do not agree). "
        f"NOT_SUPPORTED if some target has an infinite m_required (a floor above {TOLERANCE:.0%}). INCONCLUSIVE "
        f"otherwise. m_required is set against the synapses of one rodent ({RODENT_SYNAPSES:.0e}) and one human "
        f"({HUMAN_SYNAPSES:.0e}) astrocyte.")
KEYS = ("target", "layer", "head", "logit_scale")


def _rows(tables: dict) -> list[tuple[str, pd.DataFrame]]:
    found = []
    for name, table in tables.items():
        if name.endswith("_fits") and "m_required_10pct" in table:
            part = astrocyte_positive(table)
            if not part.empty:
                found.append((name, part))
    return found


def judge(tables: dict) -> ClaimVerdict:
    found = _rows(tables)
    if not found:
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason="no scaling-fit table with m_required: run `python -m astrostats.analyze scaling`",
                            analyses_needed=("scaling (and fig3_language, fig3_vision for real heads)",))
    evidence, infinite, undetermined, needs, small_unknown = [], [], [], [], []
    small_disagrees = True
    for name, table in found:
        for _, row in table.iterrows():
            keys = [key for key in KEYS if key in row and pd.notna(row[key])]
            label = "/".join(str(row[key]) for key in keys)
            query = " and ".join(f"{key} == {quote(row[key])}" for key in keys) + (
                " and circuit == 'astrocyte'" if "circuit" in table else "") + (
                " and feature_map == 'positive'" if "feature_map" in table else "")
            if row.get("status", "ok") != "ok":
                undetermined.append(label)
                continue
            required = finite(row["m_required_10pct"])
            high = finite(row.get("m_required_10pct_ci_high"))
            floor = is_floor(row)
            if floor:
                infinite.append(label)
            elif required is None or high is None:  # NaN: the fit could not say (not a floor)
                undetermined.append(label)
            needs.append((label, required))
            small = finite(row.get("error_at_smallest_m"))
            if small is None:
                small_unknown.append(label)
            else:
                small_disagrees &= small > TOLERANCE
            biology = "" if required is None else (
                "within a rodent astrocyte's synapses" if required <= RODENT_SYNAPSES else
                "within a human astrocyte's synapses" if required <= HUMAN_SYNAPSES else
                "beyond any single astrocyte's synapse count")
            note = biology or ("never reaches 10 % (floor)" if floor else "undetermined (fit gave no value)")
            evidence.append(Evidence(name, query, "m_required_10pct",
                                     math.inf if floor else required,
                                     ci_low=finite(row.get("m_required_10pct_ci_low")), ci_high=high,
                                     note=f"{label}: {note}"))
    if infinite:
        verdict, reason = "NOT_SUPPORTED", f"never reaches {TOLERANCE:.0%} at any m: {', '.join(infinite)}"
    elif undetermined or small_unknown or not small_disagrees:
        verdict = "INCONCLUSIVE"
        reason = (f"m_required undetermined for {', '.join(undetermined)}" if undetermined
                  else f"error at the smallest m not recorded for {', '.join(small_unknown)}" if small_unknown
                  else f"some target already agrees within {TOLERANCE:.0%} at the smallest m")
    else:
        verdict, reason = "SUPPORTED", f"every target reaches {TOLERANCE:.0%} error at a finite m, small m does not"
    finite_needs = sorted((value, label) for label, value in needs if value is not None)
    beyond = sum(value > HUMAN_SYNAPSES for value, _ in finite_needs) + len(infinite)
    headline = (f"m for 10 % error ranges from {finite_needs[0][0]:.3g} ({finite_needs[0][1]}) to "
                f"{finite_needs[-1][0]:.3g} ({finite_needs[-1][1]}); {beyond} of {len(needs)} targets need more "
                f"than one human astrocyte's {HUMAN_SYNAPSES:.0e} synapses" if finite_needs else reason)
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, tuple(evidence), reason, headline=headline)
