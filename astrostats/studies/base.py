"""What every study receives besides its spec."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunContext:
    """Where outputs go and how work is executed (progress bars, executor, cache)."""

    out_dir: Path
    progress: bool = True
    executor: Any = None  # astrostats.execution executor; None = in process
