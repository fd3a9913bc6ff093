"""The documentation: the README stays a short user's guide that keeps the test command CI extracts, shows only
API that exists, and carries no lab-notebook traces; the documentation site builds with ``mkdocs build --strict``
(every page, link, anchor and API reference resolves); the runnable snippet on the q/k scaling convention runs;
CITATION.cff cites the audited paper."""
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 180
COMMIT_HASH = re.compile(r"`[0-9a-f]{7,40}`")  # a commit hash as the notebook cited them, in backquotes
BARE_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")  # hex with letters and digits


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_is_a_short_users_guide_that_names_the_run_and_the_tests():
    text = readme()
    assert len(text.splitlines()) <= MAX_README_LINES, f"README.md has {len(text.splitlines())} lines"
    assert "python -m astrostats.analyze" in text and "pytest" in text
    for verdict in ("SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE", "NOT_TESTABLE", "INSUFFICIENT_DATA"):
        assert verdict in text
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6", "C7"):
        assert f"**{claim}**" in text, f"the findings table has no row for {claim}"


def test_readme_has_no_commit_hashes_sessions_or_issue_numbers():
    text = readme()
    assert not COMMIT_HASH.findall(text)
    assert not BARE_HASH.findall(text)
    assert not re.search(r"\bsessions?\b", text, re.IGNORECASE)
    assert not re.search(r"\bissues?\s*#?\s*\d+", text, re.IGNORECASE)


def test_the_changelog_cites_no_commit_hashes():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert not COMMIT_HASH.findall(text) and not BARE_HASH.findall(text)
    assert re.search(r"^## \[0\.1\.0\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)


def test_ci_extracts_a_single_line_test_command_that_installs_the_test_extra_and_runs_pytest():
    """The extraction is the one `.ci/run` performs, taken from that script, so that the two cannot drift apart."""
    script = (ROOT / ".ci" / "run").read_text()
    extraction = re.search(r"^test_command=\$\((.*)\)$", script, re.MULTILINE).group(1)
    command = subprocess.run(["bash", "-c", extraction], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    assert command and "\n" not in command
    assert 'pip install -c constraints.txt -e ".[test]"' in command
    assert command.endswith("python -m pytest -q")
    assert "<!-- run-command -->" in readme()


def test_every_local_link_of_the_readme_exists():
    for target in re.findall(r"\]\(([^)\s]+)\)", readme()):
        path = target.split("#")[0]
        if path and not re.match(r"[a-z]+://", path):
            assert (ROOT / path).exists(), f"README.md links to {target}, which does not exist"


def test_every_astrostats_call_and_import_the_readme_shows_exists():
    text = readme()
    for module, names in re.findall(r"from (astrostats[\w.]*) import ([\w, ]+)", text):
        imported = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",") if n.strip()):
            assert hasattr(imported, name), f"from {module} import {name}"
    calls = set(re.findall(r"\b(astrostats(?:\.\w+)+)\(", text))
    assert "astrostats.circuits.astrocyte_attention" in calls
    for dotted in calls:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), f"{dotted}( is shown but does not exist"


def test_the_documentation_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(site)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # the reference pages hold the API, not just their headings
    circuits = (site / "reference" / "circuits" / "index.html").read_text()
    assert 'id="astrostats.circuits.astrocyte_attention"' in circuits
    stats = (site / "reference" / "stats" / "index.html").read_text()
    assert 'id="astrostats.stats.scaling.fit_scaling_law"' in stats


def test_the_q_k_scaling_snippet_in_the_docs_runs():
    """The library's q and k carry d^-1/4 each: softmax_attention equals torch's scaled_dot_product_attention on
    q d^1/4 and k d^1/4. The page's own snippet, as a reader would paste it."""
    text = (ROOT / "docs" / "explanation" / "circuit.md").read_text()
    block = text.split("<!-- test_docs: runnable -->")[1].split("```python\n")[1].split("```")[0]
    exec(compile(block, "docs/explanation/circuit.md", "exec"), {})


def test_the_citation_file_cites_astrostats_and_the_audited_paper():
    import yaml  # PyYAML: installed with the docs extra, which the test extra includes (MkDocs needs it)

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors", "version", "license"} <= set(citation)
    assert citation["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()
    (paper,) = citation["references"]
    assert paper["doi"] == "10.1073/pnas.2219150120" and paper["year"] == 2023
    assert [author["family-names"] for author in paper["authors"]] == ["Kozachkov", "Kastanenka", "Krotov"]
