"""C3: the circuit's agreement is not explained by fitted capacity (the critique's "overfitting").

Two rules, both from analyses/overfitting.toml. Amendment v2 (dated 2026-12-01, hashed, family
``primary_v2``) decides where a run has its rows; the original pre-registration (v1, family ``primary``) is
still applied and its verdict reported beside it (``details["v1"]``, the headline and a minor concern). A run
without v2 rows is judged by v1 alone, and says so. v1: applies the decision rule pre-registered in
analyses/overfitting.toml to the ``*_tests`` table of an
overfitting run (found by suffix, with its ``*_accounting`` and ``*_learning_curves`` of the same prefix, so a
copied spec under another name is judged too; margin and alpha are read from the primary rows, which carry
what the run was registered with). Several runs are judged each; they must agree. Reported
apart, never deciding the verdict: (a) efficiency, controls with the same budget fitted to the true target
(they may do better); (b) construction, agreement at large m follows from the circuit being an unbiased
estimator of the softmax kernel. The run's ``*_refits`` table (astrostats.claims.c3_refits) says which fitted
nulls failed to learn at first, which a refit rescued and which never learned (named as a limitation); if the
rescued nulls decide the verdict, that is said as a finding.
"""
from __future__ import annotations

import pandas as pd

from astrostats.claims import c3_refits
from astrostats.claims.schemas import number, probability, table_schema
from astrostats.claims.rules import thresholds
from astrostats.claims import AuditedCircuit, finite, quote
from astrostats.claims.verdicts import ClaimVerdict, Evidence, missing

CLAIM_ID = "C3"
STATEMENT = "The agreement is not explained by fitted capacity (the critique's 'overfitting')."
SHORT_NAME = 'overfitting'
#: what new evidence would change the verdict (the report shows it beside the verdict)
WOULD_CHANGE = ('The capacity nulls (the same budget fitted to shuffled targets) must converge under the training '
                'budget for the rule to count them: longer training (the full profile) or closed-form fits would turn '
                'INCONCLUSIVE into SUPPORTED if the circuit still beats them; a converged null that matches the '
                "circuit's held-out error would make it NOT_SUPPORTED. A fitted null that fails to learn is refit "
                "(longer, another initialisation, L-BFGS); one that never learns is a limitation, and a way of "
                "fitting it that learns could move the verdict either way.")
TESTS, ACCOUNTING, CURVES = "_tests", "_accounting", "_learning_curves"  # suffixes after the run's name
TEST_COLUMNS = {"family", "control", "m", "split", "margin", "alpha"}
RULE_TEMPLATE = (
    "Pre-registered (analyses/overfitting.toml): family 'primary' of {tests} (every run's *_tests table; runs "
    "that disagree make the claim INCONCLUSIVE) = capacity nulls (controls with the "
    "circuit's budget of m*d parameters fitted to shuffled targets) and specificity nulls (the circuit on another "
    "head's q, k; on another sequence's k, v) against the circuit at the largest m, on held-out and out-of-"
    "distribution sequences. Per comparison: ratio = mean null error / mean circuit error, 95 % hierarchical-"
    "bootstrap CI; one-sided paired bootstrap-t p (H0: mean of e_null - (1 + {margin}) e_circuit = 0), Holm across the family. "
    "SUPPORTED if every primary comparison has Holm p < {alpha}, CI low > {threshold} and a converged control. "
    "NOT_SUPPORTED if any has CI high < {threshold}. INCONCLUSIVE otherwise. Efficiency (controls fitted to the "
    "true target) and construction are reported apart and do not decide.")
RULE_V2 = (
    "Amendment v2 (analyses/overfitting.toml [[amendments]], 2026-12-01; decides; the original pre-registration "
    "v1 is judged and reported beside it): family 'primary_v2' of {tests} at the largest m. Deciding comparisons: "
    "the closed-form capacity null (ridge_shuffled: least-squares optimum on fixed random features with the "
    "circuit's m*d budget, fitted to shuffled targets), the specificity nulls (mismatched_target, shuffled_kv), "
    "and each fitted v2 null (started from a W independent of the circuit's, early-stopped on validation) whose "
    "status is converged; a flagged fitted null is reported and decides nothing. Every null is floored at the "
    "best constant predictor (training-mean output). Ratio CI: bootstrap crossed over sequences and feature draws. "
    "SUPPORTED if the circuit has 0 parameters fitted to the target and every deciding comparison has Holm p < "
    "{alpha} and CI low > {threshold}. NOT_SUPPORTED if the circuit has parameters fitted to the target or any "
    "deciding comparison has CI high < {threshold}. INSUFFICIENT_DATA below {draws} feature draws. INCONCLUSIVE "
    "otherwise.")
V2_FAMILY = "primary_v2"
V2_FITTED_NULLS = ("learned_feature_v2_shuffled", "fitted_mlp_v2_shuffled")
CONSTRUCTION = ("(b) construction: with W ~ N(0, I), E[phi(q)·phi(k)] = exp(q·k) exactly, so agreement at large m "
                "follows from the circuit being an unbiased Monte-Carlo estimator of the softmax kernel: "
                "evidence about random features, not about astrocytes.")
#: the tables the rule reads (checked before it judges)
SCHEMAS = {TESTS: table_schema(
    {"family", "control", "ratio", "p_value_adjusted", "margin"},
    number("m", minimum=1), number("ratio"), number("ci_low"), number("ci_high"), number("margin", minimum=0),
    probability("p_value_adjusted"), probability("alpha")),
    ACCOUNTING: table_schema({"circuit", "n_fitted", "n_fixed_random"}, number("n_fitted", minimum=0),
                             number("n_fixed_random", minimum=0), number("n_input_determined", minimum=0)),
    c3_refits.REFITS: c3_refits.SCHEMA}


def rule(tests: pd.DataFrame | None = None, name: str = f"*{TESTS}") -> str:
    """The rule with the margin and alpha of the primary rows (the registered ones; defaults without a table)."""
    margins, alphas = [0.10], [0.05]
    if tests is not None and not tests.empty and TEST_COLUMNS <= set(tests.columns):
        primary = tests[tests["family"] == "primary"]
        if not primary.empty:
            margins = sorted(set(primary["margin"].astype(float)))
            alphas = sorted(set(primary["alpha"].astype(float)))
    return RULE_TEMPLATE.format(tests=name, margin="/".join(f"{m:g}" for m in margins),
                                alpha="/".join(f"{a:g}" for a in alphas),
                                threshold="/".join(f"{1 + m:g}" for m in margins))


def runs(tables: dict) -> list[str]:
    """Names (prefixes) of the overfitting runs present: a non-empty ``<name>_tests`` table with primary rows
    and the comparison columns, beside a non-empty ``<name>_accounting``."""
    found = []
    for name, table in sorted(tables.items()):
        if not name.endswith(TESTS) or table is None or table.empty or not TEST_COLUMNS <= set(table.columns):
            continue
        prefix = name[:-len(TESTS)]
        accounting = tables.get(prefix + ACCOUNTING)
        if table["family"].isin(["primary", V2_FAMILY]).any() and accounting is not None and not accounting.empty:
            found.append(prefix)
    return found


def _query(row: pd.Series) -> str:
    return (f"family == {quote(row['family'])} and control == {quote(row['control'])} and m == {int(row['m'])} "
            f"and split == {quote(row['split'])}")


def _evidence(table: str, row: pd.Series, note: str) -> Evidence:
    return Evidence(table, _query(row), "error ratio (control / circuit)", finite(row.get("ratio")),
                    p_value=finite(row.get("p_value_adjusted")), ci_low=finite(row.get("ci_low")),
                    ci_high=finite(row.get("ci_high")),
                    effect=f"mean error {row['mean_control']:.3g} vs circuit {row['mean_circuit']:.3g}",
                    note=note)


def _efficiency(name: str, tests: pd.DataFrame) -> list[Evidence]:
    rows = tests[tests["family"] == "efficiency"]
    if rows.empty:
        return []
    largest = rows[rows["m"] == rows["m"].max()]
    return [_evidence(name, row, f"(a) efficiency, reported apart: {row['control']} fitted to the true target "
                                 f"(two-sided, Holm p; training status {row['control_status']})")
            for _, row in largest.iterrows()]


def _gap_concerns(curves: pd.DataFrame | None) -> list[str]:
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


def judge(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> ClaimVerdict:
    found = runs(tables)
    if not found:
        return missing(CLAIM_ID, STATEMENT, rule(), tables, ["overfitting" + TESTS, "overfitting" + ACCOUNTING],
                       "overfitting") or ClaimVerdict(
            CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", rule(),
            reason=f"no *{TESTS} table holds 'primary' comparisons beside its *{ACCOUNTING} table")
    verdicts = [_judge_run(prefix, tables, circuit) for prefix in found]
    if len(verdicts) == 1:
        return verdicts[0]
    outcomes = {prefix: verdict.verdict for prefix, verdict in zip(found, verdicts)}
    agreed = len(set(outcomes.values())) == 1
    first = verdicts[0]
    return ClaimVerdict(
        CLAIM_ID, STATEMENT, first.verdict if agreed else "INCONCLUSIVE",
        rule(pd.concat([tables[p + TESTS] for p in found], ignore_index=True)),
        tuple(e for v in verdicts for e in v.evidence),
        ("; ".join(f"{p}: {v.reason}" for p, v in zip(found, verdicts)) if agreed
         else "the overfitting runs disagree: " + ", ".join(f"{p} {v}" for p, v in outcomes.items())),
        major_concerns=tuple(c for v in verdicts for c in v.major_concerns),
        minor_concerns=tuple(dict.fromkeys(c for v in verdicts for c in v.minor_concerns)),
        headline="; ".join(f"{p}: {v.headline}" for p, v in zip(found, verdicts) if v.headline),
        details={"runs": {p: v.details for p, v in zip(found, verdicts)}, "verdicts": outcomes})



RULE = rule()  # the rule as registered, before a run's tables fill in its margin and alpha

def rule_v2(tests: pd.DataFrame | None = None, name: str = f"*{TESTS}") -> str:
    """Amendment v2's rule with the margin, alpha and minimum draws of its rows (defaults without a table)."""
    margins, alphas, draws = [0.10], [0.05], [4]
    if tests is not None and not tests.empty and TEST_COLUMNS <= set(tests.columns):
        rows = tests[tests["family"] == V2_FAMILY]
        if not rows.empty:
            margins = sorted(set(rows["margin"].astype(float)))
            alphas = sorted(set(rows["alpha"].astype(float)))
            if "min_feature_draws" in rows:
                draws = sorted(set(rows["min_feature_draws"].astype(int)))
    return RULE_V2.format(tests=name, alpha="/".join(f"{a:g}" for a in alphas),
                          threshold="/".join(f"{1 + m:g}" for m in margins), draws="/".join(map(str, draws)))


#: fitted models (controls and capacity nulls): what could have learned the circuit's agreement
FITTED = ("learned_feature", "fitted_mlp", "ridge")


def _construction(evidence) -> str:
    """What decides first: the circuit fits nothing to the target, so its agreement holds by construction."""
    counts = [e.value for e in evidence if e.statistic == "parameters fitted to the target" and e.value is not None]
    if not counts:
        return "fitted-parameter count of the circuit not recorded"
    fitted = int(max(counts))
    return ("holds by construction (0 fitted parameters: nothing of the target is fitted)" if fitted == 0 else
            f"{fitted} parameters fitted to the target")


def _fitted_nulls_reaching(tests: pd.DataFrame, refit_table: bool = False) -> str:
    """Every fitted model whose error the comparisons do not show above the circuit's (ratio CI low <= 1), in the
    families at the deciding m (primary, the efficiency controls and the secondary heads; the other-m families are
    in the tables), per model and family with its lowest ratio, and those that failed to learn."""
    fitted = tests[tests["control"].astype(str).str.startswith(FITTED)]
    reaching = fitted[(pd.to_numeric(fitted["ci_low"], errors="coerce") <= 1.0)
                      & ~fitted["family"].astype(str).str.contains("other_m")]
    named = []
    for (control, family), part in reaching.groupby(["control", "family"], sort=True):
        lowest = part.loc[part["ratio"].astype(float).idxmin()]
        named.append(f"{control} in {family} ({len(part)} comparison{'s' * (len(part) > 1)}, lowest ratio "
                     f"{lowest['ratio']:.2f} [{lowest['ci_low']:.2f}, {lowest['ci_high']:.2f}] at m={int(lowest['m'])})")
    text = ("fitted models reaching the circuit's error: " + "; ".join(named)) if named else \
        "no fitted model reaches the circuit's error"
    if "control_status" in fitted and not refit_table:  # with a refit table its sentence says it, per null
        failed = sorted(set(fitted.loc[fitted["control_status"] == "failed_to_learn", "control"]))
        if failed:
            text += f"; failed to learn (a limitation, not deciding): {', '.join(failed)}"
    return text


def _judge_run(prefix: str, tables: dict, circuit: AuditedCircuit) -> ClaimVerdict:
    """Amendment v2 where the run has its rows (v1 reported beside it), else the original rule (v1)."""
    tests = tables[prefix + TESTS]
    has_v1 = (tests["family"] == "primary").any()
    original = _judge_run_v1(prefix, tables, circuit) if has_v1 else None
    if not (tests["family"] == V2_FAMILY).any():
        if original is None:
            return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", rule(), reason="no primary rows")
        return ClaimVerdict(**{**original.__dict__, "minor_concerns": original.minor_concerns + (
            "judged by the original pre-registration (v1) only: the run has no amendment v2 rows",),
            "details": {**original.details, "v1": original.verdict}})
    amended = _judge_run_v2(prefix, tables, circuit)
    refits = tables.get(prefix + c3_refits.REFITS)
    refit_text = c3_refits.sentence(refits, tests)
    if original is None:
        return ClaimVerdict(**{**amended.__dict__, "headline": "; ".join(
            part for part in (amended.headline, refit_text) if part)})
    v1_note = (f"original pre-registration (v1), kept as the original result: {original.verdict} "
               f"({original.reason}; {original.headline})")
    return ClaimVerdict(**{**amended.__dict__,
                           "evidence": amended.evidence + tuple(
                               e for e in original.evidence if e.table == prefix + TESTS and "v1" in e.note),
                           "headline": (f"{_construction(amended.evidence)}; pre-registered v1: {original.verdict}; "
                                        f"amendment v2: {amended.verdict} ({amended.headline}); "
                                        f"{_fitted_nulls_reaching(tests, refits is not None)}"
                                        + (f"; {refit_text}" if refit_text else "")),
                           "minor_concerns": amended.minor_concerns + (v1_note,),
                           "details": {**amended.details, "v1": original.verdict, "v1_reason": original.reason,
                                       "v2": amended.verdict}})


def _judge_run_v2(prefix: str, tables: dict, circuit: AuditedCircuit) -> ClaimVerdict:
    """Amendment v2 applied to one run's ``<prefix>_tests`` and ``<prefix>_accounting``."""
    tests_name, accounting_name = prefix + TESTS, prefix + ACCOUNTING
    tests = tables[tests_name]
    stated = rule_v2(tests, tests_name)
    rows = tests[tests["family"] == V2_FAMILY]
    threshold = 1.0 + rows["margin"].astype(float)
    fitted_null = rows["control"].isin(V2_FITTED_NULLS)
    flagged = fitted_null & (rows["control_status"] != "ok")
    computable = rows["status"].isin(["ok", "control_flagged"])
    deciding = computable & ~flagged
    accounting = _accounting_evidence(accounting_name, tables[accounting_name], int(rows["m"].max()), circuit)
    fitted_to_target = [e for e in accounting if (e.value or 0) > 0]
    minimum = int(rows["min_feature_draws"].max()) if "min_feature_draws" in rows else 1
    draws = int(rows.loc[deciding & ~fitted_null, "n_seeds"].min()) if (deciding & ~fitted_null).any() else 0
    evidence = [_evidence(tests_name, row, "primary v2" + (
        " (replaced by the best constant predictor)" if bool(row.get("replaced_by_constant", False)) else "")
        + (f" (reported, not deciding: training status {row['control_status']})" if is_flagged else "")
        + (f" ({row['status']}: {row['reason']})" if row["status"] not in ("ok", "control_flagged") else ""))
        for (_, row), is_flagged in zip(rows.iterrows(), flagged)]
    evidence += accounting
    evidence += _efficiency(tests_name, tests)
    if not accounting or not (deciding & ~fitted_null).any() or (draws < minimum and not fitted_to_target):
        why = ("the circuit's count of parameters fitted to the target is not recorded at the largest m (a circuit "
               "declares it with register_circuit(..., resources=...))"
               if not accounting else
               f"{draws} feature draw(s) in the deciding comparisons; the rule needs at least {minimum}"
               if (deciding & ~fitted_null).any() else "no closed-form or specificity comparison could be computed")
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", stated, tuple(evidence), why,
                            details={"rule_version": 2})
    fails = deciding & (rows["ci_high"] < threshold)
    verdict = _v2_verdict(rows, deciding, threshold, bool(fitted_to_target))
    if verdict == "INSUFFICIENT_DATA":
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", stated, tuple(evidence),
                            _unreachable_significance(rows[deciding]), details={"rule_version": 2})
    if fitted_to_target:
        reason = (f"the circuit has {fitted_to_target[0].value:g} parameters fitted to the target: its agreement "
                  "may be fitted")
    elif verdict == "NOT_SUPPORTED":
        reason = ("at the largest m some null comes within the margin of the circuit or beats it: "
                  + "; ".join(f"{r['control']} on {r['split']} (ratio {r['ratio']:.2f}, CI high {r['ci_high']:.2f})"
                              for _, r in rows[fails].iterrows()))
    elif verdict == "SUPPORTED":
        reason = ("the circuit fits no parameter to the target, and every deciding capacity and specificity null "
                  "is worse than it by more than the margin on held-out and out-of-distribution sequences, "
                  "after Holm correction, over sequences and feature draws")
    else:
        reason = "no deciding null comes within the margin, but not every one clears it"
    rescued = c3_refits.rescued(tables.get(prefix + c3_refits.REFITS))
    by_refit = deciding & pd.Series([(c, int(m)) in rescued for c, m in zip(rows["control"], rows["m"])],
                                    index=rows.index, dtype=bool)
    without = _v2_verdict(rows, deciding & ~by_refit, threshold, bool(fitted_to_target)) if by_refit.any() else verdict
    finding = [] if without == verdict else [
        f"finding: the refit nulls decide C3: with them {verdict}, without them (as before the refit ladder) "
        f"{without}: " + ", ".join(sorted({f"{r['control']} at m={int(r['m'])}" for _, r in rows[by_refit].iterrows()}))]
    decided = rows[deciding]
    worst = decided.loc[decided["ratio"].idxmin()] if decided["ratio"].notna().any() else None
    headline = "" if worst is None else (
        f"smallest deciding null/circuit error ratio at m={int(worst['m'])}: {worst['ratio']:.2f} "
        f"[{worst['ci_low']:.2f}, {worst['ci_high']:.2f}] ({worst['control']}, {worst['split']}, "
        f"{int(worst['n_seeds'])} draws)")
    major = finding + [f"{r['control']} on {r['split']}: {r['status']} ({r['reason']})"
                       for _, r in rows[~computable].iterrows()]
    minor = [f"{r['control']} on {r['split']}: training status {r['control_status']}, reported, not deciding"
             for _, r in rows[flagged].iterrows()]
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, stated, tuple(evidence), reason, major_concerns=tuple(major),
                        minor_concerns=tuple(minor) + tuple(_gap_concerns(tables.get(prefix + CURVES)))
                        + (CONSTRUCTION,), headline=headline,
                        details={"rule_version": 2, "construction": CONSTRUCTION, "verdict_without_refits": without,
                                 "refit_rescued": sorted(f"{c} at m={m}" for c, m in rescued),
                                 "replaced_by_constant": sorted(set(rows.loc[rows.get(
                                     "replaced_by_constant", pd.Series(False, index=rows.index)).fillna(False)
                                     .astype(bool), "control"]))})


def _v2_verdict(rows: pd.DataFrame, deciding: pd.Series, threshold: pd.Series, fitted_to_target: bool) -> str:
    """Amendment v2's verdict from the deciding comparisons (computable ones, the circuit's count recorded)."""
    passes = deciding & (rows["p_value_adjusted"] < rows["alpha"]) & (rows["ci_low"] > threshold)
    fails = deciding & (rows["ci_high"] < threshold)
    if _unreachable_significance(rows[deciding]) and not fitted_to_target and not fails.any():
        return "INSUFFICIENT_DATA"
    if fitted_to_target or fails.any():
        return "NOT_SUPPORTED"
    return "SUPPORTED" if passes[deciding].all() else "INCONCLUSIVE"


MIN_MEAN_TEST_SEQUENCES = thresholds(CLAIM_ID)["min_mean_test_sequences"]  # the bootstrap-t mean test is calibrated
# from here up (calibration study: n = 20)


def _unreachable_significance(rows: pd.DataFrame) -> str:
    """Why the deciding comparisons cannot be trusted to reach Holm p < alpha, or "" (missing data, not
    ambiguity): an exact sign-flip test over n sequences cannot give p below 2^-n, so k comparisons need
    k * 2^-n < alpha; the bootstrap-t mean test needs MIN_MEAN_TEST_SEQUENCES held-out sequences."""
    if rows.empty or "method" not in rows:
        return ""
    k, n = len(rows), int(rows["n_sequences"].min())
    alpha = float(rows["alpha"].min())
    methods = rows["method"].astype(str)
    if methods.str.contains("sign-flip").all() and k * 2.0 ** -n >= alpha:
        return (f"with {n} sequences a sign-flip test cannot give p below 2^-{n}, so {k} Holm-corrected comparisons "
                f"cannot reach p < {alpha:g}: the rule needs more held-out sequences")
    if methods.str.contains("bootstrap-t").any() and n < MIN_MEAN_TEST_SEQUENCES:
        return (f"{n} held-out sequences: the bootstrap-t mean test needs at least {MIN_MEAN_TEST_SEQUENCES} "
                "(its calibrated range); the rule needs more held-out sequences")
    return ""


def _judge_run_v1(prefix: str, tables: dict, circuit: AuditedCircuit) -> ClaimVerdict:
    """The original rule (v1) applied to one run's ``<prefix>_tests`` and ``<prefix>_accounting``."""
    tests_name, accounting_name = prefix + TESTS, prefix + ACCOUNTING
    tests = tables[tests_name]
    stated = rule(tests, tests_name)
    primary = tests[tests["family"] == "primary"]
    threshold = 1.0 + primary["margin"].astype(float)
    usable = primary["status"].isin(["ok", "control_flagged"])
    passes = (primary["status"] == "ok") & (primary["p_value_adjusted"] < primary["alpha"]) & (primary["ci_low"] > threshold)
    fails = usable & (primary["ci_high"] < threshold)
    if not usable.any():
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", stated,
                            reason=f"no primary comparison of {tests_name} could be computed (see status/reason)")
    verdict = "NOT_SUPPORTED" if fails.any() else "SUPPORTED" if passes.all() else "INCONCLUSIVE"
    evidence = [_evidence(tests_name, row, "primary v1" + ("" if row["status"] == "ok"
                                                         else f" ({row['status']}: {row['reason']})"))
                for _, row in primary.iterrows()]
    evidence += _accounting_evidence(accounting_name, tables[accounting_name], int(primary["m"].max()), circuit)
    efficiency = _efficiency(tests_name, tests)
    evidence += efficiency
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
                        minor_concerns=tuple(_gap_concerns(tables.get(prefix + CURVES))) + (CONSTRUCTION,),
                        headline=headline,
                        details={"efficiency": [e.to_dict() for e in efficiency], "construction": CONSTRUCTION})


def _accounting_evidence(name: str, accounting: pd.DataFrame, m: int, circuit: AuditedCircuit) -> list[Evidence]:
    """The circuit's fitted-parameter count on the primary head at the m the primary comparisons cite."""
    conditions = (["role == 'primary'"] if "role" in accounting else []) + [f"circuit == {circuit.name!r}", f"m == {m}"]
    query = " and ".join(conditions)
    rows = accounting.query(query)
    if rows.empty or rows["n_fitted"].isna().any():  # a circuit that declares no counts: not recorded
        return []
    return [Evidence(name, query, "parameters fitted to the target", float(rows["n_fitted"].max()),
                     note=f"fixed random {int(rows['n_fixed_random'].max())} and input-determined "
                          f"{int(rows['n_input_determined'].max())} at m={m}")]
