"""Fault injection (issue 26): each hostile case ends with its documented exit code, nothing written outside the
run folder, no process left writing, nothing lost. Real files, FIFOs, links and a real SIGKILL of a real
subprocess wherever possible; a full disk is simulated (a patched write). Kept fast: the tiny spec below, in
process, a stub PDF except where the typesetting itself is the target. See docs/how-to/safety.md."""
import dataclasses
import errno
import faulthandler
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from astrostats import analyze, integrity, outputs, safe_io
from astrostats.circuits import (astrocyte_attention, dense_associative_memory, draw_projection, elu_linear_attention,
                                 hebbian_only_attention, interneuron_attention, no_astrocyte_attention,
                                 predicted_error_constant, run_circuit, softmax_attention, uniform_attention)
from astrostats.circuits.biophysics import BaselineNoise, realistic_attention
from astrostats.execution import CACHE_MAGIC, ResultCache
from astrostats.report import pdf
from astrostats.studies import scaling
from astrostats.targets import recordings
from astrostats.validation import InputError
from processes import children
from tiny_spec import TEMPLATE

REPOSITORY = Path(analyze.__file__).resolve().parents[1]
QUIET = ["--profile", "smoke", "--quiet"]
TINY = TEMPLATE  # {name} and {n_tokens} filled per test


def spec(folder: Path, name: str = "tiny", n_tokens: int = 8, text: str | None = None) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text if text is not None else TINY.format(name=name, n_tokens=n_tokens))
    return path


def _stub_pdf(data, root, output):
    safe_io.write_bytes(Path(root), Path(output), b"%PDF-1.4 stub\n")


@pytest.fixture(scope="module", autouse=True)
def key(tmp_path_factory):
    """This module's own integrity key (never the user's)."""
    path = tmp_path_factory.mktemp("key") / "key"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(integrity.KEY_FILE_ENV, str(path))
        yield path


@pytest.fixture
def stub_pdf(monkeypatch):
    monkeypatch.setattr(pdf, "compile_report", _stub_pdf)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, key):
    folder = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf, "compile_report", _stub_pdf)
        assert analyze.main([str(spec(folder)), "--out", str(folder / "run"), *QUIET]) == 0
    return folder / "run"


def copy_run(run: Path, destination: Path) -> Path:
    shutil.copytree(run, destination, symlinks=True)
    return destination


def files_under(folder: Path) -> dict:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file() and not path.is_symlink()}


def same_tables(run: Path, reference: Path) -> None:
    names = sorted(path.name for path in (reference / "tables").iterdir())
    assert sorted(path.name for path in (run / "tables").iterdir()) == names
    for name in names:
        assert (run / "tables" / name).read_bytes() == (reference / "tables" / name).read_bytes(), name


@pytest.fixture
def no_hang():
    """A test that would hang (a FIFO read) is stopped with a traceback instead of blocking CI."""
    faulthandler.dump_traceback_later(60, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()


# ------------------------------------------------------------------------- 1. links: nothing written outside
def test_links_planted_at_the_typst_source_names_are_never_written_through(reference, tmp_path):
    """--audit-only with the real typesetting: links planted under every name the old code used (and the next
    pids) stay untouched, and so do their targets."""
    run = copy_run(reference, tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = [run / f".report.{pid}.typ" for pid in range(os.getpid() - 2, os.getpid() + 50)]
    for path in planted:
        path.symlink_to(victim)
    assert analyze.main(["--audit-only", "--out", str(run), "--quiet"]) == 0
    assert victim.read_text() == "precious"  # the links were removed as stale names or left alone, never followed
    assert not [path for path in planted if os.path.lexists(path) and not path.is_symlink()]
    assert (run / "report.pdf").read_bytes().startswith(b"%PDF")


def test_half_written_files_of_a_killed_run_are_removed_by_the_next(reference, tmp_path, stub_pdf):
    run = copy_run(reference, tmp_path / "run")
    stale = [run / "tables" / ".tiny.csv.12345.0badc0de.tmp", run / ".report.12345.0badc0de.typ",
             run / ".report.12345.0badc0de.pdf.tmp", run / ".done" / ".tiny.json.1.2.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    assert analyze.main([str(spec(tmp_path)), "--out", str(run), "--resume", *QUIET]) == 0
    assert not [path for path in stale if path.exists()]
    same_tables(run, reference)


@pytest.mark.parametrize("entry", [".cache", "tables", ".done", "figures", "astrostats.log", ".lock"])
def test_a_link_at_the_top_of_the_run_folder_stops_the_run_and_names_it(tmp_path, capsys, stub_pdf, entry):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / entry).symlink_to(elsewhere if entry not in ("astrostats.log", ".lock") else elsewhere / "file")
    assert analyze.main([str(spec(tmp_path)), "--out", str(out), *QUIET]) == 2
    error = capsys.readouterr().err
    assert entry in error and "symbolic link" in error and "rm " in error
    assert not list(elsewhere.iterdir()) and sorted(p.name for p in out.iterdir()) == [entry]


def test_writes_follow_no_link_below_the_root_and_replace_a_link_at_the_final_name(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "sub" / "deeper").symlink_to(elsewhere)
    with pytest.raises(safe_io.UnsafePath, match="symbolic link"):
        safe_io.write_bytes(root, root / "sub" / "deeper" / "x", b"x")
    target = elsewhere / "target"
    target.write_text("precious")
    (root / "sub" / "file").symlink_to(target)
    safe_io.write_bytes(root, root / "sub" / "file", b"new")
    assert target.read_text() == "precious" and not (root / "sub" / "file").is_symlink()
    assert (root / "sub" / "file").read_bytes() == b"new" and not list(elsewhere.glob("x"))
    with pytest.raises(safe_io.UnsafePath):
        safe_io.write_bytes(root, tmp_path / "outside", b"x")
    safe_io.unlink(root, root / "sub" / "deeper")  # a link is removed itself, never its target
    assert elsewhere.is_dir() and target.exists()


# -------------------------------------------------------------------- 2. a killed --jobs run stops writing
def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigkill_of_a_jobs_run_leaves_no_process_writing(tmp_path):
    """SIGKILL to the parent of --jobs 2 once both analyses run: its analysis processes die with it (and would
    write nothing if they did not: they check their parent first), so nothing appears in the folder afterwards."""
    slow = (TINY.replace("m = [8, 16, 32]", "m = [1024, 8192, 32768]").replace("n_seeds = 2", "n_seeds = 8")
            .replace("n_sequences = 2", "n_sequences = 8").replace("d_head = 4", "d_head = 32"))  # ~20 s each
    specs = [str(spec(tmp_path, name, text=slow.format(name=name, n_tokens=256))) for name in ("slow_a", "slow_b")]
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-m", "astrostats.analyze", *specs, "--out", str(out), "--jobs", "2",
                            *QUIET], cwd=REPOSITORY, stderr=subprocess.PIPE, text=True)
    log = out / "astrostats.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count(": running (") == 2):
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.05)
    workers = [pid for pid in children(run.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
    before = files_under(out)
    time.sleep(1.0)
    assert files_under(out) == before and not (out / ".done").exists()


def test_a_writer_whose_parent_is_gone_exits_before_writing(tmp_path):
    """The check behind every write in an analysis process: a parent pid that is not its parent means the run
    is gone: exit 70, nothing written."""
    code = ("import os, sys; from pathlib import Path; from astrostats import safe_io\n"
            "safe_io._parent_pid = os.getppid() + 1\n"  # as if its run had died
            f"safe_io.write_bytes(Path({str(tmp_path)!r}), Path({str(tmp_path / 'x')!r}), b'x')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, timeout=60)
    assert result.returncode == 70 and not (tmp_path / "x").exists()


# ------------------------------------------------------------------ 3, 4, 8: refused before anything is written
@pytest.mark.parametrize("text, needle", [
    ('name = "x"\nkind = "scaling"\n[parameters]\n', "exhaustive defaults"),
    ('name = "x"\nkind = "scaling"\n[profiles.smoke]\n', "exhaustive defaults"),
    ('name = "x"\nkind = "scaling"\n[parameters]\n[profiles.smoke]\n', "exhaustive defaults"),
    (TINY.format(name="x", n_tokens=10**9), "GiB"),
    (TINY.format(name="x", n_tokens=8).replace("n_sequences = 2", "n_sequences = 1000000000000"), "GiB"),
    (TINY.format(name="x", n_tokens=8).replace("m = [8, 16, 32]", "m = [8, 16, 100000000000]"), "GiB"),
    (TINY.format(name="nl\n", n_tokens=8).replace('name = "nl\n"', 'name = "nl\\n"'), "identifier"),
])
def test_bad_plans_exit_2_and_write_nothing(tmp_path, capsys, text, needle):
    out = tmp_path / "out"
    assert analyze.main([str(spec(tmp_path, "plan", text=text)), "--out", str(out), *QUIET]) == 2
    error = capsys.readouterr().err
    assert needle in error and "Traceback" not in error and not out.exists()
    assert not [path for path in tmp_path.rglob("*") if "\n" in path.name]


@pytest.mark.parametrize("flags, needle", [(["--max-hours", "1e-9"], "--max-hours"), (["--max-gib", "1e-9"], "--max-gib"),
                                           (["--max-hours", "-1"], "--max-hours"), (["--max-gib", "nan"], "--max-gib")])
def test_the_cost_guard_flags_refuse_before_anything_is_written(tmp_path, capsys, flags, needle):
    out = tmp_path / "out"
    assert analyze.main([str(spec(tmp_path)), "--out", str(out), *flags, *QUIET]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_the_estimate_is_logged(reference):
    log = (reference / "astrostats.log").read_text()
    assert "tiny: about" in log and "estimated:" in log


# ------------------------------------------------------------------------- 5: FIFOs, devices, sizes
def test_a_fifo_manifest_is_refused_at_once(reference, tmp_path, capsys, no_hang):
    run = copy_run(reference, tmp_path / "run")
    (run / "manifest.json").unlink()
    os.mkfifo(run / "manifest.json")
    assert analyze.main(["--audit-only", "--from", str(run), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "FIFO" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_manifest_linked_to_dev_zero_is_refused(reference, tmp_path, capsys, no_hang):
    run = copy_run(reference, tmp_path / "run")
    (run / "manifest.json").unlink()
    (run / "manifest.json").symlink_to("/dev/zero")
    assert analyze.main(["--audit-only", "--from", str(run), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "symbolic link" in capsys.readouterr().err


def test_a_fifo_table_is_refused_at_once(reference, tmp_path, capsys, no_hang):
    run = copy_run(reference, tmp_path / "run")
    (run / "tables" / "tiny_fits.parquet").unlink()
    os.mkfifo(run / "tables" / "tiny_fits.parquet")
    assert analyze.main(["--audit-only", "--from", str(run), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "tiny_fits.parquet" in capsys.readouterr().err


def test_a_fifo_completion_record_means_recompute_not_a_hang(reference, tmp_path, stub_pdf, no_hang):
    run = copy_run(reference, tmp_path / "run")
    (run / ".done" / "tiny.json").unlink()
    os.mkfifo(run / ".done" / "tiny.json")
    assert analyze.main([str(spec(tmp_path)), "--out", str(run), "--resume", *QUIET]) == 0
    assert (run / ".done" / "tiny.json").is_file()
    same_tables(run, reference)


def test_a_fifo_spec_is_refused_at_once(tmp_path, capsys, no_hang):
    os.mkfifo(tmp_path / "fifo.toml")
    assert analyze.main([str(tmp_path / "fifo.toml"), "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert "not a regular file" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_reads_are_size_capped(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1000)
    with pytest.raises(safe_io.UnsafePath, match="more than"):
        safe_io.read_bytes(big, limit=999, what="test")


# ------------------------------------------------------------------------ 6: keyed integrity
def _reseal_with_sha256(path: Path, change) -> None:
    """What an editor without the key can do: change the record and recompute every plain SHA-256."""
    payload = json.loads(path.read_text())
    change(payload)
    payload.pop(outputs.SEAL_KEY, None)
    import hashlib

    payload[outputs.OLD_SEAL_KEY] = hashlib.sha256(outputs._canonical(payload)).hexdigest()
    path.write_text(json.dumps(payload))


def test_an_edited_table_with_its_sha256_recomputed_is_recomputed_on_resume(reference, tmp_path, stub_pdf):
    run = copy_run(reference, tmp_path / "run")
    table = run / "tables" / "tiny.parquet"
    edited = pd.read_parquet(table)
    edited.loc[0, "value"] = edited.loc[0, "value"] * 0.9
    edited.to_parquet(table, index=False)
    import hashlib

    digest = hashlib.sha256(table.read_bytes()).hexdigest()
    _reseal_with_sha256(run / ".done" / "tiny.json",
                        lambda p: p["tables"]["tiny"].__setitem__("parquet_sha256", digest))
    calls = []
    real = scaling.run

    def counting(*args):
        calls.append(1)
        return real(*args)

    scaling.run = counting
    try:
        assert analyze.main([str(spec(tmp_path)), "--out", str(run), "--resume", *QUIET]) == 0
    finally:
        scaling.run = real
    assert calls == [1]
    same_tables(run, reference)


def test_an_edited_manifest_with_its_sha256_recomputed_is_refused(reference, tmp_path, capsys):
    run = copy_run(reference, tmp_path / "run")
    _reseal_with_sha256(run / "manifest.json", lambda p: p.__setitem__("profile", "full"))
    assert analyze.main(["--audit-only", "--from", str(run), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "content_hmac" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_record_sealed_with_another_key_is_refused(reference, tmp_path, capsys, monkeypatch):
    run = copy_run(reference, tmp_path / "run")
    monkeypatch.setenv(integrity.KEY_FILE_ENV, str(tmp_path / "other_key"))
    assert analyze.main(["--audit-only", "--from", str(run), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "HMAC" in capsys.readouterr().err
    assert (tmp_path / "other_key").stat().st_mode & 0o777 == 0o600  # made on first use, private


def test_forged_cache_entries_are_refused_and_recomputed(tmp_path):
    import hashlib

    cache = ResultCache(tmp_path / ".cache", "version")
    cache.store("n", "f", "k", {"value": 1.0})
    path = cache.path("n", "f", "k")
    body = path.read_bytes()[len(CACHE_MAGIC) + 65:].replace(b"1.0", b"2.0")
    for checksum in (hashlib.sha256(body).hexdigest(), "0" * 64):  # a recomputed SHA-256, a guess
        path.write_bytes(CACHE_MAGIC + checksum.encode() + b"\n" + body)
        assert cache.load("n", "f", "k") == (False, None) and not path.exists()
    cache.store("n", "f", "k", {"value": 1.0})
    assert cache.load("n", "f", "k") == (True, {"value": 1.0})


def test_a_key_others_can_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    monkeypatch.setenv(integrity.KEY_FILE_ENV, str(path))
    with pytest.raises(InputError, match="chmod 600"):
        integrity.key()


# ------------------------------------------------------------------- 7: finite outputs, every circuit and dtype
def _head(scale, dtype, n=10, d=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(2, n, d, generator=generator, dtype=torch.float64) for _ in range(2))
    q, k = (x / x.norm(dim=-1, keepdim=True) * scale for x in (q, k))
    v = torch.randn(2, n, 4, generator=generator, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _w(q):
    return draw_projection(64, q.shape[-1], seed=1, dtype=q.dtype)


CIRCUITS = {
    "astrocyte_attention": lambda q, k, v, c: astrocyte_attention(q, k, v, m=64, seed=1, causal=c),
    "run_circuit": lambda q, k, v, c: run_circuit(q, k, v, _w(q), causal=c),
    "softmax_attention": lambda q, k, v, c: softmax_attention(q, k, v, c),
    "uniform_attention": lambda q, k, v, c: uniform_attention(q, k, v, c),
    "no_astrocyte_attention": lambda q, k, v, c: no_astrocyte_attention(q, k, v, _w(q), causal=c),
    "elu_linear_attention": lambda q, k, v, c: elu_linear_attention(q, k, v, c),
    "dense_associative_memory": lambda q, k, v, c: dense_associative_memory(q, k, v, m=5, causal=c),
    "interneuron_attention": lambda q, k, v, c: interneuron_attention(q, k, v, m=64, fan_in=16, seed=1, causal=c),
    "interneuron_sampled": lambda q, k, v, c: interneuron_attention(q, k, v, m=64, fan_in=16, pool="sampled", seed=1,
                                                                    causal=c),
    "hebbian_only_attention": lambda q, k, v, c: hebbian_only_attention(q, k, v, m=64, seed=1, causal=c),
    "predicted_error_constant": lambda q, k, v, c: predicted_error_constant(q, k, v, c),
    "realistic_attention": lambda q, k, v, c: realistic_attention(q[0], k[0], v[0], _w(q),
                                                                  BaselineNoise.derived(1.0, 0.01), causal=c),
}
PLANTED = [(torch.float16, 10.0), (torch.bfloat16, 50.0), (torch.float32, 100.0), (torch.float64, 1.0),
           (torch.float16, 1.0), (torch.bfloat16, 1.0), (torch.float32, 1.0), ("mixed", 1.0), ("mixed", 30.0)]


def _tensors(result):
    return [result] if isinstance(result, torch.Tensor) else [x for x in result if isinstance(x, torch.Tensor)]


@pytest.mark.parametrize("name", sorted(CIRCUITS))
@pytest.mark.parametrize("dtype, scale", PLANTED, ids=lambda x: str(x).replace("torch.", ""))
def test_every_circuit_is_finite_or_says_why(name, dtype, scale):
    """Planted heads where the exponentials overflow the dtype (float16 at |q| = |k| = 10, bfloat16 at 50, float32
    at 100) and mixed float64/float32 inputs: a finite result, or an InputError naming the function, never a NaN,
    an inf or a raw torch error. At scale 1 every function must return a finite result."""
    q, k, v = _head(scale, torch.float64 if dtype == "mixed" else dtype)
    if dtype == "mixed":
        k = k.float()
    for causal in (False, True):
        try:
            result = CIRCUITS[name](q, k, v, causal)
        except InputError as error:
            assert scale > 1 and name.split("_")[0] in str(error) or "q, k" in str(error), error
            continue
        assert all(bool(torch.isfinite(x).all()) for x in _tensors(result)), (name, dtype, scale, causal)


def test_the_astrocyte_family_stays_finite_where_its_ratio_is_representable():
    """The ratios (astrocyte, no astrocyte, tree of interneurons, softmax) are finite at every planted scale: the
    shifts cancel, and only read-outs whose size is exp(q.k) itself (Hebbian only) may be refused."""
    for dtype, scale in PLANTED[:3]:
        q, k, v = _head(scale, dtype)
        for name in ("astrocyte_attention", "run_circuit", "no_astrocyte_attention", "interneuron_attention",
                     "softmax_attention"):
            result = _tensors(CIRCUITS[name](q, k, v, False))[0]
            assert result.dtype == dtype and bool(torch.isfinite(result).all()), (name, dtype)


@pytest.mark.parametrize("baseline", [0.0, -1.0, float("nan")])
def test_measure_events_flags_an_unusable_baseline(baseline):
    trace = np.full(100, 1.0)
    trace[:20] = baseline
    trace[50] = 3.0
    flat = np.full(100, 1.0)  # a noiseless baseline: SNR undefined
    flat[50] = 2.0
    traces = [trace, flat] if math.isfinite(baseline) else [flat]
    table = recordings.measure_events(recordings.Recordings(tuple(traces), 20.0))
    usable = table[table["status"] == "ok"]
    assert np.isfinite(usable["value"]).all()
    assert table.loc[table["metric"] == "event_snr", "status"].eq("insufficient_data").all()


def biology_reading_recordings(folder: Path) -> Path:
    """The biology spec with its smoke profile reading the calcium recordings (the shipped smoke profile does not)."""
    text = (REPOSITORY / "analyses" / "biology.toml").read_text()
    assert text.count("use_recordings = false") == 1
    return spec(folder, "biology_recordings", text=text.replace("use_recordings = false", "use_recordings = true"))


# ------------------------------------------------------------------------------ 9: OS errors, one line each
def test_a_full_disk_is_one_line_exit_1_and_resume_completes(reference, tmp_path, capsys, monkeypatch, stub_pdf):
    run = tmp_path / "run"
    real = safe_io._write_all
    written = []

    def full_disk(handle, data):
        if len(written) >= 3:  # the log, the marker and a few files go through; then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(1)
        real(handle, data)

    monkeypatch.setattr(safe_io, "_write_all", full_disk)
    assert analyze.main([str(spec(tmp_path)), "--out", str(run), *QUIET]) == 1
    error = capsys.readouterr().err
    assert "disk is full" in error and "--resume" in error and "Traceback" not in error
    assert not [path for path in run.rglob("*") if path.name.endswith(".tmp")]  # no half-written file left
    monkeypatch.setattr(safe_io, "_write_all", real)
    assert analyze.main([str(spec(tmp_path)), "--out", str(run), "--resume", *QUIET]) == 0
    same_tables(run, reference)


def test_an_out_longer_than_the_path_limit_is_exit_2(tmp_path, capsys):
    out = tmp_path / ("x" * 200) / ("y" * 300)
    assert analyze.main([str(spec(tmp_path)), "--out", str(out), *QUIET]) == 2
    error = capsys.readouterr().err
    assert "too long" in error and error.count("\n") == 1


def test_a_bit_flipped_calcium_file_is_exit_2_before_anything_is_written(tmp_path, capsys, monkeypatch):
    source = recordings.calcium_data_dir()
    if source is None:
        pytest.skip("no astrocyte-calcium data")
    data = tmp_path / "calcium"
    shutil.copytree(source, data)
    raw = data / recordings.REFERENCE_FILES["raw"][0]
    blob = bytearray(raw.read_bytes())
    for position in range(200, len(blob), 997):  # inside the compressed variable
        blob[position] ^= 0x10
    raw.write_bytes(bytes(blob))
    monkeypatch.setenv(recordings.CALCIUM_DIR_ENV, str(data))
    out = tmp_path / "out"
    assert analyze.main([str(biology_reading_recordings(tmp_path)), "--out", str(out), *QUIET]) == 2
    error = capsys.readouterr().err
    assert "raw_astrotrace_snippets.mat" in error and "Traceback" not in error and not out.exists()


def test_a_scheduler_port_speaking_http_is_one_line_and_leaves_nothing_running(tmp_path, capsys):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        try:
            connection, _ = server.accept()
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
            time.sleep(2)
            connection.close()
        except OSError:
            pass

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        assert analyze.main([str(spec(tmp_path)), "--scheduler", address, "--out", str(tmp_path / "o"), *QUIET]) == 2
    finally:
        server.close()
    error = capsys.readouterr().err
    assert "does not speak Dask" in error and error.count("\n") == 1
    assert not [thread for thread in threading.enumerate() if thread.name == "astrostats-connect"]


# ---------------------------------------------------------------------------- 10: a calcium folder that is not
def test_a_calcium_variable_naming_no_folder_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(recordings.CALCIUM_DIR_ENV, str(tmp_path / "missing"))
    out, biology = tmp_path / "out", str(biology_reading_recordings(tmp_path))
    assert analyze.main([biology, "--out", str(out), *QUIET]) == 2
    assert recordings.CALCIUM_DIR_ENV in capsys.readouterr().err and not out.exists()
    monkeypatch.setenv(recordings.CALCIUM_DIR_ENV, str(tmp_path))  # a folder without the files
    assert analyze.main([biology, "--out", str(out), *QUIET]) == 2
    assert not out.exists()


# ------------------------------------------------------------------ 11: a table replaced by a link: a way out
def test_a_table_replaced_by_a_link_is_named_and_replaced_on_resume(reference, tmp_path, stub_pdf):
    run = copy_run(reference, tmp_path / "run")
    target = tmp_path / "elsewhere.parquet"
    shutil.copy(run / "tables" / "tiny.parquet", target)
    (run / "tables" / "tiny.parquet").unlink()
    (run / "tables" / "tiny.parquet").symlink_to(target)
    before = target.read_bytes()
    assert analyze.main([str(spec(tmp_path)), "--out", str(run), "--resume", *QUIET]) == 0
    log = (run / "astrostats.log").read_text()
    assert "tiny.parquet" in log and "symbolic link" in log and "rm " in log
    assert not (run / "tables" / "tiny.parquet").is_symlink() and target.read_bytes() == before
    same_tables(run, reference)


# -------------------------------------------------------------------------------- 12: determinism, stated
def test_runs_agree_byte_for_byte_at_one_thread_count_and_to_the_tolerance_across(reference, tmp_path, stub_pdf):
    again = tmp_path / "again"
    assert analyze.main([str(spec(tmp_path)), "--out", str(again), *QUIET]) == 0
    same_tables(again, reference)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        other = tmp_path / "threads"
        assert analyze.main([str(spec(tmp_path)), "--out", str(other), *QUIET]) == 0
    finally:
        torch.set_num_threads(threads)
    for path in sorted((reference / "tables").glob("*.parquet")):
        differences = outputs.table_differences(pd.read_parquet(path), pd.read_parquet(other / "tables" / path.name))
        assert differences == [], (path.name, differences)


@pytest.mark.parametrize("analysis, key, small, large", [("overfitting", "max_epochs", 10, 1000),
                                                          ("known_answers", "n_replicates", 2, 200),
                                                          ("biology", "hill_n", [1], list(range(1, 101)))])
def test_a_studys_own_work_counts_in_its_estimate(analysis, key, small, large):
    """Training epochs, planted replicates and astrocyte variants are work the parameters' names do not show: each
    study declares it (study_cost), and the estimate grows with it."""
    from astrostats import cost
    from astrostats.spec import ANALYSES_DIR, load_spec
    from astrostats.studies import get_study

    def seconds(value):
        spec = load_spec(ANALYSES_DIR / f"{analysis}.toml", profile="quick")
        study = get_study(spec.kind)
        parameters = dataclasses.replace(spec.bind(study.Parameters), **{key: value})
        return cost.estimate(analysis, parameters, getattr(study, "COST_IGNORED", ()),
                             study.study_cost(parameters)).core_seconds

    assert seconds(large) > 3 * seconds(small)


def test_a_plan_whose_training_alone_is_too_long_is_refused(tmp_path, capsys, no_hang):
    """The smoke overfitting analysis with 10^9 epochs: its circuits alone take seconds, its training (early
    stopping aside) about 50 hours of one core, refused under --max-hours 1."""
    out = tmp_path / "out"
    assert analyze.main(["overfitting", "--profile", "smoke", "--set", "max_epochs=1000000000", "--max-hours", "1",
                         "--out", str(out), *QUIET]) == 2
    assert "--max-hours" in capsys.readouterr().err and not out.exists()
