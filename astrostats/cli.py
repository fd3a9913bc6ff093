"""The ``astrostats`` console script: ``astrostats run``, ``astrostats list`` and ``astrostats report``.

Each subcommand is a named face of ``python -m astrostats.analyze`` (astrostats.analyze), which keeps working
unchanged: ``run`` takes the same analyses and options, ``list`` is ``--list``, and ``report --from RUN --out OUT``
is ``--audit-only --from RUN --out OUT``. Errors, exit status and outputs are the same.
"""
from __future__ import annotations

import argparse
import difflib
import shlex
import sys

from astrostats import analyze
from astrostats.spec import available_specs
from astrostats.validation import did_you_mean

COMMANDS = ("run", "list", "report")

DESCRIPTION = """\
Audit whether a neuron-astrocyte circuit computes Transformer attention (Kozachkov et al., PNAS 2023).

astrostats runs analyses (circuits, exact attention and null models on synthetic heads and real Transformers),
judges each claim C1-C7 of the paper by a fixed written rule, and writes a PDF report, a referee-style audit and
the tables behind every verdict."""

EXAMPLES = """\
examples:
  astrostats run                                     every analysis at the quick profile (3-4 min), into reports/
  astrostats run scaling --profile smoke --out runs/try        one analysis at tiny sizes: does it run?
  astrostats run scaling --set m=[8,16,32] --set n_seeds=4     your own values for a spec's parameters
  astrostats report --from runs/try --out runs/try-again       audit and report again from stored tables

Each command has its own help: astrostats run --help. Reference: docs/reference/cli.md"""

REPORT_EXAMPLES = """\
examples:
  astrostats report --from reports                   rebuild report.pdf and audit.md in reports/ itself
  astrostats report --from reports --out rebuilt     a copy of the run with a fresh audit, in rebuilt/"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astrostats", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=analyze.version_line())
    commands = parser.add_subparsers(dest="command", metavar="{run,list,report}")
    run = commands.add_parser("run", help="run analyses and write the report (python -m astrostats.analyze)",
                              description=analyze.DESCRIPTION.format(listing="astrostats list"),
                              epilog=analyze.EXAMPLES.format(prog="astrostats run"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    analyze.add_run_arguments(run, audit_flags=False)
    commands.add_parser("list", help="the analyses (and the question each answers) and the circuits",
                        description="List the analyses, the question each answers, and the circuits --circuit takes.")
    report = commands.add_parser("report", help="audit and report again from a finished run's stored tables",
                                 description="Judge the claims and typeset report.pdf again from a finished run's\n"
                                             "stored tables, each checked against its recorded SHA-256; nothing is\n"
                                             "recomputed (python -m astrostats.analyze --audit-only).",
                                 epilog=REPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("--from", dest="from_dir", required=True, metavar="RUN",
                        help="the finished run's folder (it holds manifest.json)")
    report.add_argument("--out", default=None, metavar="OUT", help="where to write (default: the --from folder)")
    report.add_argument("--quiet", action="store_true", help="no console log or verdict summary: errors only")
    return parser


def analyze_arguments(args) -> argparse.Namespace:
    """The parsed subcommand as the namespace ``python -m astrostats.analyze`` would have parsed."""
    namespace = analyze.parse_arguments([])  # every option at its default
    if args.command == "list":
        namespace.list = True
        return namespace
    for key, value in vars(args).items():
        if key != "command":
            setattr(namespace, key, value)
    if args.command == "report":
        from pathlib import Path

        namespace.audit_only = True
        namespace.from_dir = Path(args.from_dir)
        namespace.out = args.out if args.out is not None else args.from_dir
    return namespace


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    first = argv[0]
    if not first.startswith("-") and first not in COMMANDS:
        hint = did_you_mean(first, COMMANDS)
        if not hint:  # an analysis named without "run" (or mistyped): the command it was probably meant as
            analyses = list(available_specs())
            analysis = first if first in analyses or first.endswith(".toml") else \
                next(iter(difflib.get_close_matches(first, analyses, n=1, cutoff=0.6)), None)
            hint = f" (did you mean 'astrostats run {analysis}'?)" if analysis else ""
        print(f"astrostats: error: unknown command {first!r}{hint}; the commands: {', '.join(COMMANDS)} "
              "(astrostats --help)", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    namespace = analyze_arguments(args)
    namespace.command_line = shlex.join(["astrostats", *argv])
    return analyze.execute(namespace)


if __name__ == "__main__":
    sys.exit(main())
