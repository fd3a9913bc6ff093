"""Keyed integrity: an HMAC-SHA256 over the manifest, the completion records and the cache entries.

A plain SHA-256 finds corruption (a flipped bit, a truncation), not tampering: whoever edits a table can
recompute its digest in the record. With a key that lives outside the run folder, a record can only be sealed
by someone who can read the key. The key is 32 random bytes (hex) in ``$ASTROSTATS_KEY_FILE`` when set, else
``$XDG_CONFIG_HOME/astrostats/key`` (``~/.config/astrostats/key``), created on first use with mode 0600; a key
file that others may write or read, a link, or anything not a regular file is refused.

What it does not protect against: anyone who can read the key (the same user account) can forge records; and
a run folder moved to another machine or account verifies only where the same key file is given
(``ASTROSTATS_KEY_FILE``). Tables themselves are covered through the sealed records, which hold their SHA-256.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from astrostats.validation import InputError

KEY_FILE_ENV = "ASTROSTATS_KEY_FILE"
KEY_BYTES = 32


def key_path() -> Path:
    """Where the key is: $ASTROSTATS_KEY_FILE, else the user's config folder (XDG), outside every run folder."""
    override = os.environ.get(KEY_FILE_ENV)
    if override:
        return Path(override).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "astrostats" / "key"


def key() -> bytes:
    return _key(str(key_path()))


@functools.lru_cache(maxsize=4)
def _key(path_text: str) -> bytes:
    path = Path(path_text)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    # written whole under a private name, then linked into place: a process that loses the race reads the
    # winner's complete key, never an empty file
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(handle, secrets.token_hex(KEY_BYTES).encode() + b"\n")
            os.fsync(handle)
        finally:
            os.close(handle)
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
    except OSError as error:
        raise InputError(f"integrity key: cannot create {str(path)!r} ({error.strerror or error}); set "
                         f"{KEY_FILE_ENV} to a file path you can write") from None
    finally:
        try:
            os.unlink(temporary)
        except OSError:
            pass
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENOENT:
            raise
        raise InputError(f"integrity key: {str(path)!r} cannot be read ({error.strerror or error}; a link is "
                         f"refused); set {KEY_FILE_ENV} or remove it to have a new key made") from None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 1024:
            raise InputError(f"integrity key: {str(path)!r} is not a small regular file")
        if info.st_mode & 0o077:
            raise InputError(f"integrity key: {str(path)!r} may be read or written by others (mode "
                             f"{stat.S_IMODE(info.st_mode):o}); chmod 600 it")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise InputError(f"integrity key: {str(path)!r} belongs to another user")
        text = os.read(handle, 1024).decode(errors="replace").strip()
    finally:
        os.close(handle)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) < 16:
        raise InputError(f"integrity key: {str(path)!r} does not hold a hex key of at least 16 bytes")
    return value


def mac(data: bytes, purpose: str) -> str:
    """HMAC-SHA256 of ``data`` under the key, bound to a ``purpose`` (a record cannot pass for a cache entry)."""
    return hmac.new(key(), purpose.encode() + b"\0" + data, hashlib.sha256).hexdigest()


def verify(data: bytes, purpose: str, recorded: object) -> bool:
    return isinstance(recorded, str) and hmac.compare_digest(mac(data, purpose), recorded)


__all__ = ["KEY_FILE_ENV", "key_path", "key", "mac", "verify"]
