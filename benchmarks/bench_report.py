"""Report and audit rebuilt from stored tables, `python -m astrostats.analyze --audit-only --from DIR`, as a user
runs it: a fresh process (imports included), wall and CPU seconds, with the split between figures and
audit + typesetting that the manifest records. Twice: every figure drawn (ASTROSTATS_REDRAW_FIGURES=1, what a
run's own report step or a rebuild after a drawing-code change costs) at 1 worker and at the automatic worker
count, and figures reused (copied from DIR where their key matches, what a rebuild after a rule change costs).

DIR is $ASTROSTATS_BENCH_RUN (a default run's folder; the README's numbers) or, with --quick or without it,
the small stored run the tests use (tests/data/report_run), first written out as a finished run.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "tests" / "data" / "report_run"


def rebuild(source: Path, workers: str, redraw: bool) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rebuilt"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        begin = time.perf_counter()
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "ASTROSTATS_REPORT_WORKERS": workers,
                       "ASTROSTATS_REDRAW_FIGURES": "1" if redraw else "0"}
        completed = subprocess.run([sys.executable, "-m", "astrostats.analyze", "--audit-only", "--from", str(source),
                                    "--out", str(out), "--quiet"], capture_output=True, text=True, env=environment)
        wall = time.perf_counter() - begin
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
        pages = subprocess.run(["pdfinfo", str(out / "report.pdf")], capture_output=True, text=True).stdout
        audit_kb = (out / "audit.md").stat().st_size / 1024 if (out / "audit.md").exists() else None
    timings = manifest.get("report_timings", {})
    return {"benchmark": "report", "source": source.name, "workers": workers,
            "figures_from": "drawn" if redraw else "reused where the key matches", "exit": completed.returncode,
            "wall_s": round(wall, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "figures_s": timings.get("figures_seconds"), "audit_report_s": timings.get("audit_and_report_seconds"),
            "figures": len(manifest.get("report_figures", [])),
            "pages": next((line.split()[-1] for line in pages.splitlines() if line.startswith("Pages:")), None),
            "audit_md_kb": None if audit_kb is None else round(audit_kb, 1)}


def finished_stored_run(folder: Path) -> Path:
    """The tests' stored tables as a finished run (written by the report builder, its manifest sealed with this
    machine's key), which ``--audit-only --from`` accepts: the stored folder itself carries no seal."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stored_report_run", ROOT / "tests" / "test_report.py")
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)  # its stored_run lays the tables out as a run writes them
    from astrostats.report import build

    out = folder / "stored"
    build.build_outputs(out, tests.stored_run(out), workers=1)
    return out


def run(quick: bool = False) -> dict[str, list[dict]]:
    with tempfile.TemporaryDirectory() as folder:
        if quick or not os.environ.get("ASTROSTATS_BENCH_RUN"):
            source = finished_stored_run(Path(folder))
        else:
            source = Path(os.environ["ASTROSTATS_BENCH_RUN"])
        return {"report": [rebuild(source, "1", True), rebuild(source, "auto", True), rebuild(source, "auto", False)]}
