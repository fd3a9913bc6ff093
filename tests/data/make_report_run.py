"""Cut tests/data/report_run from a default run: the manifest and every table as parquet, measurement tables
thinned to their first seeds and sequences (so figures keep their shape) and per-epoch histories to every
tenth epoch. Result and fit tables are kept whole: the verdicts are those of the run.

    PYTHONPATH=$PWD python -m astrostats.analyze --out /tmp/run --quiet
    PYTHONPATH=$PWD python tests/data/make_report_run.py /tmp/run
"""
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent / "report_run"
KEEP = {"seed": 2, "sequence_id": 3}  # first values kept in tables with more rows than THIN_ABOVE
THIN_ABOVE = 2000


def thin(table: pd.DataFrame) -> pd.DataFrame:
    if len(table) <= THIN_ABOVE:
        return table
    for column, count in KEEP.items():
        if column in table and table[column].nunique() > count:
            table = table[table[column].isin(sorted(table[column].dropna().unique())[:count])]
    if "epoch" in table:
        table = table[table["epoch"] % 10 == 0]
    return table


def main(source: Path) -> None:
    manifest = json.loads((source / "manifest.json").read_text())
    shutil.rmtree(HERE, ignore_errors=True)
    (HERE / "tables").mkdir(parents=True)
    for record in manifest["analyses"]:
        for name in record.get("tables", []):
            table = pd.read_parquet(source / "tables" / f"{name}.parquet")
            thin(table).to_parquet(HERE / "tables" / f"{name}.parquet", index=False)
    keep = ("profile", "git", "analyses", "versions", "created_by")
    (HERE / "manifest.json").write_text(json.dumps({k: manifest[k] for k in keep if k in manifest}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
