"""Freed memory kept for reuse: large tensors allocated and freed again stop costing page faults."""
import subprocess
import sys
import textwrap

import pytest

from astrostats.memory import keep_freed_memory

FAULTS = textwrap.dedent("""
    import resource, sys, torch
    from astrostats.memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    for _ in range(10):  # 64 MB blocks; the first few are faulted in either way
        torch.empty(2**24).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(2**24).fill_(1.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    # 20 x 64 MB freshly mapped: 20 x 16,384 faults of 4 KB pages (at least half of them counted, whatever the
    # page size); reused from the heap: none after the first few
    assert _faults("default") >= 20 * 2**24 * 4 // 4096 // 2
    assert _faults("keep") < 1000


def test_keep_freed_memory_says_whether_it_applied():
    assert keep_freed_memory() is sys.platform.startswith("linux")
