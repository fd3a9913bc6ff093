"""Wall time of the default run, `python -m astrostats.analyze` (every analysis at the quick profile), as a newcomer
runs it: a fresh process, default threads; per analysis its wall and CPU seconds from the manifest (CPU time is
what a shared machine does not disturb much: compare budgets in it), the figures' and report's seconds, the
whole run's CPU seconds (every process), the peak memory and the load average at the start and the end.

    python benchmarks/run.py --only default_run            # the quick profile (the target: <= 150 s on 2 cores)
    python benchmarks/run.py --only default_run --quick    # the smoke profile (the target: <= 15 s)
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def analyze_run(profile: str, name: str) -> list[dict]:
    """Every analysis at ``profile`` in a fresh process: seconds per analysis, total wall time, peak memory.

    The outputs go to a temporary folder, or to $ASTROSTATS_BENCH_OUT when set (to read the run afterwards).
    """
    with tempfile.TemporaryDirectory() as folder:
        out = Path(os.environ.get("ASTROSTATS_BENCH_OUT") or Path(folder) / "reports")
        load_start, cpu_start = os.getloadavg(), _children_cpu()
        begin = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "astrostats.analyze", "--profile", profile, "--quiet",
                                    "--out", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - begin
        cpu = _children_cpu() - cpu_start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    rows = [{"benchmark": name, "profile": profile, "analysis": record["name"], "status": record["status"],
             "seconds": record["seconds"], "cpu_seconds": record.get("cpu_seconds")}
            for record in manifest.get("analyses", [])]
    for step, seconds in (manifest.get("report_timings") or {}).items():
        rows.append({"benchmark": name, "profile": profile, "analysis": step, "status": "report", "seconds": seconds})
    rows.append({"benchmark": name, "profile": profile, "analysis": "TOTAL (process wall time, incl. report)",
                 "status": f"exit {completed.returncode}", "seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": peak_mb,
                 "load_average_start": list(load_start), "load_average_end": list(os.getloadavg())})
    return rows


def run(quick: bool = False) -> dict[str, list[dict]]:
    return {"default_run": analyze_run("smoke" if quick else "quick", "default_run")}
