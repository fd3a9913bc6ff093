"""The front door: python -m astrostats.analyze (issues 2 and 4): outputs, bad input, reproducibility, resume."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astrostats import analyze
from astrostats.spec import PROFILES, available_specs, load_spec
from astrostats.studies import get_study
from astrostats.studies import scaling

pytestmark = pytest.mark.slow  # whole runs of the command line

SMOKE = ["--profile", "smoke", "--quiet"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "reports"
    assert analyze.main(["scaling", "--out", str(out), *SMOKE]) == 0
    return out


def test_default_outputs_are_complete(smoke_run):
    for name in ("report.pdf", "audit.md", "audit.json", "manifest.json", "astrostats.log",
                 "tables/scaling.parquet", "tables/scaling_fits.parquet",
                 "tables/scaling_theory.parquet", "figures/scaling.svg", "figures/scaling_nulls.svg"):
        assert (smoke_run / name).is_file(), name
    assert not list((smoke_run / "tables").glob("*.csv"))  # CSV only on request (--csv)
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    record = manifest["analyses"][0]
    assert record["status"] == "ok" and record["profile"] == "smoke"
    assert len(record["spec_sha256"]) == 64 and len(record["file_sha256"]) == 64
    assert manifest["versions"]["torch"].startswith("2.13") and "commit" in manifest["git"]
    assert not list(smoke_run.rglob("*.tmp"))  # nothing half-written left behind


def test_audit_json_has_every_claim_with_rule_and_evidence(smoke_run):
    audit = json.loads((smoke_run / "audit.json").read_text())
    assert [claim["id"] for claim in audit["claims"]] == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    for claim in audit["claims"]:
        assert set(claim) >= {"id", "statement", "verdict", "rule", "evidence"}
        if claim["verdict"] not in ("INSUFFICIENT_DATA", "NOT_TESTABLE"):
            assert claim["evidence"], claim["id"]
            for item in claim["evidence"]:
                table = pd.read_parquet(smoke_run / "tables" / f"{item['table']}.parquet")
                assert not table.query(item["rows"]).empty, (claim["id"], item["rows"])


def test_same_spec_and_seed_give_identical_tables(smoke_run, tmp_path):
    again = tmp_path / "again"
    assert analyze.main(["scaling", "--out", str(again), *SMOKE]) == 0
    for table in ("scaling", "scaling_fits", "scaling_theory"):
        assert (again / "tables" / f"{table}.parquet").read_bytes() == \
            (smoke_run / "tables" / f"{table}.parquet").read_bytes()


def test_analyses_run_side_by_side_give_the_same_tables(smoke_run, tmp_path):
    """--jobs 2: each analysis in its own process on one torch thread (on two cores); the tables are the
    in-process run's, byte for byte, and the records keep the order asked for."""
    side_by_side = tmp_path / "jobs"
    assert analyze.main(["circuits", "scaling", "--out", str(side_by_side), "--jobs", "2", *SMOKE]) == 0
    manifest = json.loads((side_by_side / "manifest.json").read_text())
    assert [(r["name"], r["status"]) for r in manifest["analyses"]] == [("circuits", "ok"), ("scaling", "ok")]
    for table in ("scaling", "scaling_fits", "scaling_theory"):
        assert (side_by_side / "tables" / f"{table}.parquet").read_bytes() == \
            (smoke_run / "tables" / f"{table}.parquet").read_bytes()
    log = (side_by_side / "astrostats.log").read_text()
    assert "2 at a time in separate processes" in log and "circuits: done" in log and "scaling: done" in log


def test_a_different_seed_gives_different_measurements(smoke_run, tmp_path):
    other = tmp_path / "other"
    assert analyze.main(["scaling", "--out", str(other), "--seed", "7", *SMOKE]) == 0
    assert (other / "tables/scaling.parquet").read_bytes() != (smoke_run / "tables/scaling.parquet").read_bytes()


def test_audit_only_rebuilds_from_stored_tables(smoke_run, tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "run", lambda *args: pytest.fail("--audit-only must not recompute"))
    rebuilt = tmp_path / "rebuilt"
    assert analyze.main(["--audit-only", "--from", str(smoke_run), "--out", str(rebuilt), "--quiet"]) == 0
    original = json.loads((smoke_run / "audit.json").read_text())
    assert json.loads((rebuilt / "audit.json").read_text())["claims"] == original["claims"]
    assert (rebuilt / "report.pdf").stat().st_size > 0


def test_audit_only_copies_figures_whose_key_matches_and_redraws_on_request(smoke_run, tmp_path, monkeypatch):
    stored = json.loads((smoke_run / "manifest.json").read_text())
    copied = tmp_path / "copied"
    assert analyze.main(["--audit-only", "--from", str(smoke_run), "--out", str(copied), "--quiet"]) == 0
    manifest = json.loads((copied / "manifest.json").read_text())
    assert manifest["figure_keys"] == stored["figure_keys"] and manifest["figures"] == stored["figures"]
    assert "figures drawn: none;" in (copied / "astrostats.log").read_text()
    monkeypatch.setenv("ASTROSTATS_REDRAW_FIGURES", "1")
    redrawn = tmp_path / "redrawn"
    assert analyze.main(["--audit-only", "--from", str(smoke_run), "--out", str(redrawn), "--quiet"]) == 0
    assert "figures drawn: none;" not in (redrawn / "astrostats.log").read_text()
    assert set(json.loads((redrawn / "manifest.json").read_text())["figures"]) == set(stored["figures"])
    monkeypatch.setenv("ASTROSTATS_REDRAW_FIGURES", "yes")
    refused = tmp_path / "refused"
    assert analyze.main(["--audit-only", "--from", str(smoke_run), "--out", str(refused), "--quiet"]) == 2
    assert not refused.exists()


def test_resume_recomputes_nothing_finished(smoke_run, tmp_path, monkeypatch):
    resumed = tmp_path / "resumed"
    shutil.copytree(smoke_run, resumed)
    monkeypatch.setattr(scaling, "run", lambda *args: pytest.fail("a finished analysis was recomputed"))
    assert analyze.main(["scaling", "--out", str(resumed), "--resume", *SMOKE]) == 0
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["analyses"][0]["resumed"] is True


def test_a_failed_analysis_is_reported_and_the_others_complete(tmp_path, monkeypatch):
    spec = tmp_path / "broken.toml"
    spec.write_text((Path(analyze.__file__).parents[1] / "analyses" / "scaling.toml").read_text()
                    .replace('name = "scaling"', 'name = "broken"'))
    real_run = scaling.run

    def run_or_fail(spec, context):
        if spec.name == "broken":
            raise RuntimeError("simulated crash")
        return real_run(spec, context)

    monkeypatch.setattr(scaling, "run", run_or_fail)
    out = tmp_path / "out"  # in process (--jobs 1): a spawned analysis process would not see the monkeypatch
    assert analyze.main(["scaling", str(spec), "--out", str(out), "--jobs", "1", *SMOKE]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["name"]: r["status"] for r in manifest["analyses"]} == {"scaling": "ok", "broken": "failed"}
    assert "broken: failed: RuntimeError: simulated crash" in (out / "audit.md").read_text()
    assert (out / "tables" / "scaling.parquet").exists()


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "astrostats.analyze", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_analysis_resolves_and_binds_at_every_profile(profile):
    for path in available_specs().values():
        spec = load_spec(path, profile)
        spec.bind(get_study(spec.kind).Parameters)  # raises InputError naming a bad or unknown parameter
    # the CLI's own pre-flight over the default (every analysis), as `python -m astrostats.analyze` runs it
    args = analyze.parse_arguments(["--profile", profile])
    assert sorted(spec.name for spec in analyze.resolve_specs(args)) == sorted(available_specs())


def test_list_names_every_analysis():
    result = _cli("--list")
    assert result.returncode == 0 and "scaling" in result.stdout


@pytest.mark.parametrize("spec_text, needle", [
    ("name = \"x\"\nkind = \"scaling\"\n[parameters\n", "malformed TOML"),
    ("name = \"x\"\nkind = \"scaling\"\n[parameters]\nm_values = [8, 16]\n", "m_values"),
    ("name = \"x\"\nkind = \"scaling\"\n[parameters]\nm = [0, 16]\n", "m:"),
    ("name = \"x\"\nkind = \"scaling\"\n[parameters]\nlogit_scales = [\"sharp\"]\n", "sharp"),
    ("name = \"x\"\nkind = \"telepathy\"\n", "telepathy"),
    ("name = \"x\"\nkind = \"scaling\"\ncolour = \"blue\"\n", "colour"),
])
def test_bad_specs_exit_2_and_write_nothing(tmp_path, spec_text, needle):
    spec = tmp_path / "bad.toml"
    spec.write_text(spec_text)
    out = tmp_path / "out"
    code = analyze.main([str(spec), "--out", str(out), *SMOKE])
    assert code == 2 and not out.exists()


def test_unknown_analysis_exits_2_naming_it(tmp_path):
    out = tmp_path / "out"
    result = _cli("no_such_analysis", "--out", str(out))
    assert result.returncode == 2
    assert "no_such_analysis" in result.stderr and "analysis" in result.stderr
    assert not out.exists()


def test_unwritable_output_folder_exits_2(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = _cli("scaling", "--out", str(blocker / "reports"), *SMOKE)
    assert result.returncode == 2 and "--out" in result.stderr


def test_report_pdf_pages_and_text(smoke_run, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.fail("pdftoppm (Debian poppler-utils) is required: .ci/run installs it")
    info = subprocess.run(["pdfinfo", str(smoke_run / "report.pdf")], capture_output=True, text=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages >= 4  # the answers, the claims' sections, methods, appendix (tests/test_report.py checks layout)
    text = subprocess.run(["pdftotext", "-l", "1", str(smoke_run / "report.pdf"), "-"], capture_output=True,
                          text=True).stdout
    assert "Every claim, its verdict" in text and all(f"C{i}" in text for i in range(1, 7))
    subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(smoke_run / "report.pdf"),
                    str(tmp_path / "page")], check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"), dtype=float)
    assert (pixels < 128).mean() > 0.005  # dark ink on the first page: not blank


def test_the_longest_analyses_are_submitted_first():
    from types import SimpleNamespace

    from astrostats.parallel import submission_order

    specs = [("calibration", "calibration"), ("fig3_vision", "real_heads"), ("my_heads", "real_heads"),
             ("scaling", "scaling"), ("mine", "new_kind"), ("fig3_language", "real_heads"),
             ("circuits", "circuits"), ("overfitting", "overfitting")]
    order = submission_order([SimpleNamespace(name=name, kind=kind) for name, kind in specs])
    assert [specs[i][0] for i in order] == ["my_heads", "fig3_language", "overfitting", "scaling", "circuits",
                                            "calibration", "fig3_vision", "mine"]
