"""Claim C2's rule on planted measurements: the paper's Figure 3 quantity (normaliser error) per head at m = 1e5,
Holm over heads, beside the end-to-end checks; missing and non-finite results are counted, never passed over."""
import numpy as np
import pandas as pd
import pytest

from astrostats.claims import c2_real_models as c2
from planted_measured import planted_rows, planted_tables

TARGETS = {"minilm": "embedding_cosine", "vit_mnist": "top1_agreement"}


def _measured(normaliser: float, output: float = 0.2, **kwargs) -> dict:
    means = {}
    for target in TARGETS:
        means[(target, "normaliser_error")] = lambda m, n=normaliser: n * (1e5 / m) ** 0.5
        means[(target, "relative_error")] = lambda m, o=output: o
    return planted_tables(planted_rows(means, **kwargs))


def _end_to_end(value: float = 0.999, m: int = 16384) -> pd.DataFrame:
    rows = [{"target": target, "circuit": "astrocyte", "m": m, "seed": seed, "sequence_id": sequence,
             "metric": metric, "value": value}
            for target, metric in TARGETS.items() for seed in range(2) for sequence in range(4)]
    return pd.DataFrame(rows)


def _judge(tables: dict, end_to_end: pd.DataFrame):
    return c2.judge({**tables, "fig3_end_to_end": end_to_end})


def test_planted_agreement_is_supported():
    verdict = _judge(_measured(0.03), _end_to_end())
    assert verdict.verdict == "SUPPORTED", verdict.reason
    assert verdict.headline.startswith("normaliser error below 10% at m = 100,000 in 4 of 4 heads")
    # the output error is reported beside the verdict, not judged (those rows decide C6)
    assert verdict.details["output_error_beside"]["minilm m=100000"]["median_error"] == pytest.approx(0.2, abs=0.01)


def test_planted_disagreement_is_not_supported_with_a_ci_that_excludes_the_claim():
    verdict = _judge(_measured(0.3), _end_to_end())
    assert verdict.verdict == "NOT_SUPPORTED"
    heads = [e for e in verdict.evidence if e.statistic == "normaliser_error"]
    assert len(heads) == 4 and all(e.ci_low > c2.TOLERANCE and e.p_value < c2.ALPHA for e in heads)
    assert verdict.headline.startswith("normaliser error below 10% at m = 100,000 in 0 of 4 heads")


def test_a_head_at_the_tolerance_is_inconclusive():
    assert _judge(_measured(0.1, sd=0.05), _end_to_end()).verdict == "INCONCLUSIVE"


def test_below_the_minimum_data_is_insufficient():
    # the paper's m not measured, or too few sequences for a CI
    assert _judge(planted_tables(planted_rows({("minilm", "normaliser_error"): lambda m: 0.01,
                                               ("vit_mnist", "normaliser_error"): lambda m: 0.01},
                                              m_values=(1000, 10000))), _end_to_end()).verdict == "INSUFFICIENT_DATA"
    assert _judge(_measured(0.03, n_sequences=2), _end_to_end()).verdict == "INSUFFICIENT_DATA"
    assert c2.judge({}).verdict == "INSUFFICIENT_DATA"


def test_a_target_without_rows_for_its_metric_is_counted_missing():
    end_to_end = _end_to_end()
    end_to_end = end_to_end[end_to_end["target"] != "minilm"]
    verdict = _judge(_measured(0.03), end_to_end)
    assert verdict.verdict == "INSUFFICIENT_DATA" or "minilm" in " ".join(verdict.details["missing_or_non_finite"])


def test_a_nan_end_to_end_mean_is_non_finite_not_small_m():
    end_to_end = _end_to_end()
    end_to_end.loc[end_to_end["target"] == "vit_mnist", "value"] = np.nan
    verdict = _judge(_measured(0.03), end_to_end)
    assert verdict.verdict == "INCONCLUSIVE"
    assert any("not finite" in item for item in verdict.details["missing_or_non_finite"])
    assert not verdict.details["end_to_end_small_m"]


@pytest.mark.parametrize("value, m, verdict", [(0.5, 16384, "NOT_SUPPORTED"), (0.5, 1024, "INCONCLUSIVE")])
def test_end_to_end_failure_counts_only_in_the_papers_regime(value, m, verdict):
    assert _judge(_measured(0.03), _end_to_end(value, m)).verdict == verdict


def test_rule_states_its_rows_and_minimum_data():
    assert "normaliser_error" in c2.RULE and "Minimum data" in c2.RULE and "it decides C6" in c2.RULE
