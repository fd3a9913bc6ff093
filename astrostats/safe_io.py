"""Every file a run writes, reads or removes in its run folder goes through here.

* Contained, no link followed: a path is taken apart below its root (the run folder, or a folder given on the
  command line, which may itself be a link the user chose) and each folder below it is opened with
  ``O_NOFOLLOW`` relative to the one above (``dir_fd``): a symbolic link anywhere below the root is refused,
  never followed, so nothing is written, read or removed outside the root whatever links are planted in it.
* Atomic: a file is written to a fresh temporary name in its folder (``O_CREAT | O_EXCL | O_NOFOLLOW``: a name
  already there, a planted link included, is never opened) and renamed over the final name; a link planted at
  the final name is replaced by the file (the rename replaces the link itself, its target is untouched). An
  interrupted or failed write (a full disk) removes its temporary file, and the previous file stays whole.
* Regular files only, size-capped: reads open with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO opens at once instead of
  waiting for a writer) and refuse anything that is not a regular file (a FIFO, a device such as /dev/zero, a
  folder) or is larger than the caller's cap, before reading a byte.
* Never after the run is lost: a process that writes for another (an analysis process of ``--jobs N``, a figure
  worker) calls :func:`die_with_parent`; then it is killed with its parent (Linux ``PR_SET_PDEATHSIG``), and
  every write first checks that the parent is still the one that holds the run's lock (elsewhere too, where
  the signal is not available), and the process exits at once if not.
"""
from __future__ import annotations

import ctypes
import errno
import os
import secrets
import signal
import stat
from pathlib import Path

from astrostats.validation import InputError

MiB = 2**20
TEMPORARY_SUFFIX = ".tmp"
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_EXIT_RUN_LOST = 70  # a writer whose run (its parent) is gone exits with this, writing nothing more
_parent_pid: int | None = None


class UnsafePath(InputError):
    """A path that would leave its root, pass through a symbolic link, or is not what it should be (a FIFO, a
    device, a folder, too large)."""


# ------------------------------------------------------------------------------------------ the run's writers
def die_with_parent(parent_pid: int) -> None:
    """In a process that writes for ``parent_pid``: be killed when it dies (Linux), and refuse every write once
    it is gone (everywhere). Called first thing in analysis processes and figure workers."""
    global _parent_pid
    _parent_pid = parent_pid
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the check before each write still holds
        pass
    check_run_alive()  # the parent may have died before the signal was armed


def check_run_alive() -> None:
    """Exit at once (status 70, nothing written) when this process writes for a parent that is gone: its run's
    lock died with it, and another run may already own the folder."""
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(_EXIT_RUN_LOST)


# ------------------------------------------------------------------------------------------ taking paths apart
def _parts(root: Path, path: Path) -> list[str]:
    """The components of ``path`` below ``root``, lexically (nothing resolved); UnsafePath when it is not below."""
    root_text, path_text = os.path.abspath(root), os.path.abspath(path)
    relative = os.path.relpath(path_text, root_text)
    parts = [part for part in Path(relative).parts]
    if not parts or parts[0] == ".." or os.path.isabs(relative) or any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(f"refusing {str(path)!r}: not inside the folder {str(root)!r}")
    return parts


def _link_message(root: Path, parts: list[str], index: int) -> str:
    where = Path(root, *parts[:index + 1])
    return (f"refusing {str(Path(root, *parts))!r}: {str(where)!r} is a symbolic link or not a folder (a link could "
            f"lead outside the output folder; astrostats never writes or reads through one): remove it "
            f"(rm {str(where)!r}) or choose another folder")


def _open_folder(root: Path, folders: list[str], *, create: bool) -> int:
    """A descriptor of root/folders..., each component opened without following links (created when asked)."""
    try:
        current = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if not create:
            raise
        os.makedirs(root, exist_ok=True)
        current = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for index, name in enumerate(folders):
            try:
                following = os.open(name, _DIRECTORY_FLAGS, dir_fd=current)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=current)
                except FileExistsError:
                    pass
                try:
                    following = os.open(name, _DIRECTORY_FLAGS, dir_fd=current)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath(_link_message(root, folders, index)) from None
                    raise
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(_link_message(root, folders, index)) from None
                raise
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


# ------------------------------------------------------------------------------------------ writing
def _write_all(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(handle, view)
        view = view[written:]


def write_bytes(root: Path, path: Path, data: bytes) -> None:
    """``data`` at ``path`` (inside ``root``), atomically, following no link, with the umask's permissions."""
    check_run_alive()
    parts = _parts(Path(root), Path(path))
    folder = _open_folder(Path(root), parts[:-1], create=True)
    name = parts[-1]
    try:
        temporary = _create_temporary(folder, name)
        try:
            handle = temporary[1]
            try:
                _write_all(handle, data)
            finally:
                os.close(handle)
            check_run_alive()
            os.rename(temporary[0], name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            _unlink_quietly(folder, temporary[0])
            raise
    finally:
        os.close(folder)


def _create_temporary(folder: int, name: str) -> tuple[str, int]:
    """A fresh file beside ``name``: O_EXCL and O_NOFOLLOW, so a planted file or link is never opened."""
    for _ in range(100):
        temporary = f".{name[:96]}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            return temporary, os.open(temporary, flags, 0o666, dir_fd=folder)
        except FileExistsError:
            continue
    raise UnsafePath(f"no free temporary name beside {name!r} after 100 tries")


def create_exclusive(root: Path, folder: Path, prefix: str, suffix: str) -> Path:
    """A new, empty, regular file with a fresh random name in ``folder`` (inside ``root``), for a tool that writes
    or reads by path (typst); never an existing name, never through a link. The caller removes it."""
    check_run_alive()
    parts = _parts(Path(root), Path(folder) / "x")[:-1]
    handle = _open_folder(Path(root), parts, create=True)
    try:
        for _ in range(100):
            name = f"{prefix}{secrets.token_hex(6)}{suffix}"
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                os.close(os.open(name, flags, 0o600, dir_fd=handle))
                return Path(folder) / name
            except FileExistsError:
                continue
    finally:
        os.close(handle)
    raise UnsafePath(f"no free name {prefix}...{suffix} in {str(folder)!r} after 100 tries")


def _open_created(root: Path, path: Path, flags: int, what: str) -> int:
    """A descriptor of the regular file ``path`` (created if absent), never through a link or a FIFO."""
    parts = _parts(Path(root), Path(path))
    folder = _open_folder(Path(root), parts[:-1], create=True)
    try:
        flags |= os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            handle = os.open(parts[-1], flags, 0o666, dir_fd=folder)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENXIO):
                raise UnsafePath(f"{str(path)!r} is a symbolic link or a FIFO, not a {what}: remove it") from None
            raise
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise UnsafePath(f"{str(path)!r} is not a regular file: remove it")
    return handle


def open_append(root: Path, path: Path):
    """``path`` opened for appending text (a log), created if absent; a link or a non-regular file is refused."""
    check_run_alive()
    handle = _open_created(root, path, os.O_WRONLY | os.O_APPEND, "log file")
    os.set_blocking(handle, True)
    return os.fdopen(handle, "a", encoding="utf-8")


def open_lock(root: Path, path: Path) -> int:
    """A read-write descriptor of the lock file, created if absent, never through a link."""
    return _open_created(root, path, os.O_RDWR, "lock file")


def unlink(root: Path, path: Path) -> None:
    """Remove ``path`` (inside ``root``; a link is removed itself, never its target); absent is fine."""
    check_run_alive()
    parts = _parts(Path(root), Path(path))
    try:
        folder = _open_folder(Path(root), parts[:-1], create=False)
    except FileNotFoundError:
        return
    try:
        _unlink_quietly(folder, parts[-1], missing_only=False)
    finally:
        os.close(folder)


def _unlink_quietly(folder: int, name: str, missing_only: bool = True) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass
    except OSError:
        if not missing_only:
            raise


# ------------------------------------------------------------------------------------------ reading
def _open_regular(path: Path, root: Path | None, what: str) -> int:
    """A read descriptor of a regular file: no link followed (below ``root``, none at all; without a root, not
    the file itself), a FIFO or device refused before any read."""
    path = Path(path)
    if root is not None:
        parts = _parts(Path(root), path)
        folder = _open_folder(Path(root), parts[:-1], create=False)
        try:
            handle = _open_name(parts[-1], folder, path, what)
        finally:
            os.close(folder)
    else:
        handle = _open_name(str(path), None, path, what)
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise UnsafePath(f"{what}: {str(path)!r} is {kind}, not a regular file")
    os.set_blocking(handle, True)
    return handle


def _open_name(name: str, folder: int | None, path: Path, what: str) -> int:
    try:
        return os.open(name, _READ_FLAGS, dir_fd=folder)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafePath(f"{what}: {str(path)!r} is a symbolic link; astrostats does not follow links in a run "
                             f"folder: remove it (rm {str(path)!r})") from None
        raise


def read_bytes(path: Path, *, limit: int, what: str, root: Path | None = None) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (UnsafePath beyond); FileNotFoundError if absent."""
    handle = _open_regular(path, root, what)
    try:
        size = os.fstat(handle).st_size
        if size > limit:
            raise UnsafePath(f"{what}: {str(path)!r} holds {size} bytes, more than the {limit} such a file may")
        chunks, total = [], 0
        while True:
            chunk = os.read(handle, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnsafePath(f"{what}: {str(path)!r} grew beyond {limit} bytes while it was read")
        return b"".join(chunks)
    finally:
        os.close(handle)


def read_user_file(path: Path, *, limit: int, what: str) -> bytes:
    """A file the user named (a spec): links followed (the user's own choice), but only a regular file of at most
    ``limit`` bytes is read; a FIFO or a device is refused at once instead of blocking or reading forever."""
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{what}: {str(path)!r} is not a regular file")
        if info.st_size > limit:
            raise UnsafePath(f"{what}: {str(path)!r} holds {info.st_size} bytes, more than the {limit} such a file may")
        os.set_blocking(handle, True)
        data = os.read(handle, limit + 1)
        while len(data) <= limit:
            more = os.read(handle, limit + 1 - len(data))
            if not more:
                break
            data += more
        if len(data) > limit:
            raise UnsafePath(f"{what}: {str(path)!r} grew beyond {limit} bytes while it was read")
        return data
    finally:
        os.close(handle)


def sha256(path: Path, *, what: str, root: Path | None = None) -> str:
    """SHA-256 of a regular file, streamed (no size cap: nothing is kept)."""
    import hashlib

    handle = _open_regular(path, root, what)
    digest = hashlib.sha256()
    try:
        while True:
            block = os.read(handle, 1 << 20)
            if not block:
                return digest.hexdigest()
            digest.update(block)
    finally:
        os.close(handle)


def is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


__all__ = ["UnsafePath", "die_with_parent", "check_run_alive", "write_bytes", "create_exclusive", "open_append",
           "open_lock", "unlink", "read_bytes", "read_user_file", "sha256", "is_link"]
