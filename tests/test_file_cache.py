"""The user-cache folder of files derived from a source file (SmolLM2's dequantised GGUF): built once, trusted only
when the source's and every file's SHA-256 match its record, rebuilt with a warning when they do not."""
import json
import warnings

import pytest

from astrostats.targets import file_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    file_cache._sha256_of.cache_clear()
    source = tmp_path / "model.gguf"
    source.write_bytes(b"quantised weights")
    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "model.safetensors").write_bytes(source.read_bytes().upper())
        (folder / "config.json").write_text("{}")

    def get():
        file_cache._sha256_of.cache_clear()  # as a new process would
        return file_cache.cached_folder(source, "test", build)

    return source, builds, get


def test_built_once_in_the_user_cache_then_reused(cache, tmp_path):
    source, builds, get = cache
    first = get()
    assert first.parent == tmp_path / "xdg" / "astrostats"
    assert (first / "model.safetensors").read_bytes() == b"QUANTISED WEIGHTS"
    record = json.loads((first / file_cache.RECORD).read_text())
    assert record["source_sha256"] == file_cache.sha256(source)
    assert set(record["files"]) == {"model.safetensors", "config.json"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get() == first
    assert len(builds) == 1
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no staging folder left behind


@pytest.mark.parametrize("damage", ["change", "truncate", "delete", "record"])
def test_a_damaged_cache_is_detected_deleted_and_rebuilt_with_a_warning(cache, damage):
    source, builds, get = cache
    folder = get()
    target = folder / ("model.safetensors" if damage != "record" else file_cache.RECORD)
    if damage == "change":
        target.write_bytes(b"QUANTISED WEIGHTz")  # same size: only the hash can tell
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:3])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="deleted and rebuilt"):
        again = get()
    assert again == folder and len(builds) == 2
    assert (again / "model.safetensors").read_bytes() == b"QUANTISED WEIGHTS"


def test_another_source_gets_its_own_folder(cache):
    source, builds, get = cache
    first = get()
    source.write_bytes(b"other weights")
    second = get()
    assert second != first and len(builds) == 2
    assert (second / "model.safetensors").read_bytes() == b"OTHER WEIGHTS"


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    source = tmp_path / "model.gguf"
    source.write_bytes(b"x")

    def broken(folder):
        (folder / "half.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        file_cache.cached_folder(source, "test", broken)
    assert list((tmp_path / "xdg" / "astrostats").iterdir()) == []
