"""The API the README and the docstrings show exists: every `from astrostats... import ...` they contain
imports, every dotted astrostats name they cite resolves, and the README's library example runs."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"from (astrostats[\w.]*) import ([\w, ]+)")
DOTTED = re.compile(r"`(astrostats(?:\.\w+)+)")


def documents() -> dict[str, str]:
    """The README, and the examples (doctest lines) and backquoted names of every module's docstrings."""
    texts = {"README.md": (ROOT / "README.md").read_text()}
    for path in sorted((ROOT / "astrostats").rglob("*.py")):
        lines = [line.strip().removeprefix(">>> ") for line in path.read_text().splitlines()
                 if line.strip().startswith(">>>") or "`astrostats." in line]
        texts[str(path.relative_to(ROOT))] = "\n".join(lines)
    return texts


def resolve(dotted: str):
    """The module, or the attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            value = getattr(value, name)
        return value
    raise ModuleNotFoundError(dotted)


def test_every_shown_import_works():
    shown = {(module, name.strip()) for text in documents().values() for module, names in IMPORT.findall(text)
             for name in names.replace("\n", " ").split(",") if name.strip()}
    assert len(shown) > 20
    for module, name in sorted(shown):
        assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"


def test_every_cited_dotted_name_resolves():
    cited = {name.rstrip(".") for text in documents().values() for name in DOTTED.findall(text)}
    cited = {name for name in cited if not name.endswith(("log", "toml", "_"))}  # files, and placeholders (cN_)
    assert "astrostats.circuits.astrocyte_attention" in cited
    for name in sorted(cited):
        resolve(name)


@pytest.mark.parametrize("package", ["astrostats.circuits", "astrostats.stats", "astrostats.targets",
                                     "astrostats.controls", "astrostats.studies", "astrostats.report",
                                     "astrostats.claims", "astrostats.report.figures"])
def test_every_package_declares_its_public_names(package):
    module = importlib.import_module(package)
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


@pytest.mark.slow
def test_the_readme_library_example_runs():
    text = (ROOT / "README.md").read_text()
    block = text.split("Used as a library")[1].split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # the README's own example, as a user would paste it
    assert float(scope["error"]) < 0.1 and len(scope["first_layer"]) == 2


def test_stats_loads_each_submodule_on_first_use_and_names_exactly_its_public_objects():
    import subprocess
    import sys

    stats = importlib.import_module("astrostats.stats")
    assert set(stats.__all__) == set(stats._MODULE_OF) and set(stats.__all__) <= set(dir(stats))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        stats.nothing  # noqa: B018
    # a fresh interpreter: the correction alone does not load the regression API (what the audit pays for)
    code = ("import sys; from astrostats.stats import adjust_p_values; "
            "print('statsmodels.api' in sys.modules, 'astrostats.stats.calibration' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["False", "False"]


def test_audit_takes_the_command_lines_overrides_and_csv(tmp_path):
    """overrides= is --set (recorded in the manifest as the command line records it), csv= is --csv."""
    import astrostats

    run = astrostats.audit(analyses=["scaling"], profile="smoke", out=tmp_path / "run", csv=True,
                           overrides={"m": [8, 32, 128], "scaling.n_seeds": 2, "feature_maps": ("positive",)})
    record, = run.manifest["analyses"]
    assert record["overrides"] == {"m": [8, 32, 128], "n_seeds": 2, "feature_maps": ["positive"]}
    assert run.manifest["overrides"] == ["m=[8, 32, 128]", "scaling.n_seeds=2", 'feature_maps=["positive"]']
    assert run.manifest["table_formats"] == ["parquet", "csv"]
    written = {path.name for path in (tmp_path / "run" / "tables").iterdir()}
    assert written == {f"{name}.{suffix}" for name in run.tables for suffix in ("parquet", "csv")}
    measured = run.tables["scaling"]  # the run used the values: three m, two seeds, no trigonometric features
    assert set(measured["m"].dropna()) == {8, 32, 128} and "trigonometric" not in set(measured["feature_map"])
    assert measured["seed"].nunique() == 2


@pytest.mark.parametrize("overrides, message", [
    ({"no_such_key": 1}, "no analysis in this run has a parameter 'no_such_key'"),
    ({"m": {"a": 1}}, "overrides: 'm' expected a number, boolean, string or list of them, got dict"),
    ([("m", 8)], "overrides: expected a dict"),
])
def test_audit_refuses_a_bad_override_before_writing_anything(overrides, message, tmp_path):
    import astrostats
    from astrostats.validation import InputError

    with pytest.raises(InputError, match=re.escape(message)):
        astrostats.audit(analyses=["scaling"], profile="smoke", out=tmp_path / "run", overrides=overrides)
    assert not (tmp_path / "run").exists()


def test_the_overrides_toml_text_reads_back_as_the_value():
    import tomllib

    from astrostats.api import toml_value

    for value in (3, -2.5e-07, True, "peaked", 'a "quoted" \\ name', [8, 16], ["x", 1.5], float("inf")):
        assert tomllib.loads(f"v = {toml_value('k', value)}")["v"] == (list(value) if isinstance(value, tuple)
                                                                      else value)
