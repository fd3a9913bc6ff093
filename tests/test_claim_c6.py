"""Claim C6's rule on planted measurements: required m per real head as a measurement or a bracket, classed
against one human astrocyte only when a measurement (Holm over heads) or the whole bracket decides it."""
import numpy as np
import pandas as pd

from astrostats.constants import HUMAN_SYNAPSES, TOLERANCE
from astrostats.claims import c6_required_m as c6
from astrostats.studies import measured
from planted_measured import planted_rows, planted_tables


def _tables(rate: float, constant: float, **kwargs) -> dict:
    """Relative error constant * m^-rate on two MiniLM heads."""
    return planted_tables(planted_rows({("minilm", "relative_error"): lambda m: constant * m ** -rate}, **kwargs))


def test_planted_heads_that_reach_the_tolerance_are_supported():
    # error 0.5 at 1e3 (small circuits do not agree), 0.05 at 1e5: measured within both astrocytes
    tables = _tables(0.5, 0.5 * 1000 ** 0.5)
    required = tables["fig3_required_m"]
    assert set(required["class_rodent"]) == set(required["class_human"]) == {"within"}
    assert all(required["basis_human"].str.startswith("measured at m = 100,000"))
    verdict = c6.judge(tables)
    assert verdict.verdict == "SUPPORTED", verdict.reason


def test_planted_heads_measured_above_the_tolerance_at_2e6_are_not_supported():
    tables = _tables(0.05, 0.6, m_values=(1000, 100000, 2000000))
    required = tables["fig3_required_m"]
    assert set(required["class_human"]) == {"beyond"}
    verdict = c6.judge(tables)
    assert verdict.verdict == "NOT_SUPPORTED"
    for item in verdict.evidence:  # the CI excludes the claim
        assert item.ci_low > TOLERANCE


def test_a_head_measured_only_to_1e5_and_far_off_is_beyond_by_its_bracket():
    """0.9 at 1e5: the lower bound 1e5 (0.9/0.1)^2 = 8e6 > 2e6 and the delta method agrees: the whole bracket."""
    rows = planted_rows({("minilm", "relative_error"): lambda m: 0.9})
    heads = rows.drop_duplicates(measured.HEAD_LABELS)[measured.HEAD_LABELS]
    theory = heads.assign(predicted_constant=1.0, m_required_theory=5e8)
    required = planted_tables(rows, theory=theory)["fig3_required_m"]
    assert (required["m_required_lower"] > HUMAN_SYNAPSES).all()
    assert set(required["class_human"]) == {"beyond"} and set(required["class_rodent"]) == {"beyond"}
    # with a delta-method value below 2e6 the bracket straddles: undetermined within budget
    theory = heads.assign(predicted_constant=1.0, m_required_theory=1e6)
    required = planted_tables(rows, theory=theory)["fig3_required_m"]
    assert set(required["class_human"]) == {"undetermined"}
    assert c6.judge(planted_tables(rows, theory=theory)).verdict == "INCONCLUSIVE"


def test_an_infinite_fit_is_a_floor_only_when_the_data_say_so():
    heads = ((0, 0), (0, 1), (0, 2), (0, 3))
    rows = planted_rows({("minilm", "relative_error"): lambda m: 0.3}, heads=heads)
    tests = [(0.03, 0.2), (0.04, 0.2), (1e-4, 0.05), (1e-5, 0.2)]  # (floor p, E_inf CI low) per head
    fits = pd.DataFrame([{"target": "minilm", "layer": 0, "head": head, "circuit": "astrocyte", "status": "ok",
                          "m_required_10pct": np.inf, "m_required_10pct_ci_low": 1e5,
                          "m_required_10pct_ci_high": np.inf, "m_max": 4096.0, "floor_p_value": p,
                          "e_inf_ci_low": e_low} for head, (p, e_low) in enumerate(tests)])
    required = planted_tables(rows, fits=fits)["fig3_required_m"].set_index("head")
    # Holm over four fits: 1e-5 x 4 and 1e-4 x 3 pass, 0.03 x 2 = 0.06 fails (so does 0.04 after it); head 2
    # passes the test but its E_inf CI reaches below 10 %; only head 3 is a floor
    assert list(required["fit_floor"]) == ["beyond m_max"] * 3 + ["floor (Holm)"]
    assert required.loc[3, "class_human"] == "beyond"
    assert (required.loc[[0, 1, 2], "class_human"] == "undetermined").all()


def test_below_the_minimum_data_is_insufficient():
    assert c6.judge(_tables(0.5, 15.0, n_sequences=2)).verdict == "INSUFFICIENT_DATA"
    assert c6.judge({}).verdict == "INSUFFICIENT_DATA"


def test_rule_states_rows_rate_assumption_and_correction():
    assert "_required_m" in c6.RULE and "Holm" in c6.RULE and "m^-1/2" in c6.RULE and "Minimum data" in c6.RULE
