"""The layering contracts (pyproject's [tool.importlinter]): the layers from the library face down to circuits and
stats, each importing only those below it (so no cycle), and the forbidden imports of circuits, stats, claims and
the report. Checked by import-linter on the source tree."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layering_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 kept, 0 broken" in result.stdout
