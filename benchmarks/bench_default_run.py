"""Wall time of the default run, `python -m astrostats.analyze` (every analysis at the quick profile), as a newcomer
runs it: a fresh process, default threads, per-analysis seconds from the manifest and the peak memory."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def analyze_run(profile: str, name: str) -> list[dict]:
    """Every analysis at ``profile`` in a fresh process: seconds per analysis, total wall time, peak memory.

    The outputs go to a temporary folder, or to $ASTROSTATS_BENCH_OUT when set (to read the run afterwards).
    """
    with tempfile.TemporaryDirectory() as folder:
        out = Path(os.environ.get("ASTROSTATS_BENCH_OUT") or Path(folder) / "reports")
        begin = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "astrostats.analyze", "--profile", profile, "--quiet",
                                    "--out", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - begin
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    rows = [{"benchmark": name, "profile": profile, "analysis": record["name"], "status": record["status"],
             "seconds": record["seconds"]} for record in manifest.get("analyses", [])]
    rows.append({"benchmark": name, "profile": profile, "analysis": "TOTAL (process wall time, incl. report)",
                 "status": f"exit {completed.returncode}", "seconds": wall, "peak_rss_mb": peak_mb})
    return rows


def run(quick: bool = False) -> dict[str, list[dict]]:
    return {"default_run": analyze_run("smoke" if quick else "quick", "default_run")}
