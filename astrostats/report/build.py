"""From stored tables to figures, audit and report, and the manifest that ties them to specs and code.

Used after a run and by ``--audit-only --from DIR``, which rebuilds everything from DIR's tables alone.
Figures are drawn once, saved as PNG and closed; analyses draw in parallel worker processes when there are
several and the machine has the cores (each worker reads its own analysis's tables from disk); the report
is typeset from the PNGs.
"""
from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt

from astrostats import outputs
from astrostats.validation import InputError
from astrostats.report import audit, pdf, style
from astrostats.report.figures import draw_analysis, paper
from astrostats.report.layout import FigureRef

LOG = logging.getLogger(__name__)
MAIN_FIGURE = "main"  # an analysis's headline figure is saved as figures/<analysis>.png
PAPER_KIND = "paper"


def load_tables(source: Path, manifest: dict) -> tuple[dict, dict]:
    """All tables of completed analyses, and each analysis's own tables (for its figures)."""
    per_analysis = {}
    for record in manifest.get("analyses", []):
        if record["status"] == "ok":
            per_analysis[record["name"]] = outputs.read_tables(source / "tables", record["tables"])
    everything = {name: table for tables in per_analysis.values() for name, table in tables.items()}
    return everything, per_analysis


def _save(figures: dict, out_dir: Path, stem_of) -> list[tuple[str, str]]:
    saved = []
    for name, figure in figures.items():
        path = out_dir / "figures" / f"{stem_of(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        figure.savefig(temporary, format="png", dpi=style.DPI)
        temporary.replace(path)
        plt.close(figure)
        saved.append((name, f"figures/{path.name}"))
    return saved


def _stem(analysis: str, name: str) -> str:
    return analysis if name == MAIN_FIGURE else f"{analysis}_{name}"


def draw_one(kind: str, analysis: str, tables, out_dir: Path) -> list[tuple[str, str]]:
    """One analysis's figures, saved and closed; tables may be a dict or the names to read from tables/."""
    style.apply()
    if not isinstance(tables, dict):
        tables = outputs.read_tables(out_dir / "tables", tables)
    return _save(draw_analysis(kind, tables), out_dir, lambda name: _stem(analysis, name))


def worker_count(analyses: int) -> int:
    """Processes for the figures: $ASTROSTATS_REPORT_WORKERS (a count, or 'auto': one per analysis up to the
    cores, at most 4); a single process when there is one analysis or one core."""
    setting = os.environ.get("ASTROSTATS_REPORT_WORKERS", "auto")
    if setting == "auto":
        return max(1, min(analyses, os.cpu_count() or 1, 4))
    if not setting.isdigit() or int(setting) < 1:
        raise InputError(f"ASTROSTATS_REPORT_WORKERS: expected 'auto' or a count >= 1, got {setting!r}")
    return int(setting)


def draw_figures(out_dir: Path, manifest: dict, per_analysis: dict, workers: int | None = None) -> list:
    """Every figure once, as FigureRef; a broken figure is logged and recorded, never fatal."""
    records = [r for r in manifest.get("analyses", []) if r["name"] in per_analysis]
    workers = worker_count(len(records)) if workers is None else workers
    results: dict[str, list] = {}
    style.apply()
    if workers > 1:
        # fork: workers start in milliseconds with the tables already in memory (spawn would re-import pandas
        # and matplotlib, seconds each); drawing touches no torch or OpenMP state a fork could have left locked
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            futures = {r["name"]: pool.submit(draw_one, r["kind"], r["name"],
                                              per_analysis[r["name"]] if method == "fork" else r["tables"], out_dir)
                       for r in records}
            for record in records:
                try:
                    results[record["name"]] = futures[record["name"]].result()
                except Exception:
                    LOG.exception("figures of %s failed", record["name"])
                    record.setdefault("warnings", []).append("figures could not be drawn (see astrostats.log)")
    else:
        for record in records:
            try:
                results[record["name"]] = draw_one(record["kind"], record["name"], per_analysis[record["name"]],
                                                   out_dir)
            except Exception:  # a broken figure must not cost the audit
                LOG.exception("figures of %s failed", record["name"])
                record.setdefault("warnings", []).append("figures could not be drawn (see astrostats.log)")
    figures = [FigureRef(r["kind"], name, r["name"], path) for r in records for name, path in results.get(r["name"], [])]
    try:
        by_kind: dict[str, dict] = {}
        for record in records:
            by_kind.setdefault(record["kind"], {}).update(per_analysis[record["name"]])
        drawn = paper.draw(by_kind)
    except Exception:
        LOG.exception("the paper's figures could not be drawn")
        drawn = {}
    figures += [FigureRef(PAPER_KIND, name, PAPER_KIND, path)
                for name, path in _save(drawn, out_dir, lambda name: f"paper_{name}")]
    return figures


def claim_modules() -> dict:
    """Claim id -> its module (for optional SHORT_NAME and WOULD_CHANGE), for every claim in the registry."""
    return {claim_id: importlib.import_module(module_name) for claim_id, module_name in audit.CLAIMS}


def build_outputs(out_dir: Path, manifest: dict, source: Path | None = None, workers: int | None = None) -> list:
    """Figures, audit.md, audit.json, report.pdf and manifest.json in out_dir, from the tables in source."""
    started = time.perf_counter()
    tables, per_analysis = load_tables(source or out_dir, manifest)
    figures = draw_figures(out_dir, manifest, per_analysis, workers)
    drawn = time.perf_counter()
    verdicts = audit.judge_all(tables, manifest)
    validation = audit.validation_rates(tables)
    outputs.atomic_write_text(out_dir / "audit.md", audit.to_markdown(verdicts, manifest, validation))
    outputs.write_json(out_dir / "audit.json", audit.to_json(verdicts, manifest, validation))
    owner = {table: record["name"] for record in manifest.get("analyses", []) for table in record.get("tables", [])}
    data = pdf.report_data(verdicts, manifest, figures, tables, owner, out_dir, claim_modules())
    temporary = out_dir / ".report.pdf.tmp"
    pdf.compile_report(data, out_dir, temporary)
    temporary.replace(out_dir / "report.pdf")
    timings = {"figures_seconds": round(drawn - started, 2),
               "audit_and_report_seconds": round(time.perf_counter() - drawn, 2)}
    LOG.info("report: figures %.1f s, audit and report %.1f s", timings["figures_seconds"],
             timings["audit_and_report_seconds"])
    manifest = {**manifest, "audit": {v.claim_id: v.verdict for v in verdicts}, "report_timings": timings,
                "figures": sorted(path.name for path in (out_dir / "figures").glob("*.png")),
                "report_figures": [[f.kind, f.name, f.analysis, f.path] for f in figures]}
    outputs.write_json(out_dir / "manifest.json", manifest)
    return verdicts


def rebuild_from(source: Path, out_dir: Path, workers: int | None = None) -> list:
    """--audit-only: audit and report from stored tables, recomputing nothing."""
    try:
        manifest = json.loads((source / "manifest.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"--from: {str(source / 'manifest.json')!r} is not a readable manifest ({error})") from None
    if out_dir.resolve() != source.resolve():
        shutil.copytree(source / "tables", out_dir / "tables", dirs_exist_ok=True)
    manifest["rebuilt_from"] = str(source)
    return build_outputs(out_dir, manifest, out_dir, workers)
