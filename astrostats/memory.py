"""Freed memory kept by the process for its next allocation, instead of handed back to the system at once.

The circuit's kernels allocate tensors of tens of megabytes per call (rates of items x tokens x hidden units).
glibc's malloc serves each from a fresh mmap and unmaps it on free, so every call faults its pages in again.
Measured (6 SmolLM2-shaped causal heads x 8 windows of 64 tokens to m = 1e5, one thread): 8.6 s wall of which
4.0 s in the kernel (1.2 million page faults); 4.3 s with the thresholds below (MiniLM-shaped heads: unchanged,
the tiled kernel already reuses one buffer). Raising malloc's mmap and trim thresholds keeps such blocks in the
heap for the next call. Kept alone, free blocks between live ones pile up: the biology analysis (full profile)
grew to 15 GB resident, against 5 GB without the thresholds. So a thread looks every TRIM_EVERY_S seconds and
hands the heap's free pages back (glibc's malloc_trim) when more than TRIM_ABOVE_BYTES are free: up to that,
blocks freed and reused from call to call stay mapped; beyond it, free fragments do not pile up. (At 1 GiB the
full profile's page faults rose from 7.5 to 67 million and its wall time from 20.4 to 23.5 minutes; at 4 GiB see
the README's Speed section.) Each analysis also starts from a trimmed heap
(:func:`release_freed_memory`) and its record states its own peak resident size (:func:`reset_peak_resident`,
:func:`peak_resident_bytes`, Linux). A no-op where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import functools
import threading
import time
from pathlib import Path

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 2**30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap is kept
OLD_GLIBC_MMAP_MAX = 2**25  # glibc before 2.35 refuses an mmap threshold above 32 MiB (HEAP_MAX_SIZE / 2)
TRIM_EVERY_S = 2.0  # how often the free heap is looked at
TRIM_ABOVE_BYTES = 2**32  # and handed back when more than 4 GiB of it is free
_trimmer: threading.Thread | None = None


def keep_freed_memory(trim_every_s: float = TRIM_EVERY_S, trim_above_bytes: int = TRIM_ABOVE_BYTES) -> bool:
    """Whether malloc now keeps freed blocks for reuse (False where mallopt is not available or refused); if so,
    a daemon thread (one per process; glibc >= 2.33, which reports free heap) looks every ``trim_every_s`` seconds
    and hands the free heap back when more than ``trim_above_bytes`` of it are free."""
    global _trimmer
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if not mallopt(M_TRIM_THRESHOLD, KEEP_BYTES):
        return False
    if not (mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) or mallopt(M_MMAP_THRESHOLD, OLD_GLIBC_MMAP_MAX)):
        return False
    if _trimmer is None and free_heap_bytes() is not None:  # glibc < 2.33 cannot say what is free: no thread
        _trimmer = threading.Thread(target=_trim_forever, args=(trim_every_s, trim_above_bytes), name="malloc-trim",
                                   daemon=True)
        _trimmer.start()
    return True


class _MallInfo2(ctypes.Structure):  # glibc >= 2.33, malloc.h
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache
def _glibc_function(name: str, restype=ctypes.c_int):
    """One of glibc's functions (loaded once), or None where the C library is not glibc or lacks it."""
    try:
        function = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.restype = restype
    return function


def free_heap_bytes() -> int | None:
    """Free bytes held in malloc's heap (glibc's mallinfo2 fordblks); None where not available."""
    mallinfo2 = _glibc_function("mallinfo2", _MallInfo2)
    return None if mallinfo2 is None else int(mallinfo2().fordblks)


def _trim_forever(every_s: float, above_bytes: int) -> None:
    """Hand the free heap back whenever more than ``above_bytes`` of it is free: blocks reused from call to
    call stay mapped, fragments beyond that do not pile up."""
    while True:
        time.sleep(every_s)
        if free_heap_bytes() > above_bytes:  # not None: the thread starts only where glibc reports it
            release_freed_memory()


def release_freed_memory() -> bool:
    """Hand every free page of the heap back to the system (glibc's malloc_trim), e.g. between analyses, so that
    what one analysis kept is not counted against the next. False where not available."""
    malloc_trim = _glibc_function("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))


def reset_peak_resident() -> bool:
    """Start a new peak resident size (Linux: '5' written to /proc/self/clear_refs resets VmHWM to the current
    resident size). False where the system does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_resident_bytes() -> int | None:
    """The process's peak resident size since it started or since :func:`reset_peak_resident` (VmHWM), in
    bytes; None where /proc does not say."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


__all__ = ["keep_freed_memory", "free_heap_bytes", "release_freed_memory", "reset_peak_resident", "peak_resident_bytes"]
