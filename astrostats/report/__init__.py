"""Figures, the PDF report and the audit: everything here reads tables, never circuits."""
