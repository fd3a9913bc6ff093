"""From stored tables to figures, audit and report, and the manifest that ties them to specs and code.

Used after a run and by ``--audit-only --from DIR``, which rebuilds everything from DIR's tables alone.
"""
from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from astrostats import outputs
from astrostats.validation import InputError
from astrostats.report import audit, pdf
from astrostats.report.figures import draw_analysis

LOG = logging.getLogger(__name__)
MAIN_FIGURE = "main"  # an analysis's headline figure is saved as figures/<analysis>.png


def load_tables(source: Path, manifest: dict) -> tuple[dict, dict]:
    """All tables of completed analyses, and each analysis's own tables (for its figures)."""
    per_analysis = {}
    for record in manifest.get("analyses", []):
        if record["status"] == "ok":
            per_analysis[record["name"]] = outputs.read_tables(source / "tables", record["tables"])
    everything = {name: table for tables in per_analysis.values() for name, table in tables.items()}
    return everything, per_analysis


def draw_figures(out_dir: Path, manifest: dict, per_analysis: dict) -> dict:
    """Figures per kind as [(name, Figure)], each also saved to figures/<analysis>_<name>.png."""
    figures: dict[str, list] = {}
    for record in manifest.get("analyses", []):
        if record["name"] not in per_analysis:
            continue
        try:
            drawn = draw_analysis(record["kind"], per_analysis[record["name"]])
        except Exception:  # a broken figure must not cost the audit
            LOG.exception("figures of %s failed", record["name"])
            record.setdefault("warnings", []).append("figures could not be drawn (see astrostats.log)")
            continue
        for name, figure in drawn.items():
            stem = record["name"] if name == MAIN_FIGURE else f"{record['name']}_{name}"
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
            outputs.atomic_write_bytes(out_dir / "figures" / f"{stem}.png", buffer.getvalue())
            figures.setdefault(record["kind"], []).append((stem, figure))
    return figures


def evidence_tables(verdicts, tables: dict) -> dict:
    """Per claim, the rows its evidence cites, table by table."""
    selected = {}
    for verdict in verdicts:
        by_table: dict[str, list] = {}
        for item in verdict.evidence:
            if item.table in tables:
                try:
                    by_table.setdefault(item.table, []).append(tables[item.table].query(item.rows))
                except Exception:
                    LOG.warning("evidence rows %r do not select from %s", item.rows, item.table)
        selected[verdict.claim_id] = [(name, pd.concat(parts).drop_duplicates()) for name, parts in by_table.items()]
    return selected


def build_outputs(out_dir: Path, manifest: dict, source: Path | None = None) -> list:
    """Figures, audit.md, audit.json, report.pdf and manifest.json in out_dir, from the tables in source."""
    tables, per_analysis = load_tables(source or out_dir, manifest)
    figures = draw_figures(out_dir, manifest, per_analysis)
    verdicts = audit.judge_all(tables, manifest)
    validation = audit.validation_rates(tables)
    outputs.atomic_write_text(out_dir / "audit.md", audit.to_markdown(verdicts, manifest, validation))
    outputs.write_json(out_dir / "audit.json", audit.to_json(verdicts, manifest, validation))
    temporary = out_dir / ".report.pdf.tmp"
    pdf.write_report(temporary, verdicts, manifest, figures, evidence_tables(verdicts, tables))
    temporary.replace(out_dir / "report.pdf")
    for kind_figures in figures.values():
        for _, figure in kind_figures:
            plt.close(figure)
    manifest = {**manifest, "audit": {v.claim_id: v.verdict for v in verdicts},
                "figures": sorted(path.name for path in (out_dir / "figures").glob("*.png"))}
    outputs.write_json(out_dir / "manifest.json", manifest)
    return verdicts


def rebuild_from(source: Path, out_dir: Path) -> list:
    """--audit-only: audit and report from stored tables, recomputing nothing."""
    try:
        manifest = json.loads((source / "manifest.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"--from: {str(source / 'manifest.json')!r} is not a readable manifest ({error})") from None
    if out_dir.resolve() != source.resolve():
        shutil.copytree(source / "tables", out_dir / "tables", dirs_exist_ok=True)
    manifest["rebuilt_from"] = str(source)
    return build_outputs(out_dir, manifest, source)
