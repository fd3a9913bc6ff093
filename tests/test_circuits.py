"""The circuit against independent computations and against theory (issue 2, item 6)."""
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from scipy import stats

from astrostats.circuits import astrocyte, kernels, native, theory
from astrostats.circuits.astrocyte import astrocyte_attention
from astrostats.circuits.attention import attention_logits, softmax_attention
from astrostats.circuits.baselines import elu_linear_attention, uniform_attention
from astrostats.circuits.features import FEATURE_MAPS, PAIRED_MAPS, draw_projection, random_features
from astrostats.circuits.theory import predicted_error_constant
from astrostats.targets.synthetic import LOGIT_SCALES, synthetic_head
from astrostats.validation import InputError

Z_CRITICAL = stats.norm.ppf(1 - 0.001 / 2)  # two-sided test at alpha = 0.001 per check



def float_bound(q, k, projection, dtype):
    """Rounding bound on the fast path's relative output error and its log-response error: each exponent
    w·x - |x|^2/2 carries an absolute error up to eps (|w| |x| + |x|^2) (for q and for k); the ratio doubles
    it; the sums over N tokens and m units add eps (N + m)."""
    eps = torch.finfo(dtype).eps
    row_norm = float(projection.norm(dim=-1).max())
    exponent_error = sum(eps * (row_norm * float(x.norm(dim=-1).max()) + float((x * x).sum(-1).max())) for x in (q, k))
    return 2 * exponent_error + eps * (q.shape[-2] + projection.shape[-2])


def assert_matches_reference(q, k, v, projection, feature, causal, dtype=torch.float64):
    """The fast path in ``dtype`` against the library's float64 reference of the paper's two phases."""
    output, response = astrocyte_attention(q.to(dtype), k.to(dtype), v.to(dtype), projection=projection.to(dtype),
                                           feature=feature, causal=causal, return_response=True)
    assert output.dtype == dtype
    assert_equals_reference(output, response.log(), q, k, v, projection, feature, causal, dtype)


def assert_equals_reference(output, log_response, q, k, v, projection, feature, causal, dtype):
    """An output and log response computed in ``dtype`` against the float64 reference, within float_bound."""
    expected, expected_response = astrocyte.reference_circuit(q, k, v, projection, feature, causal)
    bound = max(float_bound(q, k, projection, dtype), 1e-12)
    assert output.shape == expected.shape
    assert torch.allclose(output.double(), expected, rtol=0, atol=bound * float(expected.abs().max()))
    assert torch.allclose(log_response, expected_response.abs().log(), rtol=0, atol=bound)


@pytest.mark.parametrize("feature", FEATURE_MAPS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_circuit_equals_the_reference(feature, causal, dtype, gaussian_head):
    q, k, v = gaussian_head(n=150)  # longer than two streaming blocks
    projection = draw_projection(32, 8, feature=feature, seed=3, dtype=torch.float64)
    assert_matches_reference(q, k, v, projection, feature, causal, dtype)


def test_reference_is_the_kernel_weighted_average(gaussian_head):
    """The reference's two phases equal sum_tau w_t,tau v_tau / sum_tau w_t,tau with w = phi(q_t)·phi(k_tau)
    (non-causal; causal: tau <= t), the definition in paper-notes.md."""
    q, k, v = gaussian_head(n=20)
    projection = draw_projection(16, 8, seed=2, dtype=torch.float64)
    weights = random_features(q, projection) @ random_features(k, projection).transpose(-1, -2)
    for causal, w in ((False, weights), (True, weights.tril())):
        output, response = astrocyte.reference_circuit(q, k, v, projection, causal=causal)
        assert torch.allclose(output, (w @ v) / w.sum(-1, keepdim=True), rtol=1e-12, atol=0)
        assert torch.allclose(response, w.sum(-1), rtol=1e-12, atol=0)


@pytest.mark.parametrize("feature", FEATURE_MAPS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("compiled", [True, False])
def test_tiled_path_equals_the_reference(feature, dtype, compiled, monkeypatch, gaussian_head):
    """Hidden units in several tiles of unequal width (online per-token shifts, per-tile key shifts rescaled
    to the sequence maximum), with a batch of projections broadcast against the sequences: the same numbers
    as the reference, with the compiled exp2 pass (float32, where a compiler is found) and without it.
    Large logits make the tiles' maxima differ, so every rescaling path runs."""
    if compiled and dtype == torch.float32 and not native.available(torch.zeros(1)):
        pytest.skip("the compiled pass is unavailable (no C compiler, or ASTROSTATS_NATIVE=0): compiled=False covers it")
    if not compiled:
        monkeypatch.setattr(native, "available", lambda *tensors: False)
    monkeypatch.setattr(kernels, "TILE_ELEMENTS", 1)  # at most 64 units per tile: 202 -> 51 + 51 + 51 + 49
    q, k, v = gaussian_head(n=40, scale=1.0)
    projections = torch.stack([draw_projection(202, 8, feature=feature, seed=s, dtype=torch.float64)
                               for s in range(2)]).unsqueeze(1)  # (seeds, 1, m, d)
    assert [tile.stop - tile.start for tile in kernels.tiles_of(240, 202)] == [51, 51, 51, 49]
    assert kernels.is_tiled(feature, causal=False)
    units_per_row = 2 if feature in PAIRED_MAPS else 1  # the paired maps: 101 rows (202 units) -> 51 + 50 rows
    assert len(kernels.tiles_of(240 * units_per_row, projections.shape[-2])) == 4 // units_per_row
    output = astrocyte_attention(q, k, v, projection=projections, feature=feature)
    assert output.shape == (2, 3, 40, 5)
    assert_matches_reference(q, k, v, projections, feature, False, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_causal_tiles_of_units_equal_the_reference(dtype, monkeypatch, gaussian_head):
    """The causal positive path streams tiles of hidden units (202 -> 51 + 51 + 51 + 49) and merges them with
    per-token shifts; large logits make the tiles' shifts differ, so the merge rescales both sides."""
    monkeypatch.setattr(kernels, "TILE_ELEMENTS", 1)
    q, k, v = gaussian_head(n=kernels.STREAM_CHUNK + 30, scale=1.0)
    projection = draw_projection(202, 8, seed=4, dtype=torch.float64)
    assert len(kernels.tiles_of(3 * q.shape[-2], 202)) == 4
    assert_matches_reference(q, k, v, projection, "positive", True, dtype)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("compiled", [True, False])
def test_token_pair_route_equals_the_reference(causal, dtype, compiled, monkeypatch, gaussian_head):
    """Short sequences take the token-pair sums (P_ts = phi(q_t)·phi(k_s), then sum_s P_ts and P V): with
    tiles of unequal width, a batch of projections and early keys 8x larger (the keys' scales fall along the
    sequence, so each causal token must be rescaled to its own prefix's maximum, not the sequence's, or late
    tokens underflow; and the dropped upper triangle meets scales above its own, where an unclamped rescale is
    inf x 0), the same numbers as the reference, with the compiled pass and without it. The kernel is called
    directly: the public circuit would hide a failure behind its float64 recomputation."""
    if compiled and dtype == torch.float32 and not native.available(torch.zeros(1)):
        pytest.skip("the compiled pass is unavailable (no C compiler, or ASTROSTATS_NATIVE=0): compiled=False covers it")
    if not compiled:
        monkeypatch.setattr(native, "available", lambda *tensors: False)
    monkeypatch.setattr(kernels, "TILE_ELEMENTS", 1)  # 64 units per tile at least: 202 -> 51 + 51 + 51 + 49
    q, k, v = gaussian_head(n=17, scale=1.0)  # N = 2 d + 1: the longest non-causal sequence on this route
    k[:, :4] *= 8.0
    assert kernels.uses_token_pairs(q.shape[-2], q.shape[-1], causal)
    assert not kernels.uses_token_pairs(q.shape[-2] + 1, q.shape[-1], False)
    projections = torch.stack([draw_projection(202, 8, seed=s, dtype=torch.float64) for s in range(2)]).unsqueeze(1)
    response, drive, log_shift = kernels.token_pair_positive(*(x.to(dtype) for x in (q, k, v, projections)), causal)
    assert_equals_reference(drive / response.unsqueeze(-1), response.double().log() + log_shift, q, k, v,
                            projections, "positive", causal, dtype)


fused = pytest.mark.skipif(not native.fused_available(torch.zeros(1), value_size=16),
                           reason="the fused pass is unavailable (no C compiler, no AVX-512, or ASTROSTATS_NATIVE=0)")


@fused
@pytest.mark.parametrize("d, d_v", [(8, 16), (17, 32), (32, 48), (64, 64)])
def test_fused_pass_equals_the_reference(d, d_v, gaussian_head):
    """The fused compiled pass (both phases' GEMMs with their exp2 between them, tiles of 384 units): three
    tiles, the last partial (900 = 384 + 384 + 132 units, its padding never a rate), token counts that are not a
    multiple of its 12-row blocks, more keys than queries, every value size it serves, a batch of projections
    broadcast against the sequences, and large logits so that tiles' maxima differ and every rescaling runs."""
    q, k, v = gaussian_head(n=43, d=d, d_v=d_v, scale=1.0)
    q = q[:, :29]
    projections = torch.stack([draw_projection(900, d, seed=s, dtype=torch.float64) for s in range(2)]).unsqueeze(1)
    assert native.fused_available(q.float(), value_size=d_v)
    assert native.fused_available(q.float().transpose(-1, -2), value_size=d_v)  # any layout: laid out by the caller
    response, drive, log_shift = kernels.fused_positive(*(x.float() for x in (q, k, v, projections)))
    assert drive.shape == (2, 3, 29, d_v)
    assert_equals_reference(drive / response.unsqueeze(-1), response.double().log() + log_shift, q, k, v,
                            projections, "positive", False, torch.float32)


@fused
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, d, scale", [(17, 8, 1.0), (33, 16, 1.0), (65, 32, 0.5)])
def test_fused_token_pairs_equal_the_reference(causal, n, d, scale, gaussian_head):
    """The fused token-pair pass (queries' rates and the keys' rates transposed, both shifted by running
    per-token maxima, the pairs rescaled by rows and columns as those grow): three tiles, the last partial, key
    counts that fill 32, 48 and 80 columns (its blocks: 64 columns, the last 16 to 48), a batch of projections, early keys 8x larger
    (so causal tokens need their own prefix's maximum), the same numbers as the reference."""
    q, k, v = gaussian_head(n=n, d=d, scale=scale)
    k[:, :4] *= 8.0
    assert kernels.uses_token_pairs(n, d, causal)
    projections = torch.stack([draw_projection(900, d, seed=s, dtype=torch.float64) for s in range(2)]).unsqueeze(1)
    response, drive, log_shift = kernels.token_pair_positive(*(x.float() for x in (q, k, v, projections)), causal)
    assert drive.shape == (2, 3, n, 5)
    assert_equals_reference(drive / response.unsqueeze(-1), response.double().log() + log_shift, q, k, v,
                            projections, "positive", causal, torch.float32)


@fused
@pytest.mark.parametrize("n", [7, 29, 64, 131])
def test_causal_token_pairs_skip_only_blocks_above_the_diagonal(n, gaussian_head):
    """Causal, the fused pass computes only the register blocks that reach the lower triangle (12 rows x 16 or 32
    columns up to 32 keys, else 6 rows x up to 64; n = 131 spans three column blocks, the last of 16): every pair
    on and below the diagonal and both running maxima are the bits of the full pass, which is what the causal
    circuit reads, and pairs above it are skipped (left 0) wherever a whole block of 16 columns lies past a
    block's last row (not at n = 7: one block holds everything)."""
    q, k, _ = (x.float() for x in gaussian_head(n_seq=3, n=n, d=64, scale=0.5))
    inputs = (q, k, draw_projection(1000, 64, seed=3).unsqueeze(0))
    indices = kernels._batch_elements(tuple(tuple(x.shape[:-2]) for x in inputs))
    full_pairs, full_shifts = native.fused_pairs(*inputs, indices, causal=False)
    pairs, shifts = native.fused_pairs(*inputs, indices, causal=True)
    assert torch.equal(shifts, full_shifts)
    assert torch.equal(pairs.tril(), full_pairs.tril())
    below = torch.tril_indices(n, n)
    assert bool(full_pairs[:, below[0], below[1]].gt(0).all())  # every pair the causal circuit reads is compared
    above = torch.triu_indices(n, n, 1)
    assert bool(full_pairs[:, above[0], above[1]].gt(0).all())  # the full pass computes them all ...
    assert bool(pairs[:, above[0], above[1]].eq(0).any()) == (n > 16)  # ... the causal one skips some


@fused
def test_fused_pass_gives_the_same_bits_on_any_thread_count_and_task_split(monkeypatch, gaussian_head):
    """Each row of the fused passes (Hebbian and token pairs) is computed by one thread in a fixed order whatever
    the threads and the query rows per task: tables are the same bits on a laptop and on a cluster node."""
    q, k, v = (x.float() for x in gaussian_head(n_seq=5, n=50, d=16, d_v=16, scale=1.0))
    projection = draw_projection(800, 16, seed=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        reference = kernels.fused_positive(q, k, v, projection)
        pairs = kernels.token_pair_positive(q, k, v, projection, causal=False)
        torch.set_num_threads(2)
        for part, expected in zip(kernels.token_pair_positive(q, k, v, projection, causal=False), pairs):
            assert torch.equal(part, expected)
        for block in (12, 24, 60):
            monkeypatch.setattr(native, "query_block", lambda *args, rows=block: rows)
            for part, expected in zip(kernels.fused_positive(q, k, v, projection), reference):
                assert torch.equal(part, expected)
    finally:
        torch.set_num_threads(before)


@fused
def test_fused_scratch_kept_between_calls_does_not_leak_into_results(gaussian_head):
    """The scratch memory kept between calls (W in tiles, Hebbian weights) is rewritten, never read stale:
    a small call after a large one, and again after a call with other shapes, gives the same result."""
    q, k, v = (x.float() for x in gaussian_head(n=30, d=16, d_v=32, scale=1.0))
    small = kernels.fused_positive(q, k, v, draw_projection(400, 16, seed=2))
    native._SCRATCH.buffer = None  # allocated afresh below, under a caller's default device and dtype, which must
    with torch.device("meta"):     # not reach the float32 CPU scratch the C code writes
        torch.set_default_dtype(torch.float64)
        try:
            assert torch.empty(1).device.type == "meta"
            again = kernels.fused_positive(q, k, v, draw_projection(400, 16, seed=2))
        finally:
            torch.set_default_dtype(torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(again, small))
    big_q, big_k, big_v = (x.float() for x in gaussian_head(n_seq=4, n=70, d=16, d_v=32, scale=2.0, seed=5))
    kernels.fused_positive(big_q, big_k, big_v, draw_projection(1500, 16, seed=3))
    for part, expected in zip(kernels.fused_positive(q, k, v, draw_projection(400, 16, seed=2)), small):
        assert torch.equal(part, expected)


@fused
def test_fused_pass_out_of_memory_is_a_clear_error_not_a_crash():
    """Where its per-thread rates cannot be allocated (here: 200,000 keys under an address-space limit), the
    fused pass raises a MemoryError that says what it needed and what to change, instead of writing through a
    null pointer. In a subprocess, so that the limit binds nothing else."""
    script = textwrap.dedent("""
        import resource, torch
        from astrostats.circuits import kernels
        from astrostats.circuits.features import draw_projection
        q, k, v = torch.randn(1, 24, 16), torch.randn(1, 200_000, 16) * 0.1, torch.randn(1, 200_000, 16)
        projection = draw_projection(384, 16, seed=0)
        kernels.fused_positive(q, k[:, :1000], v[:, :1000], projection)  # library loaded, threads started
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 150 * 2**20, resource.RLIM_INFINITY))
        try:
            kernels.fused_positive(q, k, v, projection)
        except MemoryError as error:
            print(error)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "200000 keys x 384 units" in result.stdout and "fewer tokens per sequence" in result.stdout


def test_a_build_without_avx512_loads_and_serves_the_row_passes_only(tmp_path, monkeypatch):
    """On a CPU without AVX-512 the library is built without the fused passes: it must still load (only the
    signatures it has are declared), say it has no fused pass, and leave the circuit to the earlier kernels."""
    if native._library() is None:
        pytest.skip("no C compiler (or ASTROSTATS_NATIVE=0): nothing is built")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the build reads its cache folder from here
    monkeypatch.setattr(native, "FLAGS", [*native.FLAGS, "-mno-avx512f"])
    compiler = native.os.environ.get("CC") or native.shutil.which("cc") or native.shutil.which("gcc")
    library = native._declared(native.ctypes.CDLL(str(native._build(compiler))))
    assert library.fused_ready() == 0 and not hasattr(library, "fused_write")  # the symbol is not in this build
    monkeypatch.setattr(native, "_library", lambda: library)
    assert not native.fused_available(torch.zeros(1)) and native.available(torch.zeros(1))
    q, k, v = (x.float() for x in (torch.randn(2, 40, 8) * 0.3, torch.randn(2, 40, 8) * 0.3, torch.randn(2, 40, 16)))
    projection = draw_projection(500, 8, seed=0)
    result = astrocyte.run_circuit(q, k, v, projection)
    assert_equals_reference(result.output, result.log_response, q, k, v, projection, "positive", False, torch.float32)


def test_query_rows_per_task_balance_the_threads():
    """Five sequences on two threads split each sequence in two (10 equal tasks, not 3 + 2 whole ones); on one
    thread a sequence is one task; rows per task are a multiple of the 12-row blocks and at most 256."""
    assert native.query_block(5, 197, 2) == 108
    assert native.query_block(5, 197, 1) == 204
    assert native.query_block(8, 197, 2) == 204
    for batch, tokens, threads in ((1, 4096, 2), (3, 7, 16), (40, 64, 2), (1, 256, 1), (2, 253, 2)):
        block = native.query_block(batch, tokens, threads)
        assert block % native.FUSED_ROWS == 0 and native.FUSED_ROWS <= block <= 256


def test_unequal_query_and_key_counts_take_the_hebbian_route(gaussian_head):
    """Non-causal attention may read more (or fewer) keys than it has queries; the token-pair buffers are
    square, so those inputs keep the Hebbian route (they once wrote past a buffer there)."""
    q, k, v = gaussian_head(n=9, scale=1.0)
    projection = draw_projection(202, 8, seed=0, dtype=torch.float64)
    for queries, keys in ((5, 9), (9, 5)):
        x = (q[:, :queries], k[:, :keys], v[:, :keys], projection)
        result = astrocyte.run_circuit(*(tensor.float() for tensor in x))
        assert_equals_reference(result.output, result.log_response, *x, "positive", False, torch.float32)


@pytest.mark.skipif(not native.available(torch.zeros(1)), reason="the compiled pass is unavailable (no C compiler, or ASTROSTATS_NATIVE=0)")
def test_compiled_exp2_pass_matches_torch():
    """The compiled pass against torch in float64: its exp2 of the float32 difference x - shift within 2 float32
    ulps (the Cephes polynomial's error bound, 1 ulp, plus the result's rounding), results under 2^-125 flushed
    to zero, NaN passed through, the online shift the row maximum, and the response the rates' dot product
    with g (within 300 ulps: a float32 sum of 300 terms)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 300, generator=generator) * 30.0
    x[0, 0, :4] = torch.tensor([float("nan"), -1e4, 0.0, 1e-30])
    shift = torch.full((3, 7), -math.inf)
    shift[1] = 200.0  # an earlier tile's larger maximum: kept
    presynaptic = torch.rand(3, 300, generator=generator)
    expected_shift = torch.maximum(shift, x.nan_to_num(-math.inf).amax(-1))
    expected = torch.exp2((x - expected_shift.unsqueeze(-1)).double())
    expected = torch.where(expected < 2.0**-125, 0.0, expected)
    rates = x.clone()
    response = native.exp2_online_(rates, shift, presynaptic)
    assert torch.equal(shift, expected_shift)
    assert rates[0, 0, 0].isnan() and rates[0, 0, 1] == 0 and rates[0, 0, 2] == torch.exp2(-expected_shift[0, 0])
    finite = ~expected.isnan()
    ulps = 2 * torch.finfo(torch.float32).eps
    assert torch.allclose(rates.double()[finite], expected[finite], rtol=ulps, atol=2.0**-125)
    dot = (expected.nan_to_num(0.0) * presynaptic.double().unsqueeze(-2)).sum(-1)
    assert torch.allclose(response.double()[1:], dot[1:], rtol=300 * ulps, atol=0)
    assert torch.equal(native.rows_max(x[1:]), x[1:].amax(-1))
    shifted = native.exp2_shifted_(x[1:].clone(), torch.full((2, 7), 3.0))
    assert torch.allclose(shifted.double(), torch.exp2((x[1:] - 3.0).double()).where(x[1:] - 3.0 >= -125, 0.0),
                          rtol=ulps, atol=2.0**-125)


@pytest.mark.parametrize("blocks", [1, 2])
def test_causal_stream_ending_on_a_block_boundary_equals_the_reference(blocks, gaussian_head):
    # the stream neither reads carried sums before its first block nor writes them after its last
    q, k, v = gaussian_head(n=blocks * kernels.STREAM_CHUNK)
    assert_matches_reference(q, k, v, draw_projection(32, 8, seed=5, dtype=torch.float64), "positive", True)


def test_causal_equals_prefix_by_prefix(gaussian_head):
    q, k, v = gaussian_head(n=kernels.STREAM_CHUNK + 20)
    k[:, -10:] *= 8.0  # late keys with much larger exponents: the carried sums must be rescaled, not underflow
    streamed = astrocyte_attention(q, k, v, 64, seed=1, causal=True)
    for t in (0, 1, kernels.STREAM_CHUNK - 1, kernels.STREAM_CHUNK, q.shape[1] - 1):
        prefix = astrocyte_attention(q[:, : t + 1], k[:, : t + 1], v[:, : t + 1], 64, seed=1)
        assert torch.allclose(streamed[:, t], prefix[:, t], rtol=1e-10, atol=1e-12)


def kernel_terms(x, y, feature, m, seed):
    """Independent per-unit Monte-Carlo terms whose mean is phi(x)·phi(y) (blocks for orthogonal rows)."""
    projection = draw_projection(m, x.shape[-1], feature=feature, seed=seed, dtype=torch.float64)
    products = random_features(x, projection, feature) * random_features(y, projection, feature)
    rows = projection.shape[0]
    if feature in ("trigonometric", "hyperbolic"):
        return rows * (products[:rows] + products[rows:])
    if feature == "orthogonal":  # rows within a block are dependent; blocks are independent
        d = x.shape[-1]
        return rows / d * products.reshape(-1, d).sum(-1)
    return rows * products


def along_first_axis(length: float) -> torch.Tensor:
    return torch.zeros(8, dtype=torch.float64).index_fill(0, torch.tensor([0]), length)


@pytest.mark.parametrize("feature", FEATURE_MAPS)
@pytest.mark.parametrize("inputs", ["random", "axis_aligned"])
def test_features_are_unbiased_for_the_softmax_kernel(feature, inputs):
    """Axis-aligned inputs catch a non-uniform rotation (e.g. QR's fixed sign convention) that random ones average out."""
    g = torch.Generator().manual_seed(11)
    x, y = (torch.randn(8, generator=g, dtype=torch.float64) * 0.35 for _ in range(2))
    if inputs == "axis_aligned":
        x, y = along_first_axis(0.7), along_first_axis(0.5)
    terms = kernel_terms(x, y, feature, 2**16, seed=5)
    mean, standard_error = terms.mean(), terms.std() / math.sqrt(terms.numel())
    z = (mean - torch.exp(x @ y)) / standard_error
    assert abs(float(z)) < Z_CRITICAL


def test_performer_mse_formula_matches_simulation():
    """Performer Lemma 2: MSE = (1/m) exp(|x+y|^2) SM^2 (1 - exp(-|x+y|^2)) for positive features."""
    g = torch.Generator().manual_seed(2)
    x, y = (torch.randn(6, generator=g, dtype=torch.float64) * 0.3 for _ in range(2))
    m, draws = 16, 4000
    projection = torch.stack([draw_projection(m, 6, seed=s, dtype=torch.float64) for s in range(draws)])
    estimates = (random_features(x.expand(draws, 1, 6), projection) *
                 random_features(y.expand(draws, 1, 6), projection)).sum(-1).squeeze(-1)
    kernel = torch.exp(x @ y)
    squared_errors = (estimates - kernel) ** 2
    s = ((x + y) ** 2).sum()
    formula = torch.exp(s) * kernel**2 * (1 - torch.exp(-s)) / m
    z = (squared_errors.mean() - formula) / (squared_errors.std() / math.sqrt(draws))
    assert abs(float(z)) < Z_CRITICAL


def test_float32_is_finite_and_matches_float64_at_large_logits(gaussian_head):
    g = torch.Generator().manual_seed(4)
    direction = torch.nn.functional.normalize(torch.randn(16, generator=g, dtype=torch.float64), dim=0)
    q, k, v = gaussian_head(n_seq=2, n=50, d=16, d_v=4, scale=0.2)
    q = q + math.sqrt(30.0) * direction  # q·k up to about 30 along the shared direction
    k = k + math.sqrt(30.0) * direction
    assert float((q @ k.transpose(-1, -2)).max()) > 25
    projection = draw_projection(256, 16, seed=9, dtype=torch.float64)
    for causal in (False, True):
        out32, a32 = astrocyte_attention(q.float(), k.float(), v.float(), projection=projection.float(),
                                         causal=causal, return_response=True)
        out64, a64 = astrocyte_attention(q, k, v, projection=projection, causal=causal, return_response=True)
        assert torch.isfinite(out32).all() and torch.isfinite(a32).all()
        bound = float_bound(q, k, projection, torch.float32)
        assert torch.allclose(out32.double(), out64, rtol=0, atol=bound * float(out64.abs().max()))
        assert torch.allclose(a32.log(), a64.log(), rtol=0, atol=bound)


def test_error_matches_the_delta_method_prediction(gaussian_head):
    """Over seeds, mean(err^2) * m / C^2 = 1 where C / sqrt(m) is the delta-method relative error (z-test).

    Small logits (|q + k| about 0.6) keep err^2 lighter-tailed (skew about 2): at |q + k| about 1.2 the skew
    reaches 4-5, and a normal z-test is then misled, the sample mean sitting below the expectation for hundreds
    of seeds. The two sequences share each seed's W, so the test runs over per-seed means.
    """
    q, k, v = gaussian_head(n_seq=2, n=30, d=8, scale=0.15)
    exact = softmax_attention(q, k, v)
    constant = predicted_error_constant(q, k, v)
    m, seeds = 4096, 48
    ratios = torch.stack([(((astrocyte_attention(q, k, v, m, seed=s) - exact).norm(dim=(-2, -1))
                            / exact.norm(dim=(-2, -1))) ** 2 * m / constant**2).mean() for s in range(seeds)])
    z = (ratios.mean() - 1) / (ratios.std() / math.sqrt(seeds))
    assert abs(float(z)) < Z_CRITICAL


def _centred_constant(q, k, v, causal):
    """The delta-method constant from the centred quadratic forms alone (no expansion, no cancellation)."""
    q, k, v = q.double(), k.double(), v.double()
    logits = attention_logits(q, k, causal)
    log_z = torch.logsumexp(logits, -1, keepdim=True)
    y = (logits - log_z).exp() @ v
    quadratic = theory.centred_quadratic((2 * logits - log_z).exp(), y, v, (k @ k.transpose(-1, -2)).exp())
    return ((q * q).sum(-1).exp() * quadratic).sum(-1).sqrt() / y.flatten(1).norm(dim=-1)


@pytest.mark.parametrize("scale", LOGIT_SCALES)
@pytest.mark.parametrize("causal", [False, True])
def test_expanded_delta_method_equals_the_centred_one(scale, causal, monkeypatch):
    """The expanded quadratic form (N^2 (T + d_v) per sequence) against the centred one, on every synthetic
    head: peaked heads cancel most (rounding of terms up to 1e6 times the result: 1e-10 relative at worst).
    Only the peaked head may fall back to the centred form; the others take the expansion."""
    head = synthetic_head(n_sequences=4, n_tokens=60, d_head=16, seed=2, causal=causal, logit_scale=scale)
    expected = _centred_constant(head.q, head.k, head.v, causal)
    calls = []
    centred = theory.centred_quadratic
    monkeypatch.setattr(theory, "centred_quadratic", lambda *args: calls.append(1) or centred(*args))
    assert torch.allclose(predicted_error_constant(head.q, head.k, head.v, causal), expected, rtol=1e-9, atol=0)
    assert scale == "peaked" or not calls


def test_attention_on_single_tokens_falls_back_to_the_centred_form(monkeypatch):
    """Each query attends to its own key alone (logit 20 against 0: weight 1 - 2e-8): the expanded terms cancel
    to far below 1e-6 of their size, so the sequence is recomputed centred, and the constant is the centred one."""
    n = 12
    k = torch.eye(n, dtype=torch.float64).unsqueeze(0)
    q, v = 20.0 * k, torch.randn(1, n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    calls = []
    centred = theory.centred_quadratic
    monkeypatch.setattr(theory, "centred_quadratic", lambda *args: calls.append(1) or centred(*args))
    constant = predicted_error_constant(q, k, v)
    assert calls == [1] and torch.isfinite(constant).all()
    assert torch.allclose(constant, _centred_constant(q, k, v, False), rtol=1e-12, atol=0)


def test_response_estimates_the_exact_normaliser(gaussian_head):
    """|a_t / Z_t - 1| within its predicted SD: Var(a_t) = sum kappa kappa' (exp((q+k)·(q+k')) - 1) / m."""
    q, k, v = gaussian_head(n_seq=1, n=30, d=8, scale=0.3)
    m = 2**14
    _, response = astrocyte_attention(q, k, v, m, seed=1, return_response=True)
    kernel = torch.exp(q @ k.transpose(-1, -2))[0]  # (t, tau)
    shifted = q[0].unsqueeze(1) + k[0].unsqueeze(0)  # q_t + k_tau
    variance = torch.stack([(kernel[t][:, None] * kernel[t][None, :] * torch.expm1(shifted[t] @ shifted[t].T)).sum()
                            for t in range(q.shape[1])]) / m
    z_tokens = stats.norm.ppf(1 - 0.001 / (2 * q.shape[1]))  # Bonferroni over tokens
    relative = (response[0] - kernel.sum(-1)) / variance.sqrt()
    assert float(relative.abs().max()) < z_tokens


def test_null_circuits_against_direct_formulas(gaussian_head):
    q, k, v = gaussian_head()
    assert torch.allclose(uniform_attention(q, k, v), v.mean(-2, keepdim=True).expand_as(v))
    assert torch.allclose(uniform_attention(q, k, v, causal=True)[:, 9], v[:, :10].mean(-2))
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    weights = phi_q @ phi_k.transpose(-1, -2)
    assert torch.allclose(elu_linear_attention(q, k, v), weights @ v / weights.sum(-1, keepdim=True))
    causal_weights = weights.tril()
    assert torch.allclose(elu_linear_attention(q, k, v, causal=True),
                          causal_weights @ v / causal_weights.sum(-1, keepdim=True))


def test_softmax_attention_matches_torch_sdpa(gaussian_head):
    q, k, v = gaussian_head()
    for causal in (False, True):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0)
        assert torch.allclose(softmax_attention(q, k, v, causal), expected, atol=1e-12)


@pytest.mark.parametrize("call, parameter", [
    (lambda q, k, v: astrocyte_attention(q, k[:, :, :4], v, 8, seed=0), "k"),
    (lambda q, k, v: astrocyte_attention(q, k, v[:, :5], 8, seed=0), "v"),
    (lambda q, k, v: astrocyte_attention(q, k, v, 0, seed=0), "m"),
    (lambda q, k, v: astrocyte_attention(q, k, v, -3, seed=0), "m"),
    (lambda q, k, v: astrocyte_attention(q, k, v, 8), "m, seed"),
    (lambda q, k, v: astrocyte_attention(q, k, v, projection=torch.ones(8, 5, dtype=torch.float64)), "projection"),
    (lambda q, k, v: astrocyte_attention(q, k, v, 8, seed=0, feature="laplace"), "feature"),
    (lambda q, k, v: astrocyte_attention(q, k, v, 7, seed=0, feature="trigonometric"), "m"),
    (lambda q, k, v: astrocyte_attention(q * float("nan"), k, v, 8, seed=0), "q"),
    (lambda q, k, v: softmax_attention(q, k, v.int()), "v"),
    (lambda q, k, v: astrocyte_attention(q[:, :5], k, v, 8, seed=0, causal=True), "k"),
    (lambda q, k, v: softmax_attention(q[:, :5], k, v, causal=True), "k"),
])
def test_bad_input_names_the_parameter(call, parameter, gaussian_head):
    q, k, v = gaussian_head()
    with pytest.raises(InputError) as error:
        call(q, k, v)
    assert str(error.value).startswith(parameter + ":")


def test_a_tampered_cached_native_library_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    """The compiled pass is code from a cache folder: its bytes must match the digest recorded at its build, else it
    is rebuilt (a changed library is never loaded)."""
    from astrostats.circuits import native
    if native._library() is None:
        pytest.skip("no C compiler (or ASTROSTATS_NATIVE=0): the torch path is used")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the build reads its cache folder from here
    compiler = native.os.environ.get("CC") or native.shutil.which("cc") or native.shutil.which("gcc")
    built = native._build(compiler)
    good = built.read_bytes()
    built.write_bytes(good[:-16] + b"\0" * 16)  # damaged or replaced
    rebuilt = native._build(compiler)
    assert rebuilt == built and rebuilt.read_bytes() == good
