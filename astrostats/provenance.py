"""What every output records: package versions, the git commit, the machine, and the code's own hash."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
PACKAGES = ("astrostats", "torch", "numpy", "scipy", "pandas", "statsmodels", "matplotlib", "seaborn",
            "transformers", "safetensors", "dask", "distributed", "pyarrow", "tqdm")


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> dict[str, str | bool | None]:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def code_version(package_root: Path = PACKAGE_ROOT) -> str:
    """Hash of the package's own source: cached results are invalid once any of it changes."""
    digest = hashlib.sha256()
    for path in sorted(package_root.rglob("*.py")):
        digest.update(path.relative_to(package_root).as_posix().encode() + b"\0")  # separators: no ambiguity
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
