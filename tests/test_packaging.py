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
