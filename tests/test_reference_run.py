"""The default run's tables and verdicts for the astrocyte are what they were before circuits became a registry
and models a target registry: a whole smoke run (every analysis) against the stored reference run
(tests/reference_run: the parquet tables, timings left out, and the verdicts of the code before that change).

Values must agree to 1e-9 relative: a change in what is computed moves float32 results by 1e-7 or more, while
the reductions of two runs of the same code have been seen to differ at 1e-11 (summation order;
astrostats.outputs.DETERMINISM_RTOL). Columns the reference lacks are new and allowed, and so are rows of a metric
it lacks (normaliser_error_per_token, added by the C2 amendment); every column and row it has must be there.
One change of value is declared, not tolerated: ``DECLARED`` says what it is and checks the new values are exactly
that. Analyses redesigned since (``CHANGED_BY_DESIGN``) are left out, each with its reason, and the verdicts they
move are stated (``VERDICT_CHANGES``).

Regenerated once, on purpose (2026-12-06): the float columns of the 19 tables that derive from the float32
circuit (``COMPILED_CIRCUIT_TABLES``) hold the values of the circuit's compiled exp2 pass
(astrostats.circuits.native; the presynaptic sums and the response fused into the GEMMs): the same numbers to
float32 rounding, which moves circuit outputs by up to 3e-6 relative and ill-conditioned fits further (the
mismatched-target control's floor fit has alpha_floor ~ 0, so only e_inf + a_floor is identified and rounding
splits it anew). Rows, other columns and the verdicts did not move; with the previous kernels substituted, every
one of these tables matched the old reference at 1e-9. Where the compiled pass is unavailable (no C compiler, or
ASTROSTATS_NATIVE=0) the torch operations round differently, and those 19 tables are skipped, not loosened.

Regenerated again (2026-12-06), the 7 fig3_language tables only: short sequences (N <= 2 d + 1, causal
N <= 3 (2 d + 1)) now take the circuit's token-pair route (astrostats.circuits.kernels.token_pair_positive, the
same sums over units and tokens in the other order). Circuit outputs moved by at most 2.2e-6 relative (float32
rounding), the extrapolated m-required CI bounds by at most 1.8e-3; rows, other columns and verdicts did not
move, and the other 26 tables still match at 1e-9.

Declared, not regenerated (amendment 2026-12-06, C2 and C6): a head's p-values against the tolerance in the
measured summaries are the crossed design's t-test's; the crossed bootstrap's p-values they replaced are kept
beside them and must equal the reference's exactly, the adjusted p-values and the classes' basis text follow the
new test, and the classes themselves and the verdicts are compared as before (unchanged).

Regenerated a third time (2026-12-06), the 6 tables of the direct measurement (fig3_language and fig3_vision:
measured, measured_summary, required_m): the circuit's tiles of hidden units grew from 4 to 16 MB of rates
(astrostats.circuits.kernels.TILE_ELEMENTS), which changes the float32 summation order where a measurement spans
several tiles. Values moved by at most 7.0e-7 relative; rows, other columns, the other tables and the verdicts
did not move.

Regenerated a fourth time (2026-12-07), the 19 tables the circuit's fused compiled passes compute
(``FUSED_CIRCUIT_TABLES``; astrostats.circuits.native, AVX-512): both phases' GEMMs and their exp2 in one pass per
phase on fixed tiles of 384 hidden units (biology, scaling and fig3_vision: 11 tables), the token-pair sums in one
pass (fig3_language: 6 tables), and both end-to-end tables, whose heads are views of a model's projections that
the passes now take in any layout (moved by at most 5.2e-7 relative), each a new float32 summation order. Values moved by at most 1.5e-5 relative
(measured errors, fits, CIs; extrapolated m-required CI bounds 1.6e-3) and the ill-identified floor fits further,
as above (e_inf + a_floor of a fit with alpha_floor ~ 0, and parameters pinned at their zero bound, whose float64
noise is all that moves); rows, every non-float column, the declared columns (kept as they were) and the verdicts
did not move, and the other tables still match at 1e-9. Without AVX-512 the earlier kernels serve and round
otherwise: those 19 tables are skipped there, not loosened.

Stored on an Intel CPU (``REFERENCE_CPU_VENDOR``). On another vendor's (seen 2026-12-07: an AMD EPYC with
AVX-512, where torch's own kernels and the compiled passes round float32 otherwise, by about 1e-7 relative) the
float columns of the float32 tables (``FLOAT32_TABLES``) are not compared; their rows and every other column
are, every other table in full, and the verdicts.
"""
import functools
import json
import platform
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from astrostats import analyze
from astrostats.circuits import native
from astrostats.outputs import DETERMINISM_RTOL

REFERENCE = Path(__file__).resolve().parent / "reference_run"
COMPILED_CIRCUIT_TABLES = ("biology", "biology_floors", "scaling", "scaling_asymptotic", "scaling_fits", *(
    f"fig3_{kind}_{table}" for kind in ("language", "vision") for table in (
        "end_to_end", "fits", "measured", "measured_summary", "required_m", "response", "sweep")))
FUSED_CIRCUIT_TABLES = ("biology", "biology_floors", "scaling", "scaling_asymptotic", "scaling_fits", *(
    f"fig3_{kind}_{table}" for kind in ("language", "vision")
    for table in ("end_to_end", "fits", "measured", "measured_summary", "required_m", "response", "sweep")))
#: the CPU vendor the reference was stored on. Its float32 tables are exact there; another vendor's CPU rounds
#: them otherwise (an AMD EPYC, AVX-512 too: torch's own kernels, a model's q.k norms included, and the compiled
#: passes moved values by about 1e-7 relative, ill-conditioned floor fits further), so there their float columns
#: are not compared, not loosened; their rows and every other column still are, and so are the verdicts
REFERENCE_CPU_VENDOR = "GenuineIntel"
FLOAT32_TABLES = (*FUSED_CIRCUIT_TABLES, *(f"fig3_{kind}_{table}" for kind in ("language", "vision")
                                           for table in ("head_stats", "theory")))
RTOL = DETERMINISM_RTOL
TIMING = ("seconds", "wall_seconds", "load_seconds")


def no_astrocyte_input_determined(reference: pd.DataFrame, new: pd.DataFrame) -> pd.Series:
    """The accounting now takes every circuit's counts from its registered resources: the no-astrocyte null
    keeps its couplings g (m numbers, as claim C7 always counted it), so m (d_v + 1), not m d_v + 1."""
    changed = reference["circuit"] == "no_astrocyte"
    expected = reference["n_input_determined"].where(~changed, reference["n_input_determined"] + reference["m"] - 1)
    assert (new["n_input_determined"] == expected).all()
    return changed


def replaced_by_the_crossed_t_test(side: str):
    """Amendment 2026-12-06 (C2, C6): a head's p-values against the tolerance are the crossed design's t-test's.
    Declared for ``p_<side>``: the crossed bootstrap's p-value it replaced is kept beside it, and must be the
    reference's value exactly; the adjusted p-values and the classes' basis text follow the new test (their
    rows are not compared; the classes themselves still are)."""
    def declared(reference: pd.DataFrame, new: pd.DataFrame) -> pd.Series:
        if side in ("above", "below"):
            equal_columns("measured_summary", f"p_{side}_bootstrap", reference[f"p_{side}"], new[f"p_{side}_bootstrap"])
        return pd.Series(True, index=reference.index)
    return declared


DECLARED = {("overfitting_accounting", "n_input_determined"): no_astrocyte_input_determined,
            **{(f"fig3_{kind}_measured_summary", f"p_{side}{suffix}"): replaced_by_the_crossed_t_test(side + suffix)
               for kind in ("language", "vision") for side in ("above", "below") for suffix in ("", "_adjusted")},
            **{(f"fig3_{kind}_required_m", column): replaced_by_the_crossed_t_test(column)
               for kind in ("language", "vision")
               for column in ("error_at_m_smallest_p_above_adjusted", "basis_human", "basis_rodent")}}
#: analyses whose design changed after the reference on purpose, by a declared change: their tables are not
#: compared (what they now compute is tested by their own tests), and the verdicts they decide move as stated
CHANGED_BY_DESIGN = {
    "circuits": "C7 amendment v2 (analyses/circuits.toml, 2026-12-06): the context length N is swept and m goes past "
                "the interneuron fan-in limit, so the heads, rows and families differ by design",
    "known_answers": "the known-answers scenarios were redesigned (2026-12-06): noise families beyond the fitted "
                     "model, misspecified truths, heads at the thresholds",
    "overfitting": "a v2 fitted null that fails to learn is refit (2026-12-06; longer, another initialisation, "
                   "L-BFGS): refit fits have other losses, statuses and scores, and the tests table moves with them "
                   "(C3 in the smoke profile stays INSUFFICIENT_DATA: 6 held-out sequences)",
}
VERDICT_CHANGES = {"C7": ("INCONCLUSIVE", "NOT_SUPPORTED",
                          "under amendment v2 the smoke profile's short context (N = 24) shows the memory cheaper, "
                          "its ratio bounded below 0.47 (censored): evidence against, where v1 at N = 64 had none")}


@functools.cache
def cpu_vendor() -> str:
    """This CPU's vendor (/proc/cpuinfo's vendor_id; the processor's name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    assert analyze.main(["--profile", "smoke", "--quiet", "--out", str(out)]) == 0
    return out


def equal_columns(name: str, column: str, reference: pd.Series, new: pd.Series) -> None:
    if pd.api.types.is_float_dtype(reference) and pd.api.types.is_float_dtype(new):
        a, b = reference.to_numpy(dtype=float), new.to_numpy(dtype=float)
        same = np.isclose(a, b, rtol=RTOL, atol=0.0) | (np.isnan(a) & np.isnan(b)) | (a == b)
        assert same.all(), f"{name}.{column}: {int((~same).sum())} values differ, e.g. {a[~same][:3]} vs {b[~same][:3]}"
    else:
        pd.testing.assert_series_equal(reference, new, check_names=False, obj=f"{name}.{column}")


@pytest.mark.slow
@pytest.mark.parametrize("path", [path for path in sorted(REFERENCE.glob("*.parquet"))
                                  if not path.stem.startswith(tuple(CHANGED_BY_DESIGN))], ids=lambda path: path.stem)
def test_every_reference_table_is_unchanged(smoke_run, path):
    name = path.stem
    if name in COMPILED_CIRCUIT_TABLES and not native.available(torch.zeros(1)):
        pytest.skip("stored with the circuit's compiled exp2 pass, unavailable here: the torch path rounds otherwise")
    if name in FUSED_CIRCUIT_TABLES and not native.fused_available(torch.zeros(1), value_size=16):
        pytest.skip("stored with the circuit's fused pass (AVX-512), unavailable here: the other kernels round otherwise")
    reference = pd.read_parquet(path)
    new = pd.read_parquet(smoke_run / "tables" / path.name)
    if "metric" in reference and "metric" in new:  # metrics added since: compared where the reference has them
        new = new[new["metric"].isin(set(reference["metric"]))].reset_index(drop=True)
    assert len(new) == len(reference), f"{name}: {len(new)} rows, the reference has {len(reference)}"
    missing = [column for column in reference if column not in new]
    assert not missing, f"{name}: columns gone: {missing}"
    other_rounding = name in FLOAT32_TABLES and cpu_vendor() != REFERENCE_CPU_VENDOR
    if other_rounding:  # said in the test summary, not silent
        warnings.warn(f"{name}: float columns not compared on a {cpu_vendor()} CPU (reference: {REFERENCE_CPU_VENDOR})")
    for column in reference:
        if column in TIMING or (other_rounding and pd.api.types.is_float_dtype(reference[column])):
            continue
        declared = DECLARED.get((name, column))
        keep = pd.Series(True, index=reference.index)
        if declared is not None:
            keep = ~declared(reference, new)
        equal_columns(name, column, reference.loc[keep, column], new.loc[keep, column])


@pytest.mark.slow
def test_the_verdicts_are_unchanged(smoke_run):
    expected = json.loads((REFERENCE / "verdicts.json").read_text())
    for claim, (before, after, _) in VERDICT_CHANGES.items():
        assert expected[claim] == before  # the declared change starts from the reference's verdict
        expected[claim] = after
    found = {claim["id"]: claim["verdict"] for claim in json.loads((smoke_run / "audit.json").read_text())["claims"]}
    assert found == expected
