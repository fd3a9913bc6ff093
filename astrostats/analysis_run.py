"""One analysis run into a run folder: its log, its progress switch, its manifest record, reuse of a finished
run's tables (--resume), and the call of its study. Shared by the command line (in process) and the analysis
processes of ``--jobs N`` (astrostats.parallel), which is why it is its own module below both."""
from __future__ import annotations

import copy
import errno
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from astrostats import extras, outputs, safe_io
from astrostats.memory import peak_resident_bytes, release_freed_memory, reset_peak_resident
from astrostats.spec import Spec
from astrostats.studies import get_study
from astrostats.studies.base import RunContext
from astrostats.validation import InputError

LOG = logging.getLogger("astrostats")


#: a record logged with ``extra=ROUTINE`` (per-task cache counts, a kind without figures, one control's fit that
#: stopped before converging, an analysis starting) is kept in astrostats.log at DEBUG level, never on the console
ROUTINE = {"routine": True}


class _RoutineToDebug(logging.Filter):
    """The console's filter: a routine record counts as DEBUG there (so below the console's INFO, not shown)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record) -> bool:
        return not getattr(record, "routine", False) or logging.DEBUG >= self.level


class _Console(logging.StreamHandler):
    """The console: sys.stderr as it is at each record (a live progress view redirects it to print above
    itself, astrostats.progress)."""

    console = True

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _console_handler(quiet: bool = False) -> logging.Handler:
    """INFO and above (errors only with --quiet), routine records left out."""
    console = _Console()
    console.setLevel(logging.ERROR if quiet else logging.INFO)
    console.addFilter(_RoutineToDebug(console.level))
    console.setFormatter(logging.Formatter("%(message)s"))
    return console


def _clear_handlers() -> None:
    for handler in list(LOG.handlers):
        LOG.removeHandler(handler)
        handler.close()


def setup_console(quiet: bool) -> None:
    """The console log alone (no folder yet): set first, so that a warning while the specs are read is seen
    (with ``quiet``, errors only)."""
    LOG.setLevel(logging.INFO)
    _clear_handlers()
    LOG.addHandler(_console_handler(quiet))


class EarlyRecords(logging.Handler):
    """What is logged before the run's log file exists (while the specs are read), kept to be written into it by
    :func:`setup_logging` (the console has shown it already)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record) -> None:
        self.records.append(record)

    def __enter__(self) -> "EarlyRecords":
        LOG.addHandler(self)
        return self

    def __exit__(self, *exc_info) -> None:
        LOG.removeHandler(self)


def setup_logging(out_dir: Path, quiet: bool, earlier=(), to_parent=None) -> None:
    """The run's log file (every record at INFO and above, routine ones included at DEBUG) and the console
    (routine records hidden there; errors only with ``quiet``); ``earlier`` records (EarlyRecords) are written to
    the file first. In an analysis process, ``to_parent`` (a queue) carries the console's records to the run's
    process, which shows them (astrostats.progress)."""
    LOG.setLevel(logging.INFO)
    _clear_handlers()
    file_handler = _LogFile(safe_io.open_append(out_dir, out_dir / "astrostats.log"))  # never through a link
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for record in earlier:
        file_handler.handle(record)
    LOG.addHandler(file_handler)
    if to_parent is not None:
        from astrostats.progress import ToParent

        LOG.addHandler(ToParent(to_parent, logging.ERROR if quiet else logging.INFO))
    else:
        LOG.addHandler(_console_handler(quiet))


class _LogFile(logging.StreamHandler):
    """The run's log, on a stream opened by safe_io (no link followed); closed with the handler."""

    def emit(self, record) -> None:
        safe_io.check_run_alive()  # an analysis process whose run is gone writes nothing, its log included
        if getattr(record, "routine", False):  # kept, at DEBUG (a copy: other handlers see the record as logged)
            record = copy.copy(record)
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        super().emit(record)

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()


def spec_record(spec: Spec) -> dict:
    return {"name": spec.name, "kind": spec.kind, "question": spec.question, "source": spec.source,
            "file_sha256": spec.file_sha256, "spec_sha256": spec.sha256, "seed": spec.seed,
            "profile": spec.profile, "parameters": spec.parameters, "overrides": dict(spec.overrides),
            "preregistration": spec.preregistration, "amendments": list(spec.amendments)}


def finished_record(out_dir: Path, spec: Spec, code: str) -> dict | None:
    """A previous completion of this exact spec and code in out_dir, whose tables all match their recorded
    SHA-256; anything else (absent, unreadable, edited record, a changed table) means recompute."""
    path = out_dir / ".done" / f"{spec.name}.json"
    if not os.path.lexists(path):
        return None
    try:
        record = outputs.read_sealed(path, "completion record", root=out_dir)
    except outputs.CorruptOutput as problem:
        LOG.warning("%s: %s; recomputing", spec.name, problem)
        return None
    tables = record.get("tables")
    if record.get("spec_sha256") != spec.sha256 or record.get("code_version") != code or not isinstance(tables, dict):
        return None
    for name, table in tables.items():
        problem = outputs.table_problem(out_dir / "tables", name, table)
        if problem is not None:
            LOG.warning("%s: stored table refused (%s); recomputing: the new tables replace it (a link is replaced "
                        "itself, its target left as it is)", spec.name, problem)
            return None
    return record


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_analysis(spec: Spec, context: RunContext, code: str, resume: bool, csv: bool = False) -> dict:
    """Run one analysis, write its tables (parquet; CSV too with ``csv``), and return its manifest record (status
    ok or failed)."""
    record = spec_record(spec)
    out_dir = context.out_dir
    tables_dir = out_dir / "tables"
    previous = finished_record(out_dir, spec, code) if resume else None
    if previous is not None:
        LOG.info("%s: finished in an earlier run, reusing its tables", spec.name)
        tables = previous["tables"]
        if csv and any("csv_sha256" not in table for table in tables.values()):  # --csv now, not then
            tables = {name: outputs.add_csv(tables_dir, name, table, root=out_dir) for name, table in tables.items()}
            outputs.write_json(out_dir / ".done" / f"{spec.name}.json", {**previous, "tables": tables}, root=out_dir,
                               sealed=True)
        return {**record, "status": "ok", "resumed": True, "tables": tables, "seconds": previous.get("seconds")}
    safe_io.unlink(out_dir, out_dir / ".done" / f"{spec.name}.json")  # no stale record beside new tables
    release_freed_memory()  # what an earlier analysis in this process kept is not this one's
    peak_known = reset_peak_resident()
    start, cpu_start = time.perf_counter(), time.process_time()  # CPU: this process's, every thread (benchmarks)
    LOG.info("%s: running (%s profile)", spec.name, spec.profile, extra=ROUTINE)  # the view shows it running
    try:
        tables = get_study(spec.kind).run(spec, context)
        written = {name: outputs.write_table(tables_dir, name, table, root=out_dir, csv=csv)
                   for name, table in tables.items()}
    except OSError as error:  # the run's own fault (a full disk): reported, and the run exits 1
        LOG.error("%s: failed: %s", spec.name, os_error_line(error))
        return {**record, "status": "failed", "error": os_error_line(error), "tables": {},
                "seconds": time.perf_counter() - start}
    except InputError as error:
        LOG.error("%s: not run: %s", spec.name, error)
        return {**record, "status": "not_run", "error": str(error), "tables": {},
                "seconds": time.perf_counter() - start}
    except Exception as error:  # a failed analysis is reported, and the others still run
        missing = extras.explain(error)
        if missing is not None:  # an optional package not installed: one line naming its extra, not a traceback
            LOG.error("%s: not run: %s", spec.name, missing)
            return {**record, "status": "not_run", "error": missing, "tables": {},
                    "seconds": time.perf_counter() - start}
        LOG.error("%s: failed: %s\n%s", spec.name, error, traceback.format_exc())
        return {**record, "status": "failed", "error": f"{type(error).__name__}: {error}", "tables": {},
                "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    peak = peak_resident_bytes() if peak_known else None
    LOG.info("%s: done in %.1f s (%d tables%s)", spec.name, seconds, len(written),
             "" if peak is None else f", peak resident {peak / 2**30:.1f} GiB")
    done = {**record, "status": "ok", "tables": written, "seconds": seconds, "torch_threads": torch_threads(),
            "cpu_seconds": round(time.process_time() - cpu_start, 3),
            "peak_resident_gib": None if peak is None else round(peak / 2**30, 3), "code_version": code}
    outputs.write_json(out_dir / ".done" / f"{spec.name}.json", done, root=out_dir, sealed=True)
    return {key: value for key, value in done.items() if key != "code_version"}


def quiet_progress() -> None:
    """No progress bars, the model loaders' own included (set before transformers is first imported)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"


#: errors of the input (what the user named or gave): exit 2; any other OSError is the run's own (exit 1)
INPUT_ERRNOS = {errno.ENAMETOOLONG, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                errno.EROFS, errno.ELOOP, errno.EEXIST, errno.EINVAL, errno.ENXIO}


def os_error_line(error: OSError) -> str:
    """One line for an OSError: what failed, on which file, and what it means."""
    what = error.strerror or type(error).__name__
    where = f" ({error.filename})" if error.filename else ""
    hint = {errno.ENOSPC: "the disk is full: free space, then rerun with --resume (finished analyses are kept)",
            errno.EDQUOT: "the disk quota is exceeded: free space, then rerun with --resume",
            errno.EIO: "an I/O error: check the disk, then rerun with --resume",
            errno.ENAMETOOLONG: "choose a shorter --out"}.get(error.errno, "")
    return f"{what}{where}" + (f"; {hint}" if hint else "")


__all__ = ["setup_logging", "setup_console", "EarlyRecords", "ROUTINE", "spec_record", "finished_record", "run_analysis", "quiet_progress", "os_error_line",
           "INPUT_ERRNOS"]
