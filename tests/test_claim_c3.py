"""Claim C3 on hand-made tables: tables found by suffix, the accounting evidence cites the primary head at the
m of the primary comparisons, and margin and alpha come from the primary rows."""
import pandas as pd

from astrostats.report.claims import c3_overfitting as c3


def _tests(low: float, high: float, p: float) -> pd.DataFrame:
    common = {"control": "learned_feature_shuffled", "split": "test", "p_value": p, "p_value_adjusted": p,
              "mean_control": 0.5, "mean_circuit": 0.1, "status": "ok", "reason": "", "control_status": "ok",
              "ratio": (low + high) / 2, "ci_low": low, "ci_high": high}
    return pd.DataFrame([  # a non-primary row first, with another margin and alpha
        {**common, "role": "primary", "family": "efficiency", "m": 256, "margin": 0.0, "alpha": 0.5},
        {**common, "role": "primary", "family": "primary", "m": 1024, "margin": 0.2, "alpha": 0.01},
    ])


ACCOUNTING = pd.DataFrame([
    {"role": role, "circuit": circuit, "m": m, "n_fitted": fitted, "n_fixed_random": 64 * m,
     "n_input_determined": 64 * m + 1}
    for role in ("primary", "secondary") for circuit, fitted in (("astrocyte", 0), ("learned_feature", 7))
    for m in (256, 1024, 4096)])


def test_a_copied_spec_under_another_name_is_judged():
    verdict = c3.judge({"overfitting_copy_tests": _tests(1.5, 2.0, 0.001), "overfitting_copy_accounting": ACCOUNTING})
    assert verdict.verdict == "SUPPORTED"
    assert {e.table for e in verdict.evidence} == {"overfitting_copy_tests", "overfitting_copy_accounting"}


def test_accounting_evidence_cites_the_primary_circuit_at_the_primary_m():
    verdict = c3.judge({"overfitting_tests": _tests(1.5, 2.0, 0.001), "overfitting_accounting": ACCOUNTING})
    [cited] = [e for e in verdict.evidence if e.table == "overfitting_accounting"]
    rows = ACCOUNTING.query(cited.rows)
    assert len(rows) == 1 and rows.iloc[0].to_dict() == {"role": "primary", "circuit": "astrocyte", "m": 1024,
                                                          "n_fitted": 0, "n_fixed_random": 65536,
                                                          "n_input_determined": 65537}
    assert cited.value == 0 and "at m=1024" in cited.note


def test_margin_and_alpha_come_from_the_primary_rows():
    verdict = c3.judge({"overfitting_tests": _tests(1.15, 1.6, 0.001), "overfitting_accounting": ACCOUNTING})
    assert "(1 + 0.2) e_circuit" in verdict.rule
    assert "Holm p < 0.01" in verdict.rule and "CI low > 1.2" in verdict.rule
    # CI low 1.15 is above 1 + 0 (the first row's margin) but not above 1 + 0.2 (the primary margin)
    assert verdict.verdict == "INCONCLUSIVE"
    assert c3.judge({"overfitting_tests": _tests(1.5, 2.0, 0.03),
                     "overfitting_accounting": ACCOUNTING}).verdict == "INCONCLUSIVE"  # p 0.03 > primary alpha 0.01


def test_runs_that_disagree_are_inconclusive():
    verdict = c3.judge({"overfitting_tests": _tests(1.5, 2.0, 0.001), "overfitting_accounting": ACCOUNTING,
                        "overfitting_b_tests": _tests(0.5, 0.9, 0.9), "overfitting_b_accounting": ACCOUNTING})
    assert verdict.verdict == "INCONCLUSIVE"
    assert verdict.details["verdicts"] == {"overfitting": "SUPPORTED", "overfitting_b": "NOT_SUPPORTED"}


def test_tests_without_primary_rows_are_insufficient_data():
    tests = _tests(1.5, 2.0, 0.001)
    verdict = c3.judge({"overfitting_tests": tests[tests["family"] != "primary"], "overfitting_accounting": ACCOUNTING})
    assert verdict.verdict == "INSUFFICIENT_DATA"
