"""The command line: ``python -m astrostats.analyze [ANALYSIS ...]``.

With no arguments it runs every spec in analyses/ at the quick profile and writes, under --out (reports/):
tables/*.csv and *.parquet, figures/*.png, report.pdf, audit.md, audit.json, manifest.json and a log.
Exit status: 0 all analyses ran, 1 some analysis failed (the others still complete, the audit says which),
2 bad input (nothing written).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from astrostats import outputs, provenance
from astrostats.spec import PROFILES, Spec, available_specs, load_spec, resolve_spec_argument
from astrostats.studies import get_study
from astrostats.studies.base import RunContext
from astrostats.validation import InputError, check_int

LOG = logging.getLogger("astrostats")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m astrostats.analyze", description=__doc__.split("\n")[0])
    parser.add_argument("analyses", nargs="*", help="analysis names (see --list) or paths to spec files; default: all")
    parser.add_argument("--list", action="store_true", help="list the available analyses and exit")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports/)")
    parser.add_argument("--profile", choices=PROFILES, default="quick", help="smoke | quick (default) | full | exhaustive")
    parser.add_argument("--seed", type=int, default=None, help="override every spec's base seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or console log")
    parser.add_argument("--audit-only", action="store_true", help="rebuild audit and report from stored tables")
    parser.add_argument("--from", dest="from_dir", type=Path, default=None, help="with --audit-only: the run folder")
    parser.add_argument("--resume", action="store_true", help="reuse finished analyses and cached tasks in --out")
    parser.add_argument("--workers", type=int, default=None, help="run tasks on N local Dask worker processes")
    parser.add_argument("--scheduler", default=None, help="run tasks on an existing Dask cluster (tcp://HOST:PORT)")
    return parser.parse_args(argv)


def setup_logging(out_dir: Path, quiet: bool) -> None:
    LOG.setLevel(logging.INFO)
    for handler in list(LOG.handlers):
        LOG.removeHandler(handler)
        handler.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(out_dir / "astrostats.log", mode="a")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    LOG.addHandler(file_handler)
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        LOG.addHandler(console)


def resolve_specs(args) -> list[Spec]:
    """Every requested spec, resolved and its parameters checked, before anything is written."""
    if args.seed is not None:
        check_int("--seed", args.seed, minimum=0)
    names = args.analyses or list(available_specs())
    specs = [resolve_spec_argument(name, args.profile).with_seed(args.seed) for name in names]
    for spec in specs:
        spec.bind(get_study(spec.kind).Parameters)
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise InputError(f"analyses: spec name {spec.name!r} requested twice")
        seen.add(spec.name)
    return specs


def spec_record(spec: Spec) -> dict:
    return {"name": spec.name, "kind": spec.kind, "question": spec.question, "source": spec.source,
            "file_sha256": spec.file_sha256, "spec_sha256": spec.sha256, "seed": spec.seed,
            "profile": spec.profile, "parameters": spec.parameters, "preregistration": spec.preregistration,
            "amendments": list(spec.amendments)}


def finished_record(out_dir: Path, spec: Spec, code: str) -> dict | None:
    """A previous completion of this exact spec and code in out_dir, whose tables are all present."""
    path = out_dir / ".done" / f"{spec.name}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        LOG.warning("%s: unreadable completion record %s; recomputing", spec.name, path)
        return None
    tables_present = all((out_dir / "tables" / f"{name}.parquet").exists() for name in record.get("tables", {}))
    if record.get("spec_sha256") == spec.sha256 and record.get("code_version") == code and tables_present:
        return record
    return None


def run_analysis(spec: Spec, context: RunContext, code: str, resume: bool) -> dict:
    """Run one analysis, write its tables, and return its manifest record (status ok or failed)."""
    record = spec_record(spec)
    tables_dir = context.out_dir / "tables"
    previous = finished_record(context.out_dir, spec, code) if resume else None
    if previous is not None:
        LOG.info("%s: finished in an earlier run, reusing its tables", spec.name)
        return {**record, "status": "ok", "resumed": True, "tables": previous["tables"],
                "seconds": previous["seconds"]}
    start = time.perf_counter()
    LOG.info("%s: running (%s profile)", spec.name, spec.profile)
    try:
        tables = get_study(spec.kind).run(spec, context)
        written = {name: outputs.write_table(tables_dir, name, table) for name, table in tables.items()}
    except InputError as error:
        LOG.error("%s: not run: %s", spec.name, error)
        return {**record, "status": "not_run", "error": str(error), "tables": {},
                "seconds": time.perf_counter() - start}
    except Exception as error:  # a failed analysis is reported, and the others still run
        LOG.error("%s: failed: %s\n%s", spec.name, error, traceback.format_exc())
        return {**record, "status": "failed", "error": f"{type(error).__name__}: {error}", "tables": {},
                "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    LOG.info("%s: done in %.1f s (%d tables)", spec.name, seconds, len(written))
    done = {**record, "status": "ok", "tables": written, "seconds": seconds, "code_version": code}
    outputs.write_json(context.out_dir / ".done" / f"{spec.name}.json", done)
    return {key: value for key, value in done.items() if key != "code_version"}


def make_executor(args, out_dir: Path):
    from astrostats.execution import make_executor as build

    return build(workers=args.workers, scheduler=args.scheduler, cache_dir=out_dir / ".cache", resume=args.resume)


def run(args) -> int:
    out_dir = outputs.check_writable(args.out)
    if args.audit_only:
        from astrostats.report.build import rebuild_from

        source = args.from_dir or out_dir
        if not (source / "manifest.json").exists():
            raise InputError(f"--from: {str(source)!r} holds no manifest.json from an earlier run")
        setup_logging(out_dir, args.quiet)
        rebuild_from(source, out_dir)
        return 0
    if args.from_dir is not None:
        raise InputError("--from: only meaningful with --audit-only")
    if args.workers is not None:
        check_int("--workers", args.workers, minimum=1)
    specs = resolve_specs(args)
    code = provenance.code_version()
    started = time.perf_counter()
    with make_executor(args, out_dir) as executor:  # an unreachable scheduler fails here, before any write
        setup_logging(out_dir, args.quiet)
        context = RunContext(out_dir=out_dir, progress=not args.quiet, executor=executor)
        records = [run_analysis(spec, context, code, args.resume) for spec in specs]
    manifest = {"created_by": "python -m astrostats.analyze " + " ".join(sys.argv[1:]),
                "profile": args.profile, "versions": provenance.versions(), "git": provenance.git_commit(),
                "code_version": code, "machine": provenance.machine(), "analyses": records,
                "wall_seconds": time.perf_counter() - started}
    from astrostats.report.build import build_outputs

    build_outputs(out_dir, manifest)
    failed = [record["name"] for record in records if record["status"] != "ok"]
    if failed:
        LOG.error("analyses not completed: %s (see audit.md and astrostats.log)", ", ".join(failed))
    LOG.info("outputs in %s", out_dir)
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.quiet:  # the model loaders' own progress bars too; set before transformers is first imported
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
    try:
        if args.list:
            for name, path in available_specs().items():
                spec = load_spec(path)
                print(f"{name:16s} {spec.kind:12s} {spec.question}")
            return 0
        return run(args)
    except InputError as error:
        print(f"astrostats: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
