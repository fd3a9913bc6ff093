"""From stored tables to figures, audit and report, and the manifest that ties them to specs and code.

Used after a run and by ``--audit-only --from DIR``, which rebuilds everything from DIR's tables alone,
once DIR is known to hold a finished run whose manifest, tables and figures all match their SHA-256.
Figures are drawn once at the size they are printed, saved as SVG (vector) and closed; analyses draw in parallel worker processes when there are
several and the machine has the cores (each worker reads its own analysis's tables from disk, each table checked
against its SHA-256); the report is typeset from the SVGs. Each analysis's figures carry a key (the SHA-256 of its
tables' digests and of the code that draws them): a rebuild from a run whose key matches copies that run's
verified files instead of drawing them again, so changing a claim rule re-typesets in seconds.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import logging
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

from astrostats import extras, outputs, safe_io
from astrostats.claims import AuditedCircuit, judging
from astrostats.report import audit, pdf, style
from astrostats.report.layout import FigureRef
from astrostats.validation import InputError, check_identifier

LOG = logging.getLogger(__name__)
MAIN_FIGURE = "main"  # an analysis's headline figure is saved as figures/<analysis>.svg
SUFFIX = style.FORMAT  # the figures' file format and suffix (svg)
STORED_SUFFIXES = (SUFFIX, "png")  # what a stored run's figures may be (older runs: PNG, drawn again on rebuild)
PAPER_KIND = "paper"
FIGURE_STEM = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,160}")  # used with fullmatch ("$" passes a final newline)
MAX_FIGURE_BYTES = 2**28  # a stored figure read into memory (256 MiB)
MAX_REPORT_BYTES = 2**30


def load_tables(source: Path, manifest: dict) -> tuple[dict, dict]:
    """All tables of completed analyses, and each analysis's own tables (for its figures)."""
    per_analysis = {}
    for record in manifest.get("analyses", []):
        if record["status"] == "ok":  # each table checked against its recorded SHA-256 before it is read
            per_analysis[record["name"]] = outputs.read_tables(source / "tables", record["tables"])
    everything = {name: table for tables in per_analysis.values() for name, table in tables.items()}
    return everything, per_analysis


def _save(figures: dict, out_dir: Path, stem_of) -> list[tuple[str, str]]:
    """Each figure as figures/<stem>.svg (a safe name, written atomically inside out_dir), then closed."""
    import matplotlib.pyplot as plt

    saved = []
    for name, figure in figures.items():
        stem = stem_of(name)
        if not FIGURE_STEM.fullmatch(stem):
            raise InputError(f"figure name {stem!r} is not a safe file name")
        buffer = io.BytesIO()
        figure.savefig(buffer, format=SUFFIX, dpi=style.dpi_for(figure), metadata={"Date": None})  # same bytes
        plt.close(figure)
        outputs.atomic_write_bytes(out_dir / "figures" / f"{stem}.{SUFFIX}", buffer.getvalue(), root=out_dir)
        saved.append((name, f"figures/{stem}.{SUFFIX}"))
    return saved


def _stem(analysis: str, name: str) -> str:
    return analysis if name == MAIN_FIGURE else f"{analysis}_{name}"


def draw_one(kind: str, analysis: str, out_dir: Path, tables: dict | None = None, records: dict | None = None,
             circuit: AuditedCircuit = AuditedCircuit()) -> list[tuple[str, str]]:
    """One analysis's figures, saved and closed: from ``tables`` (name -> DataFrame), or read from tables/ with
    their manifest ``records`` (each checked against its SHA-256; a spawned worker's way in); ``circuit`` is the
    circuit under audit, drawn as 'the circuit'."""
    from astrostats.report.figures import draw_analysis

    style.apply()
    if tables is None:
        tables = outputs.read_tables(out_dir / "tables", records)
    return _save(draw_analysis(kind, tables, circuit), out_dir, lambda name: _stem(analysis, name))


def draw_paper(by_kind: dict, out_dir: Path, circuit: AuditedCircuit = AuditedCircuit()) -> list[tuple[str, str]]:
    """The paper's figures, drawn across analyses (kind -> tables), saved and closed."""
    from astrostats.report.figures import paper

    style.apply()
    with style.drawing_for(circuit.name):
        return _save(paper.draw(by_kind, circuit), out_dir, lambda name: f"paper_{name}")


def _submit(pool, function, argument, per_analysis: dict, out_dir: Path, method: str, circuit: AuditedCircuit):
    """A call returning one owner's drawn figures: waiting on the pool's future, or (no pool) drawing them here."""
    if function is draw_one:
        in_memory = pool is None or method == "fork"
        arguments = (argument["kind"], argument["name"], out_dir, per_analysis[argument["name"]] if in_memory else None,
                     None if in_memory else argument["tables"], circuit)
    else:
        arguments = (argument, out_dir, circuit)
    if pool is None:
        return lambda: function(*arguments)
    return pool.submit(function, *arguments).result


def worker_count(analyses: int) -> int:
    """Processes for the figures: $ASTROSTATS_REPORT_WORKERS (a count, or 'auto': one per analysis up to the
    cores, at most 4); a single process when there is one analysis or one core."""
    setting = os.environ.get("ASTROSTATS_REPORT_WORKERS", "auto")
    if setting == "auto":
        return max(1, min(analyses, os.cpu_count() or 1, 4))
    if not setting.isdigit() or int(setting) < 1:
        raise InputError(f"ASTROSTATS_REPORT_WORKERS: expected 'auto' or a count >= 1, got {setting!r}")
    return int(setting)


def figure_code_sha256() -> str:
    """SHA-256 of what draws the figures: the figure modules, the style, this module, the constants they draw
    (tolerance, synapse counts), matplotlib's and seaborn's versions."""
    folder = Path(__file__).parent
    digest = hashlib.sha256(f"matplotlib {version('matplotlib')} seaborn {version('seaborn')}".encode())
    sources = [*(folder / "figures").glob("*.py"), folder / "style.py", Path(__file__), folder.parent / "constants.py"]
    for path in sorted(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def figure_key(records: list[dict], code: str) -> str:
    """The key of the figures drawn from these analyses' tables: their kinds, names and table digests, and the
    drawing code's digest."""
    digest = hashlib.sha256(code.encode())
    for record in sorted(records, key=lambda r: r["name"]):
        digest.update(f"{record['kind']}/{record['name']}".encode())
        for name, table in sorted(record["tables"].items()):
            digest.update(f"{name} {table.get('parquet_sha256')} {table.get('csv_sha256')}".encode())
    return digest.hexdigest()


def reuse_figures(owner: str, key: str, stored: tuple[Path, dict] | None, out_dir: Path) -> list | None:
    """The (name, path) figures of ``owner`` copied from a stored run whose figures carry the same key, each
    checked against the SHA-256 that run recorded; None (draw them) when any is missing, mismatched or unsafe."""
    if stored is None:
        return None
    source, manifest = stored
    stored_keys = manifest.get("figure_keys")
    if not isinstance(stored_keys, dict) or stored_keys.get(owner) != key:
        return None
    digests, copies = manifest.get("figures") or {}, []
    for entry in manifest.get("report_figures") or []:
        if not (isinstance(entry, list) and len(entry) == 4 and entry[2] == owner):
            continue
        name, path = entry[1], entry[3]
        stem = Path(str(path)).stem
        safe = isinstance(name, str) and FIGURE_STEM.fullmatch(stem) and path == f"figures/{stem}.{SUFFIX}"
        if not safe or stem not in digests:
            return None
        try:
            data = safe_io.read_bytes(source / path, limit=MAX_FIGURE_BYTES, what="stored figure", root=source)
        except (OSError, safe_io.UnsafePath):
            data = b""
        if hashlib.sha256(data).hexdigest() != digests[stem]:
            return None
        copies.append((name, path, data))
    for _, path, data in copies:
        if (out_dir / path).resolve() != (source / path).resolve():
            outputs.atomic_write_bytes(out_dir / path, data, root=out_dir)
    return [(name, path) for name, path, _ in copies]


def draw_figures(out_dir: Path, manifest: dict, per_analysis: dict, workers: int | None = None,
                 stored: tuple[Path, dict] | None = None) -> tuple[list, dict]:
    """Every figure once, as FigureRef, and each owner's figure key; figures whose key matches the ``stored``
    run (its folder and verified manifest) are copied from it. A broken figure is logged and recorded, never
    fatal."""
    records = [r for r in manifest.get("analyses", []) if r["name"] in per_analysis]
    code = figure_code_sha256()
    keys = {r["name"]: figure_key([r], code) for r in records}
    keys[PAPER_KIND] = figure_key(records, code)
    results: dict[str, list] = {}
    for record in records:
        reused = reuse_figures(record["name"], keys[record["name"]], stored, out_dir)
        if reused is not None:
            results[record["name"]] = reused
    jobs = {r["name"]: (draw_one, r) for r in records if r["name"] not in results}
    paper_figures = reuse_figures(PAPER_KIND, keys[PAPER_KIND], stored, out_dir)
    if paper_figures is None:
        by_kind: dict[str, dict] = {}
        for record in records:
            by_kind.setdefault(record["kind"], {}).update(per_analysis[record["name"]])
        jobs[PAPER_KIND] = (draw_paper, by_kind)
    LOG.info("figures drawn: %s; copied from the stored run (same tables and code): %s",
             ", ".join(jobs) or "none", ", ".join(owner for owner in keys if owner not in jobs) or "none")
    workers = worker_count(len(jobs)) if workers is None else workers
    if jobs:  # matplotlib, seaborn and the figure modules, imported once before the workers fork
        style.apply()
        importlib.import_module("astrostats.report.figures.paper")
    # fork: workers start in milliseconds with the tables already in memory (spawn would re-import pandas and
    # matplotlib, seconds each, and receive the tables pickled); drawing touches no torch or OpenMP state a fork
    # could have left locked
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                initializer=safe_io.die_with_parent, initargs=(os.getpid(),))  # no orphan writes
            if workers > 1 else None)
    try:
        circuit = AuditedCircuit.from_manifest(manifest)
        pending = {owner: _submit(pool, function, argument, per_analysis, out_dir, method, circuit)
                   for owner, (function, argument) in jobs.items()}
        for owner, outcome in pending.items():
            try:
                drawn = outcome()
            except Exception:  # a broken figure must not cost the audit
                LOG.exception("figures of %s failed", owner)
                drawn = []
                keys.pop(owner)  # no key: the next rebuild draws them again rather than copying nothing
                record = next((r for r in records if r["name"] == owner), None)
                if record is not None:
                    record.setdefault("warnings", []).append("figures could not be drawn (see astrostats.log)")
            if owner == PAPER_KIND:
                paper_figures = drawn
            else:
                results[owner] = drawn
    finally:
        if pool is not None:
            pool.shutdown()
    figures = [FigureRef(r["kind"], name, r["name"], path) for r in records for name, path in results.get(r["name"], [])]
    figures += [FigureRef(PAPER_KIND, name, PAPER_KIND, path) for name, path in paper_figures or []]
    return figures, keys


def claim_modules() -> dict:
    """Claim id -> its module (for optional SHORT_NAME and WOULD_CHANGE), for every claim in the registry."""
    return {claim_id: importlib.import_module(module_name) for claim_id, module_name in judging.CLAIMS}


def build_outputs(out_dir: Path, manifest: dict, workers: int | None = None,
                  stored: tuple[Path, dict] | None = None) -> list:
    """Figures, audit.md, audit.json, report.pdf and manifest.json in out_dir, from the tables in out_dir
    (figures whose key matches the ``stored`` run's are copied from it)."""
    started = time.perf_counter()
    tables, per_analysis = load_tables(out_dir, manifest)
    typeset_report = extras.available("report")  # the core install writes the tables, audit.md and audit.json
    figures, keys = draw_figures(out_dir, manifest, per_analysis, workers, stored) if typeset_report else ([], {})
    drawn = time.perf_counter()
    verdicts = judging.judge_all(tables, manifest)
    validation = audit.validation_rates(tables)
    outputs.atomic_write_text(out_dir / "audit.md", audit.to_markdown(verdicts, manifest, validation), root=out_dir)
    outputs.write_json(out_dir / "audit.json", audit.to_json(verdicts, manifest, validation), root=out_dir)
    owner = {table: record["name"] for record in manifest.get("analyses", []) for table in record.get("tables", [])}
    if typeset_report:
        data = pdf.report_data(verdicts, manifest, figures, tables, owner, out_dir, claim_modules())
        temporary = safe_io.create_exclusive(out_dir, out_dir, f".report.{os.getpid()}.", ".pdf.tmp")  # fresh name
        try:
            pdf.compile_report(data, out_dir, temporary)
            typeset = safe_io.read_bytes(temporary, limit=MAX_REPORT_BYTES, what="report", root=out_dir)
            outputs.atomic_write_bytes(out_dir / "report.pdf", typeset, root=out_dir)  # umask, atomic
        finally:
            safe_io.unlink(out_dir, temporary)
    else:
        safe_io.unlink(out_dir, out_dir / "report.pdf")  # an earlier run's report must not pass for this one's
        LOG.warning("no figures or report.pdf (audit.md and audit.json hold the verdicts): %s",
                    extras.message(extras.missing("report")[0], "report"))
    timings = {"figures_seconds": round(drawn - started, 2),
               "audit_and_report_seconds": round(time.perf_counter() - drawn, 2)}
    LOG.info("report: figures %.1f s, audit and report %.1f s", timings["figures_seconds"],
             timings["audit_and_report_seconds"])
    manifest = {**manifest, "audit": {v.claim_id: v.verdict for v in verdicts}, "report_timings": timings,
                "figures": {path.stem: outputs.sha256_file(path, root=out_dir)  # a planted link or FIFO: not ours
                            for path in sorted((out_dir / "figures").glob(f"*.{SUFFIX}"))
                            if path.is_file() and not path.is_symlink()},
                "report_figures": [[f.kind, f.name, f.analysis, f.path] for f in figures], "figure_keys": keys}
    outputs.write_json(out_dir / "manifest.json", manifest, root=out_dir, sealed=True)
    return verdicts


def verified_manifest(source: Path, *, locked_here: bool = False) -> dict:
    """The manifest of a finished run in ``source``, once it, every table file it lists (parquet, and CSV where
    recorded) and every figure match their recorded SHA-256; an InputError naming the first file that does not."""
    problem = outputs.unfinished_run(source, locked_here=locked_here)
    if problem is not None:
        raise InputError(f"--from: {str(source)!r} is not a finished run: {problem}")
    manifest = outputs.read_sealed(source / "manifest.json", "--from: manifest", root=source)
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
        if not isinstance(stem, str) or not FIGURE_STEM.fullmatch(stem):
            raise outputs.CorruptOutput(f"{where}: figure name {stem!r} is not a safe file name")
        found, path = None, source / "figures" / f"{stem}.{SUFFIX}"
        for suffix in STORED_SUFFIXES:  # a run from before the figures were vector kept PNGs
            candidate = source / "figures" / f"{stem}.{suffix}"
            try:
                found, path = outputs.sha256_file(candidate, root=source), candidate
            except (OSError, safe_io.UnsafePath):
                continue
            break
        if found != digest:
            raise outputs.CorruptOutput(f"--from: stored figure refused: {path} is missing or does not match its "
                                        "recorded SHA-256")
    return manifest


def redraw_requested() -> bool:
    """$ASTROSTATS_REDRAW_FIGURES=1: a rebuild draws every figure again instead of copying those whose key
    matches (benchmarks; a style change outside the hashed code); 0 or unset: copy."""
    setting = os.environ.get("ASTROSTATS_REDRAW_FIGURES", "0")
    if setting not in ("0", "1"):
        raise InputError(f"ASTROSTATS_REDRAW_FIGURES: expected 0 or 1, got {setting!r}")
    return setting == "1"


def rebuild_from(source: Path, out_dir: Path, manifest: dict, workers: int | None = None) -> list:
    """--audit-only: audit and report from a verified manifest's tables, recomputing nothing. Tables are
    copied byte for byte, each copy checked against its SHA-256 as it is read."""
    if out_dir.resolve() != source.resolve():
        for record in manifest["analyses"]:
            for name, table in (record.get("tables") or {}).items() if record["status"] == "ok" else ():
                for suffix in outputs.recorded_suffixes(table):  # as the run wrote them: parquet, CSV if any
                    try:
                        data = outputs.read_table_bytes(source / "tables", name, table, suffix)
                    except outputs.CorruptOutput as error:
                        raise outputs.CorruptOutput(f"--from: {error} (changed while it was copied)") from None
                    outputs.atomic_write_bytes(out_dir / "tables" / f"{name}.{suffix}", data, root=out_dir)
                if "csv" not in outputs.recorded_suffixes(table):  # no stale CSV beside a copied table
                    safe_io.unlink(out_dir, out_dir / "tables" / f"{name}.csv")
    stored = None if redraw_requested() else (source, manifest)
    manifest = {**manifest, "rebuilt_from": str(source)}
    return build_outputs(out_dir, manifest, workers, stored)
