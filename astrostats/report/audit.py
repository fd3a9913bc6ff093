"""The audit rendered: the verdicts of every claim (judged by :mod:`astrostats.claims.judging`) as a referee
report (audit.md) and as machine-readable JSON (audit.json)."""
from __future__ import annotations

import json

import pandas as pd

from astrostats.claims import AuditedCircuit
from astrostats.claims.rules import rules_sha256
from astrostats.claims.verdicts import ClaimVerdict
from astrostats.report import decisive, narrative

MORE_LINES = 1  # "N more rows: query ..." lines per claim in audit.md
MARKDOWN_ROWS = 3  # decisive rows per claim in audit.md (the report shows up to decisive.MAX_ROWS)


def reruns(power):
    """The known-answers power table's reruns, fewest draws and sequences and narrowest sweep first: more draws
    than the design's, more sequences, or (C1) a sweep to larger m (a table written before the sequences or the
    sweeps lacks their columns); its design rows left out."""
    changed = power["draws"] > power["design_draws"]
    for column in ("max_m", "sequences"):
        if {column, f"design_{column}"} <= set(power):
            changed |= power[column] > power[f"design_{column}"]
    found = power[changed]
    return found.sort_values([column for column in ("max_m", "sequences", "draws") if column in found], kind="stable")


def rerun_kind(run) -> str:
    """What a rerun (a power-table row) changed: "sweep", "sequences" or "draws"."""
    for kind, column in (("sweep", "max_m"), ("sequences", "sequences")):
        value, design = run.get(column), run.get(f"design_{column}")
        if pd.notna(value) and pd.notna(design) and value > design:  # absent (an older table) or NA: not this kind
            return kind
    return "draws"


def rerun_label(run, short: bool = False) -> str:
    """What a rerun changed: '16 feature draws', '64 sequences' or 'the sweep to m = 131072' ('16 draws', 'sweep
    to m = 131072' where ``short``)."""
    kind = rerun_kind(run)
    if kind == "sweep":
        return f"{'' if short else 'the '}sweep to m = {int(run['max_m'])}"
    if kind == "sequences":
        return f"{int(run['sequences'])} sequences"
    return f"{int(run['draws'])} {'' if short else 'feature '}draws"


def validation_rates(tables: dict) -> list[dict]:
    """The known-answers summary (any table named ``*known_answers_summary``): per claim and planted scenario,
    how often the rule returned the planted verdict and its opposite, with Clopper-Pearson 95 % CIs; a missed
    scenario run again with more feature draws, more sequences or a wider sweep (its ``*known_answers_power``
    table) carries those rates in ``reruns``."""
    rows = []
    for name, table in sorted(tables.items()):
        if not name.endswith("known_answers_summary") or table is None or table.empty:
            continue
        power = tables.get(name.removesuffix("_summary") + "_power")
        power = reruns(power) if power is not None and not power.empty else None
        for record in json.loads(table.to_json(orient="records")):  # plain JSON types for audit.json
            row = {"table": name, **{key: record.get(key) for key in (
                "claim", "scenario", "planted_verdict", "n", "planted_rate", "ci_low", "ci_high", "opposite_verdict",
                "opposite_rate", "opposite_ci_high", "other_verdicts", "design_resolves", "meets_aim", "aim",
                "miss")}}
            if power is not None:
                mine = power[(power["claim"] == row["claim"]) & (power["scenario"] == row["scenario"])]
                columns = [c for c in ("draws", "design_draws", "max_m", "design_max_m", "sequences",
                                       "design_sequences", "n", "planted_rate",
                                       "ci_low", "ci_high", "opposite_rate", "meets_aim") if c in mine]
                row["reruns"] = json.loads(mine[columns].to_json(orient="records"))
            rows.append(row)
    return rows


def reruns_text(runs: list[dict], planted: str) -> str:
    """A missed scenario's reruns, as '16 feature draws: SUPPORTED 100% [83%, 100%] of 20, aim met' or 'the sweep
    to m = 131072: NOT_SUPPORTED ...' (the opposite named where it occurred)."""
    return "; ".join(f"{rerun_label(run)}: {planted} {run['planted_rate']:.0%} [{run['ci_low']:.0%}, "
                     f"{run['ci_high']:.0%}] of {int(run['n'])}"
                     + (f", opposite {run['opposite_rate']:.0%}" if run["opposite_rate"] else "")
                     + (", aim met" if run["meets_aim"] else ", aim still missed") for run in runs)


#: how a scenario misses its aim (the known-answers summary's ``miss``), in audit.md's lines and the report's text
MISS_KINDS = {"abstains": "by abstaining (undecided too often, the opposite verdict in at most 5 %: short of power "
                          "at this design, or a rule that cannot reach this truth)",
              "opposite": "by the opposite verdict in more than 5 % (at this design the rule cannot tell this truth "
                          "from its opposite: its verdict on such data would mislead)",
              "undercovers": "by undercovering (the interval holds the planted value in fewer than 95 % of "
                             "replicates)"}


def validation_lines(validation: list[dict]) -> list[str]:
    """audit.md's section on the rules' known-answer rates: one line per claim, its scenarios in turn (the
    opposite verdict named only where it occurred; every rate and CI is in audit.json and the report)."""
    lines = ["## Validation of the rules on known answers", ""]
    if not validation:
        return lines + ["- not run (`python -m astrostats.analyze known_answers`)", ""]
    lines += ["Planted truth through each claim's own rule (table `known_answers`); aim: the planted verdict in "
              ">= 95 % of replicates, the opposite in <= 5 % (CONTAINS, a coverage: its CI not below 95 %); where "
              "noise-free data at this profile's design would not give the planted verdict either (beyond this "
              "design), the opposite in <= 5 % alone.", ""]
    by_claim: dict[str, list[str]] = {}
    for row in validation:
        opposite = f", opposite {row['opposite_rate']:.0%}" if row["opposite_rate"] else ""
        other = f", {row['other_verdicts']}" if row.get("other_verdicts") else ""
        how = MISS_KINDS.get(row.get("miss"))  # none in a summary written before it was recorded
        missed = "" if row["meets_aim"] else f", missing the aim {how}" if how else " (misses the aim)"
        if row.get("design_resolves") is False:  # noise-free data at this design would not give it either
            missed = " (beyond this design" + ("" if row["meets_aim"] else "; the opposite too often") + ")"
        if row.get("reruns"):  # run again with more draws, sequences or a wider sweep: the design's miss or the rule's?
            missed += f"; run again with {reruns_text(row['reruns'], row['planted_verdict'])}"
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
        lines.append(f"| {verdict.claim_id} | **{verdict.verdict}** | "
                     f"{narrative.scope_and_numbers(verdict.headline or verdict.reason, 160, 'below').replace('|', '/')} |")
    failed = [record for record in manifest.get("analyses", []) if record["status"] != "ok"]
    if failed:
        lines += ["", "## Analyses that did not complete", ""]
        lines += [f"- {record['name']}: {record['status']}: {record.get('error', '')}" for record in failed]
    lines += ["", *validation_lines(validation or [])]
    for verdict in verdicts:
        lines += ["", f"## {verdict.claim_id}: {verdict.verdict}", "", f"*Claim.* {verdict.statement}", "",
                  f"*Rule.* {verdict.rule}", "", f"*Why.* {verdict.reason}"]
        chosen = decisive.choose(verdict.evidence, max_rows=MARKDOWN_ROWS)
        if chosen.shown:
            lines += ["", "*Decisive rows.*", ""]
            lines += [f"- {role + ': ' if role else ''}{short_evidence_line(item)}" for role, item in chosen.shown]
            lines += [f"- {line}" for line in decisive.left_out_lines(chosen, MORE_LINES)]
        if verdict.major_concerns:
            lines += ["", "*Major concerns.*", ""] + [f"- {text}" for text in verdict.major_concerns[:3]]
            if len(verdict.major_concerns) > 3:
                lines.append(f"- {decisive.plural(len(verdict.major_concerns) - 3, 'more major concern')} in audit.json")
    extra = sum(len(v.minor_concerns) + len(v.analyses_needed) for v in verdicts)
    if extra:
        lines += ["", f"{decisive.plural(extra, 'minor concern or analysis still needed', 'minor concerns and analyses still needed')} "
                      f"{'is' if extra == 1 else 'are'} listed per claim in audit.json."]
    return "\n".join(lines) + "\n"


def to_json(verdicts: list[ClaimVerdict], manifest: dict, validation: list[dict] | None = None) -> dict:
    return {"paper": "Kozachkov, Kastanenka & Krotov, PNAS 120(34) e2219150120 (2023)",
            "profile": manifest.get("profile"), "git": manifest.get("git"),
            "audited_circuit": AuditedCircuit.from_manifest(manifest).name, "rules_sha256": rules_sha256(),
            "claims": [verdict.to_dict() for verdict in verdicts],
            "validation": validation or []}
