"""The command line: ``python -m astrostats.analyze [ANALYSIS ...]``.

With no arguments it runs every spec in analyses/ at the quick profile and writes, under --out (reports/):
tables/*.csv and *.parquet, figures/*.png, report.pdf, audit.md, audit.json, manifest.json and a log.
Exit status: 0 all analyses ran, 1 some analysis failed (the others still complete, the audit says which) or the
run itself failed (a full disk, an I/O error: one line names it), 2 bad input (nothing written; also a folder in
use by another run, stored outputs that fail their checksums or HMACs, a planted link, a plan over --max-hours or
--max-gib), 130 interrupted (Ctrl-C). Never a traceback: docs/how-to/safety.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from astrostats import cost, outputs, provenance
from astrostats.analysis_run import INPUT_ERRNOS, os_error_line, quiet_progress, run_analysis, setup_logging
from astrostats.audited import audited_circuit_record, with_circuit
from astrostats.memory import keep_freed_memory
from astrostats.spec import PROFILES, Spec, available_specs, load_spec, resolve_spec_argument
from astrostats.studies import get_study
from astrostats.studies.base import RunContext
from astrostats.validation import MAX_SEED, InputError, check_int

DEFAULT_OUT = "reports"
DEFAULT_PROFILE = "quick"

LOG = logging.getLogger("astrostats")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m astrostats.analyze", description=__doc__.split("\n")[0])
    parser.add_argument("analyses", nargs="*", help="analysis names (see --list) or paths to spec files; default: all")
    parser.add_argument("--list", action="store_true", help="list the available analyses and exit")
    parser.add_argument("--out", default=None, help="output folder (default: reports/)")
    parser.add_argument("--profile", choices=PROFILES, default=None, help="smoke | quick (default) | full | exhaustive")
    parser.add_argument("--seed", type=int, default=None, help="override every spec's base seed")
    parser.add_argument("--circuit", default=None,
                        help="the circuit under audit: a registered name (see --list), an installed entry point or "
                             "package.module:callable (default: the paper's astrocyte circuit)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or console log")
    parser.add_argument("--audit-only", action="store_true", help="rebuild audit and report from stored tables")
    parser.add_argument("--from", dest="from_dir", type=Path, default=None, help="with --audit-only: the run folder")
    parser.add_argument("--resume", action="store_true", help="reuse finished analyses and cached tasks in --out")
    parser.add_argument("--workers", type=int, default=None, help="run tasks on N local Dask worker processes")
    parser.add_argument("--scheduler", default=None, help="run tasks on an existing Dask cluster (tcp://HOST:PORT)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="analyses run at once, each in its own process (default: one per core; 1 with --workers "
                             "or --scheduler)")
    parser.add_argument("--max-hours", type=float, default=None,
                        help=f"refuse a plan estimated to take longer (default {cost.DEFAULT_MAX_HOURS:g})")
    parser.add_argument("--max-gib", type=float, default=None,
                        help="refuse an analysis estimated to need more memory (default: this machine's memory)")
    return parser.parse_args(argv)


def resolve_specs(args) -> list[Spec]:
    """Every requested spec, resolved, its parameters checked and its cost estimated (memory and time, against
    --max-gib and --max-hours), before anything is written; the estimate is logged once the run starts (and
    printed unless --quiet), and a plan refused says it in its message."""
    if args.seed is not None:
        check_int("--seed", args.seed, minimum=0, maximum=MAX_SEED)
    max_hours, max_gib = getattr(args, "max_hours", None), getattr(args, "max_gib", None)
    for flag, value in (("--max-hours", max_hours), ("--max-gib", max_gib)):
        if value is not None and not (value > 0 and value != float("inf")):
            raise InputError(f"{flag}: expected a positive number, got {value!r}")
    names = args.analyses or list(available_specs())
    specs = [with_circuit(resolve_spec_argument(name, args.profile).with_seed(args.seed), args.circuit)
             for name in names]
    args.audited_circuit = audited_circuit_record(specs)
    costs = []
    for spec in specs:
        study = get_study(spec.kind)
        parameters = spec.bind(study.Parameters)
        costs.append(cost.estimate(spec.name, parameters, getattr(study, "COST_IGNORED", ())))
    from astrostats.parallel import usable_cores

    summary = cost.check(costs, cores=usable_cores(), max_gib=max_gib, max_hours=max_hours)
    for spec in specs:  # the study's own checks of what it reads (the calcium data), once the plan fits
        preflight = getattr(get_study(spec.kind), "preflight", None)
        if preflight is not None:
            preflight(spec.bind(get_study(spec.kind).Parameters))
    args.cost_summary = [item.line() for item in costs] + [summary]
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise InputError(f"analyses: spec name {spec.name!r} requested twice")
        seen.add(spec.name)
    return specs


def make_executor(args, out_dir: Path):
    from astrostats.execution import make_executor as build

    return build(workers=args.workers, scheduler=args.scheduler, cache_dir=out_dir / ".cache", resume=args.resume)


AUDIT_ONLY_CONFLICTS = (("analyses", "analysis names"), ("resume", "--resume"), ("workers", "--workers"),
                        ("scheduler", "--scheduler"), ("seed", "--seed"), ("profile", "--profile"), ("jobs", "--jobs"),
                        ("circuit", "--circuit"),
                        ("max_hours", "--max-hours"), ("max_gib", "--max-gib"))


def check_flags(args) -> None:
    """Flags that cannot apply together are an error, not silently ignored."""
    if args.audit_only:
        for attribute, flag in AUDIT_ONLY_CONFLICTS:
            value = getattr(args, attribute)
            if value is not None and value is not False and value != []:  # --seed 0 is a value too
                raise InputError(f"{flag}: not meaningful with --audit-only, which recomputes nothing "
                                 f"(got {value!r})")
    elif args.from_dir is not None:
        raise InputError("--from: only meaningful with --audit-only")
    if args.workers is not None:
        check_int("--workers", args.workers, minimum=1)
    if args.jobs is not None:
        check_int("--jobs", args.jobs, minimum=1)
        if args.jobs > 1 and (args.workers is not None or args.scheduler is not None):
            raise InputError(f"--jobs: {args.jobs} analyses at once cannot share one Dask executor; with --workers "
                             "or --scheduler the tasks are spread over its workers instead (leave --jobs out or use 1)")


def analysis_jobs(args, n_specs: int) -> int:
    """How many analyses run at once (astrostats.parallel): --jobs, else one per usable core; one with a Dask
    executor, which spreads the tasks itself."""
    if args.jobs is not None:
        return min(args.jobs, n_specs)
    if args.workers is not None or args.scheduler is not None:
        return 1
    from astrostats.parallel import usable_cores

    return min(usable_cores(), n_specs)


def run(args) -> int:
    check_flags(args)
    out_dir = outputs.check_writable(DEFAULT_OUT if args.out is None else args.out)
    outputs.check_folder(out_dir)  # a planted link stops the run here, before anything is written
    if args.audit_only:
        return audit_only(args, out_dir)
    args.profile = args.profile or DEFAULT_PROFILE
    keep_freed_memory()
    specs = resolve_specs(args)
    code = provenance.code_version()
    started = time.perf_counter()
    command = "python -m astrostats.analyze " + " ".join(sys.argv[1:])
    with make_executor(args, out_dir) as executor:  # an unreachable scheduler fails here, before any write
        outputs.create_folder(out_dir)
        with outputs.RunLock(out_dir) as lock:  # a second run into this folder stops here (exit 2)
            lock.mark_started({"command": command, "seeds": {spec.name: spec.seed for spec in specs}})
            setup_logging(out_dir, args.quiet)
            stale = outputs.remove_stale_temporaries(out_dir)  # half-written files of a killed run
            if stale:
                LOG.info("removed %d half-written file(s) a killed run left", stale)
            for line in getattr(args, "cost_summary", []):
                LOG.info("%s", line)
            jobs = analysis_jobs(args, len(specs))
            if jobs > 1:
                from astrostats.parallel import run_analyses

                LOG.info("%d analyses, %d at a time in separate processes", len(specs), jobs)
                records = run_analyses(specs, out_dir, code, args.resume, jobs, args.quiet)
            else:
                context = RunContext(out_dir=out_dir, progress=not args.quiet, executor=executor)
                records = [run_analysis(spec, context, code, args.resume) for spec in specs]
            manifest = {"created_by": command, "profile": args.profile, "versions": provenance.versions(),
                        "git": provenance.git_commit(), "code_version": code, "machine": provenance.machine(),
                        "audited_circuit": args.audited_circuit, "analyses": records,
                        "wall_seconds": time.perf_counter() - started}
            from astrostats.report.build import build_outputs

            build_outputs(out_dir, manifest)
            lock.finish()
    failed = [record["name"] for record in records if record["status"] != "ok"]
    if failed:
        LOG.error("analyses not completed: %s (see audit.md and astrostats.log)", ", ".join(failed))
    LOG.info("outputs in %s", out_dir)
    return 1 if failed else 0


def audit_only(args, out_dir: Path) -> int:
    """Audit and report rebuilt from a finished run's verified tables; nothing corrupt is copied or read."""
    from astrostats.report.build import rebuild_from, redraw_requested, verified_manifest

    redraw_requested()  # a malformed setting is refused before anything is written

    source = Path(args.from_dir) if args.from_dir is not None else out_dir
    if not (source / "manifest.json").exists():
        raise InputError(f"--from: {str(source)!r} holds no manifest.json from an earlier run")
    same = source.resolve() == out_dir.resolve()
    if not same:
        verified_manifest(source)  # refused before anything is created in out_dir
    outputs.create_folder(out_dir)
    with outputs.RunLock(out_dir) as lock:
        manifest = verified_manifest(source, locked_here=same)  # again under the lock: the files read are the files checked
        lock.mark_started({"command": "python -m astrostats.analyze " + " ".join(sys.argv[1:])})
        setup_logging(out_dir, args.quiet)
        outputs.remove_stale_temporaries(out_dir)
        rebuild_from(source, out_dir, manifest)
        lock.finish()
    return 0


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.quiet:
        quiet_progress()
    try:
        if args.list:
            print("analyses:")
            for name, path in available_specs().items():
                spec = load_spec(path)
                print(f"  {name:16s} {spec.kind:12s} {spec.question}")
            from astrostats.circuits import get_circuit, registered_names

            print("circuits (--circuit):")
            for name in registered_names():
                print(f"  {name:20s} {get_circuit(name).description}")
            return 0
        return run(args)
    except InputError as error:
        print(f"astrostats: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("astrostats: interrupted; finished analyses are kept, rerun with --resume to continue",
              file=sys.stderr)
        return 130
    except OSError as error:  # a full disk, a path too long, an I/O error: one line, never a traceback
        print(f"astrostats: error: {os_error_line(error)}", file=sys.stderr)
        return 2 if error.errno in INPUT_ERRNOS else 1
    except MemoryError:
        print("astrostats: error: out of memory (reduce the sizes, or set --max-gib below this machine's memory)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
