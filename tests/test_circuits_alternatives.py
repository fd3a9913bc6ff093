"""Issue 16: other biological circuits for attention, one resource accounting, and claim C7's rule."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from astrostats.circuits.alternatives import dense_associative_memory, hebbian_only_attention, interneuron_attention
from astrostats.circuits.astrocyte import astrocyte_attention, run_circuit
from astrostats.circuits.attention import causal_mask, log_normaliser, softmax_attention
from astrostats.circuits.features import draw_projection
from astrostats.circuits.resources import resources, tree_levels
from astrostats.claims.judging import unresolved_evidence
from astrostats.claims import c7_alternatives
from astrostats.spec import ANALYSES_DIR, load_spec
from astrostats.stats.equal_error import equal_error_comparisons, required_resource
from astrostats.studies import circuits
from astrostats.studies.planted import c7_cases
from astrostats.studies.base import RunContext
from astrostats.targets.synthetic import synthetic_head
from astrostats.validation import InputError


def head(dtype=torch.float64, n_tokens=24, d=8, scale="peaked", seed=0):
    batch = synthetic_head(n_sequences=3, n_tokens=n_tokens, d_head=d, logit_scale=scale, seed=seed, dtype=dtype)
    return batch.q, batch.k, batch.v


# ------------------------------------------------------------------------------------------ circuits
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["merge", "drop"])
def test_memory_with_one_unit_per_token_is_softmax_attention(causal, dtype, mode, rounding_bound):
    q, k, v = head(dtype)
    exact = softmax_attention(q, k, v, causal)
    output, response = dense_associative_memory(q, k, v, mode=mode, causal=causal, return_response=True)
    assert (output - exact).abs().max() <= rounding_bound(q, k, v)
    log_z = log_normaliser(q.double(), k.double(), causal)
    assert torch.allclose(response.log(), log_z, rtol=0, atol=50 * torch.finfo(dtype).eps * (1 + log_z.abs().max()))


def test_merged_memory_stores_group_means_with_their_counts():
    q, k, v = head(n_tokens=5)
    output = dense_associative_memory(q, k, v, 2, mode="merge")  # tokens 0-2 -> unit 0, tokens 3-4 -> unit 1
    groups = [slice(0, 3), slice(3, 5)]
    keys = torch.stack([k[:, g].mean(1) for g in groups], 1)
    values = torch.stack([v[:, g].mean(1) for g in groups], 1)
    logits = q @ keys.transpose(-1, -2) + torch.tensor([3.0, 2.0], dtype=q.dtype).log()
    assert torch.allclose(output, torch.softmax(logits, -1) @ values, atol=1e-12)


def test_causal_merged_memory_reads_only_what_was_written():
    q, k, v = head(n_tokens=7)
    full = dense_associative_memory(q, k, v, 3, mode="merge", causal=True)
    for t in range(7):  # the prefix up to t, stored in the same groups, read by query t
        unit = torch.arange(7) * 3 // 7
        seen = unit[: t + 1]
        keys = torch.stack([k[:, :t + 1][:, seen == j].mean(1) for j in seen.unique()], 1)
        values = torch.stack([v[:, :t + 1][:, seen == j].mean(1) for j in seen.unique()], 1)
        counts = torch.stack([(seen == j).sum() for j in seen.unique()]).double()
        weights = torch.softmax(q[:, t:t + 1] @ keys.transpose(-1, -2) + counts.log(), -1)
        assert torch.allclose(full[:, t:t + 1], weights @ values, atol=1e-12)


def test_dropping_memory_is_attention_over_the_most_recent_tokens():
    q, k, v = head(n_tokens=10)
    assert torch.allclose(dense_associative_memory(q, k, v, 4, mode="drop"), softmax_attention(q, k[:, 6:], v[:, 6:]))
    causal = dense_associative_memory(q, k, v, 4, mode="drop", causal=True)
    window = causal_mask(10, 10) & ~causal_mask(10, 10).tril(-4)  # tau in (t - 4, t]
    logits = (q @ k.transpose(-1, -2)).masked_fill(~window, -math.inf)
    assert torch.allclose(causal, torch.softmax(logits, -1) @ v)


@pytest.mark.parametrize("causal", [False, True])
def test_interneuron_tree_computes_the_astrocyte_circuit(causal):
    q, k, v = head()
    projection = draw_projection(40, 8, seed=3, dtype=torch.float64)
    astrocyte, a = astrocyte_attention(q, k, v, projection=projection, causal=causal, return_response=True)
    for fan_in in (3, 7, 40, 1000):  # three levels, two levels, one cell, one cell
        tree, response = interneuron_attention(q, k, v, projection=projection, fan_in=fan_in, causal=causal,
                                               return_response=True)
        assert torch.allclose(tree, astrocyte, rtol=1e-10, atol=1e-12)
        assert torch.allclose(response, a, rtol=1e-10)


def test_sampling_interneuron_divides_by_the_first_units_only():
    q, k, v = head()
    projection = draw_projection(40, 8, seed=3, dtype=torch.float64)
    full = run_circuit(q, k, v, projection)
    first = run_circuit(q, k, v, projection[:10])
    sampled = interneuron_attention(q, k, v, projection=projection, fan_in=10, pool="sampled")
    expected = full.output * (full.log_response - first.log_response).exp().unsqueeze(-1)
    assert torch.allclose(sampled, expected, rtol=1e-10)
    wide = interneuron_attention(q, k, v, projection=projection, fan_in=40, pool="sampled")
    assert torch.allclose(wide, full.output, rtol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_hebbian_only_is_the_unnormalised_readout(causal):
    q, k, v = head(scale="typical")
    projection = draw_projection(16, 8, seed=1, dtype=torch.float64)
    phi = lambda x: torch.exp(x @ projection.T - 0.5 * (x * x).sum(-1, keepdim=True)) / 4.0  # noqa: E731
    kernel = phi(q) @ phi(k).transpose(-1, -2)
    if causal:
        kernel = kernel.tril()
    counts = torch.arange(1, 25).double().unsqueeze(-1) if causal else 24.0
    expected = kernel @ v / counts
    assert torch.allclose(hebbian_only_attention(q, k, v, projection=projection, causal=causal), expected, rtol=1e-9)


CALLS = {
    "astrocyte": lambda q, k, v, **kw: astrocyte_attention(q, k, v, kw.pop("m", 8), seed=0, **kw),
    "memory": lambda q, k, v, **kw: dense_associative_memory(q, k, v, kw.pop("m", 4), **kw),
    "interneurons": lambda q, k, v, **kw: interneuron_attention(q, k, v, kw.pop("m", 8), seed=0, fan_in=4, **kw),
    "hebbian": lambda q, k, v, **kw: hebbian_only_attention(q, k, v, kw.pop("m", 8), seed=0, **kw),
}


@pytest.mark.parametrize("circuit", ["memory", "interneurons", "hebbian"])
def test_bad_input_gets_the_astrocyte_circuits_messages(circuit):
    q, k, v = head(n_tokens=6)
    not_finite = q.clone()
    not_finite[0, 0, 0] = math.nan
    bad = {
        "shape": (q, k[..., :5], v, {}),
        "values": (q, k, v[:, :5], {}),
        "batch": (q[:2], k, v, {}),
        "non-finite": (not_finite, k, v, {}),
        "causal lengths": (q[:, :4], k, v, {"causal": True}),
        "m zero": (q, k, v, {"m": 0}),
        "m not an integer": (q, k, v, {"m": 2.5}),
    }
    for case, (a, b, c, options) in bad.items():
        with pytest.raises(InputError) as reference:
            CALLS["astrocyte"](a, b, c, **dict(options))
        with pytest.raises(InputError) as error:
            CALLS[circuit](a, b, c, **dict(options))
        assert str(error.value) == str(reference.value), case


def test_bad_input_specific_to_the_new_circuits():
    q, k, v = head(n_tokens=6)
    with pytest.raises(InputError, match=r"^m: expected an integer in \[1, 6\]"):
        dense_associative_memory(q, k, v, 7)
    with pytest.raises(InputError, match="^mode: expected one of"):
        dense_associative_memory(q, k, v, 3, mode="cluster")
    with pytest.raises(InputError, match="^fan_in: expected an integer >= 2, got 1"):
        interneuron_attention(q, k, v, 8, seed=0, fan_in=1)
    with pytest.raises(InputError, match="^pool: expected one of"):
        interneuron_attention(q, k, v, 8, seed=0, fan_in=4, pool="chain")
    with pytest.raises(InputError, match="^projection: expected either a projection or m and seed"):
        hebbian_only_attention(q, k, v, 8, projection=draw_projection(8, 8, dtype=q.dtype))


# ---------------------------------------------------------------------------------------- accounting
def test_accounting_by_hand():
    astrocyte = resources("astrocyte", m=8, d=4, d_v=3, n_tokens=10)
    assert (astrocyte["hidden_neurons"], astrocyte["fixed_random_synapses"], astrocyte["plastic_synapses"]) == (8, 32, 32)
    assert (astrocyte["astrocytes"], astrocyte["interneurons"], astrocyte["total_cells"]) == (1, 0, 8 + 3 + 1)
    assert (astrocyte["max_fan_in"], astrocyte["normaliser_fan_in"], astrocyte["plastic_writes_per_token"]) == (8, 8, 32)
    assert tree_levels(10, 3) == [4, 2, 1] and tree_levels(3, 3) == [1] and tree_levels(1, 3) == [1]
    tree = resources("interneuron_tree", m=10, d=4, d_v=3, n_tokens=10, fan_in=3)
    assert (tree["interneurons"], tree["fixed_unit_synapses"], tree["normaliser_depth"]) == (7, 6, 3)
    assert (tree["plastic_synapses"], tree["normaliser_fan_in"], tree["astrocytes"]) == (40, 3, 0)
    sampled = resources("interneuron_sampled", m=10, d=4, d_v=3, n_tokens=10, fan_in=3)
    assert (sampled["plastic_synapses"], sampled["interneurons"]) == (10 * 3 + 3, 1)
    memory = resources("dam_merge", m=5, d=4, d_v=3, n_tokens=10, fan_in=3)
    assert (memory["plastic_synapses"], memory["plastic_writes_per_token"], memory["fixed_random_synapses"]) == (40, 8, 0)
    assert (memory["interneurons"], memory["total_cells"], memory["max_fan_in"]) == (3, 5 + 3 + 3, 5)
    assert resources("dam_drop", m=5, d=4, d_v=3, n_tokens=10, fan_in=3)["plastic_synapses"] == 35
    assert resources("hebbian_only", m=8, d=4, d_v=3, n_tokens=10)["division"].startswith("none")
    with pytest.raises(InputError, match=r"^m: expected an integer in \[1, 10\]"):
        resources("dam_merge", m=11, d=4, d_v=3, n_tokens=10, fan_in=3)
    with pytest.raises(InputError, match="^fan_in"):
        resources("interneuron_tree", m=8, d=4, d_v=3, n_tokens=10)


# ------------------------------------------------------------------------------------ equal error
def test_required_resource_interpolates_and_bounds():
    resource = np.array([10.0, 20.0, 40.0])
    low, high = required_resource(np.array([[0.4, 0.2, 0.05], [0.09, 0.05, 0.01], [0.4, 0.3, 0.2]]), resource, 0.1)
    assert low[0] == pytest.approx(20 * math.sqrt(2)) and high[0] == pytest.approx(20 * math.sqrt(2))
    assert (low[1], high[1]) == (0.0, 10.0)  # already below at the smallest level: at most R(smallest)
    assert (low[2], high[2]) == (40.0, math.inf)  # never reached: more than R(largest)


def test_identical_circuits_on_shared_features_have_ratio_one_in_every_draw():
    rng = np.random.default_rng(1)
    rows = [{"curve": curve, "m": m, "seed": seed, "sequence_id": s, "value": 3 / math.sqrt(m) * rng.lognormal(0, 0.2),
             "plastic_synapses": 5 * m} for m in (64, 256, 1024, 4096) for seed in range(3) for s in range(5)
            for curve in ("astrocyte",)]
    table = pd.DataFrame(rows)
    table = pd.concat([table, table.assign(curve="copy")], ignore_index=True)
    result = equal_error_comparisons(table, reference="astrocyte", resource_col="plastic_synapses", epsilon=0.1,
                                     margin=0.1, n_resamples=199)
    assert (result["ci_low"].item(), result["ci_high"].item()) == (1.0, 1.0)
    assert result["p_value"].item() == pytest.approx(1 / 200)


# ------------------------------------------------------------------------------------------- claim C7
@pytest.mark.parametrize("index", range(4))
def test_c7_rule_gives_the_planted_verdict(index):
    scenario, planted, tables = c7_cases(np.random.default_rng(20230823))[index]
    verdict = c7_alternatives.judge(tables)
    assert verdict.verdict == planted, scenario
    assert not unresolved_evidence(verdict, tables)
    primary = tables["circuits_tests"]
    if planted == "NOT_SUPPORTED":  # evidence against: a CI that excludes the claim
        assert (primary["ci_high"] < primary["threshold"]).all()
    if planted == "SUPPORTED":
        assert (primary["ci_low"] > primary["threshold"]).all() and (primary["p_value_adjusted"] < 0.05).all()


def test_c7_flags_a_run_under_another_preregistration():
    _, _, tables = c7_cases(np.random.default_rng(0))[0]
    tables["circuits_tests"]["preregistration_sha256"] = "0" * 64
    verdict = c7_alternatives.judge(tables)
    assert any("amendment" in concern for concern in verdict.major_concerns)


def test_c7_without_tables_is_insufficient_data():
    assert c7_alternatives.judge({}).verdict == "INSUFFICIENT_DATA"


# --------------------------------------------------------------------------------------------- study
def smoke_spec(**overrides):
    spec = load_spec(ANALYSES_DIR / "circuits.toml", "smoke")
    return dataclasses.replace(spec, parameters={**spec.parameters, "real_models": [], **overrides})


def test_registered_hash_is_the_specs_preregistration():
    spec = load_spec(ANALYSES_DIR / "circuits.toml", "quick")
    assert circuits.preregistration_hash(spec.preregistration) == c7_alternatives.REGISTERED_SHA256


def test_preregistration_is_checked_before_running():
    spec = smoke_spec()
    incomplete = dataclasses.replace(spec, preregistration={k: v for k, v in spec.preregistration.items() if k != "margin"})
    with pytest.raises(InputError, match="circuits.preregistration: expected keys"):
        circuits.run(incomplete, RunContext(out_dir=None))
    unknown = dataclasses.replace(spec, preregistration={**spec.preregistration, "comparators": ["cortex"]})
    with pytest.raises(InputError, match="preregistration.comparators"):
        circuits.run(unknown, RunContext(out_dir=None))


def test_study_tables_and_the_audit_read_them(tmp_path):
    tables = circuits.run(smoke_spec(), RunContext(out_dir=tmp_path, progress=False))
    measurements, accounting, tests = tables["circuits"], tables["circuits_accounting"], tables["circuits_tests"]
    assert sorted(set(measurements["n_tokens"])) == [24, 48]  # one synthetic head per context length N
    assert set(measurements["analysed_head"]) == {"synthetic/near_uniform_unit_norm/N24",
                                                  "synthetic/near_uniform_unit_norm/N48"}
    exact_memory = measurements.query("circuit == 'dam_merge' and n_tokens == 48 and m == 48")["value"]
    assert len(exact_memory) == 4 and exact_memory.max() < 1e-5  # one unit per token: exact (float32)
    index = ["analysed_head", "m", "seed", "sequence_id"]
    tree = measurements.query("circuit == 'interneuron_tree'").set_index(index)["value"]
    astrocyte = measurements.query("circuit == 'astrocyte'").set_index(index)["value"]
    assert np.allclose(tree.sort_index(), astrocyte.sort_index(), rtol=1e-4)  # the tree sums every unit exactly
    sampled = measurements.query("circuit == 'interneuron_sampled' and m == 64").set_index(index)["value"]
    assert not np.allclose(sampled.sort_index(), astrocyte.loc[sampled.index].sort_index(), rtol=1e-2)  # m > fan-in 16
    assert set(accounting["circuit"]) == set(measurements["circuit"])
    assert set(tests["family"]) == {"primary", "coprimary_total_cells", "coprimary_plastic_writes_per_token",
                                    "secondary_hidden_neurons"}
    assert (tests["preregistration_sha256"] == c7_alternatives.REGISTERED_SHA256).all()
    assert (tests["amendment_sha256"] == c7_alternatives.AMENDMENT_SHA256).all()
    assert set(tests["n_tokens"]) == {24, 48} and set(tables["circuits_required"]["n_tokens"]) == {24, 48}
    ok = tests[tests["status"] == "ok"]
    assert set(ok["censored"]) <= {"none", "upper", "lower", "unbounded"}
    assert (ok["censored"] != "none").all()  # smoke: m to 64, the astrocyte circuit never reaches 10 %
    assert ok["statistic"].isna().all() and not ok["ratio_bound"].str.startswith("=").any()
    assert set(tables["circuits_required"]["censored"]) <= {"none", "below", "above"}
    verdict = c7_alternatives.judge(tables)
    assert verdict.verdict in ("NOT_SUPPORTED", "INCONCLUSIVE") and "amendment v2" in verdict.reason
    assert verdict.details["v1"] in ("NOT_SUPPORTED", "INCONCLUSIVE")
    assert set(verdict.details["v2"]) == {"plastic_synapses", "total_cells", "plastic_writes_per_token"}
    assert "N = 24" in verdict.headline and "N = 48" in verdict.headline
    assert not unresolved_evidence(verdict, tables)
    for evidence in verdict.evidence:  # a censored ratio is a bound, never a point estimate
        assert math.isnan(evidence.value) and "censored" in evidence.effect


# ------------------------------------------------------------------------------ issue 27: N, fan-in, bounds
def test_n_tokens_is_a_list_of_distinct_context_lengths():
    assert circuits.Parameters(n_tokens=64).n_tokens == (64,)
    assert circuits.Parameters(n_tokens=[512, 128]).n_tokens == (128, 512)
    with pytest.raises(InputError, match="^n_tokens: expected distinct"):
        circuits.Parameters(n_tokens=[128, 128])
    full = load_spec(ANALYSES_DIR / "circuits.toml", "full").bind(circuits.Parameters)
    assert (min(full.n_tokens), max(full.n_tokens)) == (128, 2048)
    quick = load_spec(ANALYSES_DIR / "circuits.toml", "quick").bind(circuits.Parameters)
    assert len(quick.n_tokens) >= 2 and max(quick.n_tokens) > min(quick.n_tokens)


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_profiles_sweep_m_beyond_the_interneuron_fan_in(profile):
    parameters = load_spec(ANALYSES_DIR / "circuits.toml", profile).bind(circuits.Parameters)
    assert max(parameters.m) > min(parameters.interneuron_fan_in)  # the tree and the sampling pool are exercised
    accounting = pd.DataFrame([resources(c, m=max(parameters.m), d=64, d_v=64, n_tokens=128, fan_in=limit)
                               for c in ("astrocyte", "interneuron_tree") for limit in [min(parameters.interneuron_fan_in)]])
    astrocyte, tree = accounting.iloc[0], accounting.iloc[1]
    assert tree["total_cells"] > astrocyte["total_cells"] and tree["normaliser_depth"] == 2


def test_interneuron_tree_differs_from_the_astrocyte_circuit_only_beyond_the_fan_in():
    kw = dict(d=64, d_v=64, n_tokens=128, fan_in=2186)
    for m, extra, depth in ((2048, 0, 1), (2186, 0, 1), (4096, 2, 2), (16384, 8, 2)):
        astrocyte, tree = resources("astrocyte", **kw | {"m": m}), resources("interneuron_tree", **kw | {"m": m})
        assert tree["plastic_synapses"] == astrocyte["plastic_synapses"]  # the tree is exact: same synapses
        assert tree["total_cells"] - astrocyte["total_cells"] == extra and tree["normaliser_depth"] == depth
        sampled = resources("interneuron_sampled", **kw | {"m": m})
        assert astrocyte["plastic_synapses"] - sampled["plastic_synapses"] == m - min(m, 2186)
    memory = resources("dam_drop", m=100, d=64, d_v=64, n_tokens=128, fan_in=2186)
    assert memory["units_allocated_per_token"] == 1 and resources("astrocyte", m=8, **kw)["units_allocated_per_token"] == 0


def planted_lengths(lengths, rng, m_values=(64, 256, 1024, 4096, 16384), n_sequences=6, n_seeds=3):
    """Measurements and accounting at each N: the astrocyte circuit's error 4 / sqrt(m) (10 % at m = 1,600 at
    every N), the dropping memory's 0.1 (N / 2) / m (10 % at m = N / 2, exact at m = N): its plastic synapses
    for 10 % grow as N, so it is cheaper at N = 64 and dearer at N = 4,096."""
    rows, accounting = [], []
    for n_tokens in lengths:
        head = f"planted/N{n_tokens}"
        sequence_effect = rng.normal(0.0, 0.05, n_sequences)
        for circuit, widths, seeds, limit in (("astrocyte", m_values, n_seeds, None),
                                              ("dam_drop", circuits.memory_widths(m_values + (n_tokens // 4, n_tokens // 2),
                                                                                   n_tokens), 1, 2186)):
            for m in widths:
                accounting.append({**resources(circuit, m=m, d=64, d_v=64, n_tokens=n_tokens, fan_in=limit),
                                   "analysed_head": head})
                for seed in range(seeds):
                    base = 4 / math.sqrt(m) if circuit == "astrocyte" else (
                        1e-7 if m == n_tokens else 0.1 * (n_tokens / 2) / m)
                    noise = np.exp(sequence_effect + rng.normal(0.0, 0.02, n_sequences))
                    rows += [{"analysed_head": head, "n_tokens": n_tokens, "circuit": circuit, "fan_in_limit": limit,
                              "m": m, "seed": seed if circuit == "astrocyte" else None, "sequence_id": s,
                              "metric": "relative_error", "value": base * noise[s]} for s in range(n_sequences)]
    measurements = pd.DataFrame(rows)
    accounting = pd.DataFrame(accounting)
    for table in (measurements, accounting):
        for column in ("fan_in_limit", "m"):
            table[column] = table[column].astype("Int64")
    measurements["seed"] = measurements["seed"].astype("Int64")
    return measurements, accounting


def planted_c7(lengths, seed=0):
    spec = load_spec(ANALYSES_DIR / "circuits.toml", "quick")
    amendment = circuits.check_amendment(spec, spec.preregistration)
    measurements, accounting = planted_lengths(lengths, np.random.default_rng(seed))
    tests = circuits.tests_table(measurements, accounting, spec.preregistration, n_resamples=199,
                                 secondary_resources=("hidden_neurons",), amendment=amendment)
    return {"circuits_tests": tests}


def test_planted_memory_cost_crosses_the_astrocytes_as_n_grows():
    tables = planted_c7([64, 4096])
    tests = tables["circuits_tests"]
    primary = tests[tests["family"] == "primary"].set_index("n_tokens")
    assert primary.loc[64, "ci_high"] < primary.loc[64, "threshold"]  # short context: the memory is cheaper
    assert primary.loc[4096, "ci_low"] > primary.loc[4096, "threshold"]  # long context: the astrocyte circuit is
    assert primary.loc[64, "statistic"] < 0.1 < 1.5 < primary.loc[4096, "statistic"]
    assert (primary["censored"] == "none").all()
    verdict = c7_alternatives.judge(tables)
    assert verdict.verdict == "NOT_SUPPORTED" and verdict.details["dominated"] == ["dam_drop@2186 on planted/N64"]
    assert "N = 64: 1 of 1 neurons-only cheaper (dam_drop)" in verdict.headline
    assert "N = 4096: 0 of 1 neurons-only cheaper, 1 dearer (dam_drop)" in verdict.headline
    assert any("N = 64" in e.note for e in verdict.evidence) and not unresolved_evidence(verdict, tables)
    # at the long context alone: the pre-registered v1 (plastic synapses) says SUPPORTED; v2 prices the memory's
    # few per-token writes too, which it wins, and says INCONCLUSIVE (a trade-off), never SUPPORTED
    long_only = planted_c7([4096])
    verdict = c7_alternatives.judge(long_only)
    assert verdict.details["v1"] == "SUPPORTED" and verdict.verdict == "INCONCLUSIVE"
    assert verdict.details["v2"]["plastic_writes_per_token"] == "NOT_SUPPORTED"
    assert verdict.details["v2"]["total_cells"] == "SUPPORTED"


def test_censored_ratio_is_rendered_as_a_bound():
    row = pd.Series({"family": "primary", "analysed_head": "h/N128", "n_tokens": 128, "comparator": "dam_drop@2186",
                     "reference": "astrocyte", "resource": "plastic_synapses", "epsilon": 0.1, "threshold": 1 / 1.1,
                     "status": "ok", "reason": "", "statistic": np.nan, "p_value_adjusted": 1.0, "ci_low": 0.0,
                     "ci_high": 0.0312, "ratio_low": 0.0, "ratio_high": 0.025, "comparator_required_low": 5e3,
                     "comparator_required_high": 5e3, "reference_required_low": 2e5,
                     "reference_required_high": math.inf})
    kind, bound, why = circuits.censoring(row)
    assert (kind, bound) == ("upper", "<= 0.0312") and "astrocyte never reaches the error" in why
    row = pd.concat([row, pd.Series({"censored": kind, "ratio_bound": bound, "censored_why": why})])
    evidence = c7_alternatives._evidence("circuits_tests", row)
    assert math.isnan(evidence.value) and evidence.statistic.endswith("ratio <= 0.0312")
    assert evidence.effect.startswith("ratio <= 0.0312 (censored: astrocyte never reaches")
    lower = row.drop(["censored", "ratio_bound", "censored_why"]).copy()
    lower[["ratio_low", "ratio_high", "ci_low", "ci_high"]] = [2.0, math.inf, 1.7, math.inf]
    lower[["comparator_required_low", "comparator_required_high"]] = [4e5, math.inf]
    lower[["reference_required_low", "reference_required_high"]] = [2e5, 2e5]
    assert circuits.censoring(lower)[:2] == ("lower", ">= 1.7")
    assert c7_alternatives.censored_bound(lower)[1].startswith("ratio >= 1.7 (censored")  # derived without the column
    point = lower.copy()
    point[["ratio_low", "ratio_high", "statistic", "ci_low", "ci_high"]] = [0.5, 0.5, 0.5, 0.4, 0.6]
    assert circuits.censoring(point)[:2] == ("none", "= 0.5 [0.4, 0.6]")
    assert c7_alternatives._evidence("circuits_tests", point).value == 0.5


def test_amendment_is_pinned_and_led_by_the_registered_resource():
    spec = load_spec(ANALYSES_DIR / "circuits.toml", "smoke")
    amendment = dict(spec.amendments[-1])
    assert amendment["date"] == "2026-12-06" and "0.16 [0.14, 0.19]" in amendment["original_result"]
    assert circuits.preregistration_hash(amendment) == c7_alternatives.AMENDMENT_SHA256
    for bad, match in ((dict(amends_sha256="0" * 64), "amends_sha256"),
                       (dict(coprimary_resources=["total_cells", "plastic_synapses"]), "coprimary_resources"),
                       (dict(coprimary_resources=["plastic_synapses", "cortex"]), "coprimary_resources")):
        edited = dataclasses.replace(spec, amendments=(amendment | bad,))
        with pytest.raises(InputError, match=match):
            circuits.check_amendment(edited, spec.preregistration)
