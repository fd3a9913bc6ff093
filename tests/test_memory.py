"""Freed memory kept for reuse: large tensors allocated and freed again stop costing page faults."""
import platform
import subprocess
import sys
import textwrap

import pytest

from astrostats.memory import keep_freed_memory

FAULTS = textwrap.dedent("""
    import resource, sys, torch
    from astrostats.memory import keep_freed_memory
    if sys.argv[1] == "keep" and not keep_freed_memory():
        print(-1)
        sys.exit()
    for _ in range(10):  # 32 MB blocks (under every glibc's mmap threshold cap); the first few fault either way
        torch.empty(2**23).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(2**23).fill_(1.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")
GLIBC = platform.libc_ver()[0] == "glibc"


def _faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    # freshly mapped every time: every block faults all its pages in (at least one fault per block whatever the
    # page size); reused from the heap: most blocks fault none (0 of 20 in most runs; in about 1 run of 4 three
    # blocks came back faulting, with or without the trimming thread), so far fewer than the default's faults
    default, kept = _faults("default"), _faults("keep")
    assert kept >= 0, "mallopt refused the thresholds"
    assert default >= 20 and kept < default / 4


def test_keep_freed_memory_says_whether_it_applied():
    assert keep_freed_memory() is GLIBC


PEAK = textwrap.dedent("""
    import torch
    from astrostats.memory import keep_freed_memory, peak_resident_bytes, release_freed_memory, reset_peak_resident
    keep_freed_memory()  # as an analysis process: the freed block stays in the heap until handed back
    block = torch.ones(2**27)  # 512 MiB, touched
    high = peak_resident_bytes()
    del block
    release_freed_memory()
    print(int(reset_peak_resident()), high, peak_resident_bytes())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_peak_resident_size_is_reset_between_analyses():
    """A 512 MiB block raises the peak by at least that much; freed, handed back and the peak reset, the new peak is
    the resident size without it (fails if the reset or the release did nothing)."""
    result = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True, check=True)
    reset, high, after = (int(value) for value in result.stdout.split())
    assert reset == 1
    assert high >= 2**29 and after <= high - 2**29 + 2**26  # the block's 512 MiB gone, to within 64 MiB


FRAGMENTS = textwrap.dedent("""
    import sys, time, torch
    from astrostats.memory import keep_freed_memory
    keep_freed_memory(trim_every_s=float(sys.argv[1]), trim_above_bytes=2**30)
    def resident():
        return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS"))
    blocks = [torch.ones(2**27) for _ in range(3)]  # 3 x 512 MiB from the heap, touched
    pin = torch.ones(2**18)  # a live block above them: the heap's top cannot shrink past it
    before = resident()
    del blocks  # 1.5 GiB free inside the heap, more than the 1 GiB asked for
    time.sleep(1.0)
    print(before, resident())
""")


@pytest.mark.skipif(not GLIBC, reason="mallopt and malloc_trim are glibc's")
def test_free_fragments_beyond_the_kept_gigabyte_are_handed_back():
    """Freed blocks below a live one stay resident under the raised thresholds; the trimming thread hands them back
    within its period (a period longer than the wait shows that it is the thread, not free(), that does)."""
    def run(period):
        result = subprocess.run([sys.executable, "-c", FRAGMENTS, str(period)], capture_output=True, text=True,
                                check=True)
        return [int(value) for value in result.stdout.split()]
    before, after = run(0.1)
    assert after < before - 2**30
    before, after = run(60.0)
    assert after > before - 2**28
