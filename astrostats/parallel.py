"""Several analyses at once, each in its own process.

Most of an analysis is single-threaded Python (tables, fits, resampling, training loops): profiled, the quick
analyses keep 1.1-1.2 cores busy on 2 threads. On k cores, k analyses side by side on k / jobs torch threads each
finish sooner than one analysis at a time on k threads. An analysis's seeds come from its spec, so the numbers
are the same to rounding; byte for byte where torch's reductions split the same way (the smoke profile's 46
tables were identical under --jobs 1 and 2; a test compares the scaling tables). Each analysis's record states
its torch threads.

The longest analyses go first (LONGEST_ANALYSES), the others follow in the order given; a process takes the next
analysis when it finishes one, so the last to start are the short ones and no process idles long at the end.
Each process logs to the run's log and draws nothing on the console (two would garble it): it sends the run's
process the analysis's status, its progress bars' counts and its console lines over a queue, and that process
alone shows them (astrostats.progress: one live view, or plain lines).

An analysis process never outlives its run: it is killed when the run's process dies (Linux PR_SET_PDEATHSIG,
armed first thing, see :func:`astrostats.safe_io.die_with_parent`), and every write it makes first checks that
its parent (the holder of the folder's lock) is still there, exiting at once if not; so a SIGKILLed run leaves no
process writing tables or completion records into a folder whose lock died with it.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from astrostats import safe_io
from astrostats.memory import keep_freed_memory

LOG = logging.getLogger("astrostats")
# the shipped analyses, longest first by their measured quick-profile times (2026-12-06, one torch thread each:
# fig3_language 100 s, overfitting 82, known_answers 59, scaling 50, biology 40, circuits 30, calibration 23,
# fig3_vision 15): submitted in this order, the two processes end within seconds of each other (by kind, as
# before, fig3_vision went first and one process idled 20 s at the end). Another spec ranks with the first
# shipped analysis of its kind (a second real_heads spec beside fig3_language), then in the order given.
LONGEST_ANALYSES = (("fig3_language", "real_heads"), ("overfitting", "overfitting"), ("known_answers", "known_answers"),
                    ("scaling", "scaling"), ("biology", "biology"), ("circuits", "circuits"),
                    ("calibration", "calibration"), ("fig3_vision", "real_heads"))


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the platform says, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def submission_order(specs) -> list[int]:
    """Indices of ``specs``, longest first: the shipped analyses in LONGEST_ANALYSES's order, another spec at its
    kind's first place there, the rest (unknown kinds) last; ties in the order given."""
    by_name = {name: place for place, (name, _) in enumerate(LONGEST_ANALYSES)}
    by_kind: dict[str, int] = {}
    for place, (_, kind) in enumerate(LONGEST_ANALYSES):
        by_kind.setdefault(kind, place)

    def rank(spec) -> int:
        return by_name.get(spec.name, by_kind.get(spec.kind, len(LONGEST_ANALYSES)))

    return sorted(range(len(specs)), key=lambda i: (rank(specs[i]), i))


#: in an analysis process: the queue to the run's process (set by _start_process)
_EVENTS = None


def _send(*event) -> None:
    try:
        _EVENTS.put(event)
    except Exception:  # the run is gone or its queue closed: its view does not matter any more
        pass


def _start_process(out_dir: str, quiet: bool, threads: int, parent: int, events=None) -> None:
    global _EVENTS
    safe_io.die_with_parent(parent)  # first: a run killed while this process starts leaves nothing behind
    import torch

    from astrostats.analysis_run import quiet_progress, setup_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches every process: the run stops them
    atexit.register(_exit_without_teardown)
    torch.set_num_threads(threads)
    keep_freed_memory()
    quiet_progress()
    _EVENTS = events
    setup_logging(Path(out_dir), quiet, to_parent=events)


def _exit_without_teardown() -> None:
    """An analysis process's last step once the pool lets it go: its log closed and its streams flushed, it ends
    without the interpreter's teardown of torch, pandas and transformers (about a second, which the run waited
    for before drawing its figures). Registered as the process starts, so the exit handlers the analyses' libraries
    register later run before it; the queue to the run's process is flushed before any (multiprocessing's own exit
    step). The exit status is 0: a pool process only gets here after the pool let it go. Skipped with the teardown:
    weakref finalizers still pending (the analyses close their temporary folders themselves) and anything a
    library's exit handler would log."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)


def _run_one(spec, out_dir: str, code: str, resume: bool, csv: bool = False, live: bool = False) -> dict:
    from astrostats.analysis_run import run_analysis
    from astrostats.execution import make_executor
    from astrostats.progress import report_bars, status_of
    from astrostats.studies.base import RunContext

    out = Path(out_dir)
    _send("status", spec.name, "running")
    with make_executor(cache_dir=out / ".cache", resume=resume) as executor, \
            report_bars(lambda what, n, total: _send("step", spec.name, what, n, total)):
        record = run_analysis(spec, RunContext(out_dir=out, progress=live, executor=executor), code, resume, csv)
    _send("status", spec.name, status_of(record))
    return record


def run_analyses(specs, out_dir: Path, code: str, resume: bool, jobs: int, quiet: bool, *,
                 csv: bool = False, board=None) -> list[dict]:
    """Every spec's manifest record, in the order of ``specs``, from ``jobs`` processes (spawned: a fork of
    a process holding torch's thread pool could inherit its locks). A process that dies (killed, out of
    memory) breaks the pool: its analysis and those not yet finished are recorded as failed, with the reason,
    and the report is still written from the others. ``board`` (astrostats.progress.Board) gets their events;
    without one, their console lines are still shown."""
    from astrostats.progress import Board, status_of

    board = board if board is not None else Board([spec.name for spec in specs], live=False)
    threads = max(1, usable_cores() // jobs)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    listener = threading.Thread(target=_listen, args=(events, board), name="astrostats-progress", daemon=True)
    listener.start()
    try:
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_process,
                                 initargs=(str(out_dir), quiet, threads, os.getpid(), events)) as pool:
            futures = {}
            try:
                for index in submission_order(specs):
                    futures[index] = pool.submit(_run_one, specs[index], str(out_dir), code, resume, csv,
                                                 board.live)
                records = []
                for index in range(len(specs)):
                    records.append(_record(specs[index], futures[index]))
                    board.event("status", specs[index].name, status_of(records[-1]))  # a broken pool's too
                return records
            except BaseException:  # Ctrl-C, or an interrupt sent to this process alone: nothing new starts, and the
                for future in futures.values():  # running analyses stop now (finished ones kept for --resume)
                    future.cancel()
                for process in list((getattr(pool, "_processes", None) or {}).values()):  # public only from 3.14
                    process.terminate()
                raise
    finally:  # the processes are gone: what they sent is in the queue, ended by this sentinel
        events.put(None)
        listener.join(timeout=5)
        events.close()


def _listen(events, board) -> None:
    """The run's process: every event the analysis processes send, handed to the board until the sentinel."""
    while True:
        try:
            event = events.get()
        except (EOFError, OSError, ValueError):  # the queue was closed under us
            return
        if event is None:
            return
        try:
            board.event(*event)
        except Exception:  # a view that cannot draw must not stop the run
            LOG.debug("progress event %r not shown", event, exc_info=True)


def _record(spec, future) -> dict:
    from astrostats.analysis_run import spec_record

    try:
        return future.result()
    except Exception as error:  # a process died (killed, out of memory): the pool is broken
        LOG.error("%s: failed: its process pool broke (%s: %s); rerun with --resume", spec.name,
                  type(error).__name__, error)
        return {**spec_record(spec), "status": "failed", "error": f"{type(error).__name__}: {error}",
                "tables": {}, "seconds": None}


__all__ = ["run_analyses", "submission_order", "usable_cores"]
