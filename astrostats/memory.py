"""Freed memory kept by the process for its next allocation, instead of handed back to the system.

The circuit's kernels allocate tensors of tens of megabytes per call (rates of items x tokens x hidden units).
glibc's malloc serves each from a fresh mmap and unmaps it on free, so every call faults its pages in again.
Measured (6 SmolLM2-shaped causal heads x 8 windows of 64 tokens to m = 1e5, one thread): 8.6 s wall of which
4.0 s in the kernel (1.2 million page faults); 4.3 s with the thresholds below (MiniLM-shaped heads: unchanged,
the tiled kernel already reuses one buffer). Raising
malloc's mmap and trim thresholds keeps such blocks in the heap for the next call; the cost is that the resident
size stays at its peak, so each analysis starts by handing the free heap back (:func:`release_freed_memory`) and
its record states its own peak resident size (:func:`reset_peak_resident`, :func:`peak_resident_bytes`, Linux).
A no-op where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 2**30  # blocks up to 1 GiB come from the heap; up to 1 GiB of free heap is kept
OLD_GLIBC_MMAP_MAX = 2**25  # glibc before 2.35 refuses an mmap threshold above 32 MiB (HEAP_MAX_SIZE / 2)


def keep_freed_memory() -> bool:
    """Whether malloc now keeps freed blocks for reuse (False where mallopt is not available or refused)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if not mallopt(M_TRIM_THRESHOLD, KEEP_BYTES):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) or mallopt(M_MMAP_THRESHOLD, OLD_GLIBC_MMAP_MAX))


def release_freed_memory() -> bool:
    """Hand every free page of the heap back to the system (glibc's malloc_trim), e.g. between analyses, so that
    what one analysis kept is not counted against the next. False where not available."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


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


__all__ = ["keep_freed_memory", "release_freed_memory", "reset_peak_resident", "peak_resident_bytes"]
