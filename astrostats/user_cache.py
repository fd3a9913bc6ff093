"""Where astrostats keeps what it builds or converts once per machine (the compiled circuit, dequantised model
weights): ``$XDG_CACHE_HOME/astrostats``, or ``~/.cache/astrostats``. Read when used, not at import, so that a
process started before the variable was set still finds the right folder."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "astrostats"


__all__ = ["cache_root"]
