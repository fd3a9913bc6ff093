"""C1: the circuit converges to softmax attention as m grows, at the rate random-feature theory predicts."""
from __future__ import annotations

from astrostats.report.claims import astrocyte_positive, finite, quote
from astrostats.report.verdicts import ClaimVerdict, Evidence, missing

CLAIM_ID = "C1"
STATEMENT = "The circuit's output converges to softmax attention as m grows, at the rate and constant theory predicts."
RATE, MARGIN = 0.5, 0.1
RULE = (f"Scaling fits of the astrocyte circuit with the paper's positive features, one per logit scale "
        f"(tables scaling_fits; 95 % hierarchical-bootstrap CIs over sequences and feature seeds). SUPPORTED if at every "
        f"scale the exponent alpha's CI lies above 0 (error falls), overlaps [{RATE - MARGIN}, {RATE + MARGIN}] "
        f"(the m^-1/2 rate within a margin of {MARGIN}) and no floor is preferred. NOT_SUPPORTED if at any scale "
        f"alpha's CI lies entirely below {MARGIN} or a floor E_inf > 0 is preferred with its CI excluding 0. "
        f"INCONCLUSIVE otherwise. The constant is reported as observed/predicted (delta method) beside the rule.")


def scaling_fits_name(tables: dict) -> str | None:
    """The synthetic scaling study's fits (a *_fits table with circuit and logit_scale but no real target),
    whatever the spec was named; 'scaling_fits' first."""
    candidates = [name for name, table in tables.items() if name.endswith("_fits") and "target" not in table
                  and {"circuit", "feature_map", "logit_scale"} <= set(table.columns)]
    return "scaling_fits" if "scaling_fits" in candidates else (candidates[0] if candidates else None)


def judge(tables: dict) -> ClaimVerdict:
    name = scaling_fits_name(tables)
    if name is None:
        return missing(CLAIM_ID, STATEMENT, RULE, tables, ["scaling_fits"], "scaling")
    fits = tables[name]
    rows = astrocyte_positive(fits)
    if rows.empty or (rows["status"] != "ok").all():
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason="no usable positive-feature fit in scaling_fits")
    evidence, supported, refuted, concerns = [], True, False, []
    for _, row in rows.iterrows():
        query = (f"circuit == 'astrocyte' and feature_map == 'positive' and logit_scale == {quote(row['logit_scale'])}")
        if row["status"] != "ok":
            supported = False
            concerns.append(f"{row['logit_scale']}: fit not usable ({row.get('reason', '')})")
            continue
        low, high = finite(row["alpha_ci_low"]), finite(row["alpha_ci_high"])
        floor = row["preferred_model"] == "power_law_floor"
        floor_excludes_zero = floor and (finite(row.get("e_inf_ci_low")) or 0.0) > 0
        evidence.append(Evidence(name, query, "alpha", finite(row["alpha"]),
                                 p_value=finite(row.get("alpha_vs_half_p_value")), ci_low=low, ci_high=high,
                                 note=f"{row['logit_scale']} attention; test of alpha = 1/2; preferred model "
                                      f"{row['preferred_model']}"))
        if "theory_ratio" in row and finite(row["theory_ratio"]) is not None:
            evidence.append(Evidence(name, query, "observed/predicted error constant",
                                     finite(row["theory_ratio"]), ci_low=finite(row.get("theory_ratio_ci_low")),
                                     ci_high=finite(row.get("theory_ratio_ci_high")),
                                     note="delta-method prediction C/sqrt(m) for the same inputs"))
            ratio = finite(row["theory_ratio"])
            if ratio is not None and not 0.5 <= ratio <= 2.0:
                concerns.append(f"{row['logit_scale']}: the error constant is {ratio:.2g} x the delta-method "
                                f"prediction (the asymptotic regime is not reached over the m swept)")
        falls = low is not None and low > 0
        on_rate = low is not None and high is not None and low <= RATE + MARGIN and high >= RATE - MARGIN
        supported &= falls and on_rate and not floor
        refuted |= (high is not None and high < MARGIN) or floor_excludes_zero
    verdict = "NOT_SUPPORTED" if refuted else "SUPPORTED" if supported else "INCONCLUSIVE"
    alphas = ", ".join(f"{r['logit_scale']} {r['alpha']:.2f} [{r['alpha_ci_low']:.2f}, {r['alpha_ci_high']:.2f}]"
                       for _, r in rows.iterrows() if r["status"] == "ok")
    reason = {"SUPPORTED": "the error falls at the m^-1/2 rate, with no floor, at every logit scale",
              "NOT_SUPPORTED": "at some logit scale the error does not converge (no decline, or a floor above zero)",
              "INCONCLUSIVE": "the error falls, but at some scale the rate is off 1/2 or the CI is too wide"}[verdict]
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, tuple(evidence), reason,
                        minor_concerns=tuple(concerns) + (
                            "Convergence follows from construction: phi(q)·phi(k) is an unbiased estimator of "
                            "exp(q·k); it is evidence about random features, not about astrocytes.",),
                        headline=f"error exponent alpha (95 % CI): {alphas}")
