"""report.pdf: the bottom line first, then one section per claim (rule, evidence, figures, the table behind
the verdict), methods generated from the specs, and limitations. Matplotlib's PdfPages, no other engine."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

from astrostats.report.audit import evidence_line

PAGE = (8.27, 11.69)  # A4 portrait, inches
VERDICT_COLOURS = {"SUPPORTED": "#1a7f37", "NOT_SUPPORTED": "#cf222e", "INCONCLUSIVE": "#9a6700",
                   "NOT_TESTABLE": "#57606a", "INSUFFICIENT_DATA": "#57606a"}
CLAIM_KINDS = {"C1": ("scaling", "calibration"), "C2": ("real_heads",), "C3": ("overfitting",),
               "C4": ("biology",), "C5": ("biology",), "C6": ("scaling", "real_heads"),
               "C7": ("circuits",)}
LIMITATIONS = (
    "Agreement at large m is guaranteed by construction: phi(q)·phi(k) is an unbiased estimator of exp(q·k). "
    "Convergence is evidence about the mathematics of random features, not about astrocytes.",
    "No recording of astrocytes driven by known synaptic input exists offline; the real calcium traces "
    "(cultures, 20 fps) calibrate noise and event shape only.",
    "SmolLM2 weights are 4-bit quantised (GGUF) and dequantised: close to, not identical with, the original model.",
    "The vision Transformer is a small model trained here on MNIST digits, not the paper's pretrained ViT-B/16.",
    "Quick-profile runs use fewer seeds, sequences and m values than the full profile; their CIs are wider.",
)


class _Writer:
    """A text page that flows onto new pages."""

    def __init__(self, pdf: PdfPages):
        self.pdf, self.fig, self.y = pdf, None, 0.0

    def _new_page(self):
        self.flush()
        self.fig = plt.figure(figsize=PAGE)
        self.y = 0.95

    def line(self, text: str, size: float = 9, weight: str = "normal", colour: str = "black", indent: float = 0.07):
        width = int((0.93 - indent) * 1100 / size)  # characters that fit across the page at this font size
        for part in textwrap.wrap(text, width=width) or [""]:
            if self.fig is None or self.y < 0.05:
                self._new_page()
            self.fig.text(indent, self.y, part, fontsize=size, weight=weight, color=colour, family="DejaVu Sans")
            self.y -= size * 0.0019 + 0.004

    def gap(self, amount: float = 0.012):
        self.y -= amount

    def flush(self):
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            plt.close(self.fig)
            self.fig = None


def _table_page(pdf: PdfPages, title: str, table: pd.DataFrame, max_rows: int = 30):
    shown = table.head(max_rows).copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda value: f"{value:.3g}")
    shown = shown.astype(str).apply(lambda col: col.str.slice(0, 18))
    fig = plt.figure(figsize=(PAGE[1], PAGE[0]))  # landscape for wide tables
    fig.text(0.03, 0.95, textwrap.shorten(title, 150), fontsize=10, weight="bold")
    ax = fig.add_axes([0.02, 0.02, 0.96, 0.88])
    ax.axis("off")
    cell = ax.table(cellText=shown.values, colLabels=list(shown.columns), loc="upper center")
    cell.auto_set_font_size(False)
    cell.set_fontsize(5.5 if len(shown.columns) > 12 else 7)
    pdf.savefig(fig)
    plt.close(fig)


def write_report(path: Path, verdicts, manifest: dict, figures: dict, key_tables: dict) -> None:
    """figures: {analysis kind: [(name, Figure)]}; key_tables: {claim id: [(table name, DataFrame)]}."""
    with PdfPages(path) as pdf:
        writer = _Writer(pdf)
        writer.line("astrostats audit: is the neuron-astrocyte circuit's agreement with attention real?", 14, "bold")
        writer.line("Kozachkov, Kastanenka & Krotov, PNAS 120(34) e2219150120 (2023)", 10)
        git = manifest.get("git", {})
        writer.line(f"profile {manifest.get('profile')}, commit {git.get('commit')}, "
                    f"astrostats code {str(manifest.get('code_version'))[:12]}", 8, colour="0.3")
        writer.gap()
        by_id = {verdict.claim_id: verdict for verdict in verdicts}
        writer.line("The critic's two questions", 12, "bold")
        for question, claim_ids in (("Is the agreement what overfitting (many tunable units) would give?", ("C3",)),
                                    ("Does it survive contact with real astrocytes?", ("C4", "C5"))):
            writer.line(question, 9, "bold", indent=0.08)
            for claim_id in claim_ids:
                if claim_id in by_id:
                    verdict = by_id[claim_id]
                    summary = textwrap.shorten("; ".join(filter(None, (verdict.headline, verdict.reason))), 320,
                                               placeholder=" ...")
                    writer.line(f"{claim_id} {verdict.verdict}: {summary}", 8, colour="0.2", indent=0.1)
        writer.gap()
        writer.line("The bottom line", 12, "bold")
        for verdict in verdicts:
            writer.gap(0.006)
            writer.line(f"{verdict.claim_id}  {verdict.verdict}", 10, "bold", VERDICT_COLOURS[verdict.verdict])
            writer.line(verdict.statement, 9, indent=0.1)
            writer.line(verdict.headline or verdict.reason, 8, colour="0.25", indent=0.1)
        failed = [record for record in manifest.get("analyses", []) if record["status"] != "ok"]
        if failed:
            writer.gap()
            writer.line("Analyses not completed", 11, "bold", "#cf222e")
            for record in failed:
                writer.line(f"{record['name']}: {record['status']}: {record.get('error', '')}", 8)
        writer.flush()
        for verdict in verdicts:
            writer.line(f"{verdict.claim_id}: {verdict.statement}", 12, "bold")
            writer.line(f"Verdict: {verdict.verdict}", 11, "bold", VERDICT_COLOURS[verdict.verdict])
            writer.line(f"Rule: {verdict.rule}", 8)
            writer.line(f"Why: {verdict.reason}", 8)
            if verdict.evidence:
                writer.gap(0.006)
                writer.line("Evidence", 10, "bold")
                for item in verdict.evidence:
                    writer.line("- " + evidence_line(item).replace("`", ""), 7.5)
            for title, items in (("Major concerns", verdict.major_concerns), ("Minor concerns", verdict.minor_concerns)):
                if items:
                    writer.line(title, 9, "bold")
                    for text in items:
                        writer.line("- " + text, 7.5)
            writer.flush()
            for kind in CLAIM_KINDS.get(verdict.claim_id, ()):
                for name, figure in figures.get(kind, []):
                    figure.suptitle(f"{verdict.claim_id} | {name}", fontsize=9, y=1.0)
                    pdf.savefig(figure, bbox_inches="tight")
            for name, table in key_tables.get(verdict.claim_id, []):
                _table_page(pdf, f"{verdict.claim_id}: table {name} (first rows; full table in tables/{name}.csv)", table)
        writer.line("Methods (generated from the specs)", 12, "bold")
        for record in manifest.get("analyses", []):
            writer.gap(0.006)
            writer.line(f"{record['name']} (kind {record['kind']}, profile {record['profile']}, seed {record['seed']}): "
                        f"{record['status']}", 9, "bold")
            writer.line(record.get("question", ""), 8)
            writer.line(f"spec {record['source']}, file sha256 {record['file_sha256'][:16]}, "
                        f"resolved sha256 {record['spec_sha256'][:16]}", 7, colour="0.3")
            for key, value in record.get("parameters", {}).items():
                writer.line(f"{key} = {value}", 7, indent=0.1)
            for key, value in record.get("preregistration", {}).items():
                writer.line(f"pre-registered {key}: {value}", 7, indent=0.1)
        writer.gap()
        writer.line("Limitations", 12, "bold")
        for text in LIMITATIONS:
            writer.line("- " + text, 8)
        writer.flush()
        info = pdf.infodict()
        info["Title"] = "astrostats audit"
        info["Subject"] = "Neuron-astrocyte attention: agreement, overfitting controls, biological realism"
