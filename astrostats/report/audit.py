"""The audit: claims C1-C6 (DESIGN.md), each judged by a written rule from stored tables, rendered as a
referee report (audit.md) and as machine-readable JSON (audit.json)."""
from __future__ import annotations

import importlib
import json
import logging

from astrostats.report.verdicts import ClaimVerdict

LOG = logging.getLogger(__name__)

CLAIMS = (  # claim id -> the module that states it (STATEMENT, RULE) and judges it (judge)
    ("C1", "astrostats.report.claims.c1_convergence"),
    ("C2", "astrostats.report.claims.c2_real_models"),
    ("C3", "astrostats.report.claims.c3_overfitting"),
    ("C4", "astrostats.report.claims.c4_biology"),
    ("C5", "astrostats.report.claims.c5_real_data"),
    ("C6", "astrostats.report.claims.c6_required_m"),
)


def judge_all(tables: dict, manifest: dict) -> list[ClaimVerdict]:
    """One verdict per claim; a claim whose rule crashes is INSUFFICIENT_DATA, with the reason."""
    not_completed = {record["name"]: record.get("error", record["status"])
                     for record in manifest.get("analyses", []) if record["status"] != "ok"}
    verdicts = []
    for claim_id, module_name in CLAIMS:
        module = importlib.import_module(module_name)
        try:
            verdict = module.judge(tables)
        except Exception as error:  # a broken rule must not hide the other claims
            LOG.exception("claim %s: rule failed", claim_id)
            verdict = ClaimVerdict(claim_id, module.STATEMENT, "INSUFFICIENT_DATA", getattr(module, "RULE", module.__doc__),
                                   reason=f"the rule could not be applied: {type(error).__name__}: {error}")
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


def unresolved_evidence(verdict: ClaimVerdict, tables: dict) -> list:
    """Evidence items whose table is absent or whose row query fails or selects no row."""
    broken = []
    for item in verdict.evidence:
        try:
            selected = tables[item.table].query(item.rows)
        except Exception:  # a malformed query or a missing table or column
            selected = None
        if selected is None or selected.empty:
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
    """audit.md's section on the rules' known-answer rates (one line per claim and scenario)."""
    lines = ["## Validation of the rules on known answers", ""]
    if not validation:
        return lines + ["- not run (`python -m astrostats.analyze known_answers`)", ""]
    lines += ["Planted truth through each claim's own rule (table `known_answers`); aim: the planted verdict in "
              ">= 95 % of replicates, the opposite in <= 5 %.", ""]
    for row in validation:
        lines.append(
            f"- {row['claim']}, {row['scenario']} (planted {row['planted_verdict']}): {row['planted_rate']:.0%} "
            f"[{row['ci_low']:.0%}, {row['ci_high']:.0%}] of {int(row['n'])}; {row['opposite_verdict']} "
            f"{row['opposite_rate']:.0%}{'; others: ' + row['other_verdicts'] if row.get('other_verdicts') else ''}"
            f"{'' if row['meets_aim'] else ' (misses the aim)'}")
    return lines + [""]


def _format(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def evidence_line(item) -> str:
    parts = [f"`{item.table}` rows `{item.rows}`: {item.statistic} = {_format(item.value)}"]
    if item.ci_low is not None or item.ci_high is not None:
        parts.append(f"95 % CI [{_format(item.ci_low)}, {_format(item.ci_high)}]")
    if item.p_value is not None:
        parts.append(f"p = {_format(item.p_value)}")
    if item.effect:
        parts.append(item.effect)
    if item.note:
        parts.append(item.note)
    return "; ".join(parts)


def to_markdown(verdicts: list[ClaimVerdict], manifest: dict, validation: list[dict] | None = None) -> str:
    """A referee report generated from the rules: summary, major and minor concerns, analyses still needed."""
    git = manifest.get("git", {})
    lines = ["# Audit: Kozachkov, Kastanenka & Krotov (PNAS 2023), 'Building transformers from neurons and astrocytes'",
             "",
             f"Generated by astrostats from stored tables (profile `{manifest.get('profile')}`, commit "
             f"`{git.get('commit')}`{' with uncommitted changes' if git.get('dirty') else ''}). Every number below "
             "cites the table and rows it comes from (tables/ beside this file).", "", "## Summary", "",
             "| claim | verdict | the number behind it |", "|---|---|---|"]
    for verdict in verdicts:
        lines.append(f"| {verdict.claim_id}: {verdict.statement} | **{verdict.verdict}** | {verdict.headline or verdict.reason} |")
    failed = [record for record in manifest.get("analyses", []) if record["status"] != "ok"]
    if failed:
        lines += ["", "## Analyses that did not complete", ""]
        lines += [f"- {record['name']}: {record['status']}: {record.get('error', '')}" for record in failed]
    lines += ["", *validation_lines(validation or []), "## Verdicts, rules and evidence", ""]
    for verdict in verdicts:
        lines += [f"### {verdict.claim_id}: {verdict.verdict}", "", f"*Claim.* {verdict.statement}", "",
                  f"*Rule.* {verdict.rule}", "", f"*Why.* {verdict.reason}", ""]
        if verdict.evidence:
            lines += ["*Evidence.*", ""] + [f"- {evidence_line(item)}" for item in verdict.evidence] + [""]
    for title, attribute in (("Major concerns", "major_concerns"), ("Minor concerns", "minor_concerns"),
                             ("Analyses still needed", "analyses_needed")):
        items = [(verdict.claim_id, text) for verdict in verdicts for text in getattr(verdict, attribute)]
        lines += [f"## {title}", ""]
        lines += [f"- ({claim_id}) {text}" for claim_id, text in items] or ["- none"]
        lines.append("")
    return "\n".join(lines)


def to_json(verdicts: list[ClaimVerdict], manifest: dict, validation: list[dict] | None = None) -> dict:
    return {"paper": "Kozachkov, Kastanenka & Krotov, PNAS 120(34) e2219150120 (2023)",
            "profile": manifest.get("profile"), "git": manifest.get("git"),
            "claims": [verdict.to_dict() for verdict in verdicts],
            "validation": validation or []}
