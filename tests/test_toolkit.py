"""Bring your own circuit: the registry, entry points, module paths, and the whole audit judging a circuit that
lives outside the package (examples/relu_attention, installed for real into a temporary folder)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import astrostats
from astrostats import analyze
from astrostats.circuits import get_circuit, register_circuit, registered_names, resources
from astrostats.circuits import registry
from astrostats.circuits.registry import CircuitResult
from astrostats.validation import InputError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "relu_attention"


def qkv(seed=0, n=12, d=4):
    generator = torch.Generator().manual_seed(seed)
    return tuple(0.3 * torch.randn(2, n, d, generator=generator, dtype=torch.float64) for _ in range(3))


# ----------------------------------------------------------------------------------------------- registry
def test_every_built_in_runs_through_the_protocol_and_declares_its_resources():
    q, k, v = qkv()
    for name in registered_names():
        circuit = get_circuit(name)
        options = {"fan_in": 4} if circuit.fan_in_changes else {}
        widths = {"m": 8} if circuit.random_features or circuit.one_unit_per_token else {}
        seeds = {"seed": 1} if circuit.random_features else {}
        result = circuit(q, k, v, **widths, **seeds, **options)
        assert result.output.shape == v.shape and torch.isfinite(result.output).all(), name
        row = resources(name, m=widths.get("m"), d=4, d_v=4, n_tokens=12, fan_in=4)
        assert row["total_cells"] >= row["output_neurons"] == 4, name


def test_an_unknown_name_lists_the_registered_ones_and_suggests_the_nearest():
    with pytest.raises(InputError, match=r"^circuit: 'astrocite' is not a registered circuit \(did you mean 'astrocyte'\?\)"):
        get_circuit("astrocite")
    with pytest.raises(InputError, match="no_such_module"):
        get_circuit("no_such_module:attention")


@pytest.mark.parametrize("path", ["os:system", "shutil:rmtree", "math:pi"])
def test_a_module_path_that_is_not_a_circuit_is_refused_before_it_is_called(path):
    """A spec is data: a callable that does not have a circuit's signature (q, k, v, *, causal) is never called."""
    with pytest.raises(InputError, match=r"^audited_circuit: expected a (circuit function|Circuit or a callable)"):
        get_circuit(path, "audited_circuit")


def test_the_command_line_refuses_an_unknown_circuit_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    assert analyze.main(["scaling", "--circuit", "elu_linaer", "--profile", "smoke", "--quiet", "--out", str(out)]) == 2
    assert "did you mean 'elu_linear'" in capsys.readouterr().err
    assert not out.exists()


def test_a_circuit_that_returns_the_wrong_thing_is_named_not_averaged(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # registrations end with the test

    @register_circuit("test_nan_circuit", random_features=False)
    def nan_circuit(q, k, v, *, causal=False):
        return torch.full_like(v, float("nan"))

    @register_circuit("test_wrong_shape", random_features=False)
    def wrong_shape(q, k, v, *, causal=False):
        return CircuitResult(v[..., :1])

    q, k, v = qkv()
    with pytest.raises(InputError, match="test_nan_circuit.*finite"):
        nan_circuit(q, k, v)
    with pytest.raises(InputError, match="test_wrong_shape.*shape"):
        wrong_shape(q, k, v)
    with pytest.raises(InputError, match="registered already"):
        register_circuit("test_nan_circuit", random_features=False)(lambda q, k, v, *, causal=False: v)


def test_a_plain_function_by_module_path_is_random_when_it_takes_m_and_seed(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    relu = get_circuit("relu_attention:relu_attention")
    assert relu.random_features and relu.with_projection is None and relu.resources is None
    q, k, v = qkv()
    first, again = relu(q, k, v, m=64, seed=3), relu(q, k, v, m=64, seed=3)
    assert torch.equal(first.output, again.output) and first.log_normaliser is None
    with pytest.raises(InputError, match="m: expected"):
        relu(q, k, v, m=0, seed=3)


def test_the_resource_comparison_refuses_a_circuit_that_declares_no_resources(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    with pytest.raises(InputError, match="declares its resources"):
        resources("relu_attention:relu_attention", m=8, d=4, d_v=4, n_tokens=12)


# -------------------------------------------------------------------------- the whole audit, on outside circuits
@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """The example package installed for real (a wheel built from its pyproject, entry points included)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(EXAMPLE)], check=True)
    return target


def run_cli(arguments, site: Path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "astrostats.analyze", *arguments], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_an_installed_entry_point_is_listed_and_audited_by_name(installed_example, tmp_path):
    listed = run_cli(["--list"], installed_example)
    assert listed.returncode == 0 and "relu_attention" in listed.stdout and "performer" in listed.stdout
    out = tmp_path / "relu"
    done = run_cli(["scaling", "--circuit", "relu_attention", "--profile", "smoke", "--quiet", "--jobs", "1",
                    "--out", str(out)], installed_example)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["audited_circuit"]["name"] == "relu_attention"
    run = astrostats.load_run(out)
    fits = run.tables["scaling_asymptotic"]
    assert set(fits["circuit"]) == {"relu_attention"}
    deciding = fits[fits["status"] == "ok"]
    # ReLU features do not estimate exp(q.k): the error stalls, the fit prefers a floor whose CI excludes 0,
    # and C1 (converges at the rate theory predicts) is NOT_SUPPORTED for it
    assert (deciding["preferred_model"] == "power_law_floor").any()
    assert (deciding["e_inf_ci_low"] > 0).any()
    assert run.verdicts.loc["C1", "verdict"] == "NOT_SUPPORTED"
    assert run.verdicts.loc["C4", "verdict"] == "NOT_TESTABLE"  # the biology concerns the paper's astrocyte


@pytest.mark.slow
def test_an_unbiased_outside_estimator_converges_as_theory_says(tmp_path, monkeypatch):
    """The positive control: FAVOR+ written outside the package, run by module path through the library API,
    meets C1 where the astrocyte circuit does (the same estimator, other draws)."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    run = astrostats.audit("relu_attention:performer", analyses=["scaling"], profile="smoke", out=tmp_path / "run")
    assert run.audited_circuit == "relu_attention:performer"
    assert run.verdicts.loc["C1", "verdict"] == "SUPPORTED"
    rows = run.tables["scaling"]
    assert {"relu_attention:performer", "astrocyte", "shuffled_kv"} <= set(rows["circuit"])  # nulls of it, beside
    assert run.to_pdf().is_file()
