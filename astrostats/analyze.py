"""The command line: ``python -m astrostats.analyze [ANALYSIS ...]`` (also ``astrostats run``, astrostats.cli).

With no arguments it runs every spec in analyses/ at the quick profile and writes, under --out (reports/):
tables/*.parquet (and *.csv with --csv), figures/*.svg, report.pdf, audit.md, audit.json, manifest.json and a log,
then prints each claim's verdict, the run's time and where report.pdf is (unless --quiet).
Exit status: 0 all analyses ran, 1 some analysis failed (the others still complete, the audit says which) or the
run itself failed (a full disk, an I/O error: one line names it), 2 bad input (nothing written; also a folder in
use by another run, stored outputs that fail their checksums or HMACs, a planted link, a plan over --max-hours or
--max-gib, an unknown --set key), 130 interrupted (Ctrl-C). Never a traceback: docs/how-to/safety.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

from astrostats import cost, outputs, progress, provenance
from astrostats.extras import MissingExtra
from astrostats.analysis_run import (INPUT_ERRNOS, EarlyRecords, os_error_line, quiet_progress, run_analysis,
                                     setup_console, setup_logging)
from astrostats.audited import audited_circuit_record, with_circuit
from astrostats.memory import keep_freed_memory
from astrostats.spec import (PROFILES, Spec, available_specs, load_spec, parse_override,
                             resolve_spec_argument)
from astrostats.studies import get_study
from astrostats.studies.base import RunContext
from astrostats.validation import MAX_SEED, InputError, check_choice, check_int, did_you_mean

DEFAULT_OUT = "reports"
DEFAULT_PROFILE = "quick"

LOG = logging.getLogger("astrostats")

DESCRIPTION = """\
Audit whether a neuron-astrocyte circuit computes Transformer attention (Kozachkov et al., PNAS 2023).

Runs the analyses (each a TOML spec in analyses/, see {listing}), judges each claim C1-C7 by a fixed written rule,
and writes report.pdf, audit.md, audit.json, the tables behind every verdict and manifest.json into --out.
With no analysis named, every analysis runs at the quick profile (3-4 minutes on 2 cores)."""

EXAMPLES = """\
examples:
  {prog}                                   every analysis, quick profile, into reports/
  {prog} scaling --profile smoke --out runs/try     one analysis, tiny sizes: does it run?
  {prog} scaling --set m=[8,16,32] --set n_seeds=4  your own values for any spec parameter
  {prog} my_variant.toml --out runs/variant --csv   your own spec file; tables also as CSV

exit status: 0 every analysis ran, 1 an analysis failed, 2 bad input (nothing written), 130 interrupted
(rerun with --resume). Reference: docs/reference/cli.md"""


def version_line() -> str:
    """``astrostats VERSION``: the package's ``__version__`` (read from the imported package, not imported by name:
    the package's __init__ reaches the library face, a layer above this one)."""
    return f"astrostats {sys.modules[__package__].__version__}"


def add_run_arguments(parser: argparse.ArgumentParser, *, audit_flags: bool = True) -> None:
    """The options of a run, shared by ``python -m astrostats.analyze`` and ``astrostats run``."""
    parser.add_argument("analyses", nargs="*", help="analysis names (see --list) or paths to spec files; default: all")
    parser.add_argument("--out", default=None, help="output folder (default: reports/)")
    parser.add_argument("--profile", default=None, metavar="{" + ",".join(PROFILES) + "}",
                        help="size of the run: smoke (seconds) | quick (default) | full | exhaustive (hours)")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="override a spec parameter in every analysis that has it (the value as TOML: m=[8,16,32], "
                             "n_seeds=4); ANALYSIS.KEY=VALUE for one analysis; repeatable; wins over the profile")
    parser.add_argument("--seed", type=int, default=None, help="override every spec's base seed")
    parser.add_argument("--circuit", default=None,
                        help="the circuit under audit: a registered name (see --list), an installed entry point or "
                             "package.module:callable (default: the paper's astrocyte circuit)")
    parser.add_argument("--csv", action="store_true",
                        help="write every table as CSV too, beside its parquet file (default: parquet only)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress view, console log or verdict summary: errors only")
    if audit_flags:
        parser.add_argument("--audit-only", action="store_true", help="rebuild audit and report from stored tables")
        parser.add_argument("--from", dest="from_dir", type=Path, default=None,
                            help="with --audit-only: the run folder")
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


def parse_arguments(argv, prog: str = "python -m astrostats.analyze"):
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION.format(listing="--list"),
                                     epilog=EXAMPLES.format(prog=prog),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--list", action="store_true", help="list the available analyses and circuits, and exit")
    add_run_arguments(parser)
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
    overrides = [parse_override(text) for text in getattr(args, "overrides", None) or ()]
    replaced = {key if scope is None else f"{scope}.{key}" for scope, key, _ in overrides}
    specs = [resolve_spec_argument(name, args.profile, replaced=replaced).with_seed(args.seed) for name in names]
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise InputError(f"analyses: spec name {spec.name!r} requested twice")
        seen.add(spec.name)
    specs = [with_circuit(spec, args.circuit) for spec in apply_overrides(specs, overrides, args)]
    args.audited_circuit = audited_circuit_record(specs)
    costs = []
    for spec in specs:
        study = get_study(spec.kind)
        try:
            parameters = spec.bind(study.Parameters)
        except InputError as error:
            if not spec.overrides:
                raise
            raise InputError(f"{spec.name} with --set {', '.join(spec.overrides)}: {error}") from None
        study_cost = getattr(study, "study_cost", None)  # what the parameters' names do not show
        costs.append(cost.estimate(spec.name, parameters, getattr(study, "COST_IGNORED", ()),
                                   study_cost(parameters) if study_cost is not None else cost.StudyCost()))
    from astrostats.parallel import usable_cores

    summary = cost.check(costs, cores=usable_cores(), max_gib=max_gib, max_hours=max_hours)
    for spec in specs:  # the study's own checks of what it reads (the calcium data), once the plan fits
        preflight = getattr(get_study(spec.kind), "preflight", None)
        if preflight is not None:
            preflight(spec.bind(get_study(spec.kind).Parameters))
    args.cost_summary = [item.line() for item in costs] + [summary]
    return specs


def parameter_keys(spec: Spec) -> list[str]:
    """The parameters a spec's study takes: what --set may name (the circuit under audit is --circuit's)."""
    return [item.name for item in dataclasses.fields(get_study(spec.kind).Parameters)
            if item.name != "audited_circuit"]


def apply_overrides(specs: list[Spec], overrides: list[tuple], args=None) -> list[Spec]:
    """The --set overrides applied to every spec whose study has the key (ANALYSIS.KEY: that analysis only),
    after the profile, so that they win; the scoped ones after the unscoped. An unknown key or analysis is an
    InputError naming it, the valid keys and the closest ones."""
    if not overrides:
        return specs
    keys = {spec.name: parameter_keys(spec) for spec in specs}
    chosen: dict[str, dict] = {spec.name: {} for spec in specs}
    lines = []
    for scope, key, value in sorted(overrides, key=lambda item: item[0] is not None):  # stable: order kept
        label = key if scope is None else f"{scope}.{key}"
        if key == "audited_circuit":
            raise InputError(f"--set {label}: the circuit under audit is set with --circuit NAME (it is checked "
                             "against the registered circuits and set on every analysis alike)")
        if scope is not None:
            if scope not in keys:
                raise InputError(f"--set {label}: no analysis named {scope!r} in this run{did_you_mean(scope, keys)}; "
                                 f"the run's analyses: {', '.join(keys)}")
            if key not in keys[scope]:
                raise InputError(f"--set {label}: analysis {scope} has no parameter {key!r}"
                                 f"{did_you_mean(key, keys[scope])}; its parameters: {', '.join(keys[scope])}")
            holders = [scope]
        else:
            holders = [name for name, names in keys.items() if key in names]
            if not holders:
                every = sorted({name for names in keys.values() for name in names})
                valid = "; ".join(f"{name}: {', '.join(names)}" for name, names in keys.items())
                raise InputError(f"--set {key}: no analysis in this run has a parameter {key!r}"
                                 f"{did_you_mean(key, every)}; valid keys: {valid}")
        for name in holders:
            chosen[name][key] = value
        lines.append(f"--set {label}={value!r}: applies to {', '.join(holders)}")
    if args is not None:
        args.override_lines = lines
    return [spec.with_overrides(chosen[spec.name]) for spec in specs]


def command_line(args) -> str:
    """The command as typed, for the manifest: ``astrostats run ...`` from the console script, else this module."""
    return getattr(args, "command_line", None) or "python -m astrostats.analyze " + " ".join(sys.argv[1:])


def make_executor(args, out_dir: Path):
    from astrostats.execution import make_executor as build

    return build(workers=args.workers, scheduler=args.scheduler, cache_dir=out_dir / ".cache", resume=args.resume)


AUDIT_ONLY_CONFLICTS = (("analyses", "analysis names"), ("resume", "--resume"), ("workers", "--workers"),
                        ("scheduler", "--scheduler"), ("seed", "--seed"), ("profile", "--profile"), ("jobs", "--jobs"),
                        ("circuit", "--circuit"), ("overrides", "--set"), ("csv", "--csv"),
                        ("max_hours", "--max-hours"), ("max_gib", "--max-gib"))


def check_flags(args) -> None:
    """Flags that cannot apply together are an error, not silently ignored."""
    if args.profile is not None:
        check_choice("--profile", args.profile, PROFILES)  # with the closest name, where one is close
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


def run_in_process(specs, board, executor, out_dir: Path, code: str, resume: bool, csv: bool) -> list[dict]:
    """The analyses one after another in this process, their progress bars reported to the board."""
    context = RunContext(out_dir=out_dir, progress=board.live, executor=executor)
    records = []
    with progress.report_bars(board.bar_callback):
        for spec in specs:
            board.current = spec.name
            board.event("status", spec.name, "running")
            records.append(run_analysis(spec, context, code, resume, csv=csv))
            board.event("status", spec.name, progress.status_of(records[-1]))
    return records


def preload_report() -> None:
    """Import what draws the figures and typesets the report (about 2 s of CPU) while the analysis processes run,
    so that the report starts as soon as they end; imports only (the report sets matplotlib's style itself), and
    joined before the report forks its figure processes. Failing here costs nothing: the report imports again."""
    try:
        for module in ("matplotlib.pyplot", "seaborn", "astrostats.report.build", "astrostats.report.figures.paper"):
            importlib.import_module(module)
    except Exception:  # a missing [report] extra, say: said by the report itself
        LOG.debug("report modules not preloaded", exc_info=True)


def run(args) -> int:
    check_flags(args)
    out_dir = outputs.check_writable(DEFAULT_OUT if args.out is None else args.out)
    outputs.check_folder(out_dir)  # a planted link stops the run here, before anything is written
    started = time.perf_counter()
    setup_console(args.quiet)  # what reading the specs warns about is seen at once (and kept for the log file)
    if args.audit_only:
        return audit_only(args, out_dir, started)
    args.profile = args.profile or DEFAULT_PROFILE
    keep_freed_memory()
    with EarlyRecords() as early:
        specs = resolve_specs(args)
    code = provenance.code_version()
    command = command_line(args)
    csv = bool(getattr(args, "csv", False))
    with make_executor(args, out_dir) as executor:  # an unreachable scheduler fails here, before any write
        outputs.create_folder(out_dir)
        with outputs.RunLock(out_dir) as lock:  # a second run into this folder stops here (exit 2)
            lock.mark_started({"command": command, "seeds": {spec.name: spec.seed for spec in specs}})
            setup_logging(out_dir, args.quiet, earlier=early.records)
            stale = outputs.remove_stale_temporaries(out_dir)  # half-written files of a killed run
            if stale:
                LOG.info("removed %d half-written file(s) a killed run left", stale)
            for line in [*getattr(args, "override_lines", []), *getattr(args, "cost_summary", [])]:
                LOG.info("%s", line)
            jobs = analysis_jobs(args, len(specs))
            preload = threading.Thread(target=preload_report, name="astrostats-preload", daemon=True)
            with progress.Board([spec.name for spec in specs], progress.wanted(args.quiet)) as board:
                if jobs > 1:
                    from astrostats.parallel import run_analyses

                    LOG.info("%d analyses, %d at a time in separate processes", len(specs), jobs)
                    preload.start()
                    records = run_analyses(specs, out_dir, code, args.resume, jobs, args.quiet, csv=csv, board=board)
                else:
                    records = run_in_process(specs, board, executor, out_dir, code, args.resume, csv)
            manifest = {"created_by": command, "profile": args.profile, "versions": provenance.versions(),
                        "git": provenance.git_commit(), "code_version": code, "machine": provenance.machine(),
                        "audited_circuit": args.audited_circuit, "analyses": records,
                        "overrides": list(getattr(args, "overrides", None) or []),
                        "table_formats": ["parquet", "csv"] if csv else ["parquet"],
                        "wall_seconds": time.perf_counter() - started}
            if preload.is_alive():  # no import half done when the report forks its figure processes
                preload.join()
            from astrostats.report.build import build_outputs

            verdicts = build_outputs(out_dir, manifest)
            lock.finish()
    failed = [record["name"] for record in records if record["status"] != "ok"]
    if failed:
        LOG.error("analyses not completed: %s (see audit.md and astrostats.log)", ", ".join(failed))
    LOG.info("outputs in %s", out_dir)
    if not args.quiet:
        print_summary(verdicts, out_dir, time.perf_counter() - started)
    return 1 if failed else 0


def audit_only(args, out_dir: Path, started: float | None = None) -> int:
    """Audit and report rebuilt from a finished run's verified tables; nothing corrupt is copied or read."""
    from astrostats.report.build import rebuild_from, redraw_requested, verified_manifest

    started = time.perf_counter() if started is None else started
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
        lock.mark_started({"command": command_line(args)})
        setup_logging(out_dir, args.quiet)
        outputs.remove_stale_temporaries(out_dir)
        verdicts = rebuild_from(source, out_dir, manifest)
        lock.finish()
    if not args.quiet:
        print_summary(verdicts, out_dir, time.perf_counter() - started)
    return 0


def summary_lines(verdicts, out_dir: Path, seconds: float, width: int | None = None, report: bool = True) -> list[str]:
    """The end of a run, for the person at the terminal: one line per claim (claim, verdict, its reason clipped to
    the terminal's width), then the run's time and where report.pdf is (without one, where audit.md is)."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    width = max(width, 60)
    verdict_width = max((len(v.verdict) for v in verdicts), default=0)
    lines = ["verdicts (audit.md gives each rule and the rows behind it):"]
    for verdict in verdicts:
        reason = " ".join(str(verdict.reason or verdict.headline or "").split())
        head = f"  {verdict.claim_id:<3} {verdict.verdict:<{verdict_width}}  "
        room = max(width - len(head) - 1, 10)
        lines.append(head + (reason if len(reason) <= room else reason[:room - 3].rstrip() + "..."))
    minutes, rest = divmod(seconds, 60)
    took = f"{int(minutes)} min {rest:.0f} s" if minutes else f"{seconds:.1f} s"
    lines.append(f"finished in {took}; report: {out_dir / 'report.pdf'}" if report else
                 f"finished in {took}; audit: {out_dir / 'audit.md'} (no report.pdf: pip install \"astrostats[report]\")")
    return lines


def print_summary(verdicts, out_dir: Path, seconds: float) -> None:
    report = (out_dir / "report.pdf").is_file()
    print("\n".join(summary_lines(verdicts, out_dir, seconds, report=report)), file=sys.stderr)


def list_analyses() -> int:
    """--list (``astrostats list``): the analyses with the question each answers, and the circuits."""
    print("analyses:")
    for name, path in available_specs().items():
        spec = load_spec(path)
        print(f"  {name:16s} {spec.kind:12s} {spec.question}")
    from astrostats.circuits import get_circuit, registered_names

    print("circuits (--circuit):")
    for name in registered_names():
        print(f"  {name:20s} {get_circuit(name).description}")
    return 0


def execute(args) -> int:
    """A parsed command line run to its exit status: bad input 2, an interrupt 130, an OSError one line."""
    if args.quiet:
        quiet_progress()
    try:
        if args.list:
            return list_analyses()
        return run(args)
    except InputError as error:
        print(f"astrostats: error: {error}", file=sys.stderr)
        return 2
    except MissingExtra as error:  # an optional feature asked for (--workers) without its extra: nothing written
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


def main(argv=None) -> int:
    return execute(parse_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
