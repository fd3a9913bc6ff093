"""C3: the circuit's agreement is not explained by fitted capacity (the critique's "overfitting").

Applies the decision rule pre-registered in analyses/overfitting.toml to the ``overfitting_tests`` table
(margin and alpha are read from the table's rows, which carry what the run was registered with). Reported
apart, never deciding the verdict: (a) efficiency, controls with the same budget fitted to the true target
(they may do better); (b) construction, agreement at large m follows from the circuit being an unbiased
estimator of the softmax kernel.
"""
from __future__ import annotations

import pandas as pd

from astrostats.report.claims import finite, quote
from astrostats.report.verdicts import ClaimVerdict, Evidence, missing

CLAIM_ID = "C3"
STATEMENT = "The circuit's agreement with softmax attention is not explained by fitted capacity."
TESTS, ACCOUNTING, CURVES = "overfitting_tests", "overfitting_accounting", "overfitting_learning_curves"
RULE_TEMPLATE = (
    "Pre-registered (analyses/overfitting.toml): family 'primary' of {tests} = capacity nulls (controls with the "
    "circuit's budget of m*d parameters fitted to shuffled targets) and specificity nulls (the circuit on another "
    "head's q, k; on another sequence's k, v) against the circuit at the largest m, on held-out and out-of-"
    "distribution sequences. Per comparison: ratio = mean null error / mean circuit error, 95 % hierarchical-"
    "bootstrap CI; one-sided paired sign-flip p of e_null - (1 + {margin}) e_circuit, Holm across the family. "
    "SUPPORTED if every primary comparison has Holm p < {alpha}, CI low > {threshold} and a converged control. "
    "NOT_SUPPORTED if any has CI high < {threshold}. INCONCLUSIVE otherwise. Efficiency (controls fitted to the "
    "true target) and construction are reported apart and do not decide.")
CONSTRUCTION = ("(b) construction: with W ~ N(0, I), E[phi(q)·phi(k)] = exp(q·k) exactly, so agreement at large m "
                "follows from the circuit being an unbiased Monte-Carlo estimator of the softmax kernel: "
                "evidence about random features, not about astrocytes.")


def rule(tests: pd.DataFrame | None = None) -> str:
    margin, alpha = 0.10, 0.05
    if tests is not None and not tests.empty and {"margin", "alpha"} <= set(tests.columns):
        margin, alpha = float(tests["margin"].iloc[0]), float(tests["alpha"].iloc[0])
    return RULE_TEMPLATE.format(tests=TESTS, margin=f"{margin:g}", alpha=f"{alpha:g}",
                                threshold=f"{1 + margin:g}")


def _query(row: pd.Series) -> str:
    return (f"family == {quote(row['family'])} and control == {quote(row['control'])} and m == {int(row['m'])} "
            f"and split == {quote(row['split'])}")


def _evidence(row: pd.Series, note: str) -> Evidence:
    return Evidence(TESTS, _query(row), "error ratio (control / circuit)", finite(row.get("ratio")),
                    p_value=finite(row.get("p_value_adjusted")), ci_low=finite(row.get("ci_low")),
                    ci_high=finite(row.get("ci_high")),
                    effect=f"mean error {row['mean_control']:.3g} vs circuit {row['mean_circuit']:.3g}",
                    note=note)


def _efficiency(tests: pd.DataFrame) -> list[Evidence]:
    rows = tests[tests["family"] == "efficiency"]
    if rows.empty:
        return []
    largest = rows[rows["m"] == rows["m"].max()]
    return [_evidence(row, f"(a) efficiency, reported apart: {row['control']} fitted to the true target "
                           f"(two-sided, Holm p; training status {row['control_status']})")
            for _, row in largest.iterrows()]


def _gap_concerns(tables: dict) -> list[str]:
    curves = tables.get(CURVES)
    if curves is None or curves.empty or "generalisation_gap" not in curves:
        return []
    if "role" in curves:
        curves = curves[curves["role"] == "primary"]
    true_rows = curves[(curves["scored_against"] == "true") & (curves["split"] == "test")]
    notes = []
    for circuit, group in true_rows.groupby("circuit"):
        gap = group.set_index("m")["generalisation_gap"]
        notes.append(f"held-out minus in-sample error of {circuit}: "
                     + ", ".join(f"m={m}: {value:+.3f}" for m, value in gap.items()))
    return notes


def judge(tables: dict) -> ClaimVerdict:
    absent = missing(CLAIM_ID, STATEMENT, rule(), tables, [TESTS, ACCOUNTING], "overfitting")
    if absent:
        return absent
    tests = tables[TESTS]
    stated = rule(tests)
    primary = tests[tests["family"] == "primary"]
    if primary.empty:
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", stated,
                            reason=f"{TESTS} holds no 'primary' comparisons")
    threshold = 1.0 + primary["margin"].astype(float)
    usable = primary["status"].isin(["ok", "control_flagged"])
    passes = (primary["status"] == "ok") & (primary["p_value_adjusted"] < primary["alpha"]) & (primary["ci_low"] > threshold)
    fails = usable & (primary["ci_high"] < threshold)
    if not usable.any():
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", stated,
                            reason="no primary comparison could be computed (see status/reason in the table)")
    verdict = "NOT_SUPPORTED" if fails.any() else "SUPPORTED" if passes.all() else "INCONCLUSIVE"
    evidence = [_evidence(row, "primary" + ("" if row["status"] == "ok" else f" ({row['status']}: {row['reason']})"))
                for _, row in primary.iterrows()]
    accounting = tables[ACCOUNTING]
    if "role" in accounting:
        accounting = accounting[accounting["role"] == "primary"]
    circuit = accounting[accounting["circuit"] == "astrocyte"]
    if not circuit.empty:
        evidence.append(Evidence(ACCOUNTING, "circuit == 'astrocyte'", "parameters fitted to the target",
                                 float(circuit["n_fitted"].max()),
                                 note=f"fixed random {int(circuit['n_fixed_random'].max())} and input-determined "
                                      f"{int(circuit['n_input_determined'].max())} at m={int(circuit['m'].max())}"))
    evidence += _efficiency(tests)
    major = [f"{row['control']} on {row['split']}: {row['status']} ({row['reason']})"
             for _, row in primary[primary["status"] != "ok"].iterrows()]
    worst = primary.loc[primary["ratio"].idxmin()] if primary["ratio"].notna().any() else None
    failed = primary[fails]
    reason = {
        "SUPPORTED": "every capacity and specificity null is worse than the circuit by more than the margin, "
                     "on held-out and out-of-distribution sequences, after Holm correction",
        "NOT_SUPPORTED": "at the largest m some null comes within the margin of the circuit or beats it: "
                         + "; ".join(f"{r['control']} on {r['split']} (ratio {r['ratio']:.2f}, CI high "
                                     f"{r['ci_high']:.2f})" for _, r in failed.iterrows()),
        "INCONCLUSIVE": "no null beats the circuit within the margin, but not every comparison clears it "
                        "(or a fitted null did not converge)",
    }[verdict]
    headline = "" if worst is None else (
        f"smallest null/circuit error ratio at m={int(worst['m'])}: {worst['ratio']:.2f} "
        f"[{worst['ci_low']:.2f}, {worst['ci_high']:.2f}] ({worst['control']}, {worst['split']})")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, stated, tuple(evidence), reason,
                        major_concerns=tuple(major),
                        minor_concerns=tuple(_gap_concerns(tables)) + (CONSTRUCTION,),
                        headline=headline,
                        details={"efficiency": [e.to_dict() for e in _efficiency(tests)],
                                 "construction": CONSTRUCTION})
