"""A folder of files derived from one source file, kept in the user's cache and trusted only when checked.

SmolLM2 ships as a 4-bit GGUF file that transformers dequantises on every load (its header's 49,152-entry
vocabulary parsed field by field, then 30 layers dequantised): seconds of every run that uses it. The
dequantised weights are written once, as safetensors, into ``$XDG_CACHE_HOME/astrostats`` (``~/.cache/astrostats``
where unset), in a folder named after the source's SHA-256. Before a cached folder is used, the source's SHA-256
and each written file's are compared with the record written beside them; a folder that fails (a file changed,
truncated or missing) is deleted and rebuilt, with a warning. A folder is built under a temporary name and
renamed into place, so a crash or a concurrent build never leaves a half-written folder where it is read.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from astrostats.user_cache import cache_root

LOG = logging.getLogger(__name__)
RECORD = "astrostats-cache.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """The SHA-256 of a file once per process while its size and time stamp stay the same (checked on every
    call: the source is read on every load, and a run loads a model several times)."""
    return sha256(Path(path))


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


def problem(folder: Path, source_sha: str) -> str | None:
    """Why ``folder`` cannot be trusted (None: every file is the one its record names, built from this source)."""
    record_path = folder / RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        return f"its record {record_path.name} is unreadable ({error})"
    if record.get("source_sha256") != source_sha:
        return "its record names another source file"
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return "its record lists no files"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if file_sha256(path) != expected:
            return f"{name} does not match its SHA-256"
    return None


def cached_folder(source: Path, kind: str, build: Callable[[Path], None]) -> Path:
    """The checked cache folder of files ``build(folder)`` derives from ``source`` (built on first use; rebuilt,
    with a warning, when a check fails). ``kind`` names the derivation (and the folder)."""
    source = Path(source)
    source_sha = file_sha256(source)
    folder = cache_root() / f"{kind}-{source_sha[:16]}"
    if folder.exists():
        reason = problem(folder, source_sha)
        if reason is None:
            return folder
        warnings.warn(f"astrostats cache {folder}: {reason}; deleted and rebuilt", RuntimeWarning, stacklevel=2)
        shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build(staging)
        files = {path.relative_to(staging).as_posix(): sha256(path)
                 for path in sorted(staging.rglob("*")) if path.is_file()}
        record = {"source": source.name, "source_sha256": source_sha, "kind": kind, "files": files}
        (staging / RECORD).write_text(json.dumps(record, indent=1))
        try:
            os.rename(staging, folder)
        except OSError:  # another process renamed its own build into place first: use it if it checks out
            if problem(folder, source_sha) is not None:
                raise
        else:
            staging = None
        LOG.info("cached %s of %s in %s", kind, source.name, folder)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
