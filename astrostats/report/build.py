"""From stored tables to figures, audit and report, and the manifest that ties them to specs and code.

Used after a run and by ``--audit-only --from DIR``, which rebuilds everything from DIR's tables alone,
once DIR is known to hold a finished run whose manifest, tables and figures all match their SHA-256.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from astrostats import outputs
from astrostats.validation import InputError, check_identifier
from astrostats.report import audit, pdf
from astrostats.report.figures import draw_analysis

LOG = logging.getLogger(__name__)
MAIN_FIGURE = "main"  # an analysis's headline figure is saved as figures/<analysis>.png
FIGURE_STEM = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,160}$")


def load_tables(source: Path, manifest: dict) -> tuple[dict, dict]:
    """All tables of completed analyses, and each analysis's own tables (for its figures)."""
    per_analysis = {}
    for record in manifest.get("analyses", []):
        if record["status"] == "ok":  # each table checked against its recorded SHA-256 before it is read
            per_analysis[record["name"]] = outputs.read_tables(source / "tables", record["tables"])
    everything = {name: table for tables in per_analysis.values() for name, table in tables.items()}
    return everything, per_analysis


def draw_figures(out_dir: Path, manifest: dict, per_analysis: dict) -> tuple[dict, dict]:
    """Figures per kind as [(name, Figure)], each also saved to figures/<analysis>_<name>.png; and the
    SHA-256 of every file saved (for the manifest)."""
    figures: dict[str, list] = {}
    digests: dict[str, str] = {}
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
            if not FIGURE_STEM.match(stem):
                raise InputError(f"figure name {stem!r} is not a safe file name")
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
            digests[stem] = outputs.atomic_write_bytes(out_dir / "figures" / f"{stem}.png", buffer.getvalue(),
                                                       root=out_dir)
            figures.setdefault(record["kind"], []).append((stem, figure))
    return figures, digests


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


def build_outputs(out_dir: Path, manifest: dict) -> list:
    """Figures, audit.md, audit.json, report.pdf and manifest.json in out_dir, from the tables in out_dir."""
    tables, per_analysis = load_tables(out_dir, manifest)
    figures, digests = draw_figures(out_dir, manifest, per_analysis)
    verdicts = audit.judge_all(tables, manifest)
    outputs.atomic_write_text(out_dir / "audit.md", audit.to_markdown(verdicts, manifest), root=out_dir)
    outputs.write_json(out_dir / "audit.json", audit.to_json(verdicts, manifest), root=out_dir)
    handle, temporary = tempfile.mkstemp(dir=outputs.inside(out_dir, out_dir), prefix=f".report.{os.getpid()}.",
                                         suffix=".pdf.tmp")
    os.close(handle)
    try:
        pdf.write_report(Path(temporary), verdicts, manifest, figures, evidence_tables(verdicts, tables))
        report = outputs.inside(out_dir, out_dir / "report.pdf")
        outputs.atomic_write_bytes(report, Path(temporary).read_bytes(), root=out_dir)  # umask, atomic
    finally:
        Path(temporary).unlink(missing_ok=True)
    for kind_figures in figures.values():
        for _, figure in kind_figures:
            plt.close(figure)
    manifest = {**manifest, "audit": {v.claim_id: v.verdict for v in verdicts}, "figures": digests}
    outputs.write_json(out_dir / "manifest.json", manifest, root=out_dir, sealed=True)
    return verdicts


def verified_manifest(source: Path, *, locked_here: bool = False) -> dict:
    """The manifest of a finished run in ``source``, once it, every table it lists (parquet and CSV) and
    every figure match their recorded SHA-256; an InputError naming the first file that does not."""
    problem = outputs.unfinished_run(source, locked_here=locked_here)
    if problem is not None:
        raise InputError(f"--from: {str(source)!r} is not a finished run: {problem}")
    manifest = outputs.read_sealed(source / "manifest.json", "--from: manifest")
    where = f"--from: {str(source / 'manifest.json')!r}"
    analyses = manifest.get("analyses")
    if not isinstance(analyses, list):
        raise outputs.CorruptOutput(f"{where}: 'analyses' is not a list")
    for record in analyses:
        fields = {"status": str, "kind": str, "profile": str, "source": str, "seed": int}
        if not isinstance(record, dict) or any(not isinstance(record.get(key), kind) for key, kind in fields.items()):
            raise outputs.CorruptOutput(f"{where}: an analysis record is malformed (it needs "
                                        f"{', '.join(fields)}): {str(record)[:60]}")
        check_identifier(f"{where}: analysis name", record.get("name"))
        if record["status"] == "ok":
            if not isinstance(record.get("tables"), dict):
                raise outputs.CorruptOutput(f"{where}: {record['name']}: 'tables' is not an object")
            for name, table in record["tables"].items():
                problem = outputs.table_problem(source / "tables", name, table)
                if problem is not None:
                    raise outputs.CorruptOutput(f"--from: stored table refused: {problem}")
    figures = manifest.get("figures", {})
    if not isinstance(figures, dict):
        raise outputs.CorruptOutput(f"{where}: 'figures' is not an object of SHA-256 digests")
    for stem, digest in figures.items():
        path = source / "figures" / f"{stem}.png"
        if not isinstance(stem, str) or not FIGURE_STEM.match(stem):
            raise outputs.CorruptOutput(f"{where}: figure name {stem!r} is not a safe file name")
        if not path.is_file() or outputs.sha256_file(path) != digest:
            raise outputs.CorruptOutput(f"--from: stored figure refused: {path} is missing or does not match its "
                                        "recorded SHA-256")
    return manifest


def rebuild_from(source: Path, out_dir: Path, manifest: dict) -> list:
    """--audit-only: audit and report from a verified manifest's tables, recomputing nothing. Tables are
    copied byte for byte, each copy checked against its SHA-256 as it is read."""
    if out_dir.resolve() != source.resolve():
        for record in manifest["analyses"]:
            for name, table in (record.get("tables") or {}).items() if record["status"] == "ok" else ():
                for suffix in ("parquet", "csv"):
                    data = (source / "tables" / f"{name}.{suffix}").read_bytes()
                    if hashlib.sha256(data).hexdigest() != table[f"{suffix}_sha256"]:
                        raise outputs.CorruptOutput(f"--from: {source / 'tables' / f'{name}.{suffix}'} changed "
                                                    "while it was copied")
                    outputs.atomic_write_bytes(out_dir / "tables" / f"{name}.{suffix}", data, root=out_dir)
    manifest = {**manifest, "rebuilt_from": str(source)}
    return build_outputs(out_dir, manifest)
