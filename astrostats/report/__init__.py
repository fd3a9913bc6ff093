"""Figures, the PDF report and the audit: everything here reads tables, never circuits."""
from astrostats.report.audit import judge_all

__all__ = ["judge_all"]
