"""A command line that speaks to the person using it: the ``astrostats`` console script and its subcommands,
--version and --help, ``--set key=value``, a warning when a profile replaces a value of the user's spec, "did you
mean" on unknown names, the verdict summary at the end of a run, routine lines kept out of the console, and tables
as parquet by default with CSV on request (docs/reference/cli.md)."""
import json
import re
import logging
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import astrostats
from astrostats import analysis_run, analyze, cli, outputs, provenance, spec as spec_module
from astrostats.report import pdf
from astrostats.spec import load_spec, parse_override
from astrostats.studies import scaling
from astrostats.validation import InputError
from tiny_spec import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("astrostats")
SMOKE = ["--profile", "smoke", "--quiet"]


def tiny(folder: Path, name: str = "tiny", extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(tiny_spec(name) + extra)
    return path


def _stub_pdf(data, root, output):  # the PDF has its own tests (test_report); here only its presence matters
    Path(output).write_bytes(b"%PDF-1.4 stub\n")


@pytest.fixture(scope="module", autouse=True)
def fixed_code_version():
    """The source's hash, taken once for this module: a resume here must not recompute because someone edits the
    source tree while the tests run (what a code change does to a resume is tested in test_safety)."""
    code = provenance.code_version()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(provenance, "code_version", lambda *args, **kwargs: code)
        yield code


@pytest.fixture
def stub_pdf(monkeypatch):
    monkeypatch.setattr(pdf, "compile_report", _stub_pdf)


def _tables(run: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(run / "tables" / f"{name}.parquet")


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A tiny run as it is by default: parquet only."""
    folder = tmp_path_factory.mktemp("plain")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf, "compile_report", _stub_pdf)
        assert analyze.main([str(tiny(folder)), "--out", str(folder / "run"), *SMOKE]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """The same run with --csv: parquet and CSV, both recorded (the layout of every run before CSV was optional)."""
    folder = tmp_path_factory.mktemp("csv")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf, "compile_report", _stub_pdf)
        assert analyze.main([str(tiny(folder)), "--out", str(folder / "run"), "--csv", *SMOKE]) == 0
    return folder / "run"


# ------------------------------------------------------------------------------ the console script, --version, --help
def test_the_console_script_is_declared_and_installed():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"astrostats": "astrostats.cli:main"}
    assert SCRIPT.is_file(), f"{SCRIPT} missing: reinstall with pip install -e ."
    result = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"astrostats {astrostats.__version__}"


def test_version_on_the_module_entry_point(capsys):
    with pytest.raises(SystemExit) as exited:
        analyze.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"astrostats {astrostats.__version__}"
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"astrostats {astrostats.__version__}"


@pytest.mark.parametrize("entry, argv, examples, options", [
    (analyze.main, ["--help"], "python -m astrostats.analyze scaling --set m=[8,16,32]", True),
    (cli.main, ["--help"], "astrostats report --from", False),
    (cli.main, ["run", "--help"], "astrostats run scaling --set m=[8,16,32]", True),
    (cli.main, ["report", "--help"], "astrostats report --from reports --out rebuilt", False),
])
def test_help_describes_the_tool_and_shows_examples(capsys, entry, argv, examples, options):
    with pytest.raises(SystemExit) as exited:
        entry(argv)
    text = capsys.readouterr().out
    assert exited.value.code == 0
    assert "examples:" in text and examples in text
    if argv != ["report", "--help"]:
        assert "neuron-astrocyte circuit computes Transformer attention" in text
    assert ("--set KEY=VALUE" in text and "--csv" in text) is options


def test_bare_astrostats_prints_its_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "{run,list,report}" in capsys.readouterr().err


def test_astrostats_list_is_the_list_flag(capsys):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    assert analyze.main(["--list"]) == 0
    assert capsys.readouterr().out == listed and "scaling" in listed and "circuits (--circuit):" in listed


def test_astrostats_run_is_the_module_command_and_records_how_it_was_called(tmp_path, stub_pdf, plain_run):
    out = tmp_path / "run"
    assert cli.main(["run", str(tiny(tmp_path)), "--out", str(out), *SMOKE]) == 0
    manifest = _manifest(out)
    assert manifest["created_by"].startswith("astrostats run ") and str(out) in manifest["created_by"]
    assert [record["spec_sha256"] for record in manifest["analyses"]] == \
        [record["spec_sha256"] for record in _manifest(plain_run)["analyses"]]
    pd.testing.assert_frame_equal(_tables(out, "tiny"), _tables(plain_run, "tiny"))


def test_astrostats_report_is_audit_only(plain_run, tmp_path, monkeypatch):
    monkeypatch.setattr(scaling, "run", lambda *args: pytest.fail("astrostats report must not recompute"))
    rebuilt = tmp_path / "rebuilt"
    assert cli.main(["report", "--from", str(plain_run), "--out", str(rebuilt), "--quiet"]) == 0
    assert json.loads((rebuilt / "audit.json").read_text())["claims"] == \
        json.loads((plain_run / "audit.json").read_text())["claims"]
    in_place = tmp_path / "in_place"  # without --out: the --from folder itself is rebuilt
    shutil.copytree(plain_run, in_place)
    (in_place / "audit.md").unlink()
    assert cli.main(["report", "--from", str(in_place), "--quiet"]) == 0
    assert (in_place / "audit.md").is_file()


def test_astrostats_report_needs_from(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", "--out", "x"])
    assert exited.value.code == 2 and "--from" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- --set key=value
@pytest.mark.parametrize("text, expected", [
    ("m=[8,16,32]", (None, "m", [8, 16, 32])), ("n_seeds=4", (None, "n_seeds", 4)),
    ("scaling.n_resamples=500", ("scaling", "n_resamples", 500)), ("causal=true", (None, "causal", True)),
    ("learning_rate=0.5", (None, "learning_rate", 0.5)), ('logit_scales=["peaked"]', (None, "logit_scales", ["peaked"])),
    ("feature_maps=[ 'positive' ]", (None, "feature_maps", ["positive"])), ("model=minilm", (None, "model", "minilm")),
])
def test_set_values_are_read_as_toml(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["=3", "m", "m=", "m=[8,16", "a.b.c=1", "m=8 16"])
def test_a_malformed_set_is_an_input_error(text):
    with pytest.raises(InputError, match="--set"):
        parse_override(text)


def test_set_wins_over_the_profile_and_changes_the_spec_hash():
    plain = analyze.resolve_specs(analyze.parse_arguments(["scaling", "--profile", "smoke"]))[0]
    args = analyze.parse_arguments(["scaling", "--profile", "smoke", "--set", "m=[8,16,64]", "--set", "n_seeds=3"])
    changed = analyze.resolve_specs(args)[0]
    assert plain.parameters["m"] == [8, 32, 128, 512]  # the smoke profile's own m
    assert changed.parameters["m"] == [8, 16, 64] and changed.parameters["n_seeds"] == 3
    assert changed.overrides == {"m": [8, 16, 64], "n_seeds": 3} and changed.sha256 != plain.sha256
    assert changed.bind(scaling.Parameters).m == (8, 16, 64)
    assert args.override_lines == ["--set m=[8, 16, 64]: applies to scaling", "--set n_seeds=3: applies to scaling"]


def test_set_reaches_the_tables_of_every_analysis_that_has_the_key(tmp_path, stub_pdf, plain_run):
    """Two analyses: the unscoped --set reaches both, ANALYSIS.KEY only its own, and the scoped one wins over the
    unscoped whatever their order; the tables show the values that ran, the manifest what was set."""
    out = tmp_path / "run"
    argv = [str(tiny(tmp_path, "first")), str(tiny(tmp_path, "second")), "--set", "second.m=[8,32,64]",
            "--set", "m=[8,16,64]", "--set", "second.n_seeds=3", "--out", str(out), "--jobs", "1", *SMOKE]
    assert analyze.main(argv) == 0
    first, second = _tables(out, "first"), _tables(out, "second")
    assert sorted(first["m"].dropna().unique()) == [8, 16, 64] and first["seed"].dropna().nunique() == 2
    assert sorted(second["m"].dropna().unique()) == [8, 32, 64] and second["seed"].dropna().nunique() == 3
    manifest = _manifest(out)
    records = {record["name"]: record for record in manifest["analyses"]}
    assert records["first"]["overrides"] == {"m": [8, 16, 64]}
    assert records["second"]["overrides"] == {"m": [8, 32, 64], "n_seeds": 3}
    assert records["second"]["parameters"]["m"] == [8, 32, 64]
    assert manifest["overrides"] == ["second.m=[8,32,64]", "m=[8,16,64]", "second.n_seeds=3"]
    assert records["first"]["spec_sha256"] != _manifest(plain_run)["analyses"][0]["spec_sha256"]
    assert "--set m=[8, 16, 64]: applies to first, second" in (out / "astrostats.log").read_text()


def test_a_resume_with_set_does_not_reuse_a_run_made_without_it(tmp_path, stub_pdf, plain_run, monkeypatch):
    """An override is part of what ran: a resume with --set does not reuse a run made without it."""
    resumed = tmp_path / "resumed"
    shutil.copytree(plain_run, resumed)
    calls = []
    real = scaling.run
    monkeypatch.setattr(scaling, "run", lambda *args: calls.append(1) or real(*args))
    assert analyze.main([str(tiny(tmp_path)), "--out", str(resumed), "--resume", "--set", "n_tokens=12", *SMOKE]) == 0
    assert calls == [1] and set(_tables(resumed, "tiny")["n_tokens"]) == {12}


@pytest.mark.parametrize("setting, needles", [
    ("mm=[8,16]", ["--set mm", "did you mean 'm'", "valid keys: tiny: m, n_seeds"]),
    ("n_seed=3", ["--set n_seed", "did you mean 'n_seeds'"]),
    ("tiny.n_sed=3", ["--set tiny.n_sed", "analysis tiny has no parameter 'n_sed'", "did you mean 'n_seeds'"]),
    ("tny.m=[8,16,32]", ["--set tny.m", "no analysis named 'tny'", "did you mean 'tiny'"]),
    ("m=[8,16", ["--set m", "not a TOML value"]),
    ("n_seeds=\"four\"", ["tiny with --set n_seeds", "n_seeds"]),
    ("m=[0,16,32]", ["tiny with --set m", "m:"]),
    ("audited_circuit=performer", ["--set audited_circuit", "--circuit"]),
])
def test_an_unknown_or_bad_set_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, setting, needles):
    out = tmp_path / "out"
    assert analyze.main([str(tiny(tmp_path)), "--set", setting, "--out", str(out), *SMOKE]) == 2
    error = capsys.readouterr().err
    assert error.startswith("astrostats: error: ") and error.count("\n") == 1
    for needle in needles:
        assert needle in error
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--set", "m=[8,16,32]"], ["--csv"]])
def test_set_and_csv_are_refused_with_audit_only(plain_run, tmp_path, capsys, flag):
    out = tmp_path / "out"
    assert analyze.main(["--audit-only", "--from", str(plain_run), "--out", str(out), *flag, "--quiet"]) == 2
    assert flag[0] in capsys.readouterr().err and not out.exists()


# ------------------------------------------------------------------- a profile replacing a value of the user's spec
def _copy_of_scaling(folder: Path, old: str, new: str) -> Path:
    text = (spec_module.ANALYSES_DIR / "scaling.toml").read_text()
    assert old in text
    path = folder / "my_spec.toml"
    path.write_text(text.replace(old, new, 1))
    return path


SHIPPED_M = "m = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]"


def test_a_profile_replacing_a_value_the_user_set_is_warned_about_naming_the_key(tmp_path, caplog):
    """A copy of scaling.toml with only m edited in [parameters]: the quick profile replaces m (warned, naming it
    and what to do) and n_seeds, n_sequences, n_resamples (not warned: the shipped values, copied)."""
    path = _copy_of_scaling(tmp_path, SHIPPED_M, "m = [8, 16, 32, 64]")
    with caplog.at_level(logging.WARNING, logger="astrostats.spec"):
        spec = load_spec(path, "quick")
    assert spec.parameters["m"] == [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]  # the profile's, as before
    messages = [record.getMessage() for record in caplog.records if record.name == "astrostats.spec"]
    assert len(messages) == 1, messages
    assert messages[0].startswith("my_spec.toml: [profiles.quick] overrides m set in [parameters]")
    assert "--profile exhaustive or --set m=..." in messages[0]
    assert all(record.levelno == logging.WARNING for record in caplog.records if record.name == "astrostats.spec")


def test_no_warning_for_shipped_specs_equal_values_replaced_keys_or_the_exhaustive_profile(tmp_path, caplog):
    path = _copy_of_scaling(tmp_path, SHIPPED_M, "m = [8, 16, 32, 64]")
    with caplog.at_level(logging.WARNING, logger="astrostats.spec"):
        for shipped in spec_module.available_specs().values():
            for profile in spec_module.PROFILES:
                load_spec(shipped, profile)
        load_spec(path, "exhaustive")  # no [profiles.exhaustive]: [parameters] runs as written
        load_spec(path, "quick", replaced={"m"})  # --set m=... replaces it anyway
        load_spec(path, "quick", replaced={"scaling.m"})
        load_spec(tiny(tmp_path, extra="\n[profiles.smoke]\nm = [8, 16, 32]\n"), "smoke")  # the same value
    assert not [record for record in caplog.records if record.name == "astrostats.spec"]


def test_the_warning_reaches_the_console_and_the_log_and_the_profile_still_runs(tmp_path, capsys, stub_pdf):
    path = tiny(tmp_path, extra="\n[profiles.smoke]\nm = [8, 16, 64]\n")
    path.write_text(path.read_text().replace("m = [8, 16, 32]\n", "m = [8, 16, 32, 128]\n", 1))
    out = tmp_path / "run"
    assert analyze.main([str(path), "--out", str(out), "--profile", "smoke"]) == 0
    error = capsys.readouterr().err
    line = "tiny.toml: [profiles.smoke] overrides m set in [parameters]"
    assert line in error and "--set m=..." in error
    assert line in (out / "astrostats.log").read_text()
    assert sorted(_tables(out, "tiny")["m"].dropna().unique()) == [8, 16, 64]
    with_set = tmp_path / "with_set"  # --set m=... : the user's value runs, and nothing is warned
    assert analyze.main([str(path), "--out", str(with_set), "--profile", "smoke", "--set", "m=[8,16,32,128]"]) == 0
    assert line not in capsys.readouterr().err
    assert sorted(_tables(with_set, "tiny")["m"].dropna().unique()) == [8, 16, 32, 128]


# ------------------------------------------------------------------------------------------------ "did you mean"
@pytest.mark.parametrize("argv, needle", [
    (["scalng"], "did you mean 'scaling'"),
    (["known_answer"], "did you mean 'known_answers'"),
    (["scaling", "--profile", "quik"], "did you mean 'quick'"),
    (["scaling", "--profile", "ful"], "did you mean 'full'"),
])
def test_unknown_names_suggest_the_closest(tmp_path, capsys, argv, needle):
    for entry in (analyze.main, lambda a: cli.main(["run", *a])):
        assert entry([*argv, "--out", str(tmp_path / "out")]) == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_load_spec_suggests_the_closest_profile():
    with pytest.raises(InputError, match="did you mean 'smoke'"):
        load_spec(spec_module.ANALYSES_DIR / "scaling.toml", "smok")


@pytest.mark.parametrize("argv, needle", [
    (["rnu"], "did you mean 'run'"), (["scaling"], "did you mean 'astrostats run scaling'"),
    (["scalng"], "did you mean 'astrostats run scaling'"), (["reprot"], "did you mean 'report'"),
])
def test_an_unknown_command_suggests_one(capsys, argv, needle):
    assert cli.main(argv) == 2
    assert needle in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the end of a run, the console
def test_a_run_ends_with_the_verdicts_time_and_report_path_and_keeps_routine_lines_in_the_log(tmp_path, capsys,
                                                                                              stub_pdf):
    out = tmp_path / "run"
    assert analyze.main([str(tiny(tmp_path)), "--out", str(out), "--profile", "smoke"]) == 0
    error = capsys.readouterr().err
    audit = json.loads((out / "audit.json").read_text())
    tail = error[error.index("verdicts (audit.md"):].splitlines()
    assert len(tail) == 1 + len(audit["claims"]) + 1
    for line, claim in zip(tail[1:], audit["claims"]):
        assert line.split()[:2] == [claim["id"], claim["verdict"]]
        reason = " ".join(claim["reason"].split())
        shown = line.split(claim["verdict"], 1)[1].strip()
        assert reason.startswith(shown.removesuffix("...").rstrip())
    assert tail[-1].startswith("finished in ") and tail[-1].endswith(f"report: {out / 'report.pdf'}")
    log = (out / "astrostats.log").read_text()
    assert "reused from cache" in log and "reused from cache" not in error  # routine: the log file only
    assert "tiny: done in" in log and "tiny: done in" in error  # what is not routine is shown as before


def test_a_quiet_run_prints_nothing(tmp_path, capsys, stub_pdf):
    assert analyze.main([str(tiny(tmp_path)), "--out", str(tmp_path / "run"), *SMOKE]) == 0
    assert capsys.readouterr().err == ""


def test_the_summary_clips_each_reason_to_the_width():
    from types import SimpleNamespace

    verdicts = [SimpleNamespace(claim_id="C1", verdict="SUPPORTED", reason="word " * 60, headline=""),
                SimpleNamespace(claim_id="C2", verdict="INSUFFICIENT_DATA", reason="short\nreason", headline="")]
    lines = analyze.summary_lines(verdicts, Path("runs/x"), 125.0, width=72)
    assert all(len(line) <= 72 for line in lines)
    assert lines[1].endswith("...") and lines[2].endswith("short reason")
    assert lines[-1] == "finished in 2 min 5 s; report: runs/x/report.pdf"
    core = analyze.summary_lines(verdicts, Path("runs/x"), 5.0, width=72, report=False)[-1]  # no [report] extra
    assert core == 'finished in 5.0 s; audit: runs/x/audit.md (no report.pdf: pip install "astrostats[report]")'


@pytest.mark.parametrize("extra", [{"routine": True}, {}])
def test_routine_records_reach_the_log_file_but_not_the_console(tmp_path, capsys, extra):
    analysis_run.setup_logging(tmp_path, quiet=False)
    try:
        logging.getLogger("astrostats.controls.training").warning("fit of X: not_converged (a test)", extra=extra)
        logging.getLogger("astrostats.execution").info("circuits: 3 computed, 0 reused from cache", extra=extra)
    finally:
        analysis_run.setup_console(quiet=True)  # closes the file handler
    error = capsys.readouterr().err
    log = (tmp_path / "astrostats.log").read_text()
    assert "fit of X: not_converged" in log and "0 reused from cache" in log
    shown = not extra
    assert ("not_converged" in error) == shown and ("reused from cache" in error) == shown


def test_an_unconverged_control_fit_is_logged_as_routine(caplog):
    from astrostats.circuits import draw_projection
    from astrostats.controls import LearnedFeatureAttention, TrainingBudget, fit, split_by_sequence
    from astrostats.targets import synthetic_head

    splits = split_by_sequence(synthetic_head(n_sequences=6, n_tokens=8, d_head=4, seed=5),
                               {"train": 4, "validation": 2}, seed=1)
    with caplog.at_level(logging.WARNING, logger="astrostats.controls.training"):
        result = fit(LearnedFeatureAttention(draw_projection(8, 4, seed=2)), splits["train"], splits["validation"],
                     TrainingBudget(max_epochs=1, patience=3), seed=0)
    assert result.status == "not_converged"
    (record,) = [r for r in caplog.records if "not_converged" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.routine is True


# ---------------------------------------------------------------------------------- parquet by default, CSV on request
def test_tables_are_parquet_only_by_default(plain_run):
    manifest = _manifest(plain_run)
    assert manifest["table_formats"] == ["parquet"]
    for name, table in manifest["analyses"][0]["tables"].items():
        assert set(table) == {"rows", "parquet_sha256"}
        assert outputs.sha256_file(plain_run / "tables" / f"{name}.parquet") == table["parquet_sha256"]
    assert not list((plain_run / "tables").glob("*.csv"))


def test_csv_on_request_is_written_recorded_and_the_same_table(csv_run, plain_run):
    manifest = _manifest(csv_run)
    assert manifest["table_formats"] == ["parquet", "csv"]
    for name, table in manifest["analyses"][0]["tables"].items():
        for suffix in ("parquet", "csv"):
            assert outputs.sha256_file(csv_run / "tables" / f"{name}.{suffix}") == table[f"{suffix}_sha256"]
        from_csv = pd.read_csv(csv_run / "tables" / f"{name}.csv")
        assert list(from_csv.columns) == list(_tables(csv_run, name).columns) and len(from_csv) == table["rows"]
    assert (csv_run / "tables" / "tiny.parquet").read_bytes() == (plain_run / "tables" / "tiny.parquet").read_bytes()


@pytest.mark.parametrize("source_fixture, csv_expected", [("plain_run", False), ("csv_run", True)])
def test_audit_only_rebuilds_from_folders_written_either_way(request, tmp_path, monkeypatch, source_fixture,
                                                             csv_expected):
    source = request.getfixturevalue(source_fixture)
    monkeypatch.setattr(scaling, "run", lambda *args: pytest.fail("--audit-only must not recompute"))
    rebuilt = tmp_path / "rebuilt"
    (rebuilt / "tables").mkdir(parents=True)
    (rebuilt / "tables" / "tiny.csv").write_text("stale,csv\n")  # an earlier run's: not left beside new tables
    assert analyze.main(["--audit-only", "--from", str(source), "--out", str(rebuilt), "--quiet"]) == 0
    assert _manifest(rebuilt)["analyses"] == _manifest(source)["analyses"]
    assert (rebuilt / "tables" / "tiny.csv").exists() is csv_expected
    if csv_expected:
        assert (rebuilt / "tables" / "tiny.csv").read_bytes() == (source / "tables" / "tiny.csv").read_bytes()


def test_a_damaged_csv_is_still_refused(csv_run, tmp_path, capsys):
    source = tmp_path / "source"
    shutil.copytree(csv_run, source)
    victim = source / "tables" / "tiny_fits.csv"
    victim.write_text(victim.read_text().replace("0", "1", 1))
    assert analyze.main(["--audit-only", "--from", str(source), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "tiny_fits.csv" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_resume_with_csv_writes_the_csv_from_the_stored_parquet_without_recomputing(plain_run, csv_run, tmp_path,
                                                                                     monkeypatch, stub_pdf):
    resumed = tmp_path / "resumed"
    shutil.copytree(plain_run, resumed)
    monkeypatch.setattr(scaling, "run", lambda *args: pytest.fail("a finished analysis was recomputed"))
    assert analyze.main([str(tiny(tmp_path)), "--out", str(resumed), "--resume", "--csv", *SMOKE]) == 0
    record = _manifest(resumed)["analyses"][0]
    assert record["resumed"] is True
    for name, table in record["tables"].items():
        assert outputs.sha256_file(resumed / "tables" / f"{name}.csv") == table["csv_sha256"]
        pd.testing.assert_frame_equal(pd.read_csv(resumed / "tables" / f"{name}.csv"),
                                      pd.read_csv(csv_run / "tables" / f"{name}.csv"))
    again = outputs.read_sealed(resumed / ".done" / "tiny.json", "completion record")  # recorded for the next resume
    assert set(again["tables"]["tiny"]) == {"rows", "parquet_sha256", "csv_sha256"}


def test_a_rerun_without_csv_leaves_no_stale_csv(csv_run, tmp_path, stub_pdf):
    out = tmp_path / "run"
    shutil.copytree(csv_run, out)
    assert analyze.main([str(tiny(tmp_path)), "--out", str(out), *SMOKE]) == 0
    assert not list((out / "tables").glob("*.csv"))


@pytest.mark.slow
def test_set_csv_and_the_console_filter_reach_the_analysis_processes(tmp_path, capfd, stub_pdf):
    """--jobs 2: each analysis in its own spawned process gets its overrides and writes its CSV, and the routine
    lines of those processes stay in the log file."""
    out = tmp_path / "run"
    argv = [str(tiny(tmp_path, "first")), str(tiny(tmp_path, "second")), "--set", "m=[8,16,64]", "--csv",
            "--jobs", "2", "--profile", "smoke", "--out", str(out)]
    assert analyze.main(argv) == 0
    error = capfd.readouterr().err
    for name in ("first", "second"):
        assert sorted(_tables(out, name)["m"].dropna().unique()) == [8, 16, 64]
        record = next(r for r in _manifest(out)["analyses"] if r["name"] == name)
        assert record["overrides"] == {"m": [8, 16, 64]}
        for table, digests in record["tables"].items():
            assert outputs.sha256_file(out / "tables" / f"{table}.csv") == digests["csv_sha256"]
    log = (out / "astrostats.log").read_text()
    assert "2 at a time in separate processes" in log and "reused from cache" in log
    assert "reused from cache" not in error and "first: done in" in error


# ----------------------------------------------------------------------------- progress: one live view, or plain lines
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _two_tiny(folder: Path) -> list[str]:
    return [str(tiny(folder, "tiny_a")), str(tiny(folder, "tiny_b"))]


def run_in_terminal(argv: list[str], cwd: Path) -> tuple[int, str]:
    """argv with stdin, stdout and stderr on a pseudo-terminal (120 columns): its exit status and all it drew."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {key: value for key, value in os.environ.items()
           if key not in ("NO_COLOR", "FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "COLUMNS", "LINES")}
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env={**env, "TERM": "xterm"})
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 600)
            if not ready:
                process.kill()
                pytest.fail("the run drew nothing for 10 minutes")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_run_in_a_terminal_shows_one_live_view_of_its_analyses(tmp_path):
    """Two analyses in two processes: the view (drawn with terminal codes, redrawn in place) names each with its
    status, and ends with both done; the verdicts follow."""
    status, drawn = run_in_terminal([sys.executable, "-m", "astrostats.analyze", *_two_tiny(tmp_path), "--out",
                                     str(tmp_path / "run"), "--profile", "smoke", "--jobs", "2"], tmp_path)
    assert status == 0, drawn[-3000:]
    assert "\x1b[" in drawn  # drawn in place, not printed line by line
    plain = ANSI.sub("", drawn).replace("\r", "\n")
    for name in ("tiny_a", "tiny_b"):
        assert re.search(rf"^{name}\s+queued\s", plain, re.MULTILINE), name
        assert re.search(rf"^{name}\s+done\s.*\d+:\d\d\s*$", plain, re.MULTILINE), name  # status and elapsed time
    assert "finished in " in plain and "verdicts (audit.md" in plain


@pytest.mark.slow
def test_a_run_not_in_a_terminal_prints_plain_lines_and_no_terminal_codes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "astrostats.analyze", *_two_tiny(tmp_path), "--out",
                             str(tmp_path / "run"), "--profile", "smoke", "--jobs", "2"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and "\r" not in shown and "queued" not in shown
    for name in ("tiny_a", "tiny_b"):
        assert not re.search(rf"^\s*{name}\s+(queued|running|done|failed)", shown, re.MULTILINE)  # no view's rows
        assert len(re.findall(rf"^{name}: done in ", shown, re.MULTILINE)) == 1  # one plain line when it finishes
    assert "reused from cache" not in shown and "running (smoke profile)" not in shown  # routine: the log only
    log = (tmp_path / "run" / "astrostats.log").read_text()
    assert re.search(r" DEBUG astrostats: tiny_a: running \(smoke profile\)", log)
    assert re.search(r" DEBUG astrostats\.execution: circuits: \d+ computed, 0 reused from cache", log)


def test_a_quiet_run_prints_nothing_but_its_errors(tmp_path, capsys, stub_pdf, monkeypatch):
    real_run = scaling.run

    def run_or_fail(spec, context):
        if spec.name == "tiny_b":
            raise RuntimeError("simulated crash")
        return real_run(spec, context)

    monkeypatch.setattr(scaling, "run", run_or_fail)  # in process (--jobs 1): a spawned process would not see it
    assert analyze.main([*_two_tiny(tmp_path), "--out", str(tmp_path / "run"), "--jobs", "1", *SMOKE]) == 1
    error = capsys.readouterr().err
    assert error.startswith("tiny_b: failed: simulated crash\nTraceback")
    assert error.rstrip().endswith("analyses not completed: tiny_b (see audit.md and astrostats.log)")
    assert "tiny_a" not in error and "verdicts" not in error and "finished in" not in error


def test_progress_bars_become_step_events_and_draw_nothing(capsys):
    from tqdm.auto import tqdm

    from astrostats import progress

    steps = []
    with progress.report_bars(lambda what, n, total: steps.append((what, n, total))):
        for _ in tqdm(range(3), desc="fits", mininterval=0):
            pass
        for _ in tqdm(range(2), desc="silent", disable=True):
            pass
    for _ in tqdm(range(2), desc="after", mininterval=0):  # the hook is gone: a bar draws itself again
        pass
    assert steps[0] == ("fits", 0, 3) and steps[-1] == ("fits", 3, 3)
    assert {what for what, _, _ in steps} == {"fits"}
    error = capsys.readouterr().err
    assert "after" in error and "fits" not in error


def test_the_board_keeps_an_analysis_last_word():
    """A late event from an analysis's process (its 'running', a step) does not undo its finished status."""
    from astrostats import progress

    board = progress.Board(["a"], live=True)
    board.__enter__()
    try:
        board.event("status", "a", "running")
        board.event("step", "a", "fits", 2, 4)
        board.event("status", "a", "failed")
        board.event("status", "a", "running")
        board.event("step", "a", "fits", 3, 4)
        task, = board._progress.tasks
        assert "failed" in task.fields["shown"] and task.completed == 2 and task.stop_time is not None
    finally:
        board.__exit__(None, None, None)
