"""Outputs nobody can corrupt, tamper with or mix up (issue 15): contained paths, verified tables, one run per
folder, no pickles, and every bad input caught before any work (exit 2, nothing written)."""
import json
import os
import pickle
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astrostats import analysis_run, analyze, outputs
from astrostats.execution import CACHE_MAGIC, ResultCache
from astrostats.report import pdf
from astrostats.spec import load_spec
from astrostats.studies import scaling
from astrostats.validation import IDENTIFIER, InputError
from processes import children
from tiny_spec import tiny_spec

ANALYSES = Path(analyze.__file__).resolve().parents[1] / "analyses"
SMOKE = ["--profile", "smoke", "--quiet"]
TINY = tiny_spec()


def write_spec(folder: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _stub_pdf(data, root, output):  # the PDF has its own tests (test_report); here only its bytes matter
    Path(output).write_bytes(b"%PDF-1.4 stub\n")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    out = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf, "compile_report", _stub_pdf)
        assert analyze.main([str(write_spec(folder)), "--out", str(out), *SMOKE]) == 0
    return out


@pytest.fixture
def stub_pdf(monkeypatch):
    monkeypatch.setattr(pdf, "compile_report", _stub_pdf)


def copy_run(run: Path, destination: Path) -> Path:
    shutil.copytree(run, destination)
    return destination


def flip_bit(path: Path, position: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[position % len(data)] ^= 1 << bit
    path.write_bytes(bytes(data))


def written_files(folder: Path) -> set:
    return {path for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


# ------------------------------------------------------------------------------------------ contained paths
@pytest.mark.parametrize("name", ["../../victim", "/tmp/victim", "a/b", "tiny name", "", ".hidden", "x" * 65, "é"])
def test_unsafe_spec_names_exit_2_and_write_nothing(tmp_path, name):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    spec = write_spec(tmp_path, TINY.replace('name = "tiny"', f"name = {json.dumps(name)}"))
    out = tmp_path / "deep" / "out"
    assert analyze.main([str(spec), "--out", str(out), *SMOKE]) == 2
    assert not (tmp_path / "deep").exists() and victim.read_text() == "precious"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=70))
def test_generated_spec_names_are_safe_identifiers_or_refused(tmp_path, name):
    spec = write_spec(tmp_path, TINY.replace('name = "tiny"', f"name = {json.dumps(name)}"), "generated.toml")
    try:
        loaded = load_spec(spec, "smoke")
    except InputError:
        assert not IDENTIFIER.match(name)
        return
    assert IDENTIFIER.match(loaded.name)
    root = tmp_path / "out"
    assert outputs.inside(root, root / "tables" / f"{loaded.name}.parquet")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=40), st.sampled_from(["..", "../x", "/etc/passwd", "a/../../b", "ok_name"])))
def test_every_write_resolves_inside_the_output_folder_or_is_refused(tmp_path, name):
    root = tmp_path / "out"
    root.mkdir(exist_ok=True)
    before = written_files(tmp_path)
    try:
        outputs.write_table(root / "tables", name, pd.DataFrame({"x": [1]}), root=root)
    except (InputError, OSError):
        pass
    try:
        outputs.atomic_write_bytes(root / name, b"x", root=root)
    except (InputError, OSError):
        pass
    resolved_root = root.resolve()
    for path in written_files(tmp_path) - before:
        assert path.resolve().is_relative_to(resolved_root), path


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    root, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "tables").symlink_to(elsewhere)
    with pytest.raises(InputError, match="outside the output folder"):
        outputs.write_table(root / "tables", "t", pd.DataFrame({"x": [1]}), root=root)
    assert not list(elsewhere.iterdir())


manifest_records = st.fixed_dictionaries({
    "name": st.one_of(st.text(max_size=20), st.sampled_from(["../../escape", "/tmp/abs", "ok"])),
    "kind": st.sampled_from(["scaling", "biology"]),
    "status": st.sampled_from(["ok", "failed"]),
    "profile": st.just("smoke"), "seed": st.integers(0, 9), "source": st.just("x.toml"),
    "tables": st.dictionaries(st.one_of(st.text(max_size=12), st.just("../../t")),
                              st.fixed_dictionaries({"csv_sha256": st.text(max_size=64),
                                                     "parquet_sha256": st.text(max_size=64)}), max_size=2)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.one_of(manifest_records, st.integers(), st.just({"name": "ok", "status": "ok"})),
                        max_size=3),
       figures=st.dictionaries(st.one_of(st.text(max_size=12), st.just("../../fig")), st.text(max_size=8),
                               max_size=2))
def test_crafted_manifests_are_refused_before_anything_is_written(tmp_path, stub_pdf, records, figures):
    source = tmp_path / "source"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir()
    outputs.write_json(source / "manifest.json", {"analyses": records, "figures": figures}, sealed=True)
    before = written_files(tmp_path)
    out = tmp_path / "rebuilt"
    code = analyze.main(["--audit-only", "--from", str(source), "--out", str(out), "--quiet"])
    assert code == 2 or not any(isinstance(r, dict) and r["status"] == "ok" and r["tables"] for r in records)
    if code == 2:
        assert written_files(tmp_path) == before
    for path in written_files(tmp_path) - before:
        assert path.resolve().is_relative_to(out.resolve()), path
    shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------ verified tables
def test_manifest_records_a_sha256_of_every_table_file_and_figure(tiny_run):
    manifest = outputs.read_sealed(tiny_run / "manifest.json", "manifest")  # its own checksum holds
    record = manifest["analyses"][0]
    assert set(record["tables"]) == {path.stem for path in (tiny_run / "tables").glob("*.parquet")} >= {"tiny", "tiny_fits"}
    for name, table in record["tables"].items():
        assert "csv_sha256" not in table and not (tiny_run / "tables" / f"{name}.csv").exists()  # CSV: --csv only
        assert outputs.sha256_file(tiny_run / "tables" / f"{name}.parquet") == table["parquet_sha256"]
    assert manifest["figures"] and all(outputs.sha256_file(tiny_run / "figures" / f"{stem}.svg") == digest
                                       for stem, digest in manifest["figures"].items())


@pytest.mark.parametrize("target, damage", [
    ("tables/tiny_fits.parquet", "flip"), ("tables/tiny_fits.parquet", "truncate"), ("tables/tiny.parquet", "flip"),
    ("tables/tiny_theory.parquet", "truncate"), ("figures/tiny.svg", "flip"), ("manifest.json", "flip"),
    ("manifest.json", "truncate"),
])
def test_audit_only_refuses_a_damaged_file_naming_it_and_copies_nothing(tiny_run, tmp_path, capsys, target, damage):
    source = copy_run(tiny_run, tmp_path / "source")
    victim = source / target
    if damage == "flip":
        flip_bit(victim, len(victim.read_bytes()) // 2, 3)
    else:
        victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    out = tmp_path / "rebuilt"
    assert analyze.main(["--audit-only", "--from", str(source), "--out", str(out), "--quiet"]) == 2
    assert Path(target).name in capsys.readouterr().err
    assert not out.exists()


def test_every_bit_flip_in_a_manifest_is_refused_or_harmless(tiny_run, tmp_path):
    """A sample of single-bit flips over the whole manifest: each is refused, or (e -> E in an exponent)
    leaves the content the audit reads unchanged."""
    original = outputs.read_sealed(tiny_run / "manifest.json", "manifest")
    path = copy_run(tiny_run, tmp_path / "run") / "manifest.json"
    pristine = path.read_bytes()
    for position in range(0, len(pristine), max(1, len(pristine) // 300)):
        path.write_bytes(pristine)
        flip_bit(path, position, position % 8)
        try:
            assert outputs.read_sealed(path, "manifest") == original, position
        except outputs.CorruptOutput:
            pass


def test_resume_recomputes_an_analysis_whose_table_was_damaged(tiny_run, tmp_path, stub_pdf):
    run = copy_run(tiny_run, tmp_path / "run")
    flip_bit(run / "tables" / "tiny_fits.parquet", 1000, 2)
    calls = []
    real = scaling.run
    spec = write_spec(tmp_path)

    def counting(*args):
        calls.append(1)
        return real(*args)

    scaling.run = counting
    try:
        assert analyze.main([str(spec), "--out", str(run), "--resume", *SMOKE]) == 0
    finally:
        scaling.run = real
    assert calls == [1]
    for path in (tiny_run / "tables").iterdir():
        assert (run / "tables" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("content", ["[1, 2]", "{\"spec_sha256\": \"x\"", "not json", "{}", "flip", "truncate"])
def test_an_unreadable_or_unsealed_completion_record_means_recompute(tiny_run, tmp_path, content):
    run = copy_run(tiny_run, tmp_path / "run")
    record = run / ".done" / "tiny.json"
    if content == "flip":
        flip_bit(record, record.read_text().index('"seconds"') + 14, 0)  # a digit of the run time
    elif content == "truncate":
        record.write_bytes(record.read_bytes()[:-40])
    else:
        record.write_text(content)
    spec = load_spec(write_spec(tmp_path), "smoke")
    from astrostats import provenance

    assert analysis_run.finished_record(run, spec, provenance.code_version()) is None
    pristine = copy_run(tiny_run, tmp_path / "pristine")
    assert analysis_run.finished_record(pristine, spec, provenance.code_version()) is not None


def test_a_manifest_holding_a_list_is_a_clear_error(tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    (source / "manifest.json").write_text("[1, 2, 3]\n")
    assert analyze.main(["--audit-only", "--from", str(source), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "list" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_outputs_follow_the_umask(tiny_run):
    mask = outputs._umask()
    for name in ("manifest.json", "audit.md", "report.pdf", "tables/tiny.parquet",
                 "figures/tiny.svg", ".done/tiny.json"):
        assert stat.S_IMODE((tiny_run / name).stat().st_mode) == 0o666 & ~mask, name


# --------------------------------------------------------------------------------- one run per folder
def test_a_second_run_into_a_locked_folder_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with outputs.RunLock(out):
        before = written_files(out)
        assert analyze.main([str(write_spec(tmp_path)), "--out", str(out), *SMOKE]) == 2
        assert written_files(out) == before
    assert "in use by another astrostats run" in capsys.readouterr().err


def test_audit_only_says_a_folder_is_from_a_killed_run(tiny_run, tmp_path, capsys):
    source = copy_run(tiny_run, tmp_path / "source")
    with outputs.RunLock(source) as lock:  # a run that starts and is killed: the marker stays
        lock.mark_started({"command": "python -m astrostats.analyze tiny.toml --seed 9"})
    assert analyze.main(["--audit-only", "--from", str(source), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "did not finish" in error and "--seed 9" in error and not (tmp_path / "o").exists()


def test_a_finished_run_leaves_no_marker_and_no_temporary_file(tiny_run):
    assert not (tiny_run / outputs.IN_PROGRESS_NAME).exists()
    assert not [path for path in tiny_run.rglob("*") if path.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ no pickles
class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_in_the_cache_never_runs(tmp_path):
    marker = tmp_path / "planted_pickle_ran"
    cache = ResultCache(tmp_path / "cache", "version")
    path = cache.path("namespace", "module.function", "key")
    path.parent.mkdir(parents=True)
    payload = pickle.dumps({"identity": cache._identity("namespace", "module.function", "key"),
                            "result": _Planted(marker)})
    import hashlib

    for blob in (payload,  # a bare pickle
                 b"astrostats-cache-v1\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload,
                 CACHE_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload):  # checksum fits
        path.write_bytes(blob)
        assert cache.load("namespace", "module.function", "key") == (False, None)
        assert not marker.exists() and not path.exists()  # refused and deleted: recomputed next
    assert not list((tmp_path / "cache").rglob("*.pkl"))


def test_cache_entries_are_data(tmp_path):
    cache = ResultCache(tmp_path, "version")
    frame = pd.DataFrame({"m": pd.array([8, None], dtype="Int64"), "value": [0.5, 0.25], "circuit": ["a", "b"]})
    cache.store("n", "f", "k", frame)
    found, value = cache.load("n", "f", "k")
    assert found
    pd.testing.assert_frame_equal(value, frame)
    assert cache.store("n", "f", "obj", object()) is None  # not data: not cached, never pickled
    assert b"PAR1" in cache.path("n", "f", "k").read_bytes()


# ------------------------------------------------------------------------------- bad input before any work
def _spec_variant(folder: Path, source: str, old: str, new: str) -> Path:
    text = (ANALYSES / f"{source}.toml").read_text()
    assert old in text
    return write_spec(folder, text.replace(old, new, 1), f"{source}_variant.toml")


@pytest.mark.parametrize("make_spec, needle", [
    (lambda d: write_spec(d, 'name = "x"\nkind = "scaling"\n'), "parameters"),
    (lambda d: write_spec(d, TINY.replace("[parameters]", "parameters = 5\n[unused]")), "parameters"),
    (lambda d: write_spec(d, TINY + "[profiles]\nsmoke = 3\n"), "profiles.smoke"),
    (lambda d: write_spec(d, TINY.replace("m = [8, 16, 32]", "m = [8, 16, 1000000000000]")), "GiB"),
    (lambda d: write_spec(d, TINY.replace("seed = 5", "seed = 9223372036854775807")), "seed"),
    (lambda d: write_spec(d, TINY + 'causal = "false"\n'), "causal"),
    (lambda d: write_spec(d, TINY.replace("n_resamples = 100", "n_resamples = 100.5")), "n_resamples"),
    (lambda d: _spec_variant(d, "overfitting", "[profiles.smoke]", "[profiles.smoke]\nlearning_rate = nan"),
     "learning_rate"),
    (lambda d: _spec_variant(d, "overfitting", "[profiles.smoke]", "[profiles.smoke]\nmin_improvement = -1"),
     "min_improvement"),
    (lambda d: _spec_variant(d, "biology", "[profiles.smoke]", "[profiles.smoke]\ntoken_interval_s = inf"),
     "token_interval_s"),
    (lambda d: _spec_variant(d, "calibration", "[profiles.smoke]", "[profiles.smoke]\ndelta = nan"), "delta"),
    (lambda d: _spec_variant(d, "fig3_vision", "[profiles.smoke]", "[profiles.smoke]\nn_tokens = 2.5"),
     "n_tokens"),
])
def test_bad_specs_exit_2_before_any_work(tmp_path, capsys, make_spec, needle):
    spec = make_spec(tmp_path)
    out = tmp_path / "out"
    assert analyze.main([str(spec), "--out", str(out), *SMOKE]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("arguments, needle", [
    (["--seed", str(2**70)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--out", ""], "--out"),
    (["--out", "/proc/astrostats_x"], "--out"),
    (["--out", "/sys/astrostats_x"], "--out"),
    (["--audit-only", "tiny"], "analysis names"),
    (["--audit-only", "--resume"], "--resume"),
    (["--audit-only", "--workers", "2"], "--workers"),
    (["--audit-only", "--seed", "3"], "--seed"),
    (["--audit-only", "--seed", "0"], "--seed"),
    (["--audit-only", "--profile", "smoke"], "--profile"),
    (["--audit-only", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
    (["--audit-only", "--jobs", "2"], "--jobs"),
    (["--jobs", "0"], "--jobs"),
    (["--jobs", "2", "--workers", "2"], "--jobs"),
])
def test_bad_flags_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys, arguments, needle):
    monkeypatch.chdir(tmp_path)
    spec = [] if "--audit-only" in arguments else [str(write_spec(tmp_path))]
    before = written_files(tmp_path)
    assert analyze.main([*spec, *arguments, "--quiet"]) == 2
    assert needle in capsys.readouterr().err
    assert written_files(tmp_path) == before and not (tmp_path / "reports").exists()


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(analyze, "run", interrupted)
    assert analyze.main([str(write_spec(tmp_path)), "--out", str(tmp_path / "o"), *SMOKE]) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "interrupted" in error and "Traceback" not in error


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_an_interrupt_to_the_run_alone_stops_its_analysis_processes(tmp_path):
    """SIGINT to the main process only (a scheduler's, not a terminal's Ctrl-C, which reaches the whole process
    group): exit 130, the analyses stopped where they were (neither finishes: each takes seconds, the signal
    comes as both start) and no analysis process left running."""
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "astrostats.analyze", "known_answers", "fig3_vision", "--out", str(out),
                            "--jobs", "2", *SMOKE], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                           stderr=subprocess.PIPE, text=True)
    log = out / "astrostats.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count(": running (") == 2):
        time.sleep(0.2)
    workers = children(run.pid)
    assert len([w for w in workers if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text()]) == 2
    run.send_signal(signal.SIGINT)
    _, error = run.communicate(timeout=30)
    assert run.returncode == 130 and "interrupted" in error
    assert not (out / ".done").exists() or not list((out / ".done").iterdir())
    time.sleep(0.5)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()
                and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]


def _serve(reply: bytes):
    """A TCP server on loopback that accepts and then answers ``reply`` (or nothing) and never closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    connections = []

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connections.append(connection)
            if reply:
                connection.sendall(reply)

    threading.Thread(target=accept, daemon=True).start()
    return server, connections


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n" + b"x" * 64])
def test_a_scheduler_that_never_completes_the_handshake_is_a_clear_error(tmp_path, monkeypatch, capsys, reply):
    from astrostats import execution

    monkeypatch.setattr(execution, "HANDSHAKE_TIMEOUT_S", 3)
    server, connections = _serve(reply)
    try:
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        out = tmp_path / "out"
        assert analyze.main([str(write_spec(tmp_path)), "--scheduler", address, "--out", str(out), *SMOKE]) == 2
        error = capsys.readouterr().err
        assert address in error and "Traceback" not in error and not out.exists()
    finally:
        server.close()
        for connection in connections:
            connection.close()


# ------------------------------------------------------------------------------------------- fault suite
# the command line with a stub PDF writer that, given a gate file, waits for it: a run held mid-report
RUN_STUBBED = """
import os, sys, time
from pathlib import Path
from astrostats import analyze
from astrostats.report import pdf

def compile_report(data, root, output):
    gate = os.environ.get("ASTROSTATS_TEST_GATE")
    while gate and not Path(gate).exists():
        time.sleep(0.01)
    Path(output).write_bytes(b"%PDF-1.4 stub")

pdf.compile_report = compile_report
sys.exit(analyze.main(sys.argv[1:]))
"""


def _start(*arguments, gate: Path | None = None):
    environment = {**os.environ, "ASTROSTATS_TEST_GATE": str(gate) if gate else ""}
    return subprocess.Popen([sys.executable, "-c", RUN_STUBBED, *arguments, *SMOKE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment,
                            cwd=Path(analyze.__file__).resolve().parents[1])


def _wait_for(process, condition, limit_s=300):
    """Poll until ``condition()`` holds (True) or the process ends first (False). The limit only stops a
    hung test; it is not a timing assertion."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return condition()
        time.sleep(0.01)
    process.kill()
    pytest.fail("the run neither reached the kill point nor ended")


def _same_tables(run: Path, reference: Path) -> None:
    names = sorted(path.name for path in (reference / "tables").iterdir())
    assert names and sorted(path.name for path in (run / "tables").iterdir()) == names
    for name in names:
        assert (run / "tables" / name).read_bytes() == (reference / "tables" / name).read_bytes(), name


@pytest.mark.slow
def test_killed_at_random_points_then_resume_gives_identical_tables(tiny_run, tmp_path):
    spec, out = str(write_spec(tmp_path)), tmp_path / "out"
    rng = random.Random(15)
    entries = lambda: len(list((out / ".cache").rglob("*.entry")))
    kill_points = [lambda: entries() >= rng.randint(1, 5),  # mid-sweep: some tasks cached, no tables
                   lambda: (out / "tables" / "tiny_fits.parquet").exists()]  # tables written, report not
    for kill_point in kill_points:
        process = _start(spec, "--out", str(out), "--resume")
        reached = _wait_for(process, kill_point)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if reached:  # a killed run's folder says so, and is not audited as if it were finished
            assert (out / outputs.IN_PROGRESS_NAME).exists()
            assert analyze.main(["--audit-only", "--from", str(out), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    finished = _start(spec, "--out", str(out), "--resume")
    assert finished.wait() == 0, finished.stderr.read()
    _same_tables(out, tiny_run)
    assert not (out / outputs.IN_PROGRESS_NAME).exists()


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder_never_mix(tiny_run, tmp_path):
    spec, out = str(write_spec(tmp_path)), tmp_path / "out"
    gate = tmp_path / "gate"
    first = _start(spec, "--out", str(out), gate=gate)  # held in its report until the gate opens
    _wait_for(first, lambda: (out / "tables" / "tiny.parquet").exists())
    second = _start(spec, "--out", str(out), "--seed", "2")
    assert second.wait() == 2 and "in use by another astrostats run" in second.stderr.read()
    gate.touch()
    assert first.wait() == 0, first.stderr.read()
    manifest = outputs.read_sealed(out / "manifest.json", "manifest")
    done = outputs.read_sealed(out / ".done" / "tiny.json", "completion record")
    record = manifest["analyses"][0]
    assert record["seed"] == done["seed"] == 5 and record["tables"] == done["tables"]
    assert "--seed" not in manifest["created_by"]
    _same_tables(out, tiny_run)
