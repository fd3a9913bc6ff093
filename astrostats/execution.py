"""Where tasks run, and what is remembered of them: executors with a content-addressed result cache.

The runner (and any study) hands an :class:`Executor` a function and a list of picklable tasks; the
executor returns the results in task order, whichever backend ran them:

* in process (the default): a plain loop, nothing to start;
* local worker processes: a Dask ``LocalCluster`` on loopback, one thread per worker (``workers=N``);
* an existing Dask cluster: ``scheduler="tcp://HOST:PORT"``.

Seeds belong to tasks, so a task's result does not depend on the backend. Finished results are stored in a
cache keyed by (namespace, function, task key, code version), where the code version hashes every source
file of the package; changing any of them, the spec (the namespace) or the task gives a different key.
Entries are data, never code (parquet or JSON, no pickles), each with an HMAC under the user's key
(:mod:`astrostats.integrity`): an entry that fails the check (corrupted, or forged by someone without the key),
is not a regular file, or does not parse is logged, deleted and recomputed, never trusted. Entries are written and
read through :mod:`astrostats.safe_io`: no link below the run folder is followed (``.cache`` included). Results are always written when a cache directory is set
(so an interrupted run can resume); they are read back only with ``resume=True``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import io
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from astrostats import integrity, safe_io
from astrostats.extras import require_extra
from astrostats.outputs import atomic_write_bytes
from astrostats.provenance import code_version
from astrostats.validation import InputError, check_int, fail

LOG = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5  # an unreachable scheduler fails within this, instead of dask's default 30 s
HANDSHAKE_TIMEOUT_S = 20  # a port that accepts but never completes Dask's handshake fails within this
MAX_HANDSHAKE_BYTES = 2**20  # a Dask scheduler's first message (its handshake) is a few hundred bytes
SCHEDULER_ADDRESS = re.compile(r"tcp://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})")  # fullmatch
CACHE_MAGIC = b"astrostats-cache-v3\n"  # v1 entries were pickles, v2 unkeyed SHA-256: never read
CACHE_PURPOSE = "astrostats-cache-v3"
MAX_ENTRY_BYTES = 2**32  # a cache entry larger than this (4 GiB) is refused unread
class _NoCommon:
    """The 'no common inputs' marker: pickled by reference, so a Dask worker sees the same object (a bare
    object() arrives as a copy, and map(function, tasks) on Dask called function(marker, task))."""

    def __reduce__(self):
        return "_NO_COMMON"


_NO_COMMON = _NoCommon()


def function_name(function: Callable) -> str:
    """module.qualname of a function, or of the class of a callable object: part of every cache key."""
    named = function if hasattr(function, "__qualname__") else type(function)
    return f"{named.__module__}.{named.__qualname__}"


class ResultCache:
    """Finished task results on disk, one checksummed entry per (namespace, function, key, code version).

    Entries hold data, never code: a DataFrame as parquet, anything else as JSON (a result that JSON cannot
    hold exactly is simply not cached). Nothing is unpickled, so a planted or corrupted entry can only be
    found wrong, deleted and recomputed.
    """

    def __init__(self, directory: str | Path, version: str, root: str | Path | None = None):
        """``root``: the folder below which no link is followed (default: the cache folder's parent, the run
        folder, so that a ``.cache`` link is refused too)."""
        self.directory = Path(directory)
        self.version = version
        self.root = Path(root) if root is not None else self.directory.parent

    def path(self, namespace: str, function: str, key: str) -> Path:
        name = hashlib.sha256(json.dumps([namespace, function, key]).encode()).hexdigest()
        return self.directory / self.version[:16] / name[:2] / f"{name}.entry"

    def _identity(self, namespace: str, function: str, key: str) -> dict:
        return {"namespace": namespace, "function": function, "key": key, "code_version": self.version}

    def load(self, namespace: str, function: str, key: str) -> tuple[bool, Any]:
        """(True, result) for a valid entry; (False, None) when absent or corrupted (then deleted)."""
        path = self.path(namespace, function, key)
        try:
            blob = safe_io.read_bytes(path, limit=MAX_ENTRY_BYTES, what="cache entry", root=self.root)
        except FileNotFoundError:
            return False, None
        except (safe_io.UnsafePath, OSError) as problem:
            blob, reason = None, str(problem)
        try:
            if blob is None:
                raise _BadEntry(reason)
            return True, self._decode(blob, self._identity(namespace, function, key))
        except _BadEntry as problem:
            LOG.warning("corrupted cache entry %s (%s): recomputing it", path, problem)
            safe_io.unlink(self.root, path)
            return False, None

    @staticmethod
    def _decode(blob: bytes, identity: dict) -> Any:
        header = len(CACHE_MAGIC) + 65
        if not blob.startswith(CACHE_MAGIC) or len(blob) < header:
            raise _BadEntry("unknown format")
        checksum, body = blob[len(CACHE_MAGIC):header - 1].decode(errors="replace"), blob[header:]
        if not integrity.verify(body, CACHE_PURPOSE, checksum):
            raise _BadEntry("HMAC mismatch: corrupted, or not written by this user's astrostats")
        line, _, payload = body.partition(b"\n")
        try:
            meta = json.loads(line.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _BadEntry("unreadable header") from None
        if not isinstance(meta, dict) or meta.get("identity") != identity:
            raise _BadEntry("identity mismatch")
        try:
            if meta.get("format") == "parquet":
                return pd.read_parquet(io.BytesIO(payload))
            if meta.get("format") == "json":
                return json.loads(payload.decode())
        except Exception as error:  # a checksummed payload that still fails to parse: treat as corrupted
            raise _BadEntry(f"unreadable payload ({type(error).__name__})") from None
        raise _BadEntry(f"unknown payload format {meta.get('format')!r}")

    @staticmethod
    def _encode(result: Any) -> tuple[str, bytes] | None:
        if isinstance(result, pd.DataFrame):
            buffer = io.BytesIO()
            result.to_parquet(buffer)
            return "parquet", buffer.getvalue()
        try:
            text = json.dumps(result, allow_nan=True)
        except (TypeError, ValueError):
            return None
        return ("json", text.encode()) if json.loads(text) == result else None

    def store(self, namespace: str, function: str, key: str, result: Any) -> Path | None:
        """Write atomically (temporary file, then rename), so an interruption never leaves half an entry.
        Returns None (nothing stored) for a result that is neither a DataFrame nor exact JSON."""
        encoded = self._encode(result)
        if encoded is None:
            LOG.debug("%s: a %s result is not cached (only DataFrames and JSON values are)", function,
                      type(result).__name__)
            return None
        path = self.path(namespace, function, key)
        meta = {"identity": self._identity(namespace, function, key), "format": encoded[0]}
        body = json.dumps(meta, sort_keys=True).encode() + b"\n" + encoded[1]
        blob = CACHE_MAGIC + integrity.mac(body, CACHE_PURPOSE).encode() + b"\n" + body
        atomic_write_bytes(path, blob, root=self.root)
        return path


class _BadEntry(Exception):
    """A cache entry that cannot be trusted; the message says why."""


@dataclass
class ExecutionStats:
    """What the executor did, summed over its map calls: tasks computed, reused from cache, found corrupted."""

    computed: int = 0
    reused: int = 0
    corrupted: int = 0


def _identity(value: Any) -> Any:
    return value


def _call(function: Callable, common: Any, task: Any) -> Any:
    return function(task) if common is _NO_COMMON else function(common, task)


class _InProcess:
    workers = 0

    def run(self, function, common, tasks, indices, priorities):
        for index in indices:
            yield index, _call(function, common, tasks[index])

    def close(self):
        pass


class _Dask:
    """Tasks as Dask futures; a worker lost mid-run has its tasks rescheduled by the scheduler."""

    def __init__(self, client, cluster=None):
        self.client, self.cluster = client, cluster

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def run(self, function, common, tasks, indices, priorities):
        from distributed import as_completed

        # common inputs as a task of their own (not scattered data): a lost copy is rebuilt from the graph
        shared = common if common is _NO_COMMON else self.client.submit(_identity, common, pure=False)
        futures = {}
        for index in indices:
            future = self.client.submit(_call, function, shared, tasks[index], pure=False,
                                        priority=priorities[index] if priorities else 0)
            futures[future] = index
        try:
            for future in as_completed(futures, loop=self.client.loop):
                yield futures[future], future.result()
        finally:
            self.client.cancel(list(futures))

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


class Executor:
    """Maps a function over picklable tasks, in process or on Dask, returning results in task order.

    Use as a context manager (or call :meth:`close`) so a cluster it started is shut down.
    """

    def __init__(self, backend=None, *, cache_dir: str | Path | None = None, resume: bool = False):
        if resume and cache_dir is None:
            raise fail("resume", "a cache directory to resume from (cache_dir)", cache_dir)
        self._backend = backend or _InProcess()
        self.cache = None if cache_dir is None else ResultCache(cache_dir, code_version())
        self.resume = bool(resume)
        self.stats = ExecutionStats()

    @property
    def workers(self) -> int:
        """Worker processes behind this executor; 0 in process."""
        return self._backend.workers

    @property
    def description(self) -> str:
        backend = self._backend
        if isinstance(backend, _InProcess):
            return "in process"
        return f"dask ({backend.client.scheduler.address}, {self.workers} workers)"

    def map(self, function: Callable, tasks: Sequence, *, keys: Sequence[str] | None = None,
            namespace: str = "", desc: str | None = None, common: Any = _NO_COMMON,
            costs: Sequence[float] | None = None, progress: bool = True) -> list:
        """[function(task) for task in tasks], or function(common, task) when ``common`` is given.

        ``common`` is sent to each worker once (large shared inputs, e.g. targets). ``keys`` (one unique
        string per task) and ``namespace`` (e.g. the spec's SHA-256) address the cache; without keys nothing
        is cached. ``costs`` (relative task sizes) start the largest tasks first, to balance workers.
        """
        tasks = list(tasks)
        if keys is not None:
            keys = [str(key) for key in keys]
            if len(keys) != len(tasks):
                raise fail("keys", f"one key per task ({len(tasks)})", len(keys))
            if len(set(keys)) != len(keys):
                raise fail("keys", "unique keys", sorted(k for k in set(keys) if keys.count(k) > 1)[:3])
        if costs is not None and len(costs) != len(tasks):
            raise fail("costs", f"one cost per task ({len(tasks)})", len(costs))
        name = function_name(function)
        results: list = [None] * len(tasks)
        done = [False] * len(tasks)
        call = ExecutionStats()
        caching = self.cache is not None and keys is not None
        if caching and self.resume:
            for index, key in enumerate(keys):
                existed = os.path.lexists(self.cache.path(namespace, name, key))
                found, value = self.cache.load(namespace, name, key)
                if found:
                    results[index], done[index] = value, True
                    call.reused += 1
                elif existed:
                    call.corrupted += 1
        pending = [index for index in range(len(tasks)) if not done[index]]
        priorities = None
        if costs is not None:  # Dask runs higher priorities first: rank tasks by cost
            order = sorted(range(len(tasks)), key=lambda index: costs[index])
            priorities = {index: rank for rank, index in enumerate(order)}
        with tqdm(total=len(tasks), initial=call.reused, disable=not progress, desc=desc or name,
                  unit="task") as bar:
            for index, result in self._backend.run(function, common, tasks, pending, priorities):
                if caching:
                    self.cache.store(namespace, name, keys[index], result)
                results[index], done[index] = result, True
                call.computed += 1
                bar.update()
        LOG.info("%s: %d computed, %d reused from cache, %d corrupted entries recomputed (%s)",
                 desc or name, call.computed, call.reused, call.corrupted, self.description,
                 extra={"routine": not call.corrupted})  # the log file only, unless an entry was corrupted
        self.stats.computed += call.computed
        self.stats.reused += call.reused
        self.stats.corrupted += call.corrupted
        return results

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _connect(address: str):
    from distributed import Client

    match = SCHEDULER_ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if match is None or not 0 < int(match["port"]) < 65536:
        raise fail("scheduler", "an address tcp://HOST:PORT", address)
    _probe(address, match["host"].strip("[]"), int(match["port"]))
    outcome: dict = {}

    def attempt():
        try:
            outcome["client"] = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except BaseException as error:  # reported below, in the caller's thread
            outcome["error"] = error

    # dask's own timeout covers the TCP connection, not a peer that accepts and then never (or wrongly)
    # answers its handshake: bound the whole attempt here
    thread = threading.Thread(target=attempt, name="astrostats-connect", daemon=True)
    thread.start()
    thread.join(HANDSHAKE_TIMEOUT_S)
    if thread.is_alive():
        raise InputError(f"scheduler: {address!r} accepted the connection but did not complete the Dask "
                         f"handshake within {HANDSHAKE_TIMEOUT_S} s (is a Dask scheduler listening there?)")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, KeyboardInterrupt):
            raise error
        raise InputError(f"scheduler: expected a reachable Dask scheduler, got {address!r} "
                         f"(no working connection within {CONNECT_TIMEOUT_S} s: {type(error).__name__})") from None
    return outcome["client"]


def _probe(address: str, host: str, port: int) -> None:
    """Whether the peer speaks Dask before a Client is made: a Dask scheduler sends its handshake on accept, framed
    by an 8-byte length (a few hundred bytes). Anything else (an HTTP server's "HTTP/1.1", read by Dask as a length
    of exabytes: a MemoryError, then a traceback from the half-made Client's __del__) or silence is refused here,
    with one line; no Client is ever made for such a peer."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as connection:
            connection.settimeout(HANDSHAKE_TIMEOUT_S)
            received = b""
            while len(received) < 8:
                chunk = connection.recv(8 - len(received))
                if not chunk:
                    break
                received += chunk
    except socket.timeout:
        raise InputError(f"scheduler: {address!r} accepted the connection but did not complete the Dask "
                         f"handshake within {HANDSHAKE_TIMEOUT_S} s (is a Dask scheduler listening there?)") from None
    except OSError as error:
        raise InputError(f"scheduler: expected a reachable Dask scheduler, got {address!r} "
                         f"({error.strerror or type(error).__name__})") from None
    length = struct.unpack("<Q", received)[0] if len(received) == 8 else 0
    if not 0 < length <= MAX_HANDSHAKE_BYTES:
        shown = received[:8].decode("ascii", errors="replace").strip()
        raise InputError(f"scheduler: {address!r} does not speak Dask's protocol (it sent {shown!r}); is it a Dask "
                         "scheduler's address (tcp://HOST:PORT, default port 8786)?")


def _local_cluster(workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    try:
        return Client(cluster, set_as_default=False), cluster
    except BaseException:
        cluster.close()
        raise


def make_executor(*, workers: int | None = None, scheduler: str | None = None,
                  cache_dir: str | Path | None = None, resume: bool = False) -> Executor:
    """The executor the command line asks for: in process (neither given), ``workers`` local processes
    (a LocalCluster on loopback, one thread each), or an existing cluster at ``scheduler`` (tcp://HOST:PORT).

    ``cache_dir`` stores finished results; ``resume`` reuses them. Use as a context manager.
    """
    if workers is not None and scheduler is not None:
        raise fail("workers, scheduler", "at most one of --workers and --scheduler", (workers, scheduler))
    if resume and cache_dir is None:
        raise fail("resume", "a cache directory to resume from (cache_dir)", cache_dir)
    backend = None
    if scheduler is not None or workers is not None:
        require_extra("dask")  # without astrostats[dask]: one line naming the extra
    if scheduler is not None:
        backend = _Dask(_connect(scheduler))
    elif workers is not None:
        backend = _Dask(*_local_cluster(check_int("workers", workers, minimum=1)))
    return Executor(backend, cache_dir=cache_dir, resume=resume)
