"""Writing and reading a run's outputs safely: every file is written to a temporary name and renamed, so an
interrupted run never leaves a half-written file in place of a complete one."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from astrostats.validation import InputError


def check_writable(directory: Path) -> Path:
    """The output folder, or the nearest existing parent, must be writable; nothing is created here."""
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"--out: folder {str(directory)!r} cannot be written ({str(probe)!r} is not a writable folder)")
    return directory


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_table(tables_dir: Path, name: str, table: pd.DataFrame) -> dict:
    """CSV (for people) and parquet (exact types) side by side; returns their hashes for the manifest."""
    csv_bytes = table.to_csv(index=False, float_format="%.10g", lineterminator="\n").encode()
    atomic_write_bytes(tables_dir / f"{name}.csv", csv_bytes)
    parquet_path = tables_dir / f"{name}.parquet"
    handle, temporary = tempfile.mkstemp(dir=tables_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(handle)
    try:
        table.to_parquet(temporary, index=False)
        os.replace(temporary, parquet_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return {"rows": len(table), "csv_sha256": hashlib.sha256(csv_bytes).hexdigest()}


def read_tables(tables_dir: Path, names) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(tables_dir / f"{name}.parquet") for name in names
            if (tables_dir / f"{name}.parquet").exists()}
