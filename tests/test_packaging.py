"""astrostats installs like a library: every package is in the wheel, the specs ship inside it, and an installed
wheel runs outside the source tree."""
import os
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_lists_every_package_of_the_source_tree():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"astrostats"} | {f"astrostats.{name}" for name in find_packages(ROOT / "astrostats")}
    assert listed == found | {"astrostats.analyses"}


@pytest.mark.slow
def test_an_installed_wheel_runs_outside_the_checkout(tmp_path):
    """Build a wheel, install it (without dependencies) into a fresh virtual environment that borrows this
    environment's third-party packages, and run the command line from a folder far from the checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, cwd=tmp_path)
    wheel, = wheels.glob("astrostats-*.whl")
    environment = tmp_path / "env"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # third-party packages from this environment (a plain path: its editable astrostats finder is not run)
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import astrostats, astrostats.spec as s; print(astrostats.__file__); "
                            "print(s.ANALYSES_DIR)"], check=True, capture_output=True, text=True, cwd=work, env=env)
    package_file, analyses_dir = where.stdout.split()
    assert Path(package_file).is_relative_to(environment) and Path(analyses_dir).is_relative_to(environment)
    listing = subprocess.run([str(python), "-m", "astrostats.analyze", "--list"], capture_output=True, text=True,
                             cwd=work, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "scaling" in listing.stdout and "overfitting" in listing.stdout
    smoke = subprocess.run([str(python), "-m", "astrostats.analyze", "scaling", "--profile", "smoke", "--quiet",
                            "--out", str(work / "run")], capture_output=True, text=True, cwd=work, env=env)
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert (work / "run" / "tables" / "scaling_fits.parquet").is_file() and (work / "run" / "audit.json").is_file()


# every optional package (astrostats.extras.EXTRAS), hidden from a fresh interpreter by a meta_path finder, as if
# only the core were installed
HIDE_OPTIONAL = """
import importlib.abc, sys
from astrostats.extras import EXTRA_OF
HIDDEN = set(EXTRA_OF)
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
assert not any(name.split(".")[0] in HIDDEN for name in sys.modules), "loaded before hiding"
"""


def run_core_only(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_OPTIONAL + code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)


def test_the_extras_name_what_pyproject_installs():
    from astrostats.extras import EXTRAS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    core = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for extra, (_, modules) in EXTRAS.items():
        listed = " ".join(extras[extra]).replace("-", "_").lower()
        assert all(module in listed for module in modules), (extra, modules, listed)
        assert not any(module in core.replace("-", "_") for module in modules), (module, core)
    assert extras["all"] == ["astrostats[models,report,dask]"]
    assert any("astrostats[all" in item for item in extras["test"])  # the tests get every feature


@pytest.mark.slow
def test_the_core_imports_and_audits_a_synthetic_spec_without_the_optional_packages(tmp_path):
    """The core install: astrostats, the circuits, the stats and an audit of a synthetic analysis (tables,
    audit.md, audit.json; no figures, no report.pdf) with every optional package hidden."""
    code = """
import astrostats, torch
from astrostats.circuits import astrocyte_attention, softmax_attention
from astrostats.stats import fit_scaling_law, paired_permutation_test
q = k = v = torch.randn(1, 8, 4)
assert astrocyte_attention(q, k, v, m=64, seed=0).shape == (1, 8, 4)
run = astrostats.audit(analyses=["scaling"], profile="smoke", out="run")
assert len(run.verdicts) == 7 and run.tables
from pathlib import Path
assert Path("run/audit.md").is_file() and Path("run/audit.json").is_file()
assert not Path("run/report.pdf").exists() and not list(Path("run").glob("figures/*.svg"))
assert not any(name.split(".")[0] in HIDDEN for name in sys.modules)
print("core ok")
"""
    result = run_core_only(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "core ok" in result.stdout
    log = (tmp_path / "run" / "astrostats.log").read_text()  # says why there is no report.pdf
    assert log.count('no figures or report.pdf') == 1 and 'pip install "astrostats[report]"' in log


@pytest.mark.parametrize("code, extra", [
    ("import astrostats.report.figures", "report"),
    ("from astrostats.targets import load; load('minilm', n_sequences=1)", "models"),
    ("from astrostats.execution import make_executor; make_executor(workers=1)", "dask"),
])
def test_an_optional_feature_without_its_extra_names_the_extra(code, extra, tmp_path):
    result = run_core_only(code, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("astrostats.extras.MissingExtra:") and f'pip install "astrostats[{extra}]"' in last


@pytest.mark.slow
def test_the_command_line_says_which_extra_a_feature_needs(tmp_path):
    """A run with --workers and no dask stops before writing anything (exit 2, one line naming the extra); an
    analysis of real models without transformers is not run, its line naming the extra, the others complete."""
    result = run_core_only("from astrostats.analyze import main; sys.exit(main(['scaling', '--profile', 'smoke', "
                           "'--workers', '1', '--out', 'run']))", tmp_path)
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    assert result.stderr.strip() == ('astrostats: error: --workers and --scheduler (tasks on Dask) need the optional '
                                     "package 'dask', which is not installed: pip install \"astrostats[dask]\"")
    result = run_core_only("from astrostats.analyze import main; sys.exit(main(['scaling', 'fig3_language', "
                           "'--profile', 'smoke', '--jobs', '1', '--out', 'models']))", tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("fig3_language: not run: real Transformers (MiniLM, SmolLM2, the ViT) and their inputs need the "
            "optional package 'transformers', which is not installed: pip install \"astrostats[models]\"") in result.stderr
    assert "scaling: done in " in result.stderr and (tmp_path / "models" / "tables" / "scaling.parquet").is_file()
