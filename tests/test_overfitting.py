"""The overfitting study (smoke profile), its pre-registration, claim C3's rule and its figures."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from astrostats.report.claims import c3_overfitting
from astrostats.report.figures import overfitting as figures
from astrostats.spec import ANALYSES_DIR, load_spec
from astrostats.studies import get_study
from astrostats.studies.base import RunContext
from astrostats.validation import InputError

matplotlib.use("Agg")
SPEC = ANALYSES_DIR / "overfitting.toml"


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    spec = load_spec(SPEC, "smoke")
    return get_study(spec.kind).run(spec, RunContext(tmp_path_factory.mktemp("overfitting"), progress=False))


def test_spec_is_preregistered_and_hashed():
    spec = load_spec(SPEC, "full")
    for key in ("endpoint", "margin", "alpha", "correction", "decision_rule", "primary_controls"):
        assert key in spec.preregistration
    changed = dataclasses.replace(spec, preregistration={**spec.preregistration, "margin": 0.2})
    assert changed.sha256 != spec.sha256


def test_study_tables_cover_every_control_and_keep_flags(tables):
    assert set(tables) == {"overfitting", "overfitting_accounting", "overfitting_training", "overfitting_history",
                           "overfitting_learning_curves", "overfitting_tests"}
    training = tables["overfitting_training"]
    spec = load_spec(SPEC, "smoke")
    assert len(training) == 4 * len(spec.parameters["m"]) * spec.parameters["n_seeds"]
    measurements = tables["overfitting"]
    flagged = training.loc[training["status"] != "converged", "circuit"].unique()
    for control in flagged:  # a fit that did not converge is still measured, and says so
        rows = measurements[measurements["circuit"] == control]
        assert not rows.empty and (rows["status"] != "converged").any()
    assert set(measurements["split"]) == {"train", "validation", "test", "ood_length", "ood_scale", "ood_head"}
    accounting = tables["overfitting_accounting"]
    assert (accounting.loc[accounting["circuit"] == "astrocyte", "n_fitted"] == 0).all()


def test_splits_never_share_a_sequence(tables):
    measurements = tables["overfitting"]
    ids = {split: set(measurements.loc[measurements["split"] == split, "sequence_id"])
           for split in ("train", "validation", "test")}
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["validation"]
    assert not ids["validation"] & ids["test"]


def test_tests_table_applies_the_preregistration(tables):
    tests = tables["overfitting_tests"]
    spec = load_spec(SPEC, "smoke")
    primary = tests[tests["family"] == "primary"]
    assert set(primary["control"]) == set(spec.preregistration["primary_controls"])
    assert set(primary["m"]) == {max(spec.parameters["m"])}
    assert (primary["margin"] == spec.preregistration["margin"]).all()
    assert (primary["family_size"] == len(primary)).all()
    assert (primary["p_value_adjusted"] >= primary["p_value"]).all()
    assert tests["preregistration_sha256"].nunique() == 1


def test_missing_preregistration_key_and_unmatchable_budget_are_input_errors():
    spec = load_spec(SPEC, "smoke")
    study = get_study("overfitting")
    incomplete = dataclasses.replace(spec, preregistration={k: v for k, v in spec.preregistration.items()
                                                            if k != "margin"})
    with pytest.raises(InputError, match="margin"):
        study.run(incomplete, RunContext(Path("."), progress=False))
    tiny = dataclasses.replace(spec, parameters={**spec.parameters, "m": [1, 8]})
    with pytest.raises(InputError, match="cannot match the circuit's budget"):
        study.run(tiny, RunContext(Path("."), progress=False))


def _primary(ratio_low: float, ratio_high: float, p: float, status: str = "ok") -> pd.DataFrame:
    row = {"family": "primary", "control": "learned_feature_shuffled", "m": 1024, "split": "test", "margin": 0.1,
           "alpha": 0.05, "ratio": (ratio_low + ratio_high) / 2, "ci_low": ratio_low, "ci_high": ratio_high,
           "p_value": p, "p_value_adjusted": p, "mean_control": 0.5, "mean_circuit": 0.1, "status": status,
           "reason": "" if status == "ok" else "training status not_converged", "control_status": "ok"}
    return pd.DataFrame([row])


ACCOUNTING = pd.DataFrame([{"circuit": "astrocyte", "m": 1024, "n_fitted": 0, "n_fixed_random": 65536,
                            "n_input_determined": 66560}])


@pytest.mark.parametrize("low, high, p, status, verdict", [
    (3.0, 4.0, 0.001, "ok", "SUPPORTED"),
    (0.8, 1.05, 0.9, "ok", "NOT_SUPPORTED"),
    (1.05, 1.4, 0.2, "ok", "INCONCLUSIVE"),
    (3.0, 4.0, 0.001, "control_flagged", "INCONCLUSIVE"),
])
def test_claim_c3_applies_the_rule(low, high, p, status, verdict):
    result = c3_overfitting.judge({"overfitting_tests": _primary(low, high, p, status),
                                   "overfitting_accounting": ACCOUNTING})
    assert result.verdict == verdict
    assert "1.1" in result.rule and any("construction" in note for note in result.minor_concerns)


def test_claim_c3_without_tables_is_insufficient_data():
    assert c3_overfitting.judge({}).verdict == "INSUFFICIENT_DATA"


def test_claim_c3_and_figures_on_the_smoke_tables(tables):
    verdict = c3_overfitting.judge(tables)
    assert verdict.verdict in ("SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE")
    assert verdict.evidence
    drawn = figures.draw(tables)
    assert set(drawn) == {"learning_curves", "comparisons", "training"}
    for figure in drawn.values():
        matplotlib.pyplot.close(figure)
