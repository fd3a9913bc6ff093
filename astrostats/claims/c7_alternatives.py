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
SHORT_NAME = 'what the astrocyte buys'
#: what new evidence would change the verdict (the report shows it beside the verdict)
WOULD_CHANGE = ("The verdict rests on the registered comparisons at equal error: a neurons-only circuit whose "
                "resource-ratio CI lies below the margin makes it NOT_SUPPORTED, every comparator's CI above it "
                "SUPPORTED; longer contexts (the memory's cost grows with N) and m beyond the interneuron fan-in "
                "limit are what could move it.")
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
        "reported apart, never deciding.")
CAVEATS = (
    "The dense associative memory allocates one hidden unit per stored token, so it grows with the context, where "
    "the astrocyte circuit's m does not depend on N: at the short contexts measured here that favours the memory.",
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


def _evidence(name: str, row: pd.Series) -> Evidence:
    needs = ("" if row["status"] != "ok" else ("ratio undetermined (censored needs): " if pd.isna(row["statistic"]) else "") +
             f"needs {_bounds(row['comparator_required_low'], row['comparator_required_high'])} {row['resource']} "
             f"against the astrocyte circuit's {_bounds(row['reference_required_low'], row['reference_required_high'])}")
    value = finite(row.get("statistic"))
    return Evidence(name, _query(row), f"{row['resource']} ratio ({row['comparator']} / {row['reference']}) at "
                                       f"error {row['epsilon']:g}",
                    value if value is not None else float("nan"), p_value=finite(row.get("p_value_adjusted")),
                    ci_low=_bound(row.get("ci_low")), ci_high=_bound(row.get("ci_high")), effect=needs,
                    note=f"{row['analysed_head']}" + ("" if row["status"] == "ok" else f" ({row['status']}: {row['reason']})"))


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
    minor = [f"{row['family']}: {row['comparator']} on {row['analysed_head']} needs {row['resource']} ratio CI "
             f"[{row['ci_low']:.3g}, {row['ci_high']:.3g}] of the astrocyte circuit's"
             for _, row in tests[(tests["family"] != "primary") & (tests["status"] == "ok")].iterrows()
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
        f"{cheapest['resource']} ratio CI [{cheapest['ci_low']:.3g}, {cheapest['ci_high']:.3g}] of the astrocyte "
        f"circuit's at {cheapest['epsilon']:.0%} error")
    return ClaimVerdict(CLAIM_ID, STATEMENT, verdict, RULE, evidence, reason, major_concerns=tuple(major),
                        minor_concerns=tuple(minor), headline=headline,
                        details={"passes": int(passes.sum()), "fails": int(fails.sum()), "comparisons": len(primary)})


__all__ = ["CLAIM_ID", "STATEMENT", "RULE", "REGISTERED_SHA256", "judge", "decide", "runs"]
