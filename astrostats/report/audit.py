"""The audit: claims C1-C7 (DESIGN.md), each judged by a written rule from stored tables, rendered as a
referee report (audit.md) and as machine-readable JSON (audit.json)."""
from __future__ import annotations

import ast
import importlib
import json
import logging

import numpy as np

from astrostats.report import decisive
from astrostats.report.claims import AuditedCircuit
from astrostats.report.verdicts import ClaimVerdict, Evidence

LOG = logging.getLogger(__name__)
#: a method misses its calibration when the 95 % CI of its simulated rate lies beyond the nominal value by this
#: much, on the unsafe side: a false-positive rate above 0.05 + 0.02, a coverage below 0.95 - 0.02 (the edges
#: of the calibration study's acceptance bands). Conservative misses (a size below 0.03) do not downgrade.
SIZE_MARGIN, COVERAGE_MARGIN = 0.02, 0.02
CALIBRATION_COLUMNS = {"check", "kind", "statistic", "ci_low", "ci_high", "nominal"}
RULE_CHARS = 160  # the rule's opening in audit.md (in full in audit.json and the report)
MORE_LINES = 1  # "N more rows: query ..." lines per claim in audit.md
MARKDOWN_ROWS = 3  # decisive rows per claim in audit.md (the report shows up to decisive.MAX_ROWS)

CLAIMS = (  # claim id -> the module that states it (STATEMENT, RULE) and judges it (judge)
    ("C1", "astrostats.report.claims.c1_convergence"),
    ("C2", "astrostats.report.claims.c2_real_models"),
    ("C3", "astrostats.report.claims.c3_overfitting"),
    ("C4", "astrostats.report.claims.c4_biology"),
    ("C5", "astrostats.report.claims.c5_real_data"),
    ("C6", "astrostats.report.claims.c6_required_m"),
    ("C7", "astrostats.report.claims.c7_alternatives"),
)


def judge_all(tables: dict, manifest: dict) -> list[ClaimVerdict]:
    """One verdict per claim; a claim whose rule crashes is INSUFFICIENT_DATA, with the reason."""
    not_completed = {record["name"]: record.get("error", record["status"])
                     for record in manifest.get("analyses", []) if record["status"] != "ok"}
    verdicts = []
    circuit = AuditedCircuit.from_manifest(manifest)
    for claim_id, module_name in CLAIMS:
        module = importlib.import_module(module_name)
        try:
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


def validation_rates(tables: dict) -> list[dict]:
    """The known-answers summary (any table named ``*known_answers_summary``): per claim and planted scenario,
    how often the rule returned the planted verdict and its opposite, with Clopper-Pearson 95 % CIs."""
    rows = []
    for name, table in sorted(tables.items()):
        if not name.endswith("known_answers_summary") or table is None or table.empty:
            continue
        for record in json.loads(table.to_json(orient="records")):  # plain JSON types for audit.json
            rows.append({"table": name, **{key: record.get(key) for key in (
                "claim", "scenario", "planted_verdict", "n", "planted_rate", "ci_low", "ci_high", "opposite_verdict",
                "opposite_rate", "opposite_ci_high", "other_verdicts", "meets_aim")}})
    return rows


def validation_lines(validation: list[dict]) -> list[str]:
    """audit.md's section on the rules' known-answer rates: one line per claim, its scenarios in turn (the
    opposite verdict named only where it occurred; every rate and CI is in audit.json and the report)."""
    lines = ["## Validation of the rules on known answers", ""]
    if not validation:
        return lines + ["- not run (`python -m astrostats.analyze known_answers`)", ""]
    lines += ["Planted truth through each claim's own rule (table `known_answers`); aim: the planted verdict in "
              ">= 95 % of replicates, the opposite in <= 5 % (CONTAINS, a coverage: its CI not below 95 %).", ""]
    by_claim: dict[str, list[str]] = {}
    for row in validation:
        opposite = f", opposite {row['opposite_rate']:.0%}" if row["opposite_rate"] else ""
        other = f", {row['other_verdicts']}" if row.get("other_verdicts") else ""
        missed = "" if row["meets_aim"] else " (misses the aim)"
        by_claim.setdefault(row["claim"], []).append(
            f"{row['scenario']}: {row['planted_verdict']} {row['planted_rate']:.0%} [{row['ci_low']:.0%}, "
            f"{row['ci_high']:.0%}] of {int(row['n'])}{opposite}{other}{missed}")
    lines += [f"- {claim}, {'; '.join(parts)}" for claim, parts in by_claim.items()]
    return lines + [""]


def _format(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _number_parts(item, ci_prefix: str = "") -> list[str]:
    """The cited number, its CI and its p-value, as text (absent parts left out)."""
    parts = [f"{item.statistic} = {_format(item.value)}"]
    if item.ci_low is not None or item.ci_high is not None:
        parts.append(f"{ci_prefix}[{_format(item.ci_low)}, {_format(item.ci_high)}]")
    if item.p_value is not None:
        parts.append(f"p = {_format(item.p_value)}")
    return parts


def evidence_line(item) -> str:
    parts = _number_parts(item, "95 % CI ")
    parts[0] = f"`{item.table}` rows `{item.rows}`: {parts[0]}"
    if item.effect:
        parts.append(item.effect)
    if item.note:
        parts.append(item.note)
    return "; ".join(parts)


def clip(text: str, limit: int, where: str = "") -> str:
    """Text cut at a word boundary to about limit characters, saying where the rest is (audit.md's header says
    audit.json holds it all, so there ``where`` is left out)."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + (f" ... (in full in {where})" if where else " ...")


def short_evidence_line(item) -> str:
    """One decisive row for audit.md: the number, its CI and p, and where it lives (notes stay in audit.json)."""
    return " ".join(_number_parts(item)) + f" in `{item.table}` where `{item.rows}`"


def to_markdown(verdicts: list[ClaimVerdict], manifest: dict, validation: list[dict] | None = None) -> str:
    """A short referee report: per claim the verdict, the rule, the reason and the decisive rows (chosen by
    astrostats.report.decisive: few rows in full, else the lowest and highest value), with the query that selects
    the rest, after the rules' known-answer rates; every cited row, minor concern and detail stays in audit.json."""
    git = manifest.get("git", {})
    lines = ["# Audit: Kozachkov, Kastanenka & Krotov (PNAS 2023), 'Building transformers from neurons and astrocytes'",
             "",
             f"Circuit under audit: `{AuditedCircuit.from_manifest(manifest).name}`.", "",
             f"Generated by astrostats from stored tables (profile `{manifest.get('profile')}`, commit "
             f"`{git.get('commit')}`{' with uncommitted changes' if git.get('dirty') else ''}). Each row cites its "
             "table (tables/ beside this file) and the pandas query that selects it; audit.json holds every row, "
             "report.pdf the figures.", "", "| claim | verdict | the number behind it |", "|---|---|---|"]
    for verdict in verdicts:
        lines.append(f"| {verdict.claim_id} | **{verdict.verdict}** | {clip(verdict.headline or verdict.reason, 110)} |")
    failed = [record for record in manifest.get("analyses", []) if record["status"] != "ok"]
    if failed:
        lines += ["", "## Analyses that did not complete", ""]
        lines += [f"- {record['name']}: {record['status']}: {record.get('error', '')}" for record in failed]
    lines += ["", *validation_lines(validation or [])]
    for verdict in verdicts:
        lines += ["", f"## {verdict.claim_id}: {verdict.verdict}", "", f"*Claim.* {verdict.statement}", "",
                  f"*Rule.* {clip(verdict.rule, RULE_CHARS)}", "", f"*Why.* {clip(verdict.reason, 160)}"]
        chosen = decisive.choose(verdict.evidence, max_rows=MARKDOWN_ROWS)
        if chosen.shown:
            lines += ["", "*Decisive rows.*", ""]
            lines += [f"- {role + ': ' if role else ''}{clip(short_evidence_line(item), 150)}" for role, item in chosen.shown]
            lines += [f"- {decisive.more_line(*left)}" for left in chosen.left_out[:MORE_LINES]]
            if len(chosen.left_out) > MORE_LINES:
                rows = sum(left[0] for left in chosen.left_out[MORE_LINES:])
                lines.append(f"- {rows} more rows of {len(chosen.left_out) - MORE_LINES} other statistics")
        if verdict.major_concerns:
            lines += ["", "*Major concerns.*", ""] + [f"- {clip(text, 250)}" for text in verdict.major_concerns[:3]]
            if len(verdict.major_concerns) > 3:
                lines.append(f"- {len(verdict.major_concerns) - 3} more in audit.json")
    extra = sum(len(v.minor_concerns) + len(v.analyses_needed) for v in verdicts)
    if extra:
        lines += ["", f"{extra} minor concerns and analyses still needed are listed per claim in audit.json."]
    return "\n".join(lines) + "\n"


def to_json(verdicts: list[ClaimVerdict], manifest: dict, validation: list[dict] | None = None) -> dict:
    return {"paper": "Kozachkov, Kastanenka & Krotov, PNAS 120(34) e2219150120 (2023)",
            "profile": manifest.get("profile"), "git": manifest.get("git"),
            "audited_circuit": AuditedCircuit.from_manifest(manifest).name,
            "claims": [verdict.to_dict() for verdict in verdicts],
            "validation": validation or []}
