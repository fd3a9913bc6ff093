"""Writing and reading a run's outputs safely, so that nobody can corrupt, tamper with or mix them up.

* Contained: every write, read and removal goes through :mod:`astrostats.safe_io`: below the output folder no
  symbolic link is followed (a planted one is refused, or replaced when it sits where a file is written), reads
  take regular files only, size-capped, and every name that becomes part of a path is a safe identifier.
* Atomic: every file is written to a fresh temporary name (O_EXCL) and renamed, so an interrupted run or a full
  disk never leaves a half-written file in place of a complete one; files follow the umask.
* Verified: tables are stored with the SHA-256 of each file (parquet, and CSV where asked for); JSON records (the
  manifest, completion records) carry an HMAC of their own content under a key kept outside the run folder
  (:mod:`astrostats.integrity`), so a flipped bit, a truncation or an edit with recomputed digests is found
  before anything is reused, copied or read into an audit.
* One run per folder: :class:`RunLock` holds an exclusive lock on ``.lock`` for the whole run, and an
  in-progress marker (``.in_progress.json``) written first and removed last tells a finished folder
  from one whose run was killed.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from astrostats import integrity, safe_io
from astrostats.validation import IDENTIFIER, InputError, check_identifier, fail

LOCK_NAME = ".lock"
IN_PROGRESS_NAME = ".in_progress.json"
SEAL_KEY = "content_hmac"
OLD_SEAL_KEY = "content_sha256"  # unkeyed seals of earlier versions: read as unsealed
SEAL_PURPOSE = "astrostats-record-v1"
MAX_RECORD_BYTES = 64 * safe_io.MiB  # a manifest or completion record larger than this is refused unread
MiB_RECORD = safe_io.MiB  # the in-progress marker
MAX_TABLE_BYTES = 2**34  # a stored table read into memory (16 GiB)
_SPECIAL_ROOTS = ("/proc", "/sys", "/dev")
#: what a run writes at the top of its folder: none may be a symbolic link (checked before anything is written)
RUN_ENTRIES = (".cache", ".done", "tables", "figures", LOCK_NAME, IN_PROGRESS_NAME, "manifest.json", "audit.md",
               "audit.json", "report.pdf", "astrostats.log")
NAME_MAX = 255
PATH_MAX = 4096


class CorruptOutput(InputError):
    """A stored file that does not match its recorded SHA-256, or is not what it should be."""


def check_writable(directory: Path | str) -> Path:
    """The output folder, or the nearest existing parent, must be a writable folder on an ordinary file
    system; nothing is created here."""
    if directory is None or str(directory).strip() == "":
        raise fail("--out", "a folder name (not empty)", str(directory) if directory is not None else directory)
    directory = Path(directory)
    if "\0" in str(directory):
        raise fail("--out", "a folder name without NUL bytes", str(directory))
    absolute = Path(os.path.abspath(directory))
    longest = max((len(os.fsencode(part)) for part in absolute.parts), default=0)
    if len(os.fsencode(str(absolute))) + 64 > PATH_MAX or longest > NAME_MAX:
        raise InputError(f"--out: folder name too long ({len(os.fsencode(str(absolute)))} bytes, longest component "
                         f"{longest}; the system allows {PATH_MAX} and {NAME_MAX}, with room for the run's own files)")
    if any(absolute == Path(root) or absolute.is_relative_to(root) for root in _SPECIAL_ROOTS):
        raise InputError(f"--out: folder {str(directory)!r} is on a special file system ({absolute.parts[1]}), "
                         "not a place for outputs")
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"--out: folder {str(directory)!r} cannot be written ({str(probe)!r} is not a writable folder)")
    return directory


def create_folder(directory: Path) -> Path:
    """Create the output folder; an OSError (a read-only or special file system) is an InputError."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out: folder {str(directory)!r} cannot be created ({error.strerror or error})") from None
    return directory


def check_folder(directory: Path) -> None:
    """Nothing a run writes at the top of ``directory`` may be a symbolic link (an InputError naming it and what
    to do); checked before anything is written, so that a planted link stops the run, not half of it."""
    for name in RUN_ENTRIES:
        if safe_io.is_link(Path(directory) / name):
            raise safe_io.UnsafePath(f"--out: {str(Path(directory) / name)!r} is a symbolic link; astrostats never "
                                     "writes through links in a run folder (it could lead outside the output "
                                     f"folder): remove it (rm {str(Path(directory) / name)!r}) or choose another --out")


def remove_stale_temporaries(directory: Path) -> int:
    """Remove what killed runs left half-written (``.NAME.PID.HEX.tmp``, ``.report.*``) in ``directory``, its
    tables, figures, completion records and cache; called under the folder's lock, when no other run can be
    writing. Links are not followed (os.walk does not descend into them). Returns how many were removed."""
    directory = Path(directory)
    removed = 0
    for top, folders, names in os.walk(directory):
        relative = Path(top).relative_to(directory)
        if relative.parts and relative.parts[0] not in (".cache", ".done", "tables", "figures"):
            folders[:] = []
            continue
        for name in names:
            stale = name.startswith(".") and (name.endswith(safe_io.TEMPORARY_SUFFIX) or
                                              (not relative.parts and name.startswith(".report.")))
            if stale:
                safe_io.unlink(directory, Path(top) / name)
                removed += 1
    return removed


def inside(root: Path, path: Path) -> Path:
    """``path`` itself, once it is known to resolve (links followed) inside ``root``; else an InputError."""
    try:
        resolved_root = Path(root).resolve()
        resolved = Path(path).resolve()
    except (ValueError, OSError) as error:  # a NUL byte, a link loop
        raise InputError(f"refusing to write {str(path)!r}: not a usable path ({error})") from None
    if resolved != resolved_root and not resolved.is_relative_to(resolved_root):
        raise InputError(f"refusing to write {str(path)!r}: it resolves to {str(resolved)!r}, outside the output "
                         f"folder {str(root)!r}")
    return Path(path)


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_file(path: Path, *, root: Path | None = None) -> str:
    """SHA-256 of a regular file (a link below ``root``, a FIFO or a device is refused: UnsafePath)."""
    return safe_io.sha256(path, what="stored file", root=root)


def atomic_write_bytes(path: Path, data: bytes, *, root: Path | None = None) -> str:
    """Write ``data`` to ``path`` atomically, with the umask's permissions; returns its SHA-256.

    Below ``root`` (default: the file's own folder) no link is followed; the temporary name is fresh (O_EXCL),
    and a failed write (a full disk) leaves the previous file whole and no temporary file behind.
    """
    path = Path(path)
    if "\0" in str(path):
        raise safe_io.UnsafePath(f"refusing to write {str(path)!r}: a NUL byte in the name")
    safe_io.write_bytes(Path(root) if root is not None else path.parent, path, data)
    return hashlib.sha256(data).hexdigest()


def atomic_write_text(path: Path, text: str, *, root: Path | None = None) -> str:
    return atomic_write_bytes(path, text.encode(), root=root)


def _canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")).encode()


def seal(payload: dict) -> dict:
    """``payload`` with the HMAC of its own canonical JSON (as read back) under ``content_hmac``."""
    plain = json.loads(json.dumps({k: v for k, v in payload.items() if k not in (SEAL_KEY, OLD_SEAL_KEY)},
                                  default=str))
    return {**plain, SEAL_KEY: integrity.mac(_canonical(plain), SEAL_PURPOSE)}


def write_json(path: Path, payload, *, root: Path | None = None, sealed: bool = False) -> str:
    payload = seal(payload) if sealed else payload
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", root=root)


def read_sealed(path: Path, what: str, *, root: Path | None = None) -> dict:
    """A JSON object written with ``sealed=True``; CorruptOutput when unreadable, not a regular file (a link, a
    FIFO, a device), too large, not an object, or changed (its HMAC under this user's key does not match)."""
    try:
        payload = json.loads(safe_io.read_bytes(path, limit=MAX_RECORD_BYTES, what=what, root=root).decode())
    except FileNotFoundError:
        raise CorruptOutput(f"{what}: {str(path)!r} does not exist") from None
    except safe_io.UnsafePath as error:
        raise CorruptOutput(str(error)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CorruptOutput(f"{what}: {str(path)!r} is not readable JSON ({type(error).__name__})") from None
    if not isinstance(payload, dict):
        raise CorruptOutput(f"{what}: {str(path)!r} holds a {type(payload).__name__}, not a JSON object")
    recorded = payload.pop(SEAL_KEY, None)
    if recorded is None:
        older = " (sealed by an earlier astrostats without a key)" if OLD_SEAL_KEY in payload else ""
        raise CorruptOutput(f"{what}: {str(path)!r} carries no {SEAL_KEY}{older} (written before keyed seals, or "
                            "edited)")
    if not integrity.verify(_canonical(payload), SEAL_PURPOSE, recorded):
        raise CorruptOutput(f"{what}: {str(path)!r} does not match its recorded HMAC (corrupted, edited, or sealed "
                            f"with another key than {str(integrity.key_path())!r})")
    return payload


TABLE_SUFFIXES = ("parquet", "csv")  # parquet always (what the audit reads, exact types); CSV on request


def _csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode()


def write_table(tables_dir: Path, name: str, table: pd.DataFrame, *, root: Path | None = None,
                csv: bool = False) -> dict:
    """Parquet (exact types; what the audit and load_run read) and, with ``csv``, CSV (for people and other tools)
    beside it; returns rows and each written file's SHA-256 (``parquet_sha256``, ``csv_sha256``)."""
    check_identifier("table name", name)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    record = {"rows": len(table)}
    if csv:
        record["csv_sha256"] = atomic_write_bytes(tables_dir / f"{name}.csv", _csv_bytes(table), root=root)
    else:  # an earlier run's CSV of this table would no longer match it: not left beside it
        safe_io.unlink(Path(root) if root is not None else Path(tables_dir), Path(tables_dir) / f"{name}.csv")
    record["parquet_sha256"] = atomic_write_bytes(tables_dir / f"{name}.parquet", buffer.getvalue(), root=root)
    return record


def add_csv(tables_dir: Path, name: str, record: dict, *, root: Path | None = None) -> dict:
    """``record`` with a CSV written from its stored parquet file (read once, verified against its SHA-256): a run
    resumed with --csv from one written without it. A record that has its CSV already is returned as it is."""
    if "csv_sha256" in record:
        return record
    table = pd.read_parquet(io.BytesIO(read_table_bytes(tables_dir, name, record, "parquet")))
    return {**record, "csv_sha256": atomic_write_bytes(Path(tables_dir) / f"{name}.csv", _csv_bytes(table), root=root)}


def recorded_suffixes(record: dict) -> list[str]:
    """The files a table record lists: parquet always, CSV where its SHA-256 is recorded (runs with --csv, and
    every run written before CSV became optional)."""
    return [suffix for suffix in TABLE_SUFFIXES if suffix == "parquet" or f"{suffix}_sha256" in record]


def table_problem(tables_dir: Path, name: str, record: Any) -> str | None:
    """Why the stored table ``name`` cannot be trusted (missing file, a link or other non-regular file, no or wrong
    SHA-256), or None; every file the record lists is checked (parquet, and CSV where recorded). Links are judged
    from ``tables_dir`` down: the tables folder itself must be a real folder."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        return f"table name {name!r} is not a safe identifier"
    if not isinstance(record, dict):
        return f"table {name}: its record is not an object"
    tables_dir = Path(tables_dir)
    for suffix in recorded_suffixes(record):
        path = tables_dir / f"{name}.{suffix}"
        expected = record.get(f"{suffix}_sha256")
        if not isinstance(expected, str):
            return f"{path}: no SHA-256 recorded"
        try:
            digest = safe_io.sha256(path, what="stored table", root=tables_dir.parent)
        except FileNotFoundError:
            return f"{path}: missing"
        except safe_io.UnsafePath as error:
            return str(error)
        except OSError as error:
            return f"{path}: unreadable ({error.strerror or error})"
        if digest != expected:
            return f"{path}: does not match its recorded SHA-256 (corrupted or edited)"
    return None


def read_table_bytes(tables_dir: Path, name: str, record: dict, suffix: str) -> bytes:
    """One stored table file, read once and checked against its recorded SHA-256 (CorruptOutput otherwise)."""
    path = Path(tables_dir) / f"{name}.{suffix}"
    try:
        data = safe_io.read_bytes(path, limit=MAX_TABLE_BYTES, what="stored table", root=Path(tables_dir).parent)
    except FileNotFoundError:
        raise CorruptOutput(f"stored table refused: {path}: missing") from None
    except safe_io.UnsafePath as error:
        raise CorruptOutput(f"stored table refused: {error}") from None
    if hashlib.sha256(data).hexdigest() != record.get(f"{suffix}_sha256"):
        raise CorruptOutput(f"stored table refused: {path}: does not match its recorded SHA-256 (corrupted or "
                            "edited)")
    return data


def read_tables(tables_dir: Path, records: dict) -> dict[str, pd.DataFrame]:
    """Tables by name, each read once and verified against its recorded SHA-256 (CorruptOutput otherwise)."""
    tables = {}
    for name, record in records.items():
        problem = table_problem(tables_dir, name, record)  # every recorded file, before any is parsed
        if problem is not None:
            raise CorruptOutput(f"stored table refused: {problem}")
        tables[name] = pd.read_parquet(io.BytesIO(read_table_bytes(tables_dir, name, record, "parquet")))
    return tables


class RunLock:
    """An exclusive lock on ``DIR/.lock`` held for a whole run (``fcntl.flock``: released by the kernel when
    the process ends, even on SIGKILL), and the in-progress marker written first and removed last.

    A second run into a locked folder does not wait: it stops with an InputError (exit 2) naming the other
    run's process id.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._handle = None

    def __enter__(self) -> "RunLock":
        try:
            handle = safe_io.open_lock(self.directory, self.directory / LOCK_NAME)
        except safe_io.UnsafePath:
            raise
        except OSError as error:
            raise InputError(f"--out: folder {str(self.directory)!r} cannot be written ({error.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(handle, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise InputError(f"--out: folder {str(self.directory)!r} is in use by another astrostats run "
                                 f"(process {holder}); wait for it to finish or choose another --out") from None
            raise
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        self._handle = handle
        return self

    def mark_started(self, description: dict) -> None:
        """The in-progress marker: the first thing a run writes, so that a killed run's folder says so."""
        write_json(self.directory / IN_PROGRESS_NAME,
                   {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **description},
                   root=self.directory)

    def finish(self) -> None:
        """The run completed: remove the marker (the last thing a run does)."""
        safe_io.unlink(self.directory, self.directory / IN_PROGRESS_NAME)

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            os.close(self._handle)  # releases the lock; the marker stays unless finish() was called
            self._handle = None


def unfinished_run(directory: Path, *, locked_here: bool = False) -> str | None:
    """Why ``directory`` does not hold a finished run's outputs (being written, or from a killed run), or None.
    ``locked_here``: this process holds the folder's lock, so no other run can be writing to it."""
    marker = Path(directory) / IN_PROGRESS_NAME
    if not os.path.lexists(marker):
        return None
    try:
        details = json.loads(safe_io.read_bytes(marker, limit=MiB_RECORD, what="in-progress marker",
                                                root=Path(directory)).decode())
        details = details if isinstance(details, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, InputError):
        details = {}
    started = f"started {details.get('started', '?')} by {details.get('command', '?')!r}"
    if not locked_here and is_locked(directory):
        return f"a run is writing to it now (process {details.get('pid', '?')}, {started})"
    return (f"its run did not finish (killed or interrupted; {started}): its manifest, if any, describes an "
            "earlier run; rerun the analyses there with --resume")


def is_locked(directory: Path) -> bool:
    """Whether a running process holds ``directory``'s lock (checked without creating anything)."""
    try:
        handle = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(handle)
    return False


#: two runs of the same spec and seed agree to this relative tolerance in every numeric cell (docs/how-to/safety.md):
#: byte for byte on one machine at one torch thread count (every test and every repeated run so far); across
#: thread counts or machines, reductions split differently (MKL, OpenMP) and the last bits may differ
DETERMINISM_RTOL = 1e-9


def table_differences(a: pd.DataFrame, b: pd.DataFrame, *, rtol: float = DETERMINISM_RTOL,
                      ignore: tuple[str, ...] = ("seconds",)) -> list[str]:
    """Why two tables of the same spec and seed differ beyond ``rtol`` (columns, rows, a non-numeric cell, a
    number off by more than rtol of its size), or [] when they agree; timing columns (``ignore``) are skipped."""
    problems = []
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"columns or rows differ: {list(a.columns)} x {len(a)} against {list(b.columns)} x {len(b)}"]
    for column in a.columns:
        if column in ignore:
            continue
        left, right = a[column], b[column]
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right) \
                and not pd.api.types.is_bool_dtype(left):
            x, y = left.to_numpy(dtype=float, na_value=float("nan")), right.to_numpy(dtype=float, na_value=float("nan"))
            with np.errstate(invalid="ignore", over="ignore"):
                same = (x == y) | (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= rtol * np.maximum(np.abs(x), np.abs(y)))
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                problems.append(f"{column}: {int((~same).sum())} values differ beyond {rtol:g} (row {row}: {x[row]!r} "
                                f"against {y[row]!r})")
        elif not left.equals(right):
            problems.append(f"{column}: values differ")
    return problems
