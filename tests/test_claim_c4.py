"""Claim C4's rule, branch by branch, on small hand-built floors tables (no study run)."""
import math

import pandas as pd
import pytest

from astrostats.constants import HUMAN_SYNAPSES
from astrostats.claims import c4_biology

TARGETS = ("typical", "peaked")


def row(variant, level, within, scale="typical", estimate=1e4, low=5e3, high=2e4, status="ok", infinite=False,
        floor_supported=False):
    return {"floor_supported": floor_supported, "target": "synthetic", "layer": -1, "head": -1, "logit_scale": scale, "feature_map": "positive",
            "variant": variant, "family": variant.split("_")[0], "level": level, "within_human": within,
            "m_required_10pct": estimate, "m_required_10pct_ci_low": low, "m_required_10pct_ci_high": high,
            "m_required_10pct_infinite": infinite, "e_inf": 0.0, "status": status}


WITHIN = dict(within="yes", estimate=1e4, low=5e3, high=2e4)
BEYOND = dict(within="no", estimate=9e6, low=5e6, high=2e7)
STRADDLES = dict(within="undetermined", estimate=1e6, low=1e5, high=9e6)
# the reviewer's case: an infinite estimate whose bootstrap CI has a finite lower bound
INFINITE = dict(within="undetermined", estimate=math.inf, low=1e5, high=math.inf, infinite=True)
FLOOR = dict(INFINITE, floor_supported=True)  # a floor the data back (Holm-adjusted test, E_inf CI above 10 %)


def table(*rows):
    return {"biology_floors": pd.DataFrame(list(rows))}


CASES = {
    "SUPPORTED": [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", **WITHIN),
                  row("no_astrocyte", "null", **BEYOND), row("noise_snr2", "stress", **BEYOND)],
    "NOT_SUPPORTED (beyond)": [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", **BEYOND),
                               row("no_astrocyte", "null", **BEYOND)],
    "NOT_SUPPORTED (infinite)": [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", **FLOOR),
                                 row("slow_event", "measured", **STRADDLES), row("no_astrocyte", "null", **BEYOND)],
    "INCONCLUSIVE (straddles)": [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", **STRADDLES),
                                 row("no_astrocyte", "null", **BEYOND)],
    "INCONCLUSIVE (failed fit)": [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", status="failed",
                                                                       **WITHIN), row("no_astrocyte", "null", **BEYOND)],
    "INCONCLUSIVE (null within)": [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", **WITHIN),
                                   row("no_astrocyte", "null", **WITHIN)],
    "INSUFFICIENT_DATA (null only)": [row("no_astrocyte", "null", **BEYOND)],
    "INSUFFICIENT_DATA (stress only)": [row("noise_snr2", "stress", **WITHIN), row("no_astrocyte", "null", **BEYOND)],
    # the ideal circuit itself does not fit: that is C6's question, nothing here for realism to be judged on
    "INSUFFICIENT_DATA (ideal beyond)": [row("ideal", "ideal", **BEYOND), row("saturating_n2", "measured", **BEYOND),
                                         row("no_astrocyte", "null", **BEYOND)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_branch_of_the_rule(case):
    verdict = c4_biology.judge(table(*CASES[case]))
    assert verdict.verdict == case.split(" ")[0]
    assert verdict.reason
    if verdict.verdict == "INSUFFICIENT_DATA":
        assert not verdict.evidence and "no measured-level rows" in verdict.reason
    else:  # one evidence item per measured or null row on an eligible target; none for ideal or stress rows
        judged = [r for r in CASES[case] if r["level"] in ("measured", "null")]
        assert len(verdict.evidence) == len(judged)
    if verdict.verdict == "NOT_SUPPORTED":  # a CI that excludes the claim, or a floor the data back
        beyond = [e for e in verdict.evidence if "(measured): no" in e.note]
        assert beyond and all((e.ci_low or 0) > HUMAN_SYNAPSES or e.value == math.inf for e in beyond)


def test_an_unbacked_infinite_estimate_is_beyond_m_max_not_a_floor():
    rows = [row("ideal", "ideal", **WITHIN), row("saturating_n2", "measured", **dict(INFINITE, low=1e3)),
            row("no_astrocyte", "null", **BEYOND)]
    verdict = c4_biology.judge(table(*rows))
    assert verdict.verdict == "INCONCLUSIVE" and verdict.details["undetermined"]


def test_infinite_required_m_is_named_beyond():
    verdict = c4_biology.judge(table(*CASES["NOT_SUPPORTED (infinite)"]))
    assert verdict.details["beyond"] == ["saturating_n2 on synthetic/-1/-1/typical/positive"]
    assert verdict.details["undetermined"] == ["slow_event on synthetic/-1/-1/typical/positive"]
    assert "saturating" in verdict.details["breaks"]


def test_null_failing_on_one_target_is_enough_for_supported():
    rows = [row("ideal", "ideal", scale=s, **WITHIN) for s in TARGETS]
    rows += [row("saturating_n2", "measured", scale=s, **WITHIN) for s in TARGETS]
    rows += [row("no_astrocyte", "null", scale="typical", **WITHIN), row("no_astrocyte", "null", scale="peaked", **BEYOND)]
    assert c4_biology.judge(table(*rows)).verdict == "SUPPORTED"


def test_the_synapse_count_is_the_biophysics_constant():
    """Rule and reasons quote the one definition (constants.HUMAN_SYNAPSES), as the study's table does."""
    from astrostats.studies.biology import SYNAPSE_COUNTS

    human = SYNAPSE_COUNTS.set_index("species").loc["human", "synapses"]
    assert human == HUMAN_SYNAPSES  # the table the study writes states the count the rule uses
    assert f"<= {c4_biology.HUMAN} synapses" in c4_biology.RULE
    verdict = c4_biology.judge(table(*CASES["INCONCLUSIVE (straddles)"]))
    assert f"straddles {c4_biology.HUMAN}" in verdict.reason


def test_no_floors_table_is_insufficient_data():
    assert c4_biology.judge({}).verdict == "INSUFFICIENT_DATA"
