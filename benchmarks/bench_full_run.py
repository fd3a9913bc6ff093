"""Wall time of every analysis at the full profile, `python -m astrostats.analyze --profile full` (aim: under 30
minutes on 2 cores), in a fresh process: seconds per analysis and peak memory. About half an hour: run it alone."""
from __future__ import annotations

from bench_default_run import analyze_run


def run(quick: bool = False) -> dict[str, list[dict]]:
    return {"full_run": analyze_run("smoke" if quick else "full", "full_run")}
