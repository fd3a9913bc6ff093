"""report.pdf, typeset with typst (the ``typst`` Python package: offline, well under a second).

Python gathers everything the report says into one JSON document (verdicts, rules, decisive rows, figure paths
and captions, methods from the manifest); ``templates/report.typ`` lays it out. Text is passed as data, never
spliced into markup, so a table value can not break the typesetting.
"""
from __future__ import annotations

import json
import math
import os
from importlib import resources
from pathlib import Path

import pandas as pd

from astrostats.constants import DEFAULT_CIRCUIT
from astrostats import safe_io
from astrostats.extras import require
from astrostats.report import decisive, layout, narrative
from astrostats.report.audit import clip
from astrostats.report.style import VERDICT_COLOURS

MAIN_PAGES = (8, 20)  # pages before the appendix starts (the aim for a full default run is 15-20)
MAX_APPENDIX_PAGES = 40
TEXT_WIDTH_CM = 17.6
MAX_FIGURE_HEIGHT_CM = {"main": 10.5, "appendix": 8.0}
VALIDATION_SUFFIX = "known_answers_summary"
TITLE = "Does a neuron-astrocyte circuit compute attention? An audit"
SUBTITLE = ("of Kozachkov, Kastanenka & Krotov, 'Building transformers from neurons and astrocytes', "
            "PNAS 120(34) e2219150120 (2023)")


def _number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        value = float(value)
        if not math.isfinite(value):
            return "inf" if value > 0 else ("-inf" if value < 0 else "n/a")
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.2e}"
        return f"{value:.3g}"
    return str(value)


def _ci(item) -> str:
    if item.ci_low is None and item.ci_high is None:
        return ""
    return f"[{_number(item.ci_low)}, {_number(item.ci_high)}]"


def _evidence_table(rows, with_role: bool) -> dict:
    columns = (["", "statistic", "value", "95 % CI", "p", "rows (table)", "note"] if with_role
               else ["statistic", "value", "95 % CI", "p", "rows (table)", "note"])
    out = []
    for role, item in rows:
        note = "; ".join(filter(None, (item.effect, item.note)))
        cells = [item.statistic, _number(item.value), _ci(item), _number(item.p_value),
                 f"{item.rows} ({item.table})", note]
        out.append(([role] if with_role else []) + cells)
    numeric = [2, 3, 4] if with_role else [1, 2, 3]
    return {"columns": columns, "rows": out, "numeric": numeric, "more": ""}


def _image_width(path: Path, limit_cm: float) -> float:
    """Width in cm: the full text width unless that would make the figure taller than limit_cm."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    return round(min(TEXT_WIDTH_CM, limit_cm * width / height), 2)


def _figure(figure: layout.FigureRef, root: Path, where: str) -> dict:
    return {"path": "/" + figure.path, "caption": layout.caption(figure), "label": f"fig-{figure.stem}",
            "width": _image_width(root / figure.path, MAX_FIGURE_HEIGHT_CM[where])}


def _frame_table(frame: pd.DataFrame, max_rows: int = 40) -> dict:
    shown = frame.head(max_rows)
    numeric = [i for i, column in enumerate(shown.columns) if pd.api.types.is_numeric_dtype(shown[column])]
    rows = [[_number(value) if not isinstance(value, str) else value for value in row]
            for row in shown.itertuples(index=False)]
    more = f"{len(frame) - max_rows} more rows in the table" if len(frame) > max_rows else ""
    return {"columns": [str(c) for c in shown.columns], "rows": rows, "numeric": numeric, "more": more}


#: the known-answers summary's columns a reader needs (the method and the opposite's CI stay in the table)
VALIDATION_COLUMNS = ("claim", "scenario", "planted_verdict", "n", "planted_rate", "ci_low", "ci_high",
                      "opposite_rate", "other_verdicts", "meets_aim")


def _validation(tables: dict) -> dict | None:
    name = next((name for name in tables if name.endswith(VALIDATION_SUFFIX) and not tables[name].empty), None)
    if name is None:
        return None
    return {"text": f"Each rule was applied to data with a planted answer (table {name}): how often the audit's "
                    "verdict equals the planted one, per claim and scenario, with Clopper-Pearson 95 % CIs. Aim: the "
                    "planted verdict in >= 95 % of replicates and the opposite in <= 5 % (an interval's coverage, "
                    "CONTAINS: its CI not below 95 %). A rule that cannot recover planted truth would not be trusted "
                    "on real data.",
            "table": _frame_table(_in_words(tables[name][[c for c in VALIDATION_COLUMNS if c in tables[name]]]))}


def _in_words(summary: pd.DataFrame) -> pd.DataFrame:
    """Scenario names in words: an identifier of 30 letters has no place to break and runs into the next column."""
    if "scenario" not in summary:
        return summary
    return summary.assign(scenario=summary["scenario"].astype(str).str.replace("_", " "))


def _methods(manifest: dict) -> list[dict]:
    methods = []
    for record in manifest.get("analyses", []):
        parameters = [[key, json.dumps(value) if not isinstance(value, str) else value]
                      for key, value in record.get("parameters", {}).items()]
        parameters += [[f"pre-registered {key}", json.dumps(value) if not isinstance(value, str) else value]
                       for key, value in record.get("preregistration", {}).items()]
        parameters = [[key, value if len(value) <= 140 else value[:137] + "..."] for key, value in parameters]
        methods.append({
            "name": f"{record['name']} ({record.get('kind', '?')})",
            "question": record.get("question", ""),
            "provenance": (f"status {record['status']}; profile {record.get('profile')}, seed {record.get('seed')}; "
                           f"spec {record.get('source')}, file sha256 {str(record.get('file_sha256'))[:12]}, resolved "
                           f"sha256 {str(record.get('spec_sha256'))[:12]}"
                           + (f"; {record['seconds']:.0f} s" if isinstance(record.get("seconds"), (int, float)) else "")
                           + (f", peak resident {record['peak_resident_gib']:.1f} GiB"
                              if isinstance(record.get("peak_resident_gib"), (int, float)) else "")),
            "parameters": {"columns": ["parameter", "value"], "rows": parameters, "numeric": [], "more": ""}})
    return methods


PAGE_ONE_CHARS = 170  # per claim on page 1, so that it holds every verdict; the claim's section has it all


def _answer(question_claims, by_id: dict) -> str:
    parts = []
    for claim_id in question_claims:
        verdict = by_id.get(claim_id)
        if verdict is not None:
            parts.append(f"{claim_id} ({verdict.verdict}): {narrative.PLAIN_VERDICTS[verdict.verdict]}, "
                         f"{clip(verdict.reason.rstrip('.'), PAGE_ONE_CHARS, 'its section')}.")
    return " ".join(parts)


def audited_line(manifest: dict) -> str:
    """The circuit under audit as the manifest names it, with its description."""
    recorded = manifest.get("audited_circuit") or {}
    name, description = recorded.get("name", DEFAULT_CIRCUIT), recorded.get("description", "")
    return f"{name} ({description})" if description else name


def title(manifest: dict) -> str:
    name = (manifest.get("audited_circuit") or {}).get("name", DEFAULT_CIRCUIT)
    return TITLE if name == DEFAULT_CIRCUIT else f"Does the circuit {name} compute attention? An audit"


def report_data(verdicts, manifest: dict, figures: list[layout.FigureRef], tables: dict, table_owner: dict,
                root: Path, modules: dict | None = None) -> dict:
    """Everything the template shows, as plain JSON-able data."""
    modules = modules or {}
    by_id = {verdict.claim_id: verdict for verdict in verdicts}
    main, rest = layout.assign(verdicts, figures, table_owner)
    git = manifest.get("git", {})
    claims = []
    for verdict in verdicts:
        module = modules.get(verdict.claim_id)
        chosen = decisive.choose(verdict.evidence)
        table = _evidence_table(chosen.shown, with_role=True)
        table["more"] = " ".join(decisive.left_out_lines(chosen))
        concerns = list(verdict.major_concerns)
        claims.append({
            "id": verdict.claim_id, "verdict": verdict.verdict, "colour": VERDICT_COLOURS[verdict.verdict],
            "short": narrative.short_name(verdict.claim_id, verdict.statement, module),
            "statement": verdict.statement, "rule": verdict.rule, "reason": verdict.reason or "",
            "headline": clip(verdict.headline or verdict.reason or "", PAGE_ONE_CHARS, "its section"),
            "headline_full": verdict.headline or "",
            "plain": clip(f"{narrative.PLAIN_VERDICTS[verdict.verdict]}: {verdict.reason}".rstrip(), PAGE_ONE_CHARS,
                          "its section"),
            "figures": [_figure(f, root, "main") for f in main[verdict.claim_id]],
            "decisive": table, "concerns": concerns,
            "would_change": narrative.would_change(verdict.claim_id, module),
            "evidence_full": _evidence_table([("", item) for item in verdict.evidence], with_role=False),
            "more_concerns": list(verdict.minor_concerns) + [f"Analysis still needed: {text}"
                                                              for text in verdict.analyses_needed]})
    questions = [{"question": question, "answer": _answer(claim_ids, by_id)}
                 for question, claim_ids in narrative.QUESTIONS if any(c in by_id for c in claim_ids)]
    failed = [f"{r['name']}: {r['status']}: {r.get('error', '')}" for r in manifest.get("analyses", [])
              if r["status"] != "ok"]
    commit = str(git.get("commit"))[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    return {
        "title": title(manifest), "subtitle": SUBTITLE,
        "run": f"astrostats, circuit under audit: {audited_line(manifest)}; profile {manifest.get('profile')}, "
               f"commit {commit}; every number cites a stored table (tables/) and its rows (audit.json)",
        "footer": f"astrostats audit, profile {manifest.get('profile')}, commit {commit}",
        "questions": questions, "claims": claims, "failed": failed, "reading": narrative.READING,
        "validation": _validation(tables),
        "methods_intro": ("Each analysis below ran from its TOML spec; the resolved spec's hash identifies it, "
                          "and the same spec and seed give identical tables. Parameters as resolved for this "
                          "run's profile."),
        "methods": _methods(manifest), "limitations": list(narrative.LIMITATIONS),
        "appendix_intro": ("Every number each verdict cites, with the pandas query that selects its rows from the "
                           "named table under tables/ (the same as audit.json), then the figures not shown above."),
        "appendix_figures": [_figure(f, root, "appendix") for f in rest],
    }


def compile_report(data: dict, root: Path, output: Path) -> None:
    """Typeset data with the report template into output; figure paths are relative to root."""
    typst = require("typst")  # without astrostats[report]: one line naming the extra
    template = resources.files("astrostats.report").joinpath("templates/report.typ").read_bytes()
    # a fresh name (O_EXCL, random): a file or link planted under any predictable name is never written through
    source = safe_io.create_exclusive(root, root, f".report.{os.getpid()}.", ".typ")
    try:
        safe_io.write_bytes(root, source, template)
        typeset = typst.compile(str(source), root=str(root), sys_inputs={"data": json.dumps(data, default=str)})
    finally:
        safe_io.unlink(root, source)
    safe_io.write_bytes(root, Path(output), typeset)
