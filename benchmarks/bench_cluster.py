"""Scale-out on a real Dask cluster: the exhaustive profile's real-head sweep, in process and on a cluster started
the way a user starts one (``dask scheduler`` and ``dask worker`` processes talking over TCP), with 1 and 2 workers.

Each configuration is the command a user types, ``python -m astrostats.analyze fig3_language --profile exhaustive
--set analyses=["sweep"] ... [--scheduler tcp://127.0.0.1:PORT]``, in a fresh process and a fresh output folder.
The sweep's design (m grid, 16 seeds, 8 windows of 197 tokens) is the exhaustive profile's; only the heads are a
slice (``HEADS``), so that a run takes minutes rather than the exhaustive profile's hours. Reported:

* the sweep's seconds as the analysis logs them ("minilm sweep: X s", model loading excluded) and the process's
  wall time;
* whether every table is byte-identical to the in-process run's (the manifest's SHA-256 of each Parquet file; the
  timings table, which holds seconds, left out): the executor must not change a single bit of the results;
* the speed-up from 1 to 2 workers, and the load average before and after: where other work kept the cores busy
  before the runs (load average above the cores, or more than 10 % busy), the figure is the machine's, not the
  code's, and the benchmark says so (the load after counts the benchmark's own scheduler and workers).

    python benchmarks/run.py --only cluster            # MiniLM layer 0, all 12 heads
    python benchmarks/run.py --only cluster --quick    # 4 heads, m to 4,096
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import BUSY_LIMIT, busy_share  # the harness's measure of other work (benchmarks/run.py)

ROOT = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).with_name("dask")
SWEEP_SECONDS = re.compile(r"minilm sweep: ([0-9.]+) s")


def design(quick: bool) -> list[str]:
    """The --set overrides: the exhaustive sweep on a slice of MiniLM's heads (and m to 4,096 when quick)."""
    heads = [0, 1, 2, 3] if quick else list(range(12))
    overrides = ['analyses=["sweep"]', 'models=["minilm"]', "sweep_layers=[0]", f"sweep_heads={heads}"]
    if quick:
        overrides.append("m=[64, 256, 1024, 4096]")
    return [item for value in overrides for item in ("--set", f"fig3_language.{value}")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def single_threaded_env() -> dict:
    """One thread per process, as the in-process executor's analysis processes run: the comparison is of processes."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Cluster:
    """A scheduler and ``workers`` worker processes on loopback, each its own ``dask`` command; stopped on exit."""

    def __init__(self, workers: int):
        self.workers = workers
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Cluster":
        from distributed import Client

        port = self.address.rsplit(":", 1)[1]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": single_threaded_env()}
        self.processes.append(subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", port,
                                                "--no-dashboard"], **quiet))
        for _ in range(self.workers):
            self.processes.append(subprocess.Popen([str(DASK), "worker", self.address, "--nthreads", "1",
                                                    "--no-dashboard", "--memory-limit", "0"], **quiet))
        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(self.workers, timeout=120)
        return self

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def analyse(out: Path, overrides: list[str], scheduler: str | None) -> dict:
    """One run of the command line; its sweep seconds, wall seconds and the SHA-256 of each table."""
    command = [sys.executable, "-m", "astrostats.analyze", "fig3_language", "--profile", "exhaustive", "--quiet",
               "--out", str(out), *overrides] + (["--scheduler", scheduler] if scheduler else [])
    begin = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env=single_threaded_env())
    wall = time.perf_counter() - begin
    found = SWEEP_SECONDS.findall((out / "astrostats.log").read_text())
    analysis = json.loads((out / "manifest.json").read_text())["analyses"][0]
    digests = {name: record["parquet_sha256"] for name, record in analysis["tables"].items()
               if not name.endswith("_timings")}  # seconds: the only table that should differ
    return {"sweep_seconds": float(found[-1]) if found else None, "wall_seconds": wall, "digests": digests}


def run(quick: bool = False) -> dict[str, list[dict]]:
    overrides = design(quick)
    load_before, busy_before = os.getloadavg(), busy_share()
    rows, reference = [], None
    folder = Path(tempfile.mkdtemp(prefix="astrostats-cluster-"))
    try:
        for workers in (0, 1, 2):
            out = folder / f"workers-{workers}"
            if workers == 0:
                result = analyse(out, overrides, None)
                reference = result["digests"]
            else:
                with Cluster(workers) as cluster:
                    result = analyse(out, overrides, cluster.address)
            rows.append({"benchmark": "cluster", "executor": "in process" if workers == 0 else
                         f"dask scheduler + {workers} dask worker{'s' if workers > 1 else ''} (TCP)",
                         "workers": workers, "sweep_seconds": result["sweep_seconds"],
                         "wall_seconds": result["wall_seconds"], "tables": len(result["digests"]),
                         "byte_identical_to_in_process": result["digests"] == reference})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()
    seconds = {row["workers"]: row["sweep_seconds"] for row in rows}
    speedup = seconds[1] / seconds[2] if seconds[1] and seconds[2] else None
    # other work before the runs, not the load after them (which counts this benchmark's own scheduler and workers)
    loaded = load_before[0] > (os.cpu_count() or 1) or (busy_before is not None and busy_before > BUSY_LIMIT)
    rows.append({"benchmark": "cluster_scaling", "speedup_1_to_2_workers": speedup,
                 "efficiency": None if speedup is None else speedup / 2,
                 "load_average_before": load_before[0], "load_average_after": load_after[0],
                 "busy_share_before": busy_before,
                 "note": "machine loaded: figure not the code's" if loaded else "machine quiet"})
    if loaded:
        print(f"cluster benchmark: load average {load_before[0]:.1f} on {os.cpu_count()} cores, "
              f"{100 * (busy_before or 0):.0f} % busy before it: machine loaded, the speed-up is the machine's, "
              "not the code's", file=sys.stderr)
    return {"cluster": rows}
