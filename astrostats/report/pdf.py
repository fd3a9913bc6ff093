"""report.pdf, typeset with typst (the ``typst`` Python package: offline, well under a second).

Python gathers everything the report says into one JSON document (verdicts, rules, decisive rows, figure paths
and captions, methods from the manifest); ``templates/report.typ`` lays it out. Text is passed as data, never
spliced into markup, so a table value can not break the typesetting.
"""
from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from pathlib import Path


from astrostats.constants import DEFAULT_CIRCUIT
from astrostats import safe_io
from astrostats.extras import require
from astrostats.report import decisive, layout, narrative
from astrostats.report.audit import MISS_KINDS, rerun_kind, rerun_label, reruns
from astrostats.report.style import VERDICT_COLOURS

MAIN_PAGES = (8, 16)  # pages before the appendix starts (the aim for a quick or default run: 12-15)
MAX_APPENDIX_PAGES = 5
TEXT_WIDTH_CM = 17.6
MAX_FIGURE_HEIGHT_CM = 11.5  # style.MAX_HEIGHT_IN: figures are drawn at their print size and never enlarged
SVG_SIZE = re.compile(rb'<svg[^>]*?width="([0-9.]+)pt"[^>]*?height="([0-9.]+)pt"', re.S)
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


def natural_size_cm(path: Path) -> tuple[float, float]:
    """A figure's drawn size in cm: an SVG's width and height in points, a raster's pixels at its stored DPI."""
    if path.suffix == ".svg":
        with open(path, "rb") as handle:
            found = SVG_SIZE.search(handle.read(4096))
        if found is None:
            raise ValueError(f"{path.name}: no width and height in points in its <svg> element")
        return float(found[1]) / 72 * 2.54, float(found[2]) / 72 * 2.54
    from PIL import Image

    with Image.open(path) as image:
        dpi = float((image.info.get("dpi") or (150, 150))[0])
        return image.size[0] / dpi * 2.54, image.size[1] / dpi * 2.54


def print_width_cm(path: Path) -> float:
    """The width a figure is printed at: its drawn size (its 7 pt text stays 7 pt), smaller only where it
    exceeds the text width or the height limit."""
    width, height = natural_size_cm(path)
    return round(width * min(1.0, TEXT_WIDTH_CM / width, MAX_FIGURE_HEIGHT_CM / height), 2)


def _figure(figure: layout.FigureRef, root: Path) -> dict:
    return {"path": "/" + figure.path, "caption": layout.caption(figure), "label": f"fig-{figure.stem}",
            "width": print_width_cm(root / figure.path)}


def _validation(tables: dict, figure: layout.FigureRef | None, root: Path) -> dict | None:
    """The validation section: the known-answers figure (the rates in full are in audit.md and audit.json)."""
    name = next((name for name in tables if name.endswith(VALIDATION_SUFFIX) and not tables[name].empty), None)
    if name is None:
        return None
    summary = tables[name]
    missed = summary.loc[~summary["meets_aim"].astype(bool)] if "meets_aim" in summary else summary.iloc[:0]
    # how each miss misses ("" where the summary was written before that was recorded: said without a kind)
    recorded = missed["miss"] if "miss" in missed else [""] * len(missed)
    kinds = [kind if kind in MISS_KINDS else "" for kind in recorded]
    beyond = (summary.loc[~summary["design_resolves"].astype(bool) & summary["meets_aim"].astype(bool)]
              if {"design_resolves", "meets_aim"} <= set(summary) else summary.iloc[:0])

    def names(rows) -> str:
        return ", ".join(f"{row.claim} {str(row.scenario).replace('_', ' ')}" for row in rows.itertuples())

    power_name = name.removesuffix("_summary") + "_power"  # the missed scenarios' reruns

    return {"text": f"Each rule was applied to data with a planted answer (table {name}, "
                    f"{decisive.plural(len(summary), 'scenario')}): how often the audit's verdict equals the planted "
                    "one, with Clopper-Pearson 95 % CIs. Aim: the planted verdict in at least 95 % of replicates and "
                    "the opposite in at most 5 %. A rule that cannot recover planted truth would not be trusted on "
                    "real data. "
                    + "".join(_misses(missed[[k == kind for k in kinds]], MISS_KINDS.get(kind, ""), names)
                              for kind in [*MISS_KINDS, ""] if kind in kinds)
                    + _reruns(tables.get(power_name), power_name)
                    + ("Every scenario this design can resolve meets the aim. " if not len(missed) else "")
                    + (f"Beyond this profile's design (noise-free data would not give the planted verdict either, "
                       f"so only a rare opposite verdict is asked for): {names(beyond)}." if len(beyond) else ""),
            "figure": _figure(figure, root) if figure is not None else None}


def _reruns(power, table: str) -> str:
    """What the missed scenarios' reruns showed (the known-answers power table): a scenario that meets the aim
    with more feature draws or sequences missed it for the design's power, one that meets it with C1's sweep extended to
    larger m for the design's reach; one that still misses it at every rerun is not resolved by them."""
    shown = reruns(power) if power is not None and not power.empty else None
    if shown is None or shown.empty:
        return ""
    met, short = {}, {}
    for (claim, scenario), runs in shown.groupby(["claim", "scenario"], sort=False):
        label, runs = f"{claim} {str(scenario).replace('_', ' ')}", runs.to_dict("records")
        reached = [run for run in runs if run["meets_aim"]]
        if reached:
            met.setdefault(rerun_label(reached[0]), []).append(label)
        else:
            tried, last = " or ".join(dict.fromkeys(rerun_label(run) for run in runs)), runs[-1]
            short.setdefault(tried, []).append(
                f"{label} ({rerun_label(last)}: {last['planted_verdict']} {last['planted_rate']:.0%}"
                + (f", the opposite {last['opposite_rate']:.0%})" if last["opposite_rate"] else ")"))
    kinds = {rerun_kind(run) for run in shown.to_dict("records")}
    ways = [way for kind, way in (
        ("draws", "with more feature draws (C1: the scaling run's seeds; C2, C6: draws per head)"),
        ("sequences", "with more sequences"), ("sweep", "with C1's sweep extended to larger m (the same truth)"))
        if kind in kinds]
    power = " or ".join(name for kind, name in (("draws", "draws"), ("sequences", "sequences")) if kind in kinds)
    meaning = "; ".join([f"met with more {power}: the miss was this design's power"] * bool(power)
                        + ["met with a wider sweep: the miss was this design's reach"] * ("sweep" in kinds))
    parts = [f"the aim is met with {run} by {', '.join(labels)}" for run, labels in met.items()]
    parts += [f"it is still missed with {run} by {', '.join(labels)}" for run, labels in short.items()]
    how = ", ".join(ways[:-1]) + " and " + ways[-1] if len(ways) > 1 else ways[0]
    return (f"Run again {how}; table {table}: {'; '.join(parts)}. "
            f"{meaning[0].upper() + meaning[1:]}; still missed: not resolved by these reruns (the rule, or a limit "
            "of the design they do not change). ")


def _misses(rows, how: str, names) -> str:
    """One sentence naming the scenarios that miss the aim in one way (``how``: audit.MISS_KINDS, or "")."""
    return (f"{decisive.plural(len(rows), 'scenario')} {'misses' if len(rows) == 1 else 'miss'} the aim"
            f"{' ' + how if how else ''}: {names(rows)}. ")


def _value(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 90 else f"{len(value) if isinstance(value, (list, dict)) else 'a long'} " \
        f"{'values' if isinstance(value, (list, dict)) else 'value'} (in manifest.json)"


def _methods(manifest: dict) -> list[dict]:
    """Per analysis: its question, where it came from, and its resolved parameters as one paragraph."""
    methods = []
    for record in manifest.get("analyses", []):
        parameters = [f"{key} = {_value(value)}" for key, value in record.get("parameters", {}).items()]
        parameters += [f"pre-registered {key} = {_value(value)}"
                       for key, value in record.get("preregistration", {}).items()]
        methods.append({
            "name": f"{record['name']} ({record.get('kind', '?')})",
            "question": record.get("question", ""),
            "provenance": (f"status {record['status']}; profile {record.get('profile')}, seed {record.get('seed')}; "
                           f"spec {record.get('source')}, resolved sha256 {str(record.get('spec_sha256'))[:12]}"
                           + (f"; {record['seconds']:.0f} s" if isinstance(record.get("seconds"), (int, float)) else "")
                           + (f", peak resident {record['peak_resident_gib']:.1f} GiB"
                              if isinstance(record.get("peak_resident_gib"), (int, float)) else "")),
            "parameters": "; ".join(parameters)})
    return methods


def _answer(question_claims, by_id: dict, modules: dict) -> list[dict]:
    """Page 1's answer to a question: per claim its verdict and the finding its reason opens with, whole."""
    answers = []
    for claim_id in question_claims:
        verdict = by_id.get(claim_id)
        if verdict is not None:
            answers.append({"id": claim_id, "verdict": verdict.verdict, "colour": VERDICT_COLOURS[verdict.verdict],
                            "short": narrative.short_name(claim_id, verdict.statement, modules.get(claim_id)),
                            "plain": narrative.PLAIN_VERDICTS[verdict.verdict],
                            "finding": narrative.lead(verdict.reason or verdict.headline or ""),
                            "scope": narrative.scope_and_numbers(verdict.headline or verdict.reason or "")})
    return answers


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
    shown, unshown = rest[:layout.MAX_APPENDIX_FIGURES], rest[layout.MAX_APPENDIX_FIGURES:]
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
            "headline_full": verdict.headline or "",
            "figures": [_figure(f, root) for f in main[verdict.claim_id]],
            "decisive": table, "concerns": concerns,
            "would_change": narrative.would_change(verdict.claim_id, module)})
    questions = [{"question": question, "answers": _answer(claim_ids, by_id, modules)}
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
        "validation": _validation(tables, layout.validation_figure(figures), root),
        "methods_intro": ("Each analysis below ran from its TOML spec; the resolved spec's hash identifies it, "
                          "and the same spec and seed give identical tables. Parameters as resolved for this "
                          "run's profile."),
        "methods": _methods(manifest), "limitations": list(narrative.LIMITATIONS),
        "appendix_intro": _appendix_intro(verdicts, unshown),
        "appendix_figures": [_figure(f, root) for f in shown],
    }


def _appendix_intro(verdicts, unshown: list) -> str:
    """What the appendix holds and where the rest is: every cited number in audit.json (with the pandas query
    that selects its rows) and audit.md, the figures not shown in figures/."""
    cited = sum(len(v.evidence) for v in verdicts)
    minor = sum(len(v.minor_concerns) + len(v.analyses_needed) for v in verdicts)
    text = (f"The figures the claims' sections leave out, in order of importance. The {decisive.plural(cited, 'number')} "
            f"the verdicts cite, each with the pandas query that selects its rows from its table under tables/, are "
            f"in audit.json, and the {decisive.plural(minor, 'minor concern')} and analyses still needed are listed "
            "per claim there and in audit.md.")
    if unshown:
        names = ", ".join(f"{f.stem}.{f.path.rsplit('.', 1)[-1]}" for f in unshown)
        text += f" {decisive.plural(len(unshown), 'further figure')} {'is' if len(unshown) == 1 else 'are'} in figures/: {names}."
    return text


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
