"""A compiled pass over a tile of rates: shift and exp2 in one sweep while the tile is in cache.

Why: in torch the shift of a tile (amax, subtract) and its exp2 are three passes over memory, which cost a
third of the circuit's time next to its GEMMs (inner dimension 64). This C kernel, built once per machine with
the system's C compiler into a cache folder and loaded with ctypes, does a row's maximum and its exponentials
while the row is in L1 cache, vectorised (AVX-512/AVX2 as the CPU has) and threaded with the OpenMP runtime
torch already loaded (so it follows ``torch.set_num_threads``). Its exp2 is a degree-6 polynomial (Cephes,
relative error about 2e-7) that flushes results under 2^-125 to zero and passes NaN through.

Nothing depends on it: :func:`available` is False where no compiler is found, the build fails, the input is
not float32, or ``ASTROSTATS_NATIVE=0``; the callers then take the torch operations, which compute the same
numbers to float rounding (tests bind both paths to the reference circuit).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float exp2_poly(float x) {
    /* 2^x for x <= 0 (callers subtract a maximum): 2^n * 2^f, f in [-1/2, 1/2], Cephes exp2f polynomial */
    float xc = x < -125.0f ? -125.0f : x;
    float t = xc + 12582912.0f;                 /* 1.5 * 2^23: round to nearest integer */
    float n = t - 12582912.0f;
    float f = xc - n;
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    int32_t bits, k = (int32_t)n;
    memcpy(&bits, &p, 4);
    bits += k * 8388608;                        /* k << 23 */
    float r;
    memcpy(&r, &bits, 4);
    r = x < -125.0f ? 0.0f : r;
    return x != x ? x : r;
}

static inline float row_max(const float *row, int64_t cols) {
    float m = -INFINITY;
    #pragma omp simd reduction(max:m)
    for (int64_t j = 0; j < cols; j++) m = row[j] > m ? row[j] : m;
    return m;
}

/* out[r] = max_j x[r, j] */
void rows_max(const float *x, int64_t rows, int64_t cols, float *out) {
    #pragma omp parallel for schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++) out[r] = row_max(x + r * cols, cols);
}

/* x[r, j] = 2^(x[r, j] - shift[r]) */
void exp2_shifted(float *x, int64_t rows, int64_t cols, const float *shift) {
    #pragma omp parallel for schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        float s = shift[r];
        #pragma omp simd
        for (int64_t j = 0; j < cols; j++) row[j] = exp2_poly(row[j] - s);
    }
}

/* an online maximum per row: shift[r] = max(shift[r], max_j x[r, j]), then x[r, j] = 2^(x[r, j] - shift[r]) and
   dot[r] = sum_j x[r, j] g[r / rows_per_g, j] (the astrocyte response of this tile; skipped where g is NULL) */
void exp2_online(float *x, int64_t rows, int64_t cols, float *shift, const float *g, int64_t rows_per_g,
                 float *dot) {
    #pragma omp parallel for schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++) {
        float *row = x + r * cols;
        float m = row_max(row, cols);
        float s = shift[r] > m ? shift[r] : m;
        float total = 0.0f;
        shift[r] = s;
        if (g == NULL) {                        /* the rates alone: no astrocyte response asked for */
            #pragma omp simd
            for (int64_t j = 0; j < cols; j++) row[j] = exp2_poly(row[j] - s);
            continue;
        }
        const float *weights = g + (r / rows_per_g) * cols;
        #pragma omp simd reduction(+:total)
        for (int64_t j = 0; j < cols; j++) {
            float rate = exp2_poly(row[j] - s);
            row[j] = rate;
            total += rate * weights[j];
        }
        dot[r] = total;
    }
}
"""
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "astrostats" / "native"


def _cpu_flags() -> str:
    """The CPU's feature flags (the build is -march=native, so a cached library is valid on this CPU only)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def _build(compiler: str) -> Path:
    """The compiled library in the cache, built into a temporary file and renamed (concurrent workers safe)."""
    key = hashlib.sha256("\n".join([SOURCE, " ".join(FLAGS), compiler, _cpu_flags(), sys.platform]).encode())
    target = CACHE / f"rates-{key.hexdigest()[:16]}.so"
    record = target.with_suffix(".sha256")
    if target.is_file() and not target.is_symlink() and record.is_file() \
            and record.read_text().strip() == _digest(target):
        return target  # verified: the bytes are those this process's build recorded
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        source = Path(folder) / "rates.c"
        source.write_text(SOURCE)
        built = Path(folder) / "rates.so"
        subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)], check=True, capture_output=True,
                       timeout=120)
        digest = Path(folder) / "rates.sha256"
        digest.write_text(_digest(built))
        os.replace(built, target)
        os.replace(digest, record)
    return target


def _digest(path: Path) -> str:
    """SHA-256 of a file: a cached library is loaded only if its bytes match the record written at its build."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def _library():
    """The loaded library, or None (no compiler, a failed build, or switched off)."""
    if os.environ.get("ASTROSTATS_NATIVE", "1") == "0" or sys.platform != "linux":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    try:
        library = ctypes.CDLL(str(_build(compiler)))
    except (OSError, subprocess.SubprocessError):
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    for name in ("rows_max", "exp2_shifted"):
        getattr(library, name).argtypes = [pointer, size, size, pointer]
    library.exp2_online.argtypes = [pointer, size, size, pointer, pointer, size, pointer]
    return library


def available(*tensors: torch.Tensor) -> bool:
    """Whether the compiled kernel serves these tensors: built, float32, contiguous, on the CPU."""
    return all(t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu" for t in tensors) \
        and _library() is not None


def _labelled(name: str):
    """A torch.profiler label for the calls below (ctypes calls are invisible to it), only while it runs."""
    enabled = torch.autograd.profiler._is_profiler_enabled
    return torch.profiler.record_function(f"astrostats::{name}") if enabled else contextlib.nullcontext()


def rows_max(x: torch.Tensor) -> torch.Tensor:
    """max over the last dim of a contiguous float32 tensor: (..., cols) -> (...)."""
    out = x.new_empty(x.shape[:-1])
    with _labelled("rows_max"):
        _library().rows_max(x.data_ptr(), x.numel() // x.shape[-1], x.shape[-1], out.data_ptr())
    return out


def exp2_shifted_(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x = 2^(x - shift[..., None]) in place; shift has x's shape without its last dim."""
    shift = shift.to(torch.float32).contiguous().expand(x.shape[:-1]).contiguous()
    with _labelled("exp2_shifted"):
        _library().exp2_shifted(x.data_ptr(), x.numel() // x.shape[-1], x.shape[-1], shift.data_ptr())
    return x


def exp2_online_(x: torch.Tensor, shift: torch.Tensor, presynaptic: torch.Tensor | None = None):
    """shift = max(shift, row max of x), then x = 2^(x - shift[..., None]), both in place, and the rows'
    dot products with the presynaptic sums: x (B, N, w), shift (B, N) contiguous float32 (-inf before the
    first tile), presynaptic (B, w) contiguous float32; returns (B, N), or None without ``presynaptic``."""
    dot = None if presynaptic is None else x.new_empty(x.shape[:-1])
    with _labelled("exp2_online"):
        _library().exp2_online(x.data_ptr(), x.numel() // x.shape[-1], x.shape[-1], shift.data_ptr(),
                               None if presynaptic is None else presynaptic.data_ptr(), x.shape[-2],
                               None if dot is None else dot.data_ptr())
    return dot
