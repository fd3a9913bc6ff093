"""Compiled passes of the circuit, built once per machine with the system's C compiler into a cache folder and
loaded with ctypes; threaded with the OpenMP runtime torch already loaded (so they follow ``torch.set_num_threads``).

Two kinds, for one reason: in torch each step over a tile of rates (its maximum, the shift, exp2, a dot product) is
a pass over memory, and at inner dimension 64 (the head size) those passes cost as much as a third of the GEMMs.

* Row passes (any x86 or ARM compiler): a row's maximum and its exponentials while the row is in L1 cache
  (:func:`rows_max`, :func:`exp2_shifted_`, :func:`exp2_online_`), used by the torch tiled and token-pair kernels.
* The fused circuit (AVX-512), for the positive maps without autograd: every tile of 384 hidden units goes
  through its rates' GEMM, its shift and exp2 and its second GEMM while the tile is in L1/L2 cache, with
  register-blocked GEMMs written here (6 x 64 outputs per block) and the rates' maxima taken in the GEMM's
  epilogue. :func:`fused_phases` does the Hebbian route (write phase, then read phase, fetching the next tile's
  weights while the exponentials run); :func:`fused_pairs` the token-pair sums of short sequences (queries' and
  keys' rates, then their product). Tiles are fixed, not fitted to a machine's caches, and each output row is
  computed by one thread in one order, so the bits do not depend on the machine (with AVX-512) or the thread
  count.

The exp2 is a degree-6 polynomial (Cephes, relative error about 2e-7) that flushes results under 2^-125 to zero
and passes NaN through; the fused passes also flush subnormal products (a microcode assist each otherwise), which
loses at most 2^-126 per product, within the bound the caller checks (astrocyte._unresolved_as_nan).

Nothing depends on them: :func:`available` and :func:`fused_available` are False where no compiler is found, the
build fails, the CPU lacks AVX-512 (fused only), the input is not float32, or ``ASTROSTATS_NATIVE=0``; the callers
then take the torch operations, which compute the same numbers to float rounding (tests bind every path to the
reference circuit).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from astrostats.user_cache import cache_root

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

/* ---- the fused circuit (positive maps, not causal): both phases' GEMMs with their exp2 between them, on tiles
   that stay in L1/L2 cache; AVX-512 only (fused_ready() says whether this build has it) ---- */
#define FUSED_TILE 384      /* hidden units per tile: a multiple of 6, 12 and 64 */
#define FUSED_ROWS 12       /* callers pad token counts to a multiple of this */
#define FUSED_DEPTH 128     /* inner-dimension chunk of the second GEMMs: their B panel stays in L1 */

#ifdef __AVX512F__
#include <immintrin.h>
#include <stdlib.h>

int fused_ready(void) { return 1; }

/* exp2_poly on 16 lanes, with AVX-512's scalef for the power of two: the same numbers in 11 instructions */
static inline __m512 exp2_vec(__m512 x) {
    const __m512 lowest = _mm512_set1_ps(-125.0f);
    __m512 xc = _mm512_max_ps(lowest, x);                      /* a NaN in x passes (second operand) */
    __m512 n = _mm512_roundscale_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(xc, n);
    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x, lowest, _CMP_NLT_UQ), p, n);  /* under 2^-125: 0 */
}

/* a row's running maximum (*shift) grown to the tile's (most: its lanes' maxima): the factor the row's earlier sums
   take to the grown maximum (0 on the first tile, where *shift is -inf) */
static inline float grow(float *shift, __m512 most) {
    float top = _mm512_reduce_max_ps(most), grown = *shift > top ? *shift : top;
    float rescale = exp2_poly(*shift - grown);
    *shift = grown;
    return rescale;
}

/* this thread's SSE control word, after setting flush-to-zero and denormals-are-zero in it (restore with
   _mm_setcsr): a product under 2^-126 (a rate far below its row's maximum times a small Hebbian weight) would
   otherwise take a microcode assist of about a hundred cycles; flushed, it loses at most 2^-126, which the
   circuit's caller bounds (astrocyte._unresolved_as_nan) */
static inline unsigned int flush_subnormals(void) {
    unsigned int control = _mm_getcsr();
    _mm_setcsr(control | 0x8040);
    return control;
}

/* inside[v]: the lanes of the tile's 16-float vector v that hold one of its width units (the last tile's padding
   is never a rate), set once per tile rather than per vector */
static inline void lanes(int64_t width, __mmask16 inside[FUSED_TILE / 16]) {
    for (int64_t v = 0; v < FUSED_TILE / 16; v++) {
        int64_t units = width - 16 * v;
        inside[v] = units >= 16 ? (__mmask16)0xFFFF : units <= 0 ? (__mmask16)0 : (__mmask16)((1u << units) - 1u);
    }
}

/* c[r, :16 NV] = (scale ? scale[r] c[r, :] : 0) + sum_k a[r ar + k ak] b[k ldb + :16 NV] for r < ROWS: the register
   block of every GEMM below (ROWS x NV accumulators, NV zmm per row) */
static inline __attribute__((always_inline)) void block_gemm(
        const float *a, int64_t ar, int64_t ak, const float *b, int64_t ldb, int64_t depth,
        float *c, int64_t ldc, const float *scale, const int ROWS, const int NV) {
    __m512 acc[12][4];
    #pragma GCC unroll 12
    for (int r = 0; r < ROWS; r++) {
        #pragma GCC unroll 4
        for (int j = 0; j < NV; j++)
            acc[r][j] = scale ? _mm512_mul_ps(_mm512_set1_ps(scale[r]), _mm512_loadu_ps(c + r * ldc + 16 * j))
                              : _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < depth; k++) {
        __m512 bv[4];
        #pragma GCC unroll 4
        for (int j = 0; j < NV; j++) bv[j] = _mm512_loadu_ps(b + k * ldb + 16 * j);
        #pragma GCC unroll 12
        for (int r = 0; r < ROWS; r++) {
            __m512 av = _mm512_set1_ps(a[r * ar + k * ak]);
            #pragma GCC unroll 4
            for (int j = 0; j < NV; j++) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
        }
    }
    #pragma GCC unroll 12
    for (int r = 0; r < ROWS; r++) {
        #pragma GCC unroll 4
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(c + r * ldc + 16 * j, acc[r][j]);
    }
}

/* one register block of the rates' GEMM (6 rows x 64 units, inner dimension d) and its epilogue while the block
   is in registers: each row's offset subtracted (the keys' |k|^2 / 2), the result stored, and each row's running
   maximum over the units inside the tile updated (most[r]); so no pass over the tile is needed for either */
static inline __attribute__((always_inline)) void exponent_block(const float *a, int64_t d, const float *b, float *c, const float offset[6],
                                  const __mmask16 inside[4], __m512 most[6]) {
    __m512 acc[6][4];
    #pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < d; k++) {
        __m512 bv[4];
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) bv[j] = _mm512_load_ps(b + k * FUSED_TILE + 16 * j);
        #pragma GCC unroll 6
        for (int r = 0; r < 6; r++) {
            __m512 av = _mm512_set1_ps(a[r * d + k]);
            #pragma GCC unroll 4
            for (int j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
        }
    }
    #pragma GCC unroll 6
    for (int r = 0; r < 6; r++) {
        __m512 shift = _mm512_set1_ps(offset == NULL ? 0.0f : offset[r]);
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512 x = offset == NULL ? acc[r][j] : _mm512_sub_ps(acc[r][j], shift);
            _mm512_store_ps(c + r * FUSED_TILE + 16 * j, x);
            most[r] = _mm512_mask_max_ps(most[r], inside[j], most[r], x);
        }
    }
}

/* rates (rows rounded up to 6, x FUSED_TILE, row stride FUSED_TILE) = x (rows x d) @ wt (d x FUSED_TILE) - half (per
   row; none for queries), with most[r] each row's maximum over the units inside the tile: B panels of 64 columns
   stay in L1 while every row block passes; the last partial block reads zero rows from spare (6 d) */
static void tile_exponents(const float *x, int64_t rows, int64_t d, const float *wt, const float *half,
                           const __mmask16 inside[FUSED_TILE / 16], float *rates, float *spare, __m512 *most) {
    int64_t full = rows / 6 * 6;
    if (full < rows) {
        memset(spare, 0, 6 * d * sizeof(float));
        memcpy(spare, x + full * d, (rows - full) * d * sizeof(float));
    }
    for (int64_t r = 0; r < (rows + 5) / 6 * 6; r++) most[r] = _mm512_set1_ps(-INFINITY);
    for (int64_t col = 0; col < FUSED_TILE; col += 64)
        for (int64_t r = 0; r < rows; r += 6) {
            float offset[6];
            for (int i = 0; i < 6; i++) offset[i] = half != NULL && r + i < rows ? half[r + i] : 0.0f;
            const float *a = r < full ? x + r * d : spare;
            float *c = rates + r * FUSED_TILE + col;
            if (half == NULL)  /* queries: nothing to subtract (two calls, so that each is compiled for its case) */
                exponent_block(a, d, wt + col, c, NULL, inside + col / 16, most + r);
            else
                exponent_block(a, d, wt + col, c, offset, inside + col / 16, most + r);
        }
}

/* wt (.., tiles, d, FUSED_TILE) = log2(e) w^T in tiles of hidden units, zero past m: the B operand of the rates' GEMMs,
   which puts every exponent in base 2 */
void fused_pack(const float *w, int64_t batch, int64_t m, int64_t d, int64_t tiles, float *wt) {
    #pragma omp parallel for schedule(static)
    for (int64_t task = 0; task < batch * tiles; task++) {
        int64_t b = task / tiles, t = task % tiles;
        float *out = wt + task * d * FUSED_TILE;
        for (int64_t j = 0; j < FUSED_TILE; j++) {
            int64_t unit = t * FUSED_TILE + j;
            const float *row = w + (b * m + unit) * d;
            for (int64_t c = 0; c < d; c++) out[c * FUSED_TILE + j] = unit < m ? 1.4426950408889634f * row[c] : 0.0f;
        }
    }
}

/* the register block of gemm below: rows_per_block rows x (16 nv) columns */
static inline void gemm_block(const float *a, int64_t ar, int64_t ak, const float *b, int64_t ldb, int64_t depth,
                              float *c, int64_t ldc, const float *scale, int64_t rows_per_block, int64_t nv) {
    if (rows_per_block == 12)
        switch (nv) {
            case 1: block_gemm(a, ar, ak, b, ldb, depth, c, ldc, scale, 12, 1); return;
            default: block_gemm(a, ar, ak, b, ldb, depth, c, ldc, scale, 12, 2); return;
        }
    switch (nv) {
        case 1: block_gemm(a, ar, ak, b, ldb, depth, c, ldc, scale, 6, 1); return;
        case 2: block_gemm(a, ar, ak, b, ldb, depth, c, ldc, scale, 6, 2); return;
        case 3: block_gemm(a, ar, ak, b, ldb, depth, c, ldc, scale, 6, 3); return;
        default: block_gemm(a, ar, ak, b, ldb, depth, c, ldc, scale, 6, 4); return;
    }
}

/* c (rows x cols, row stride ldc) = (scale ? scale[r] c[r, :] : 0) + a (rows x depth; a[r ar + k ak]) @ b (depth x
   cols, row stride ldb); cols a multiple of 16, rows of 12 where cols <= 32 and of 6 otherwise (a and c readable
   up to the next multiple). Register blocks of 6 rows x 64 columns (12 x 16 or 12 x 32 for narrow outputs, so that
   they keep 12-24 accumulators busy), the last columns in a narrower block; the inner dimension in FUSED_DEPTH
   chunks, so that b's panel stays in L1 (later chunks accumulate: their scale is ones, twelve 1.0f). lower: only
   the blocks that reach the lower triangle (column <= row; the causal token pairs), the columns past a block's
   last row left as they were. Each element is summed in the same order whichever blocks run. */
static void gemm(const float *a, int64_t ar, int64_t ak, int64_t rows, const float *b, int64_t ldb, int64_t depth,
                 float *c, int64_t ldc, const float *scale, const float *ones, int64_t cols, int lower) {
    int64_t step = cols <= 32 ? 12 : 6;
    for (int64_t k0 = 0; k0 < depth; k0 += FUSED_DEPTH) {
        int64_t chunk = depth - k0 < FUSED_DEPTH ? depth - k0 : FUSED_DEPTH;
        for (int64_t col = 0; col < cols; col += 64) {
            int64_t nv = cols - col >= 64 ? 4 : (cols - col) / 16;
            for (int64_t r = lower ? col / step * step : 0; r < rows; r += step) {
                int64_t reach = (r + step - col + 15) / 16;  /* vectors up to this block's last row */
                gemm_block(a + r * ar + k0 * ak, ar, ak, b + k0 * ldb + col, ldb, chunk, c + r * ldc + col, ldc,
                           k0 > 0 ? ones : scale ? scale + r : NULL, step, lower && reach < nv ? reach : nv);
            }
        }
    }
}

/* Write phase, one (sequence, tile) per task: rates of the keys (their |k|^2/2 subtracted), shifted by the tile's
   maximum over the sequence (kshift), exp2; g = column sums; hebbian_t (FUSED_TILE x dv) = rates^T v.
   k (k_batch, nk, d), v (.., nk, dv), wt (.., tiles, d, FUSED_TILE) from fused_pack; *idx: each sequence's batch
   element of k, v and wt. Units past m (the last tile's padding) get rate 0. */
int fused_write(const float *k, const float *v, const float *wt, const int64_t *kidx, const int64_t *vidx,
                const int64_t *widx, int64_t k_batch, int64_t batch, int64_t nk, int64_t d, int64_t dv, int64_t m,
                int64_t tiles, float *hebbian_t, float *g, float *kshift) {
    int64_t nk_pad = (nk + FUSED_ROWS - 1) / FUSED_ROWS * FUSED_ROWS;
    float *k_half = malloc(k_batch * nk * sizeof(float));  /* each key's |k|^2 / 2 in log2 units */
    int failed = k_half == NULL;
    #pragma omp parallel if (!failed)
    {
        unsigned int control = flush_subnormals();
        #pragma omp for schedule(static)
        for (int64_t n = 0; n < (failed ? 0 : k_batch * nk); n++) {
            float squares = 0.0f;
            for (int64_t c = 0; c < d; c++) squares += k[n * d + c] * k[n * d + c];
            k_half[n] = 0.7213475204444817f * squares;
        }
        float *rates = aligned_alloc(64, nk_pad * FUSED_TILE * sizeof(float));
        float *spare = malloc(6 * d * sizeof(float));
        __m512 *most = aligned_alloc(64, nk_pad * sizeof(__m512));
        float ones[FUSED_ROWS];
        for (int i = 0; i < FUSED_ROWS; i++) ones[i] = 1.0f;
        if (rates == NULL || spare == NULL || most == NULL) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp barrier
        #pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < (failed ? 0 : batch * tiles); task++) {
            int64_t b = task / tiles, t = task % tiles;
            int64_t width = m - t * FUSED_TILE < FUSED_TILE ? m - t * FUSED_TILE : FUSED_TILE;
            __mmask16 inside[FUSED_TILE / 16];
            lanes(width, inside);
            const float *half = k_half + kidx[b] * nk;
            tile_exponents(k + kidx[b] * nk * d, nk, d, wt + (widx[b] * tiles + t) * d * FUSED_TILE, half, inside,
                           rates, spare, most);
            __m512 tile_most = most[0];
            for (int64_t n = 1; n < nk; n++) tile_most = _mm512_max_ps(tile_most, most[n]);
            float top = _mm512_reduce_max_ps(tile_most);
            float *gt = g + task * FUSED_TILE;
            memset(gt, 0, FUSED_TILE * sizeof(float));
            __m512 shift = _mm512_set1_ps(top);
            for (int64_t n = 0; n < nk; n++) {
                float *row = rates + n * FUSED_TILE;
                for (int64_t j = 0; j < FUSED_TILE / 16; j++) {
                    __m512 rate = _mm512_maskz_mov_ps(inside[j],
                                                      exp2_vec(_mm512_sub_ps(_mm512_load_ps(row + 16 * j), shift)));
                    _mm512_store_ps(row + 16 * j, rate);
                    _mm512_store_ps(gt + 16 * j, _mm512_add_ps(_mm512_load_ps(gt + 16 * j), rate));
                }
            }
            kshift[task] = top;
            gemm(rates, 1, FUSED_TILE, FUSED_TILE, v + vidx[b] * nk * dv, dv, nk, hebbian_t + task * FUSED_TILE * dv, dv,
                 NULL, ones, dv, 0);
        }
        free(rates); free(spare); free(most);
        _mm_setcsr(control);
    }
    free(k_half);
    return failed;  /* 1: memory for the rates could not be had (nothing usable was written) */
}

/* Read phase, one (sequence, block of query rows) per task, over every tile in order: rates of the queries with an
   online per-row maximum (tshift; running sums rescaled when it grows, as FlashAttention), each tile's keys put
   to the sequence's largest kshift; response[r] = sum_j rate g_j, drive[r] = rates @ hebbian_t, and log_shift[r]
   (float64, natural units) what log response[r] lacks: the shifts, the queries' |q|^2 / 2 and the 1 / m of the
   two rates. q (.., nq, d); qidx, widx: each sequence's batch element of q and wt; block: query rows per task, a
   multiple of FUSED_ROWS. */
int fused_read(const float *q, const float *wt, const float *hebbian_t, const float *g, const float *kshift,
               const int64_t *qidx, const int64_t *widx, int64_t batch, int64_t nq, int64_t d, int64_t dv,
               int64_t m, int64_t tiles, int64_t block, float *response, float *drive, double *log_shift) {
    int64_t blocks = (nq + block - 1) / block;
    int failed = 0;
    #pragma omp parallel
    {
        unsigned int control = flush_subnormals();
        float *rates = aligned_alloc(64, block * FUSED_TILE * sizeof(float));
        float *sums = aligned_alloc(64, block * dv * sizeof(float));
        float *shift = malloc(block * sizeof(float)), *total = malloc(block * sizeof(float));
        float *rescale = malloc(block * sizeof(float)), *spare = malloc(6 * d * sizeof(float)), ones[FUSED_ROWS];
        __m512 *most = aligned_alloc(64, block * sizeof(__m512));
        for (int i = 0; i < FUSED_ROWS; i++) ones[i] = 1.0f;
        if (!rates || !sums || !shift || !total || !rescale || !spare || !most) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp barrier
        #pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < (failed ? 0 : batch * blocks); task++) {
            int64_t b = task / blocks, r0 = (task % blocks) * block;
            int64_t rows = nq - r0 < block ? nq - r0 : block;
            int64_t padded = (rows + FUSED_ROWS - 1) / FUSED_ROWS * FUSED_ROWS;
            float top_key = -INFINITY;
            for (int64_t t = 0; t < tiles; t++) top_key = kshift[b * tiles + t] > top_key ? kshift[b * tiles + t] : top_key;
            memset(sums, 0, padded * dv * sizeof(float));
            for (int64_t r = 0; r < padded; r++) { shift[r] = -INFINITY; total[r] = 0.0f; rescale[r] = 0.0f; }
            for (int64_t t = 0; t < tiles; t++) {
                int64_t width = m - t * FUSED_TILE < FUSED_TILE ? m - t * FUSED_TILE : FUSED_TILE;
                __mmask16 inside[FUSED_TILE / 16];
                lanes(width, inside);
                const float *gt = g + (b * tiles + t) * FUSED_TILE;
                float key_offset = kshift[b * tiles + t] - top_key;
                const float *next_w = wt + (widx[b] * tiles + t + 1) * d * FUSED_TILE;
                const float *next_h = hebbian_t + (b * tiles + t + 1) * FUSED_TILE * dv;
                tile_exponents(q + (qidx[b] * nq + r0) * d, rows, d, wt + (widx[b] * tiles + t) * d * FUSED_TILE,
                               NULL, inside, rates, spare, most);
                for (int64_t r = 0; r < padded; r++) {
                    float *row = rates + r * FUSED_TILE;
                    if (r >= rows) { memset(row, 0, FUSED_TILE * sizeof(float)); continue; }
                    __m512 sum = _mm512_setzero_ps();
                    rescale[r] = grow(shift + r, most[r]);
                    __m512 offset = _mm512_set1_ps(shift[r] - key_offset);
                    for (int64_t j = 0; j < FUSED_TILE / 16; j++) {
                        int64_t line = r * (FUSED_TILE / 16) + j;  /* the next tile's W and H into L2 meanwhile */
                        if (t + 1 < tiles && line < d * FUSED_TILE / 16)
                            _mm_prefetch((const char *)(next_w + 16 * line), _MM_HINT_T1);
                        if (t + 1 < tiles && line < dv * FUSED_TILE / 16)
                            _mm_prefetch((const char *)(next_h + 16 * line), _MM_HINT_T1);
                        __m512 rate = _mm512_maskz_mov_ps(inside[j],
                                                          exp2_vec(_mm512_sub_ps(_mm512_load_ps(row + 16 * j), offset)));
                        _mm512_store_ps(row + 16 * j, rate);
                        sum = _mm512_fmadd_ps(rate, _mm512_load_ps(gt + 16 * j), sum);
                    }
                    total[r] = total[r] * rescale[r] + _mm512_reduce_add_ps(sum);
                }
                gemm(rates, FUSED_TILE, 1, padded, hebbian_t + (b * tiles + t) * FUSED_TILE * dv, dv, FUSED_TILE, sums,
                     dv, rescale, ones, dv, 0);
            }
            for (int64_t r = 0; r < rows; r++) {
                const float *row = q + (qidx[b] * nq + r0 + r) * d;
                double squares = 0.0;
                for (int64_t c = 0; c < d; c++) squares += (double)row[c] * row[c];
                response[b * nq + r0 + r] = total[r];
                log_shift[b * nq + r0 + r] = ((double)shift[r] - 0.5 * 1.4426950408889634 * squares + top_key)
                                             / 1.4426950408889634 - log((double)m);
                memcpy(drive + (b * nq + r0 + r) * dv, sums + r * dv, dv * sizeof(float));
            }
        }
        free(rates); free(sums); free(shift); free(total); free(rescale); free(spare); free(most);
        _mm_setcsr(control);
    }
    return failed;
}
/* Token-pair sums, one sequence per task, over every tile in order: pairs (n x n) = sum over units j of
   phi_j(q_t) phi_j(k_s), each side's rates shifted by a running per-token maximum of its raw exponents (qshift,
   kshift: log2 units, without |x|^2 / 2), the accumulated pairs rescaled by rows and columns when one grows (as
   kernels.token_pair_positive). The keys' rates are formed transposed (units x keys), so that both GEMMs read
   rows. q, k (.., n, d); wt (.., tiles, d, FUSED_TILE) from fused_pack; *idx: each sequence's batch element;
   pairs (batch, n, n), qshift and kshift (batch, n). causal: only the blocks reaching the lower triangle (the
   caller drops the rest, which is left 0 or holds the block's own sums): about half the blocks at n = 197. */
int fused_pairs(const float *q, const float *k, const float *wt, const int64_t *qidx, const int64_t *kidx,
                const int64_t *widx, int64_t batch, int64_t n, int64_t d, int64_t m, int64_t tiles, int64_t causal,
                float *pairs, float *qshift, float *kshift) {
    int64_t rows = (n + FUSED_ROWS - 1) / FUSED_ROWS * FUSED_ROWS, cols = (n + 15) / 16 * 16;  /* queries, keys */
    int failed = 0;
    #pragma omp parallel
    {
        unsigned int control = flush_subnormals();
        float *rates_q = aligned_alloc(64, rows * FUSED_TILE * sizeof(float));
        float *rates_kt = aligned_alloc(64, FUSED_TILE * cols * sizeof(float));
        float *kt = aligned_alloc(64, d * cols * sizeof(float)), *sum = aligned_alloc(64, rows * cols * sizeof(float));
        float *shift_k = aligned_alloc(64, cols * sizeof(float)), *rescale_k = aligned_alloc(64, cols * sizeof(float));
        float *shift_q = malloc(rows * sizeof(float)), *rescale_q = malloc(rows * sizeof(float));
        float *spare = malloc(6 * d * sizeof(float)), ones[FUSED_ROWS];
        __m512 *most = aligned_alloc(64, rows * sizeof(__m512));
        for (int i = 0; i < FUSED_ROWS; i++) ones[i] = 1.0f;
        if (!rates_q || !rates_kt || !kt || !sum || !shift_k || !rescale_k || !shift_q || !rescale_q || !spare || !most) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp barrier
        #pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < (failed ? 0 : batch); b++) {
            const float *qb = q + qidx[b] * n * d, *kb = k + kidx[b] * n * d;
            for (int64_t c = 0; c < d; c++)  /* the keys transposed, zero past n */
                for (int64_t s = 0; s < cols; s++) kt[c * cols + s] = s < n ? kb[s * d + c] : 0.0f;
            for (int64_t r = 0; r < rows; r++) shift_q[r] = -INFINITY;
            for (int64_t s = 0; s < cols; s++) shift_k[s] = -INFINITY;
            memset(sum, 0, rows * cols * sizeof(float));
            for (int64_t t = 0; t < tiles; t++) {
                int64_t width = m - t * FUSED_TILE < FUSED_TILE ? m - t * FUSED_TILE : FUSED_TILE;
                __mmask16 inside[FUSED_TILE / 16];
                lanes(width, inside);
                const float *w = wt + (widx[b] * tiles + t) * d * FUSED_TILE;
                /* queries: rates (rows x tile), each row to its grown maximum */
                tile_exponents(qb, n, d, w, NULL, inside, rates_q, spare, most);
                for (int64_t r = 0; r < rows; r++) {
                    float *row = rates_q + r * FUSED_TILE;
                    if (r >= n) { rescale_q[r] = 0.0f; memset(row, 0, FUSED_TILE * sizeof(float)); continue; }
                    rescale_q[r] = grow(shift_q + r, most[r]);
                    __m512 offset = _mm512_set1_ps(shift_q[r]);
                    for (int64_t j = 0; j < FUSED_TILE / 16; j++)
                        _mm512_store_ps(row + 16 * j, _mm512_maskz_mov_ps(inside[j],
                            exp2_vec(_mm512_sub_ps(_mm512_load_ps(row + 16 * j), offset))));
                }
                /* keys, transposed: rates (tile x cols) = w^T (tile x d) @ kt (d x cols), each column to its grown
                   maximum over the units inside the tile; units past m get rate 0 */
                gemm(w, 1, FUSED_TILE, FUSED_TILE, kt, cols, d, rates_kt, cols, NULL, ones, cols, 0);
                for (int64_t v = 0; v < cols / 16; v++) {
                    __m512 top = _mm512_set1_ps(-INFINITY);
                    for (int64_t j = 0; j < width; j++) top = _mm512_max_ps(top, _mm512_load_ps(rates_kt + j * cols + 16 * v));
                    __m512 old = _mm512_load_ps(shift_k + 16 * v), grown = _mm512_max_ps(old, top);
                    _mm512_store_ps(rescale_k + 16 * v, exp2_vec(_mm512_sub_ps(old, grown)));
                    _mm512_store_ps(shift_k + 16 * v, grown);
                    for (int64_t j = 0; j < width; j++) {
                        float *at = rates_kt + j * cols + 16 * v;
                        _mm512_store_ps(at, exp2_vec(_mm512_sub_ps(_mm512_load_ps(at), grown)));
                    }
                }
                for (int64_t j = width; j < FUSED_TILE; j++) memset(rates_kt + j * cols, 0, cols * sizeof(float));
                /* the accumulated pairs to the grown key maxima (columns), then to the query maxima (rows, in the
                   GEMM's scale) plus this tile's rates_q @ rates_kt, inner dimension in FUSED_DEPTH chunks */
                for (int64_t r = 0; r < n; r++)
                    for (int64_t v = 0; v < cols / 16; v++)
                        _mm512_store_ps(sum + r * cols + 16 * v, _mm512_mul_ps(_mm512_load_ps(sum + r * cols + 16 * v),
                                                                              _mm512_load_ps(rescale_k + 16 * v)));
                gemm(rates_q, FUSED_TILE, 1, n, rates_kt, cols, FUSED_TILE, sum, cols, rescale_q, ones, cols, (int)causal);
            }
            for (int64_t r = 0; r < n; r++) {
                memcpy(pairs + (b * n + r) * n, sum + r * cols, n * sizeof(float));
                qshift[b * n + r] = shift_q[r];
                kshift[b * n + r] = shift_k[r];
            }
        }
        free(rates_q); free(rates_kt); free(kt); free(sum); free(shift_k); free(rescale_k); free(shift_q);
        free(rescale_q); free(spare); free(most);
        _mm_setcsr(control);
    }
    return failed;
}
#else
int fused_ready(void) { return 0; }
#endif
"""
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC"]


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
    cache = cache_root() / "native"
    target = cache / f"rates-{key.hexdigest()[:16]}.so"
    record = target.with_suffix(".sha256")
    if target.is_file() and not target.is_symlink() and record.is_file() \
            and record.read_text().strip() == _digest(target):
        return target  # verified: the bytes are those this process's build recorded
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as folder:
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
    return _declared(library)


def _declared(library):
    """The library with its functions' C signatures declared; the fused ones only where the build has them
    (compiled without AVX-512 it has fused_ready alone, which returns 0)."""
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    for name in ("rows_max", "exp2_shifted"):
        getattr(library, name).argtypes = [pointer, size, size, pointer]
    library.exp2_online.argtypes = [pointer, size, size, pointer, pointer, size, pointer]
    library.fused_ready.restype = ctypes.c_int
    if library.fused_ready():
        library.fused_write.restype = library.fused_read.restype = library.fused_pairs.restype = ctypes.c_int
        library.fused_pack.argtypes = [pointer, size, size, size, size, pointer]
        library.fused_write.argtypes = [pointer] * 6 + [size] * 7 + [pointer] * 3
        library.fused_read.argtypes = [pointer] * 7 + [size] * 7 + [pointer] * 3
        library.fused_pairs.argtypes = [pointer] * 6 + [size] * 6 + [pointer] * 3
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


#: the fused circuit's fixed tile of hidden units and token padding (as in SOURCE); fixed, not fitted to a
#: machine's caches, so that every machine with AVX-512 sums in the same order
FUSED_TILE, FUSED_ROWS = 384, 12
FUSED_VALUE_SIZES = (16, 32, 48, 64)


def fused_available(*tensors: torch.Tensor, value_size: int | None = None) -> bool:
    """Whether the fused passes serve: float32 tensors on the CPU (any layout: the callers lay them out
    contiguously, so a head sliced from a model's projections takes this path too), a build with AVX-512, and
    (for :func:`fused_phases`, whose read-out it blocks) a value size of 16, 32, 48 or 64."""
    return (value_size is None or value_size in FUSED_VALUE_SIZES) \
        and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors) \
        and _library() is not None and bool(_library().fused_ready())


def fused_phases(q, k, v, projection, indices):
    """The positive-map circuit without autograd in one compiled pass per phase (see SOURCE): q (Bq, nq, d),
    k (Bk, nk, d), v (Bv, nk, dv), projection (Bw, m, d), float32 and contiguous; ``indices`` maps each output
    sequence to its q, k, v and W batch element. Returns response (B, nq), drive (B, nq, dv) and the log shift
    (B, nq, float64, natural units), as :func:`astrostats.circuits.kernels.positive_circuit`."""
    q_index, k_index, v_index, w_index = indices
    batch, (n_tokens, d), (n_keys, dv) = q_index.numel(), q.shape[-2:], v.shape[-2:]
    rows = projection.shape[-2]
    tiles = -(-rows // FUSED_TILE)
    library = _library()
    wt, hebbian_t, presynaptic, key_shift = _scratch(
        (projection.shape[0], tiles, d, FUSED_TILE), (batch, tiles, FUSED_TILE, dv), (batch, tiles, FUSED_TILE),
        (batch, tiles))
    with _labelled("fused_write"):
        library.fused_pack(projection.data_ptr(), projection.shape[0], rows, d, tiles, wt.data_ptr())
        failed = library.fused_write(k.data_ptr(), v.data_ptr(), wt.data_ptr(), k_index.data_ptr(), v_index.data_ptr(),
                            w_index.data_ptr(), k.shape[0], batch, n_keys, d, dv, rows, tiles, hebbian_t.data_ptr(),
                            presynaptic.data_ptr(), key_shift.data_ptr())
    response, drive = q.new_empty(batch, n_tokens), q.new_empty(batch, n_tokens, dv)
    log_shift = q.new_empty(batch, n_tokens, dtype=torch.float64)
    with _labelled("fused_read"):
        failed = failed or library.fused_read(q.data_ptr(), wt.data_ptr(), hebbian_t.data_ptr(), presynaptic.data_ptr(),
                           key_shift.data_ptr(), q_index.data_ptr(), w_index.data_ptr(), batch, n_tokens, d, dv,
                           rows, tiles, query_block(batch, n_tokens, torch.get_num_threads()), response.data_ptr(),
                           drive.data_ptr(), log_shift.data_ptr())
    if failed:
        raise MemoryError(f"the circuit's fused pass could not allocate its per-thread rates: {n_keys} keys x "
                          f"{FUSED_TILE} units x {torch.get_num_threads()} threads of float32; use fewer tokens per "
                          "sequence or fewer torch threads")
    return response, drive, log_shift


def fused_pairs(q, k, projection, indices, causal: bool = False):
    """The token-pair sums of the positive-map circuit in one compiled pass (see SOURCE): q, k (B, n, d),
    projection (Bw, m, d), float32 and contiguous; ``indices`` maps each output sequence to its q, k and W batch
    element. Returns the pairs (B, n, n) and the queries' and keys' running maxima (2, B, n), log2 units, as the
    torch loop of :func:`astrostats.circuits.kernels.token_pair_positive` accumulates them; ``causal``: the pairs
    above the diagonal are not all computed (the caller drops them), those on and below it the same bits."""
    q_index, k_index, w_index = indices
    batch, (n_tokens, d), rows = q_index.numel(), q.shape[-2:], projection.shape[-2]
    tiles = -(-rows // FUSED_TILE)
    (wt,) = _scratch((projection.shape[0], tiles, d, FUSED_TILE))
    pairs, shifts = q.new_empty(batch, n_tokens, n_tokens), q.new_empty(2, batch, n_tokens)
    library = _library()
    with _labelled("fused_pairs"):
        library.fused_pack(projection.data_ptr(), projection.shape[0], rows, d, tiles, wt.data_ptr())
        failed = library.fused_pairs(q.data_ptr(), k.data_ptr(), wt.data_ptr(), q_index.data_ptr(),
                                     k_index.data_ptr(), w_index.data_ptr(), batch, n_tokens, d, rows, tiles,
                                     int(causal), pairs.data_ptr(), shifts[0].data_ptr(), shifts[1].data_ptr())
    if failed:
        raise MemoryError(f"the circuit's fused token-pair pass could not allocate its per-thread rates: "
                          f"{n_tokens} tokens x {FUSED_TILE} units x {torch.get_num_threads()} threads of float32")
    return pairs, shifts


#: the most float32 scratch memory the fused circuit keeps between calls (per thread)
SCRATCH_BYTES = 2**28
_SCRATCH = threading.local()


def _scratch(*shapes) -> list[torch.Tensor]:
    """float32 buffers of these shapes, carved from one kept between calls of this thread (up to SCRATCH_BYTES).
    Why: fresh memory costs a page fault per 4 kB on first touch, 7 % of a circuit call at m = 16,384; every
    shape here is a multiple of 16 floats, so each buffer starts 64-byte aligned as the AVX-512 loads need."""
    sizes = [math.prod(shape) for shape in shapes]
    kept = getattr(_SCRATCH, "buffer", None)
    if kept is None or kept.numel() < sum(sizes):
        kept = torch.empty(sum(sizes), dtype=torch.float32, device="cpu")  # whatever torch's defaults
        if 4 * sum(sizes) <= SCRATCH_BYTES:
            _SCRATCH.buffer = kept
    return [part.view(shape) for part, shape in zip(kept[:sum(sizes)].split(sizes), shapes)]


def query_block(batch: int, n_tokens: int, threads: int, most: int = 256) -> int:
    """Query rows per task of the read phase: as many as balance the threads. Why: each task reads every tile of
    W and of the Hebbian weights once, which costs about FUSED_ROWS rows of work per tile (measured: 204-row
    tasks 10 % faster than 72-row ones on one core), while too few tasks leave a thread idle (5 sequences on 2
    threads). Picks the split of each sequence that minimises the slowest thread's rows, task overhead counted;
    at most ``most`` rows (the rates stay in L2 cache). The results do not depend on it: each row is computed
    alone, in the same order, whatever its task."""
    def padded(rows):
        return -(-rows // FUSED_ROWS) * FUSED_ROWS

    def slowest(parts):
        return -(-batch * parts // threads) * (padded(-(-n_tokens // parts)) + FUSED_ROWS)

    fewest = -(-n_tokens // (most // FUSED_ROWS * FUSED_ROWS))  # so that a padded task stays within most
    parts = min(range(fewest, max(fewest, -(-n_tokens // FUSED_ROWS)) + 1), key=slowest)
    return padded(-(-n_tokens // parts))
