"""Claim C3 on hand-made tables: tables found by suffix, the accounting evidence cites the primary head at the
m of the primary comparisons, and margin and alpha come from the primary rows."""
import functools

import pandas as pd
import pytest

from astrostats.claims import c3_overfitting as c3


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


# ---------------------------------------------------------------- amendment v2 on planted data (issue 13, item 7)
from astrostats.spec import ANALYSES_DIR, load_spec  # noqa: E402
from astrostats.studies import known_answers  # noqa: E402

PLANTED = load_spec(ANALYSES_DIR / "known_answers.toml", "smoke").bind(known_answers.Parameters)
REGISTERED = known_answers.amendment()


@functools.lru_cache(maxsize=None)
def _planted(scenario: str) -> dict:
    """The planted overfitting tables of one scenario (seed 7), computed once; callers copy what they change."""
    return known_answers.c3_tables(scenario, PLANTED, REGISTERED, seed=7)


def test_v2_true_circuit_against_honest_nulls_is_supported():
    tables = dict(_planted("true_circuit"))
    verdict = c3.judge(tables)
    assert verdict.verdict == "SUPPORTED", verdict.reason
    assert verdict.details["rule_version"] == 2
    [count] = [e for e in verdict.evidence if e.statistic == "parameters fitted to the target"]
    assert count.value == 0


@pytest.mark.parametrize("scenario", ["ignores_q", "fitted_to_test"])
def test_v2_circuit_that_ignores_q_or_is_fitted_to_the_test_targets_is_not_supported(scenario):
    verdict = c3.judge(_planted(scenario))
    assert verdict.verdict == "NOT_SUPPORTED", verdict.reason


def test_v2_decides_and_v1_is_reported_beside_it():
    tables = dict(_planted("true_circuit"))
    v1 = _tests(0.5, 0.9, 0.9).assign(family="primary")  # the original rule alone would say NOT_SUPPORTED
    tables["overfitting_tests"] = pd.concat([v1, tables["overfitting_tests"]], ignore_index=True)
    verdict = c3.judge(tables)
    assert verdict.verdict == "SUPPORTED"
    assert verdict.details["v1"] == "NOT_SUPPORTED" and verdict.details["v2"] == "SUPPORTED"
    assert verdict.headline.startswith("holds by construction (0 fitted parameters")  # what decides, first
    assert "pre-registered v1: NOT_SUPPORTED; amendment v2: SUPPORTED" in verdict.headline
    # the fitted null that reaches the circuit's error is named, not left to the tables
    assert "fitted models reaching the circuit's error: learned_feature_shuffled in primary" in verdict.headline
    assert any(e.note.startswith("primary v1") for e in verdict.evidence)


def test_v2_flagged_fitted_null_decides_nothing_and_few_draws_are_insufficient():
    tables = dict(_planted("true_circuit"))
    tests, accounting = tables["overfitting_tests"], tables["overfitting_accounting"]
    broken = tests.iloc[:1].assign(control="learned_feature_v2_shuffled", control_status="failed_to_learn",
                                   status="control_flagged", ci_low=0.1, ci_high=0.2, ratio=0.15)
    verdict = c3.judge({"overfitting_tests": pd.concat([tests, broken], ignore_index=True),
                        "overfitting_accounting": accounting})
    assert verdict.verdict == "SUPPORTED"  # a null that failed to learn is reported, and decides nothing
    assert any("failed_to_learn" in note for note in verdict.minor_concerns)
    few = tests.assign(n_seeds=2)
    assert c3.judge({"overfitting_tests": few, "overfitting_accounting": accounting}).verdict == "INSUFFICIENT_DATA"
    unrecorded = accounting[accounting["circuit"] != "astrocyte"]
    assert c3.judge({"overfitting_tests": tests, "overfitting_accounting": unrecorded}).verdict == "INSUFFICIENT_DATA"


# ------------------------------------------------------- the refit ladder in C3's verdict (issue 27, point 3)
from astrostats.claims import c3_refits  # noqa: E402
from astrostats.claims.schemas import problems  # noqa: E402


def _refits(rows) -> pd.DataFrame:
    """A refit table: (circuit, m, seed, [learned per attempt]); the last attempt is used if it learned, else
    the first."""
    steps = ("first", "longer", "reseeded", "lbfgs")
    table = []
    for circuit, m, seed, learned in rows:
        for attempt, ok in enumerate(learned, start=1):
            table.append({"role": "primary", "circuit": circuit, "m": m, "seed": seed, "attempt": attempt,
                          "step": steps[attempt - 1], "optimiser": "lbfgs" if attempt == 4 else "adam",
                          "epochs": 10, "train_loss": 1.0, "heldout_loss": 1.0, "learned": ok,
                          "used": (attempt == len(learned)) if learned[-1] else attempt == 1,
                          "attempts": len(learned)})
    return pd.DataFrame(table)


def _with_v2_null(tables: dict, ratio: tuple[float, float, float], status: str = "ok") -> dict:
    """The planted run with a fitted v2 null at the largest m on every primary split, at (low, ratio, high)."""
    tests = tables["overfitting_tests"]
    v2 = tests[tests["family"] == "primary_v2"]
    largest = int(v2["m"].max())
    rows = v2[(v2["m"] == largest) & (v2["control"] == v2["control"].iloc[0])].assign(
        control="fitted_mlp_v2_shuffled", control_status=status, ci_low=ratio[0], ratio=ratio[1], ci_high=ratio[2],
        status="ok" if status == "ok" else "control_flagged")
    return {**tables, "overfitting_tests": pd.concat([tests, rows], ignore_index=True)}, largest


def test_c3_names_the_refit_nulls_and_those_that_never_learned():
    tables, m = _with_v2_null(dict(_planted("true_circuit")), (1.5, 2.0, 2.5))
    tables["overfitting_refits"] = _refits([
        ("fitted_mlp_v2_shuffled", m, 0, [False, True]),               # rescued by training longer
        ("fitted_mlp_v2_shuffled", m, 1, [True]),                      # learned at once
        ("learned_feature_v2_shuffled", m, 0, [False, False, False, False])])  # never learned
    verdict = c3.judge(tables)
    assert verdict.verdict == "SUPPORTED"  # the rescued null is worse than the circuit: it does not change it
    assert "fitted_mlp_v2_shuffled (primary): 1 of 2 fits failed to learn at first, 1 learned on a refit (longer 1)" \
        in verdict.headline and "refit, it does not reach the circuit's error" in verdict.headline
    assert (f"learned_feature_v2_shuffled failed to learn after 3 refits (m={m} draw 0): it could not be tested "
            "there (a limitation)") in verdict.headline
    assert verdict.details["verdict_without_refits"] == "SUPPORTED"
    assert verdict.details["refit_rescued"] == [f"fitted_mlp_v2_shuffled at m={m}"]


def test_c3_reports_a_verdict_that_the_refits_decide_as_a_finding():
    """Planted: a refit null that, once it learned, comes within the margin of the circuit. Without the ladder it
    was failed_to_learn and decided nothing (SUPPORTED); with it C3 is NOT_SUPPORTED, and says why."""
    tables, m = _with_v2_null(dict(_planted("true_circuit")), (0.8, 0.9, 1.0))
    tables["overfitting_refits"] = _refits([("fitted_mlp_v2_shuffled", m, 0, [False, False, False, True])])
    verdict = c3.judge(tables)
    assert verdict.verdict == "NOT_SUPPORTED" and verdict.details["verdict_without_refits"] == "SUPPORTED"
    assert any(note.startswith("finding: the refit nulls decide C3: with them NOT_SUPPORTED, without them")
               for note in verdict.major_concerns)
    assert "it reaches the circuit's error on" in verdict.headline and "lbfgs 1" in verdict.headline


def test_a_malformed_refit_table_is_refused_by_its_schema():
    tables, m = _with_v2_null(dict(_planted("true_circuit")), (1.5, 2.0, 2.5))
    tables["overfitting_refits"] = _refits([("fitted_mlp_v2_shuffled", m, 0, [False, True])]).assign(attempt=0)
    [problem] = problems(c3.SCHEMAS, tables)  # the claim is then INSUFFICIENT_DATA, never judged on it
    assert problem.startswith("overfitting_refits: attempt")
    tables["overfitting_refits"] = tables["overfitting_refits"].assign(attempt=1)
    assert problems(c3.SCHEMAS, tables) == []
