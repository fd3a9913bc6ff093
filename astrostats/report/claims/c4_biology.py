"""C4: the agreement survives biologically realistic astrocytes and the synapse counts of one astrocyte."""
from __future__ import annotations

import math

import pandas as pd

from astrostats.constants import HUMAN_SYNAPSES, TOLERANCE
from astrostats.report.claims import finite, is_floor, quote
from astrostats.report.verdicts import ClaimVerdict, Evidence

CLAIM_ID = "C4"
STATEMENT = "The agreement survives biologically realistic astrocyte dynamics and the synapse counts of a real astrocyte."
HUMAN = f"{HUMAN_SYNAPSES:.0e}".replace("e+0", "e")  # one human astrocyte's synapses, as '2e6'
JUDGED = ("ideal", "measured")
RULE = (f"From the biology study's floors table (name ending in _floors): per target (target, logit scale, feature "
        f"map), m_required = the m at which the fitted error law reaches {TOLERANCE:.0%} relative error, with its "
        f"95 % bootstrap CI (infinite when the fitted floor E_inf is at or above {TOLERANCE:.0%}). 'within' = CI "
        f"upper bound <= {HUMAN} synapses (one human astrocyte); 'beyond' = CI lower bound above it "
        f"(or m_required infinite, whatever its CI). Judged variants: the ideal circuit and every variant at measured parameter values "
        f"(level 'measured'). NOT_SUPPORTED if any judged variant is 'beyond' on any target. SUPPORTED if every "
        f"judged variant is 'within' on every target and, on at least one target, the no-astrocyte null is not "
        f"'within' (so the astrocyte's division is shown to matter). INCONCLUSIVE otherwise. INSUFFICIENT_DATA "
        f"when the table holds no judged (ideal or measured) rows.")
KEYS = ("target", "layer", "head", "logit_scale", "feature_map")


def _floors(tables: dict) -> tuple[str, pd.DataFrame] | None:
    for name, table in tables.items():
        if name.endswith("_floors") and {"variant", "level", "within_human"} <= set(table.columns):
            return name, table
    return None


def _status(row) -> str:
    """'yes' (within), 'no' (beyond) or 'undetermined' under the rule: a failed fit is undetermined; an
    infinite m_required is beyond whatever its CI (also in tables written before the study said so)."""
    if row.get("status", "ok") != "ok":
        return "undetermined"
    if is_floor(row):
        return "no"
    return str(row["within_human"])


def judge(tables: dict) -> ClaimVerdict:
    found = _floors(tables)
    if found is None:
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason="no biology floors table: run `python -m astrostats.analyze biology`",
                            analyses_needed=("biology",))
    name, table = found
    if not table["level"].isin(JUDGED).any():
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason=f"{name} holds no ideal or measured rows (levels: {sorted(set(table['level']))}): "
                                   "nothing to judge; run the biology study with those levels",
                            analyses_needed=("biology",))
    table = table[table["level"].isin(JUDGED + ("null",))].assign(judged=lambda t: t.apply(_status, axis=1))
    evidence, beyond, undetermined, null_fails = [], [], [], []
    for _, row in table.iterrows():
        keys = [key for key in KEYS if key in row and pd.notna(row[key])]
        target = "/".join(str(row[key]) for key in keys)
        query = " and ".join(f"{key} == {quote(row[key])}" for key in keys) + f" and variant == {quote(row['variant'])}"
        required = finite(row.get("m_required_10pct"))
        status = row["judged"]
        evidence.append(Evidence(name, query, "m_required_10pct", required if required is not None else math.inf,
                                 ci_low=finite(row.get("m_required_10pct_ci_low")),
                                 ci_high=finite(row.get("m_required_10pct_ci_high")),
                                 effect=f"E_inf {row.get('e_inf', math.nan):.3g}",
                                 note=f"{target}: {row['variant']} ({row['level']}): {status} one human astrocyte"))
        label = f"{row['variant']} on {target}"
        if row["level"] == "null":
            if status != "yes":
                null_fails.append(target)
        elif status == "no":
            beyond.append(label)
        elif status != "yes":
            undetermined.append(label)
    if beyond:
        verdict = "NOT_SUPPORTED"
        reason = f"beyond one human astrocyte's synapses (or a floor above {TOLERANCE:.0%}): " + "; ".join(beyond[:8])
    elif undetermined:
        verdict, reason = "INCONCLUSIVE", f"m_required CI straddles {HUMAN} for: " + "; ".join(undetermined[:8])
    elif not null_fails:
        verdict, reason = "INCONCLUSIVE", (f"every judged variant is within {HUMAN}, but so is the no-astrocyte null on "
                                           "every target: the astrocyte's division is not what the agreement rests on")
    else:
        verdict, reason = "SUPPORTED", (f"every measured-level variant reaches {TOLERANCE:.0%} within one human "
                                        f"astrocyte ({HUMAN} synapses)")
    ok = table[table["status"] == "ok"] if "status" in table else table
    keys = [key for key in KEYS if key in ok]
    ideal_within = {tuple(r[keys]): r["judged"] for _, r in ok[ok["level"] == "ideal"].iterrows()}
    measured = ok[ok["level"] == "measured"]
    fair = measured[pd.Series([ideal_within.get(tuple(r[keys])) == "yes" for _, r in measured.iterrows()],
                              index=measured.index, dtype=bool)]
    breaks = sorted(set(fair.loc[fair["judged"] == "no", "family"]))
    survives = sorted(set(fair["family"]) - set(fair.loc[fair["judged"] != "yes", "family"]))
    ideal_beyond = sorted("/".join(map(str, key)) for key, value in ideal_within.items() if value == "no")
    headline = (f"where the ideal circuit fits one human astrocyte, breaks: {', '.join(breaks) or 'none'}; "
                f"survives: {', '.join(survives) or 'none'}"
                + (f"; the ideal circuit itself needs more than {HUMAN} on {', '.join(ideal_beyond)}" if ideal_beyond else ""))
    concerns = []
    if null_fails != []:
        concerns.append(f"the no-astrocyte null fails within {HUMAN} on: {', '.join(sorted(set(null_fails)))}")
    concerns.append("noise at the measured imaging SNR includes photon noise: an upper bound on intrinsic Ca2+ noise")
    concerns.append("synthetic heads only unless real-head targets were added; EC50 and IP3 operating points are "
                    "not measured in the circuit's units and are swept instead")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, tuple(evidence), reason, headline=headline,
                        minor_concerns=tuple(concerns),
                        details={"breaks": breaks, "survives": survives, "ideal_beyond": ideal_beyond, "beyond": beyond, "undetermined": undetermined})
