"""The audit's rules, clause by clause, on small hand-built tables (issue 4): each verdict the rule text names."""
import math

import pandas as pd
import pytest

from astrostats.report import audit
from astrostats.report.claims import c1_convergence, c6_required_m
from astrostats.report.verdicts import ClaimVerdict, Evidence


def fits_row(scale, alpha, low, high, model="power_law", e_inf_low=0.0, **extra):
    return {"circuit": "astrocyte", "feature_map": "positive", "logit_scale": scale, "status": "ok",
            "alpha": alpha, "alpha_ci_low": low, "alpha_ci_high": high, "preferred_model": model,
            "e_inf_ci_low": e_inf_low, "alpha_vs_half_p_value": 0.5, "theory_ratio": 1.0,
            "theory_ratio_ci_low": 0.9, "theory_ratio_ci_high": 1.1, **extra}


@pytest.mark.parametrize("rows, verdict", [
    ([fits_row("diffuse", 0.50, 0.47, 0.53), fits_row("typical", 0.48, 0.45, 0.51)], "SUPPORTED"),
    ([fits_row("diffuse", 0.50, 0.47, 0.53), fits_row("peaked", 0.05, 0.02, 0.08)], "NOT_SUPPORTED"),
    ([fits_row("diffuse", 0.50, 0.47, 0.53), fits_row("typical", 0.40, 0.30, 0.60, "power_law_floor", 0.02)],
     "NOT_SUPPORTED"),
    ([fits_row("diffuse", 0.50, 0.47, 0.53), fits_row("peaked", 0.20, 0.15, 0.25)], "INCONCLUSIVE"),
])
def test_c1_rule_clauses(rows, verdict):
    assert c1_convergence.judge({"scaling_fits": pd.DataFrame(rows)}).verdict == verdict


def test_c1_finds_a_renamed_scaling_study_and_says_when_none_ran():
    rows = pd.DataFrame([fits_row("typical", 0.5, 0.45, 0.55)])
    result = c1_convergence.judge({"my_variant_fits": rows})
    assert result.verdict == "SUPPORTED" and result.evidence[0].table == "my_variant_fits"
    assert c1_convergence.judge({}).verdict == "INSUFFICIENT_DATA"


def need_row(scale, required, low, high, small=0.5, infinite=False):
    return {"circuit": "astrocyte", "feature_map": "positive", "logit_scale": scale, "status": "ok",
            "m_required_10pct": required, "m_required_10pct_ci_low": low, "m_required_10pct_ci_high": high,
            "m_required_10pct_infinite": infinite, "error_at_smallest_m": small}


@pytest.mark.parametrize("rows, verdict", [
    ([need_row("diffuse", 40, 30, 50), need_row("typical", 500, 400, 600)], "SUPPORTED"),
    ([need_row("diffuse", 40, 30, 50), need_row("peaked", math.inf, 1e6, math.inf, infinite=True)], "NOT_SUPPORTED"),
    ([need_row("diffuse", 40, 30, 50), need_row("peaked", float("nan"), float("nan"), float("nan"))], "INCONCLUSIVE"),
    ([need_row("diffuse", 40, 30, 50, small=0.05)], "INCONCLUSIVE"),  # small circuits already agree
    ([need_row("diffuse", 40, 30, 50, small=float("nan"))], "INCONCLUSIVE"),  # not recorded: cannot say
])
def test_c6_rule_clauses(rows, verdict):
    assert c6_required_m.judge({"scaling_fits": pd.DataFrame(rows)}).verdict == verdict


def test_nan_m_required_is_not_reported_as_a_floor():
    result = c6_required_m.judge({"scaling_fits": pd.DataFrame([need_row("peaked", float("nan"), 1, 2)])})
    assert "floor" not in result.evidence[0].note and "undetermined" in result.evidence[0].note


def test_a_missing_floor_flag_is_not_a_floor():
    """Fits concatenated with older rows carry NaN where the infinite flag is missing: bool(NaN) is True, and
    C6 used to read such a finite row as a floor (NOT_SUPPORTED); C4 already did not."""
    rows = pd.DataFrame([need_row("diffuse", 40, 30, 50, infinite=float("nan")), need_row("typical", 500, 400, 600)])
    assert c6_required_m.judge({"scaling_fits": rows}).verdict == "SUPPORTED"


def test_evidence_that_selects_no_rows_becomes_a_major_concern(monkeypatch):
    table = pd.DataFrame({"x": [1, 2]})
    cited = ClaimVerdict("C1", "s", "SUPPORTED", "r", (Evidence("t", "x == 3", "x", 3.0),), "why")
    fine = ClaimVerdict("C1", "s", "SUPPORTED", "r", (Evidence("t", "x == 2", "x", 2.0),), "why")
    assert audit.unresolved_evidence(cited, {"t": table}) == list(cited.evidence)
    assert audit.unresolved_evidence(fine, {"t": table}) == []
    monkeypatch.setattr(c1_convergence, "judge", lambda tables: cited)
    verdict = audit.judge_all({"t": table}, {"analyses": []})[0]
    assert any("select nothing" in concern for concern in verdict.major_concerns)


def test_a_verdict_without_evidence_is_refused():
    with pytest.raises(ValueError, match="needs evidence"):
        ClaimVerdict("C1", "s", "SUPPORTED", "r")
