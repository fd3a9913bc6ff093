"""The audit's rules, clause by clause, on small hand-built tables (issue 4): each verdict the rule text names."""

import pandas as pd
import pytest

from astrostats.report import audit
from astrostats.claims import c1_convergence, judging
from astrostats.claims.verdicts import ClaimVerdict, Evidence


def regime_row(scale, alpha, low, high, ratio=(1.0, 0.95, 1.05), p=(0.001, 0.001), model="power_law", e_inf_low=0.0,
               **extra):
    """One row of the scaling study's *_asymptotic table (claim C1's rows), decided by its CIs and TOST p."""
    return {"logit_scale": scale, "circuit": "astrocyte", "feature_map": "positive", "status": "ok", "reason": "",
            "regime_bound": 0.25, "m_regime_start": 64.0, "m_swept_max": 4096.0, "n_m_in_regime": 7,
            "regime_decades": 1.8, "n_seeds": 8, "n_sequences": 8, "m_min": 64.0, "m_max": 4096.0,
            "alpha": alpha, "alpha_ci_low": low, "alpha_ci_high": high, "theory_ratio": ratio[0],
            "theory_ratio_ci_low": ratio[1], "theory_ratio_ci_high": ratio[2], "alpha_tost_p_value": p[0],
            "theory_ratio_tost_p_value": p[1], "preferred_model": model, "e_inf": 0.01, "e_inf_ci_low": e_inf_low,
            "e_inf_ci_high": 0.05, "floor_p_value": 0.5, "uniform_error": 1.2, **extra}


@pytest.mark.parametrize("rows, verdict", [
    ([regime_row("a", 0.50, 0.47, 0.53), regime_row("b", 0.48, 0.45, 0.51)], "SUPPORTED"),
    ([regime_row("a", 0.50, 0.47, 0.53), regime_row("b", 0.25, 0.20, 0.30, p=(0.9, 0.001))], "NOT_SUPPORTED"),
    ([regime_row("a", 0.50, 0.47, 0.53), regime_row("b", 0.5, 0.45, 0.55, ratio=(2.0, 1.8, 2.2), p=(0.001, 0.9))],
     "NOT_SUPPORTED"),
    ([regime_row("a", 0.50, 0.47, 0.53), regime_row("b", 0.45, 0.40, 0.50, model="power_law_floor", e_inf_low=0.02,
                                                    floor_p_value=0.001)], "NOT_SUPPORTED"),
    # a floor preferred at 5 % but not at the rule's 1 % decides nothing
    ([regime_row("a", 0.50, 0.47, 0.53), regime_row("b", 0.45, 0.40, 0.50, model="power_law_floor", e_inf_low=0.02,
                                                    floor_p_value=0.03)], "SUPPORTED"),
    ([regime_row("a", 0.50, 0.47, 0.53), regime_row("b", 0.40, 0.32, 0.48, p=(0.6, 0.001))], "INCONCLUSIVE"),
    ([regime_row("a", 0.50, 0.47, 0.53, n_seeds=2)], "INSUFFICIENT_DATA"),
    ([regime_row("a", 0.50, 0.47, 0.53, n_m_in_regime=3)], "INSUFFICIENT_DATA"),
])
def test_c1_rule_clauses(rows, verdict):
    assert c1_convergence.judge({"scaling_asymptotic": pd.DataFrame(rows)}).verdict == verdict


def test_c1_finds_a_renamed_scaling_study_and_says_when_none_ran():
    rows = pd.DataFrame([regime_row("a", 0.5, 0.45, 0.55)])
    result = c1_convergence.judge({"my_variant_asymptotic": rows})
    assert result.verdict == "SUPPORTED" and result.evidence[0].table == "my_variant_asymptotic"
    assert c1_convergence.judge({}).verdict == "INSUFFICIENT_DATA"


def calibration_rows(coverage_high=0.96):
    return pd.DataFrame([{"check": check, "kind": "coverage" if check.startswith("bootstrap") else "false_positive_rate",
                          "statistic": 0.95 if check.startswith("bootstrap") else 0.05,
                          "ci_low": 0.93 if check.startswith("bootstrap") else 0.04,
                          "ci_high": (coverage_high if check == "bootstrap_coverage" else 0.96)
                          if check.startswith("bootstrap") else 0.06,
                          "nominal": 0.95 if check.startswith("bootstrap") else 0.05}
                         for check in c1_convergence.CALIBRATION_CHECKS])


def test_a_method_that_misses_its_calibration_downgrades_the_verdict():
    tables = {"scaling_asymptotic": pd.DataFrame([regime_row("a", 0.5, 0.45, 0.55)])}
    calibrated = judging.judge_all({**tables, "calibration": calibration_rows()}, {"analyses": []})[0]
    assert calibrated.verdict == "SUPPORTED" and not calibrated.major_concerns
    broken = calibration_rows(coverage_high=0.90)  # the alpha CI covers at most 90 %: well below 95 %
    downgraded = judging.judge_all({**tables, "calibration": broken}, {"analyses": []})[0]
    assert downgraded.verdict == "INCONCLUSIVE" and "bootstrap_coverage" in downgraded.reason
    assert any(item.table == "calibration" and item.rows == "check == 'bootstrap_coverage'"
               for item in downgraded.evidence)
    unread = judging.judge_all(tables, {"analyses": []})[0]
    assert unread.verdict == "SUPPORTED" and any("did not run" in text for text in unread.minor_concerns)


def test_evidence_that_selects_no_rows_becomes_a_major_concern(monkeypatch):
    table = pd.DataFrame({"x": [1, 2]})
    cited = ClaimVerdict("C1", "s", "SUPPORTED", "r", (Evidence("t", "x == 3", "x", 3.0),), "why")
    fine = ClaimVerdict("C1", "s", "SUPPORTED", "r", (Evidence("t", "x == 2", "x", 2.0),), "why")
    assert judging.unresolved_evidence(cited, {"t": table}) == list(cited.evidence)
    assert judging.unresolved_evidence(fine, {"t": table}) == []
    monkeypatch.setattr(c1_convergence, "judge", lambda tables, circuit: cited)
    verdict = judging.judge_all({"t": table}, {"analyses": []})[0]
    assert any("select nothing" in concern for concern in verdict.major_concerns)


def test_a_verdict_without_evidence_is_refused():
    with pytest.raises(ValueError, match="needs evidence"):
        ClaimVerdict("C1", "s", "SUPPORTED", "r")


SELECTIONS = pd.DataFrame({"target": ["minilm", "vit", "minilm", None], "m": pd.array([1000, None, 100000, 1000], dtype="Int64"),
                           "value": [0.5, 0.1, 0.25, 1.0], "index": [7, 8, 9, 10]})


@pytest.mark.parametrize("rows", [
    "target == 'minilm' and m == 100000", "target == 'vit' and m == 1000", "m == 1000", "value == 0.25",
    "target == 'smollm2'", "target == 'minilm' and value > 0.3", "m == 1e3", "index == 9", "value == -1",
    "target != 'minilm'", "`m` == 1000"])
def test_the_fast_evidence_check_selects_what_pandas_query_selects(rows):
    assert judging.selects_rows(SELECTIONS, rows) == (not SELECTIONS.query(rows).empty)


@pytest.mark.parametrize("rows", ["nothing == 1", "target == = 'x'", "target == 'a' and nothing == 2"])
def test_the_fast_evidence_check_fails_as_pandas_query_fails(rows):
    with pytest.raises(Exception):
        SELECTIONS.query(rows)
    with pytest.raises(Exception):
        judging.selects_rows(SELECTIONS, rows)
