"""Figures, the PDF report and audit.md/audit.json, from the stored tables and the claims' verdicts
(:mod:`astrostats.claims`): everything here reads tables, never circuits."""
from astrostats.report.audit import to_json, to_markdown

__all__ = ["to_markdown", "to_json"]
