"""C7: what the astrocyte buys. The astrocyte circuit against neurons-only circuits at equal error.

Applies the rule pre-registered in analyses/circuits.toml to the ``*_tests`` tables of a circuits run (found
by their columns, so a copied spec under another name is judged too): per head and comparator, the ratio of
the plastic synapses a neurons-only circuit needs for the registered error to those the astrocyte circuit
needs, with its bootstrap CI and Holm-adjusted p. Threshold, alpha and margin are read from the rows (what
the run registered). A run whose pre-registration hash is not the one registered here is judged all the
same and flagged as a major concern (an undeclared amendment). The known-answer
tables that validate this rule are built apart from it (astrostats.studies.planted).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from astrostats.claims.schemas import number, probability, table_schema
from astrostats.claims import AuditedCircuit, finite, quote
from astrostats.claims.verdicts import ClaimVerdict, Evidence

CLAIM_ID = "C7"
STATEMENT = ("What the astrocyte buys: for the same error, no neurons-only circuit whose cells respect the "
             "interneuron input limit needs fewer plastic synapses than the astrocyte circuit.")
REGISTERED_SHA256 = "de3fdb97a84eaa9fc7651dd076003b444bbcf1be28a82076b072ac4d2eb4f357"  # analyses/circuits.toml
#: amendment v2 (analyses/circuits.toml [[amendments]], 2026-12-06): co-primary resources, the rule combining them
AMENDMENT_SHA256 = "f74107368bdb7c9175865b9e8fbea97fa01d52442acda96b89d2ba3642683e5d"
COPRIMARY_PREFIX = "coprimary_"
SHORT_NAME = 'what the astrocyte buys'
#: what new evidence would change the verdict (the report shows it beside the verdict)
WOULD_CHANGE = ("The verdict rests on the registered comparisons at equal error: a neurons-only circuit whose "
                "resource-ratio CI lies below the margin makes it NOT_SUPPORTED, every comparator's CI above it "
                "SUPPORTED (amendment v2: on every co-primary resource); contexts longer than the swept N (the "
                "memory's cells grow with N), or an astrocyte circuit that reaches the error within the swept m where "
                "its ratios are now censored bounds, are what could move it.")
TEST_COLUMNS = {"family", "analysed_head", "comparator", "reference", "resource", "epsilon", "threshold", "ci_low",
                "ci_high", "p_value_adjusted", "alpha", "status"}
RULE = ("Pre-registered (analyses/circuits.toml, [preregistration] sha256 " + REGISTERED_SHA256[:12] + "...): in every "
        "*_tests table of a circuits run, family 'primary' = every neurons-only comparator (interneuron pool as a tree "
        "of partial sums or one sampling cell, at each input limit; dense associative memory, merging or dropping "
        "memories; Hebbian read-out without normaliser) on every head, synthetic and real. Per comparison: ratio of "
        "the plastic synapses needed for mean relative error epsilon (0.10), comparator / astrocyte circuit, by "
        "log-log interpolation between swept m (bounds where censored), 95 % hierarchical-bootstrap CI; one-sided "
        "bootstrap p of ratio > 1 / (1 + margin) (margin 0.10), Holm across the family. SUPPORTED if every "
        "comparison is computable with Holm p < alpha (0.05) and CI low > 1 / (1 + margin). NOT_SUPPORTED if any "
        "computable comparison has CI high < 1 / (1 + margin). INSUFFICIENT_DATA if none is computable (fewer than "
        "4 sequences or 3 values of m). INCONCLUSIVE otherwise. Cells and hidden neurons: secondary families, "
        "reported apart, never deciding. Amendment v2 (2026-12-06, sha256 " + AMENDMENT_SHA256[:12] + "...; decides "
        "where the run has its rows; v1's verdict stays reported): every comparison at each swept context length N; "
        "total cells and plastic synapses written per token co-primary beside plastic synapses, each judged by the "
        "v1 rule on its own Holm family; NOT_SUPPORTED if some comparator on some head at some N has CI high < "
        "1 / (1 + margin) on every co-primary resource, SUPPORTED if every co-primary family is SUPPORTED, "
        "INSUFFICIENT_DATA if none is computable, INCONCLUSIVE otherwise. A censored ratio is a bound "
        "(ratio <= x or >= x) and decides only on its bounded side.")
CAVEATS = (
    "The dense associative memory allocates one hidden unit per stored token (units_allocated_per_token 1, the "
    "astrocyte circuit's 0: stated, not tested, a ratio to 0 being undefined), so its cells grow with the context "
    "N where the astrocyte circuit's m does not: the comparisons are made at each swept N, and shorter contexts "
    "favour the memory.",
    "Where a circuit first reaches the error at a width where it is exact (near-zero error), log-log interpolation "
    "puts its need near the width before; the true need lies between the two widths, whose resources the "
    "accounting table lists.",
    "The output neurons of every circuit with m hidden units integrate all m of them; the interneuron input limit "
    "is applied to the normalising cells, which is what replacing the astrocyte changes.",
)
#: the table the rule reads (checked before it judges)
SCHEMAS = {"_tests": table_schema(
    TEST_COLUMNS, number("threshold", minimum=0), number("ci_low"), number("ci_high"),
    probability("p_value_adjusted"), probability("alpha"))}


def runs(tables: dict) -> list[str]:
    """Names of the tables holding 'primary' equal-resource comparisons."""
    return [name for name, table in sorted(tables.items())
            if name.endswith("_tests") and table is not None and not table.empty and TEST_COLUMNS <= set(table.columns)
            and (table["family"] == "primary").any()]


def _query(row: pd.Series) -> str:
    return (f"family == {quote(row['family'])} and analysed_head == {quote(row['analysed_head'])} and "
            f"comparator == {quote(row['comparator'])}")


def _bounds(low, high) -> str:
    low, high = float(low), float(high)
    return f"{low:.3g}" if low == high else f"[{low:.3g}, {high:.3g}]"


def _bound(value) -> float | None:
    """A CI bound, infinite where censoring leaves it open (the audit prints inf), None where not computed."""
    value = pd.to_numeric(value, errors="coerce")
    return None if pd.isna(value) else float(value)


def censored_bound(row: pd.Series) -> tuple[str, str]:
    """(kind, statement) of a comparison's ratio: kind "none" (a point ratio with its CI), "upper" (only
    "ratio <= CI high": the comparator's need is below the swept m or the astrocyte circuit's above it),
    "lower" ("ratio >= CI low"), "unbounded", or "" when not computed. A censored ratio is never a point estimate.
    Read from the table's ``censored`` column where the run wrote one, else from ratio_low / ratio_high."""
    if row.get("status") != "ok":
        return "", ""
    kind = row.get("censored")
    if not isinstance(kind, str) or not kind:
        low, high = _bound(row.get("ratio_low")), _bound(row.get("ratio_high"))
        if low is None or high is None:
            return "", ""
        kind = ("none" if low == high else "lower" if low > 0 and np.isinf(high)
                else "upper" if low == 0 and np.isfinite(high) else "unbounded")
    ci_low, ci_high = _bound(row.get("ci_low")), _bound(row.get("ci_high"))
    why = row.get("censored_why")
    why = f" (censored: {why})" if isinstance(why, str) and why else " (censored)"
    if kind == "none":
        return kind, f"ratio {float(row['statistic']):.3g} [{ci_low:.3g}, {ci_high:.3g}]"
    if kind == "upper":
        return kind, f"ratio <= {ci_high:.3g}{why}"
    if kind == "lower":
        return kind, f"ratio >= {ci_low:.3g}{why}"
    return kind, f"ratio undetermined{why}"


def _evidence(name: str, row: pd.Series) -> Evidence:
    kind, bound = censored_bound(row)
    needs = ("" if row["status"] != "ok" else f"{bound}; needs "
             f"{_bounds(row['comparator_required_low'], row['comparator_required_high'])} {row['resource']} against "
             f"the astrocyte circuit's {_bounds(row['reference_required_low'], row['reference_required_high'])}")
    value = finite(row.get("statistic")) if kind in ("none", "") else None  # a bound is never a point estimate
    n_tokens = row.get("n_tokens")
    at_n = "" if n_tokens is None or pd.isna(n_tokens) else f", N = {int(n_tokens)}"
    return Evidence(name, _query(row), f"{row['resource']} ratio ({row['comparator']} / {row['reference']}) at "
                                       f"error {row['epsilon']:g}" + (f", {bound.split(' (')[0]}" if kind not in
                                                                      ("none", "") else ""),
                    value if value is not None else float("nan"), p_value=finite(row.get("p_value_adjusted")),
                    ci_low=_bound(row.get("ci_low")), ci_high=_bound(row.get("ci_high")), effect=needs,
                    note=f"{row['analysed_head']}{at_n} ({row['family']})" + (
                        "" if row["status"] == "ok" else f" ({row['status']}: {row['reason']})"))


def judge(tables: dict, circuit: AuditedCircuit = AuditedCircuit()) -> ClaimVerdict:
    found = runs(tables)
    unpriced = [name for name, table in tables.items() if name.endswith("_accounting") and "fan_in_limit" in table
                and circuit.name not in set(table["circuit"])]
    if not found and unpriced and not circuit.is_default:
        return ClaimVerdict(CLAIM_ID, STATEMENT, "NOT_TESTABLE", RULE, reason=(
            f"the circuit under audit ({circuit.name}) declares no resources, so no comparison at equal resources "
            f"can price it ({', '.join(unpriced)} lists the others); register it with resources=... to test C7"))
    if not found:
        return ClaimVerdict(CLAIM_ID, STATEMENT, "INSUFFICIENT_DATA", RULE,
                            reason="no *_tests table with 'primary' equal-resource comparisons: run "
                                   "`python -m astrostats.analyze circuits`",
                            analyses_needed=("circuits (tables circuits_tests, circuits_accounting)",))
    verdicts = [_judge_run(name, tables[name]) for name in found]
    if len(verdicts) == 1:
        return verdicts[0]
    outcomes = {name: verdict.verdict for name, verdict in zip(found, verdicts)}
    agreed = len(set(outcomes.values())) == 1
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdicts[0].verdict if agreed else "INCONCLUSIVE", RULE,
                        tuple(e for v in verdicts for e in v.evidence),
                        "; ".join(f"{n}: {v.reason}" for n, v in zip(found, verdicts)) if agreed
                        else "the circuits runs disagree: " + ", ".join(f"{n} {v}" for n, v in outcomes.items()),
                        major_concerns=tuple(c for v in verdicts for c in v.major_concerns),
                        minor_concerns=tuple(dict.fromkeys(c for v in verdicts for c in v.minor_concerns)),
                        headline="; ".join(v.headline for v in verdicts if v.headline), details={"verdicts": outcomes})


def decide(primary: pd.DataFrame) -> tuple[str, pd.Series, pd.Series]:
    """The verdict of the rule on the primary rows, with the rows that pass and the rows that fail it."""
    usable = primary["status"] == "ok"
    threshold = primary["threshold"].astype(float)
    passes = usable & (primary["p_value_adjusted"] < primary["alpha"]) & (primary["ci_low"] > threshold)
    fails = usable & (primary["ci_high"] < threshold)
    if not usable.any():
        return "INSUFFICIENT_DATA", passes, fails
    return ("NOT_SUPPORTED" if fails.any() else "SUPPORTED" if passes.all() else "INCONCLUSIVE"), passes, fails


def _judge_run(name: str, tests: pd.DataFrame) -> ClaimVerdict:
    """The pre-registered rule (v1, family "primary"); where the run has co-primary rows, amendment v2 decides and
    v1's verdict stays stated beside it."""
    original = _judge_v1(name, tests)
    families = sorted(f for f in set(tests["family"]) if str(f).startswith(COPRIMARY_PREFIX))
    if not families:
        return original
    return _judge_v2(name, tests, ["primary", *families], original)


def _resource_of(tests: pd.DataFrame, family: str) -> str:
    return str(tests.loc[tests["family"] == family, "resource"].iloc[0])


def _cheapest(rows: pd.DataFrame) -> str:
    """The comparison with the lowest CI high, its ratio stated as a bound where censored."""
    decided = rows[(rows["status"] == "ok") & rows["ci_high"].notna()]
    if decided.empty:
        return "no computable comparison"
    row = decided.loc[decided["ci_high"].idxmin()]
    n_tokens = row.get("n_tokens")
    at_n = "" if n_tokens is None or pd.isna(n_tokens) else f" (N = {int(n_tokens)})"
    return f"cheapest {row['comparator']} on {row['analysed_head']}{at_n}, {censored_bound(row)[1]}"


def _per_n(rows: pd.DataFrame) -> str:
    """Per context length N: how many comparisons show a neurons-only circuit cheaper (CI high below the
    threshold) and the astrocyte circuit cheaper (CI low above it), of those computable."""
    if "n_tokens" not in rows or rows["n_tokens"].isna().all():
        return ""
    parts = []
    for n_tokens, part in rows[rows["status"] == "ok"].groupby("n_tokens", sort=True):
        threshold = part["threshold"].astype(float)
        cheaper = part.loc[part["ci_high"] < threshold, "comparator"].str.split("@").str[0]
        dearer = part.loc[part["ci_low"] > threshold, "comparator"].str.split("@").str[0]
        parts.append(f"N = {int(n_tokens)}: {len(cheaper)} of {len(part)} neurons-only cheaper"
                     + (f" ({', '.join(sorted(set(cheaper)))})" if len(cheaper) else "")
                     + f", {len(dearer)} dearer" + (f" ({', '.join(sorted(set(dearer)))})" if len(dearer) else ""))
    return "; ".join(parts)


def _judge_v2(name: str, tests: pd.DataFrame, families: list[str], original: ClaimVerdict) -> ClaimVerdict:
    """Amendment v2: each co-primary family by the v1 rule; NOT_SUPPORTED where one comparison (comparator,
    head, N) is shown cheaper on every co-primary resource, SUPPORTED where every family is SUPPORTED."""
    outcomes, failing, evidence = {}, [], []
    for family in families:
        rows = tests[tests["family"] == family]
        verdict, passes, fails = decide(rows)
        outcomes[family] = verdict
        failing.append(set(map(tuple, rows.loc[fails, ["analysed_head", "comparator"]].to_numpy().tolist())))
        later = passes if verdict == "INCONCLUSIVE" else ~fails if verdict == "NOT_SUPPORTED" else pd.Series(False, rows.index)
        evidence += [((rows.loc[index, "analysed_head"], rows.loc[index, "comparator"]), _evidence(name, rows.loc[index]))
                     for index in later.sort_values(kind="stable").index]
    dominated = sorted(set.intersection(*failing))
    # the comparisons that decide a NOT_SUPPORTED first, on every resource (the audit shows only the first few)
    evidence = [item for _, item in sorted(evidence, key=lambda pair: pair[0] not in dominated)]
    if all(v == "INSUFFICIENT_DATA" for v in outcomes.values()):
        verdict = "INSUFFICIENT_DATA"
    elif dominated:
        verdict = "NOT_SUPPORTED"
    elif all(v == "SUPPORTED" for v in outcomes.values()):
        verdict = "SUPPORTED"
    else:
        verdict = "INCONCLUSIVE"
    resources_ = {family: _resource_of(tests, family) for family in families}
    stated = "; ".join(f"{resources_[f]}{' (v1, pre-registered)' if f == 'primary' else ''}: {outcomes[f]}, "
                       f"{_cheapest(tests[tests['family'] == f])}" for f in families)
    lengths = _per_n(tests[tests["family"] == "primary"])
    reason = {
        "INSUFFICIENT_DATA": "no co-primary comparison is computable",
        "NOT_SUPPORTED": "a neurons-only circuit needs less of every co-primary resource (" +
                         ", ".join(resources_.values()) + ") for the same error, each CI excluding the claim: " +
                         "; ".join(f"{c} on {h}" for h, c in dominated[:6])
                         + (f"; and {len(dominated) - 6} more (every one in audit.json)" if len(dominated) > 6 else ""),
        "SUPPORTED": "every neurons-only circuit needs at least as much of every co-primary resource as the astrocyte "
                     "circuit (within the margin), on every head at every N, after Holm correction",
        "INCONCLUSIVE": "no neurons-only circuit is shown cheaper on every co-primary resource, but not every "
                        "comparison shows the astrocyte circuit at least as cheap on all of them (a trade-off "
                        "between resources, censored needs or wide CIs)",
    }[verdict]
    reason = (f"amendment v2 (2026-12-06) decides: {reason}. Per resource: {stated}. Pre-registered v1 (plastic "
              f"synapses only): {original.verdict}")
    major = list(original.major_concerns)
    hashes = set(tests.get("amendment_sha256", pd.Series(dtype=str)).dropna())
    if hashes != {AMENDMENT_SHA256}:
        major.append(f"{name} ran under amendment {sorted(hashes) or 'unknown'}, not the declared "
                     f"{AMENDMENT_SHA256[:12]}...: a further amendment must be declared, dated and hashed")
    for family in families[1:]:
        rows = tests[tests["family"] == family]
        major += [f"{family}: {row['comparator']} on {row['analysed_head']}: {row['status']} ({row['reason']})"
                  for _, row in rows[rows["status"] != "ok"].iterrows()]
    headline = (f"v2 {verdict}: {stated}" + (f". Plastic synapses per N: {lengths}" if lengths else "")
                + f". v1 (pre-registered): {original.verdict}")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, tuple(evidence), reason,
                        major_concerns=tuple(dict.fromkeys(major)), minor_concerns=original.minor_concerns,
                        headline=headline, details={**original.details, "v1": original.verdict,
                                                    "v2": {resources_[f]: outcomes[f] for f in families},
                                                    "dominated": [f"{c} on {h}" for h, c in dominated]})


def _judge_v1(name: str, tests: pd.DataFrame) -> ClaimVerdict:
    primary = tests[tests["family"] == "primary"]
    verdict, passes, fails = decide(primary)
    # the rows that decided first, as the audit shows only the first few: the failing comparisons of a
    # NOT_SUPPORTED, the undecided ones of an INCONCLUSIVE (citation order otherwise)
    later = passes if verdict == "INCONCLUSIVE" else ~fails if verdict == "NOT_SUPPORTED" else pd.Series(False, primary.index)
    evidence = tuple(_evidence(name, primary.loc[index]) for index in later.sort_values(kind="stable").index)
    if verdict == "INSUFFICIENT_DATA":
        reasons = "; ".join(sorted(set(primary["reason"].astype(str))))
        return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, reason=f"no primary comparison of {name} is "
                                                                        f"computable: {reasons}")
    major = []
    hashes = set(tests.get("preregistration_sha256", pd.Series(dtype=str)).dropna())
    if hashes != {REGISTERED_SHA256}:
        major.append(f"{name} ran under pre-registration {sorted(hashes) or 'unknown'}, not the registered "
                     f"{REGISTERED_SHA256[:12]}...: an amendment must be declared, dated and hashed")
    major += [f"{row['comparator']} on {row['analysed_head']}: {row['status']} ({row['reason']})"
              for _, row in primary[primary["status"] != "ok"].iterrows()]
    minor = [f"{row['family']}: {row['comparator']} on {row['analysed_head']} needs {row['resource']} "
             f"{censored_bound(row)[1]} of the astrocyte circuit's"
             for _, row in tests[tests["family"].astype(str).str.startswith("secondary") & (tests["status"] == "ok")].iterrows()
             if np.isfinite(row["ci_high"])] + list(CAVEATS)
    failed = primary[fails]
    reason = {
        "SUPPORTED": "every neurons-only circuit needs at least as many plastic synapses as the astrocyte circuit "
                     "(within the margin) for the same error, on every head, after Holm correction",
        "NOT_SUPPORTED": "a neurons-only circuit needs fewer plastic synapses for the same error, CI excluding the "
                         "claim: " + "; ".join(f"{r['comparator']} on {r['analysed_head']} (ratio CI high "
                                               f"{r['ci_high']:.3g})" for _, r in failed.iterrows()),
        "INCONCLUSIVE": "no neurons-only circuit is shown cheaper, but not every comparison shows the astrocyte "
                        "circuit at least as cheap (censored needs, wide CIs or comparisons not computable)",
    }[verdict]
    decided = primary[primary["status"] == "ok"]
    cheapest = decided.loc[decided["ci_high"].idxmin()] if decided["ci_high"].notna().any() else None
    headline = "" if cheapest is None else (
        f"cheapest neurons-only circuit: {cheapest['comparator']} on {cheapest['analysed_head']}, "
        f"{cheapest['resource']} {censored_bound(cheapest)[1]} of the astrocyte circuit's at "
        f"{cheapest['epsilon']:.0%} error")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, evidence, reason, major_concerns=tuple(major),
                        minor_concerns=tuple(minor), headline=headline,
                        details={"passes": int(passes.sum()), "fails": int(fails.sum()), "comparisons": len(primary)})


__all__ = ["CLAIM_ID", "STATEMENT", "RULE", "REGISTERED_SHA256", "AMENDMENT_SHA256", "judge", "decide", "runs",
           "censored_bound"]
