"""Judging: every claim's rule applied to the stored tables (judge_all), a verdict downgraded where a statistical
method it relies on misses its calibration, and every cited row checked to exist. The report renders the result."""
from __future__ import annotations

import ast
import importlib
import logging

import numpy as np

from astrostats.claims import AuditedCircuit, schemas
from astrostats.claims.verdicts import ClaimVerdict, Evidence

LOG = logging.getLogger(__name__)
#: a method misses its calibration when the 95 % CI of its simulated rate lies beyond the nominal value by this
#: much, on the unsafe side: a false-positive rate above 0.05 + 0.02, a coverage below 0.95 - 0.02 (the edges
#: of the calibration study's acceptance bands). Conservative misses (a size below 0.03) do not downgrade.
SIZE_MARGIN, COVERAGE_MARGIN = 0.02, 0.02
CALIBRATION_COLUMNS = {"check", "kind", "statistic", "ci_low", "ci_high", "nominal"}

CLAIMS = (  # claim id -> the module that states it (STATEMENT, RULE) and judges it (judge)
    ("C1", "astrostats.claims.c1_convergence"),
    ("C2", "astrostats.claims.c2_real_models"),
    ("C3", "astrostats.claims.c3_overfitting"),
    ("C4", "astrostats.claims.c4_biology"),
    ("C5", "astrostats.claims.c5_real_data"),
    ("C6", "astrostats.claims.c6_required_m"),
    ("C7", "astrostats.claims.c7_alternatives"),
)


def judge_all(tables: dict, manifest: dict) -> list[ClaimVerdict]:
    """One verdict per claim; a claim whose rule crashes is INSUFFICIENT_DATA, with the reason."""
    not_completed = {record["name"]: record.get("error", record["status"])
                     for record in manifest.get("analyses", []) if record["status"] != "ok"}
    verdicts = []
    circuit = AuditedCircuit.from_manifest(manifest)
    for claim_id, module_name in CLAIMS:
        module = importlib.import_module(module_name)
        malformed = schemas.problems(getattr(module, "SCHEMAS", {}), tables)
        try:
            if malformed:  # a table the rule reads that is not what it reads: not judged
                verdict = ClaimVerdict(claim_id, module.STATEMENT, "INSUFFICIENT_DATA", module.RULE,
                                       reason="a table this rule reads fails its schema: " + "; ".join(malformed))
            else:
                verdict = module.judge(tables, circuit)
        except Exception as error:  # a broken rule must not hide the other claims
            LOG.exception("claim %s: rule failed", claim_id)
            verdict = ClaimVerdict(claim_id, module.STATEMENT, "INSUFFICIENT_DATA", getattr(module, "RULE", module.__doc__),
                                   reason=f"the rule could not be applied: {type(error).__name__}: {error}")
        verdict = apply_calibration(verdict, getattr(module, "CALIBRATION_CHECKS", ()), tables)
        broken = unresolved_evidence(verdict, tables)
        if broken:  # a citation that points nowhere is a defect of the audit itself: say so, loudly
            verdict = ClaimVerdict(**{**verdict.__dict__, "major_concerns": verdict.major_concerns + tuple(
                f"evidence {item.statistic!r} cites rows `{item.rows}` that select nothing in table {item.table}"
                for item in broken)})
        if verdict.verdict == "INSUFFICIENT_DATA" and not_completed:
            failures = "; ".join(f"{name}: {error}" for name, error in not_completed.items())
            verdict = ClaimVerdict(**{**verdict.__dict__, "reason": f"{verdict.reason} (not completed: {failures})"})
        verdicts.append(verdict)
    return verdicts


def calibration_table_name(tables: dict) -> str | None:
    """The calibration study's table of checks ('calibration' first), whatever the spec was named."""
    names = [name for name, table in tables.items() if CALIBRATION_COLUMNS <= set(table.columns)]
    return "calibration" if "calibration" in names else (names[0] if names else None)


def calibration_misses(checks, tables: dict) -> tuple[str | None, list, list]:
    """(table name, [(check, row) missing its nominal on the unsafe side], [checks not in the table])."""
    name = calibration_table_name(tables)
    if name is None:
        return None, [], list(checks)
    table = tables[name]
    misses, absent = [], []
    for check in checks:
        rows = table[table["check"] == check]
        if rows.empty:
            absent.append(check)
            continue
        row = rows.iloc[0]
        if row["kind"] == "false_positive_rate":
            missed = float(row["ci_low"]) > float(row["nominal"]) + SIZE_MARGIN
        else:
            missed = float(row["ci_high"]) < float(row["nominal"]) - COVERAGE_MARGIN
        if missed:
            misses.append((check, row))
    return name, misses, absent


def apply_calibration(verdict: ClaimVerdict, checks, tables: dict) -> ClaimVerdict:
    """Read the calibration table for the checks a claim's method relies on (its CALIBRATION_CHECKS): where one
    misses its nominal size or coverage, a SUPPORTED or NOT_SUPPORTED verdict becomes INCONCLUSIVE, with the
    reason and the calibration rows cited. Checks that were not run are stated, and change nothing."""
    if not checks:
        return verdict
    name, misses, absent = calibration_misses(checks, tables)
    minor = verdict.minor_concerns
    if name is None:
        minor += ("the calibration study did not run (`python -m astrostats.analyze calibration`): the size and "
                  f"coverage of this rule's methods ({', '.join(checks)}) are unverified",)
    elif absent:
        minor += (f"calibration checks this rule relies on were not run: {', '.join(absent)}",)
    if not misses:
        return ClaimVerdict(**{**verdict.__dict__, "minor_concerns": minor})
    described = [f"{check}: {row['kind'].replace('_', ' ')} {float(row['statistic']):.3f} "
                 f"[{float(row['ci_low']):.3f}, {float(row['ci_high']):.3f}] against nominal {float(row['nominal']):g}"
                 for check, row in misses]
    evidence = verdict.evidence + tuple(
        Evidence(name, f"check == '{check}'", f"calibration {row['kind']}", float(row["statistic"]),
                 ci_low=float(row["ci_low"]), ci_high=float(row["ci_high"]),
                 note=f"{check}: nominal {float(row['nominal']):g}; a method this rule relies on")
        for check, row in misses)
    concern = "the rule's methods miss their calibration: " + "; ".join(described)
    changes = {"evidence": evidence, "minor_concerns": minor, "major_concerns": verdict.major_concerns + (concern,)}
    if verdict.verdict in ("SUPPORTED", "NOT_SUPPORTED"):
        changes.update(verdict="INCONCLUSIVE",
                       reason=f"{verdict.reason}; downgraded from {verdict.verdict} because {concern}")
    return ClaimVerdict(**{**verdict.__dict__, **changes})


def _equalities(rows: str) -> list | None:
    """[(column, literal)] when the query is a conjunction of ``column == literal`` (what the claim rules write);
    None for anything else."""
    try:
        node = ast.parse(rows, mode="eval").body
    except SyntaxError:
        return None
    terms = []
    for part in node.values if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And) else [node]:
        if not (isinstance(part, ast.Compare) and len(part.ops) == 1 and isinstance(part.ops[0], ast.Eq)
                and isinstance(part.left, ast.Name)):
            return None
        try:
            value = ast.literal_eval(part.comparators[0])
        except ValueError:
            return None
        if not isinstance(value, (str, int, float)):
            return None
        terms.append((part.left.id, value))
    return terms


def selects_rows(table, rows: str) -> bool:
    """Whether the pandas query ``rows`` selects at least one row of ``table``. A conjunction of equalities is
    evaluated column by column, the selection DataFrame.query makes (missing values select nothing) without its
    parse cost (about 10 ms a query, 3 s for a default run's 300 citations); any other query goes through
    DataFrame.query (its errors too)."""
    terms = _equalities(rows)
    if terms is None or any(column not in table.columns for column, _ in terms):  # e.g. `index`: pandas' rules
        return not table.query(rows).empty
    mask = np.ones(len(table), dtype=bool)
    for column, value in terms:
        mask &= (table[column] == value).fillna(False).to_numpy(dtype=bool)
    return bool(mask.any())


def unresolved_evidence(verdict: ClaimVerdict, tables: dict) -> list:
    """Evidence items whose table is absent or whose row query fails or selects no row."""
    broken = []
    for item in verdict.evidence:
        try:
            found = selects_rows(tables[item.table], item.rows)
        except Exception:  # a malformed query or a missing table or column
            found = False
        if not found:
            broken.append(item)
    return broken


__all__ = ["CLAIMS", "judge_all", "apply_calibration", "calibration_misses", "calibration_table_name",
           "selects_rows", "unresolved_evidence", "SIZE_MARGIN", "COVERAGE_MARGIN"]
