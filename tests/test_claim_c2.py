"""Claim C2's rule on hand-made tables: missing and non-finite results are counted, never passed over, and an
undetermined fit (NaN m_required) is told apart from a floor (infinite m_required)."""
import math

import numpy as np
import pandas as pd
import pytest

from astrostats.report.claims import c2_real_models as c2

TARGETS = {"minilm": "embedding_cosine", "vit_mnist": "top1_agreement"}


def _fits(m_required=(2000.0, 3000.0)) -> pd.DataFrame:
    rows = [{"target": target, "layer": 0, "head": head, "circuit": "astrocyte", "feature_map": "positive",
             "logit_scale": "model", "status": "ok", "reason": "", "alpha": 0.5, "alpha_ci_low": 0.4,
             "alpha_ci_high": 0.6, "m_max": 4096.0, "m_required_10pct": required,
             "m_required_10pct_ci_low": 0.5 * required, "m_required_10pct_ci_high": 2 * required}
            for target in TARGETS for head, required in enumerate(m_required)]
    return pd.DataFrame(rows)


def _end_to_end(value: float = 0.999, m: int = 65536) -> pd.DataFrame:
    rows = [{"target": target, "circuit": "astrocyte", "m": m, "seed": seed, "sequence_id": sequence,
             "metric": metric, "value": value}
            for target, metric in TARGETS.items() for seed in range(2) for sequence in range(4)]
    return pd.DataFrame(rows)


def _judge(fits: pd.DataFrame, end_to_end: pd.DataFrame):
    return c2.judge({"fig3_fits": fits, "fig3_end_to_end": end_to_end})


def test_agreeing_tables_are_supported():
    verdict = _judge(_fits(), _end_to_end())
    assert verdict.verdict == "SUPPORTED" and not verdict.details["missing_or_non_finite"]


def test_a_target_without_rows_for_its_metric_is_counted_missing():
    end_to_end = _end_to_end()
    end_to_end.loc[end_to_end["target"] == "vit_mnist", "metric"] = "correct"  # no top1_agreement rows
    verdict = _judge(_fits(), end_to_end)
    assert verdict.verdict == "INCONCLUSIVE"
    assert verdict.details["missing_or_non_finite"] == ["vit_mnist: no top1_agreement rows in fig3_end_to_end"]
    assert "1 missing or non-finite" in verdict.reason


def test_a_target_with_fits_but_no_end_to_end_is_counted_missing():
    end_to_end = _end_to_end()
    verdict = _judge(_fits(), end_to_end[end_to_end["target"] != "minilm"])
    assert verdict.verdict == "INCONCLUSIVE"
    assert verdict.details["missing_or_non_finite"] == ["minilm: per-head fits but no end-to-end rows"]


def test_a_nan_end_to_end_mean_is_non_finite_not_small_m():
    end_to_end = _end_to_end()
    end_to_end.loc[(end_to_end["target"] == "minilm") & (end_to_end["sequence_id"] == 0), "value"] = np.nan
    verdict = _judge(_fits(), end_to_end)
    assert verdict.verdict == "INCONCLUSIVE"
    assert not verdict.details["end_to_end_small_m"]
    assert verdict.details["missing_or_non_finite"] == ["minilm: embedding_cosine not finite at m = 65536 "
                                                        "(1 of 4 sequences)"]


def test_nan_m_required_is_undetermined_and_inf_is_a_floor():
    undetermined = _judge(_fits((2000.0, math.nan)), _end_to_end())
    assert undetermined.verdict == "INCONCLUSIVE" and not undetermined.details["heads_failing"]
    assert undetermined.details["heads_undetermined"] == ["minilm L0 H1 (m_required undetermined: NaN)",
                                                          "vit_mnist L0 H1 (m_required undetermined: NaN)"]
    assert all("floor" not in e.note for e in undetermined.evidence)
    floor = _judge(_fits((2000.0, math.inf)), _end_to_end())
    assert floor.verdict == "NOT_SUPPORTED" and not floor.details["heads_undetermined"]
    assert floor.details["heads_failing"] == ["minilm L0 H1 (floor: never reaches 10%)",
                                              "vit_mnist L0 H1 (floor: never reaches 10%)"]


@pytest.mark.parametrize("value, m, verdict", [(0.5, 65536, "NOT_SUPPORTED"), (0.5, 1024, "INCONCLUSIVE")])
def test_end_to_end_failure_counts_only_in_the_papers_regime(value, m, verdict):
    assert _judge(_fits(), _end_to_end(value, m)).verdict == verdict


def test_rule_states_how_missing_and_nan_are_counted():
    assert "missing or non-finite" in c2.RULE and "never taken for a floor" in c2.RULE
