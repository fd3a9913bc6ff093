"""The report checked like code (issue 17): rendered from small stored tables (tests/data/report_run, cut from a
default run by tests/data/make_report_run.py), then read back with poppler: every referenced figure exists, no
page is more than half empty, page 1 holds every verdict, the page count is in the stated range, and the text
holds every verdict and headline number. audit.md is short; the report package reads tables, not circuits."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astrostats import outputs
from astrostats.report import audit, build, decisive, layout, narrative, pdf, style
from astrostats.claims.verdicts import Evidence

STORED = Path(__file__).parent / "data" / "report_run"
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def _poppler(tool: str):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} (Debian poppler-utils) is required: .ci/run installs it")


def stored_run(out: Path) -> dict:
    """The stored tables laid out as a finished run writes them (parquet, its SHA-256 in the manifest), so the
    report is built through the same verified reads as a real run's."""
    manifest = json.loads((STORED / "manifest.json").read_text())
    for record in manifest["analyses"]:
        record["tables"] = {name: outputs.write_table(out / "tables", name,
                                                      pd.read_parquet(STORED / "tables" / f"{name}.parquet"), root=out)
                            for name in record.get("tables", [])}
    return manifest


DRAWN: dict = {}  # figure stem -> (width, height in inches, smallest text in points), recorded as it is saved


def _text_sizes(figure) -> list[float]:
    from matplotlib.text import Text

    return [text.get_fontsize() for text in figure.findobj(Text) if text.get_visible() and text.get_text().strip()]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    save = build._save

    def recording(figures, out_dir, stem_of):
        for name, figure in figures.items():
            DRAWN[stem_of(name)] = (*figure.get_size_inches(), min(_text_sizes(figure), default=99.0))
        return save(figures, out_dir, stem_of)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "_save", recording)
        verdicts = build.build_outputs(out, stored_run(out), workers=1)
    return out, verdicts


def _pages_text(path: Path) -> list[str]:
    _poppler("pdftotext")
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("-\n", ""))


def _report_data(out: Path, verdicts) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    tables, _ = build.load_tables(out, manifest)
    figures = [build.FigureRef(kind, name, analysis, path) for kind, name, analysis, path in
               json.loads((out / "manifest.json").read_text())["report_figures"]]
    owner = {t: r["name"] for r in manifest["analyses"] for t in r.get("tables", [])}
    return pdf.report_data(verdicts, manifest, figures, tables, owner, out, build.claim_modules())


def test_every_referenced_figure_exists_and_is_numbered(report):
    out, verdicts = report
    data = _report_data(out, verdicts)
    referenced = ([f for claim in data["claims"] for f in claim["figures"]] + [data["validation"]["figure"]]
                  + data["appendix_figures"])
    assert referenced, "the report shows no figure"
    for figure in referenced:
        assert (out / figure["path"].lstrip("/")).is_file(), figure["path"]
    text = _flat("\n".join(_pages_text(out / "report.pdf")))
    captions = set(re.findall(r"Figure (\d+):", text))
    assert captions == {str(i) for i in range(1, len(referenced) + 1)}
    decided = [c for c in data["claims"] if c["id"] in layout.PLAN and c["verdict"] != "INSUFFICIENT_DATA"]
    assert decided and all(c["figures"] for c in decided)  # every decided claim shows its figures
    assert any(f["path"].endswith("paper_fig2b.svg") for c in data["claims"] for f in c["figures"])
    assert any(f["path"].endswith("paper_fig3.svg") for c in data["claims"] for f in c["figures"])


def test_no_page_is_more_than_half_empty(report, tmp_path):
    """Ink measured on the rendered pages: the last inked row of the text area (above the footer) lies below
    half the text area's height on every page but the last (a document's last page may be short)."""
    _poppler("pdftoppm")
    out, _ = report
    subprocess.run(["pdftoppm", "-r", "30", "-gray", str(out / "report.pdf"), str(tmp_path / "page")], check=True)
    from PIL import Image

    pages = sorted(tmp_path.glob("page*.pgm"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    assert len(pages) > 3
    for number, page in enumerate(pages[:-1], start=1):
        pixels = np.asarray(Image.open(page), dtype=float)
        height = pixels.shape[0]
        top, bottom = int(height * 1.6 / 29.7), int(height * (29.7 - 1.7) / 29.7)  # the page's text area
        inked = np.flatnonzero((pixels[top:bottom] < 160).any(axis=1))
        assert inked.size and inked[-1] / (bottom - top) > 0.5, f"page {number} is more than half empty"


def test_first_page_holds_every_claim_and_its_verdict(report):
    out, verdicts = report
    first = _flat(_pages_text(out / "report.pdf")[0])
    for verdict in verdicts:
        assert re.search(rf"\b{verdict.claim_id}\b", first) and verdict.verdict in first, verdict.claim_id


def test_page_count_within_the_stated_range(report):
    out, _ = report
    pages = _pages_text(out / "report.pdf")
    appendix = next((i for i, text in enumerate(pages, start=1) if "Appendix: further figures" in text), None)
    main = len(pages) if appendix is None else appendix - 1  # the appendix starts on a page of its own
    low, high = pdf.MAIN_PAGES
    assert low <= main <= high, f"main part has {main} pages, stated range {pdf.MAIN_PAGES}"
    assert len(pages) - main <= pdf.MAX_APPENDIX_PAGES, f"appendix has {len(pages) - main} pages"


def test_every_figure_prints_its_text_at_7_pt_or_more(report):
    """Each figure is drawn at the size it is printed: its smallest text, times the factor the report scales
    it by (1 when it fits the text width and height), is at least 7 pt; the SVG's own size says the same."""
    out, _ = report
    manifest = json.loads((out / "manifest.json").read_text())
    stems = [Path(path).stem for *_, path in manifest["report_figures"]]
    assert stems and set(stems) <= set(DRAWN)
    for stem in stems:
        width, height, smallest = DRAWN[stem]
        assert smallest * style.print_scale(width, height) >= style.MIN_FONT_PT, (stem, width, height, smallest)
        drawn_cm = pdf.natural_size_cm(out / "figures" / f"{stem}.svg")[0]
        assert pdf.print_width_cm(out / "figures" / f"{stem}.svg") == pytest.approx(drawn_cm, abs=0.02), stem


def test_every_figure_has_its_own_caption(report):
    """One caption per figure, none repeated and none the generic fallback; the known-answers study has its
    figure (no kind of the run is left without one)."""
    out, verdicts = report
    manifest = json.loads((out / "manifest.json").read_text())
    figures = [layout.FigureRef(*entry) for entry in manifest["report_figures"]]
    captions = [layout.caption(f) for f in figures]
    assert len(set(captions)) == len(captions), [c for c in captions if captions.count(c) > 1][:2]
    generic = layout.GENERIC_CAPTION.split("{analysis}")[-1]
    assert not [f.stem for f, c in zip(figures, captions) if c.endswith(generic)]
    drawn_kinds = {f.kind for f in figures}
    assert {record["kind"] for record in manifest["analyses"]} <= drawn_kinds
    assert any((f.kind, f.name) == layout.VALIDATION for f in figures)


def test_no_section_heading_is_left_without_its_text(report):
    """No heading ends a page or is followed straight by another heading: the reader never meets an empty
    section (the appendix's figures are placed where they are named, not floated away from their heading)."""
    out, verdicts = report
    data = _report_data(out, verdicts)
    headings = {f"{c['id']}: {c['short']}" for c in data["claims"]} | {
        "Validation of the rules on planted truth", "Methods (generated from the specs)", "Limitations",
        "Appendix: further figures"}
    for number, page in enumerate(_pages_text(out / "report.pdf"), start=1):
        lines = [line.strip() for line in page.splitlines() if line.strip()][:-1]  # the footer is the last line
        is_heading = [any(line.startswith(h) for h in headings) for line in lines]
        assert not (is_heading and is_heading[-1]), f"page {number} ends with a heading: {lines[-1]!r}"
        assert not any(a and b for a, b in zip(is_heading, is_heading[1:])), f"page {number}: two headings in a row"


def test_page_one_says_each_verdict_in_whole_sentences(report):
    """Page 1: per claim its verdict, the finding its reason opens with and what it covers, never cut with
    '...' or sent to its section mid-sentence."""
    out, verdicts = report
    first = _flat(_pages_text(out / "report.pdf")[0])
    assert "..." not in first and "(in full in" not in first
    for verdict in verdicts:
        finding = narrative.lead(verdict.reason or verdict.headline)
        assert finding.endswith(".") and _flat(finding)[:40] in first, verdict.claim_id


def test_lead_and_whole_parts_never_cut_a_clause():
    assert narrative.lead("amendment v2 decides: a neurons-only circuit is cheaper; more (a; b)") == \
        "A neurons-only circuit is cheaper."
    assert narrative.lead("minilm: 3 heads beyond") == "3 heads beyond."
    kept, rest = narrative.whole_parts("one (a; b); two; three", 14)
    assert (kept, rest) == ("one (a; b)", 2)
    assert narrative.scope_and_numbers("scope: 2 of 5 heads; x = 1", 20) == "Scope: 2 of 5 heads. (1 more finding in its section.)"
    assert style.log_label(1e5) == "10\u2075" and style.log_label(0.05) == "0.05" and style.log_label(2e6) == "2\u00d710\u2076"


def test_pdf_text_holds_every_verdict_and_headline_number(report):
    out, verdicts = report
    text = _flat("\n".join(_pages_text(out / "report.pdf")))
    for verdict in verdicts:
        assert verdict.verdict in text
        for number in NUMBER.findall(verdict.headline):
            assert number in text, (verdict.claim_id, number)


def test_audit_md_is_short_and_points_to_the_rest(report):
    out, verdicts = report
    markdown = (out / "audit.md").read_text()
    assert len(markdown.encode()) < 25_000  # a letter: every rule and reason in full, the rows chosen
    for verdict in verdicts:
        assert f"## {verdict.claim_id}: {verdict.verdict}" in markdown
        assert verdict.rule in markdown and verdict.reason in markdown  # never cut
    assert "index == index" not in markdown and not re.search(r"\b1 (rows|targets|statistics)\b", markdown)
    full = json.loads((out / "audit.json").read_text())
    cited = sum(len(claim["evidence"]) for claim in full["claims"])
    shown = markdown.count("\n- ") - len(re.findall(r"more rows? of the", markdown))
    assert shown < cited  # not everything: the rest is named by a query
    left_out = re.findall(r"(\d+) more rows? of the \d+ citing .*?: the rows of `(.*?)` in table `(.*?)`", markdown)
    assert left_out  # the default run leaves rows out, and says where they are
    for line in left_out:
        table = pd.read_parquet(out / "tables" / f"{line[2]}.parquet")
        assert len(table.query(line[1])) >= int(line[0])  # the query selects at least the rows left out


def test_a_rebuild_copies_figures_drawn_from_the_same_tables_and_code(report, tmp_path):
    out, _ = report
    manifest = json.loads((out / "manifest.json").read_text())
    keys = manifest["figure_keys"]
    owner = next(e[2] for e in manifest["report_figures"] if e[2] != build.PAPER_KIND)
    expected = [(e[1], e[3]) for e in manifest["report_figures"] if e[2] == owner]
    copied = build.reuse_figures(owner, keys[owner], (out, manifest), tmp_path / "copy")
    assert copied == expected
    assert all((tmp_path / "copy" / path).read_bytes() == (out / path).read_bytes() for _, path in copied)
    assert build.reuse_figures(owner, "0" * 64, (out, manifest), tmp_path / "other") is None  # other tables or code
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    (tampered / expected[0][1]).write_bytes(b"not the figure that was drawn")
    assert build.reuse_figures(owner, keys[owner], (tampered, manifest), tmp_path / "refused") is None
    assert not (tmp_path / "refused").exists()


def test_figure_keys_follow_the_tables_and_the_drawing_code():
    record = {"kind": "scaling", "name": "scaling", "tables": {"scaling": {"parquet_sha256": "a", "csv_sha256": "b"}}}
    key = build.figure_key([record], "code")
    assert build.figure_key([dict(record)], "code") == key
    assert build.figure_key([record], "other code") != key
    assert build.figure_key([{**record, "tables": {"scaling": {"parquet_sha256": "c", "csv_sha256": "b"}}}], "code") != key
    assert build.figure_key([{**record, "name": "scaling2"}], "code") != key
    assert len(build.figure_code_sha256()) == 64


def test_decisive_rows_keep_small_groups_and_the_ends_of_large_ones():
    items = [Evidence("t", f"a == 1 and b == {i}", "alpha", value) for i, value in enumerate([0.3, 0.1, 0.5, 0.2])]
    chosen = decisive.choose(items + [Evidence("t", "a == 2", "ratio", 2.0)])
    assert [(role, item.value) for role, item in chosen.shown] == [("lowest", 0.1), ("highest", 0.5), ("", 2.0)]
    assert chosen.left_out == ((2, "t", "a == 1", "alpha", 4),)
    assert decisive.common_query(["a == 1", "b == 2"]) == ""  # nothing shared: the whole table, said in words


def test_validation_section_appears_only_with_a_known_answers_summary(report):
    out, verdicts = report
    manifest = json.loads((out / "manifest.json").read_text())
    tables, _ = build.load_tables(out, manifest)
    figures = [layout.FigureRef(*entry) for entry in manifest["report_figures"]]
    stored = pdf._validation(tables, layout.validation_figure(figures), out)  # the stored run has its summary
    assert stored is not None and stored["figure"]["path"].endswith("known_answers_rates.svg")
    assert f"{len(tables['known_answers_summary'])} scenarios" in stored["text"]
    tables = {name: table for name, table in tables.items() if not name.endswith("known_answers_summary")}
    assert pdf._validation(tables, None, out) is None
    summary = pd.DataFrame({"claim": ["C1", "C4"], "scenario": ["a_b", "c"], "planted_verdict": ["SUPPORTED", "NOT_SUPPORTED"],
                            "rate": [0.95, 0.9], "ci_low": [0.85, 0.78], "ci_high": [0.99, 0.96],
                            "meets_aim": [True, False]})
    section = pdf._validation({**tables, "known_answers_known_answers_summary": summary}, None, out)
    assert section["figure"] is None and "1 scenario misses the aim: C4 c" in section["text"]
    # how each miss misses, where the summary records it: abstaining (the design's power) or misleading
    said = summary.assign(meets_aim=[False, False], miss=["abstains", "opposite"])
    text = pdf._validation({**tables, "known_answers_known_answers_summary": said}, None, out)["text"]
    assert "1 scenario misses the aim by abstaining" in text and text.count("C1 a b") == 1
    assert "1 scenario misses the aim by the opposite verdict" in text and "would mislead): C4 c" in text
    assert "Every scenario" not in text
    data = _report_data(out, verdicts)
    data["validation"] = section
    pdf.compile_report(data, out, out / "with_validation.pdf")
    assert "Validation of the rules on planted truth" in _flat("\n".join(_pages_text(out / "with_validation.pdf")))


def test_a_claim_without_a_plan_still_gets_a_section(report):
    out, verdicts = report
    data = _report_data(out, verdicts)
    assert [c["id"] for c in data["claims"]] == [v.claim_id for v in verdicts]
    extra = audit.ClaimVerdict("C9", "A new claim.", "INSUFFICIENT_DATA", "a rule", reason="no tables")
    manifest = json.loads((out / "manifest.json").read_text())
    tables, _ = build.load_tables(out, manifest)
    more = pdf.report_data([*verdicts, extra], manifest, [], tables, {}, out)
    assert more["claims"][-1]["id"] == "C9" and more["claims"][-1]["would_change"]


def test_the_report_package_imports_no_circuits_targets_or_runner():
    code = ("import sys, astrostats.report.build, astrostats.report.pdf, astrostats.report.audit; "
            "import astrostats.report.figures.paper; "
            "[__import__(m) for m in ('astrostats.report.figures.' + k for k in "
            "('scaling', 'real_heads', 'biology', 'overfitting', 'calibration'))]; "
            "bad = [m for m in sys.modules if m.startswith(('astrostats.circuits', 'astrostats.targets', "
            "'astrostats.runner', 'torch'))]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_circuit_of_the_circuits_study_has_its_own_colour_in_every_figure():
    from astrostats.circuits import get_circuit, registered_names
    from astrostats.report import style

    circuits = registered_names()
    assert len({style.colour(circuit) for circuit in circuits}) == len(circuits)
    pools = [circuit for circuit in circuits if get_circuit(circuit).fan_in_changes]
    assert pools and all(style.colour(f"{circuit}@2186") == style.colour(circuit) for circuit in pools)
    assert style.colour("astrocyte") == style.COLOURS["astrocyte"] and style.colour("uniform") == style.COLOURS["uniform"]
    with style.drawing_for("my_circuit"):  # another circuit under audit takes the audit's blue, the paper's a grey-blue
        assert style.colour("my_circuit") == style.COLOURS["astrocyte"] != style.colour("astrocyte")


def test_a_figure_that_fails_leaves_no_key_so_a_rebuild_draws_it_again(tmp_path, monkeypatch):
    from astrostats.report import figures

    manifest = stored_run(tmp_path)
    manifest["analyses"] = [r for r in manifest["analyses"] if r["name"] == "calibration"]
    monkeypatch.setattr(figures, "draw_analysis", lambda kind, tables: 1 / 0)
    build.build_outputs(tmp_path, manifest, workers=1)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert "calibration" not in written["figure_keys"] and build.PAPER_KIND in written["figure_keys"]
    assert written["analyses"][0]["warnings"] == ["figures could not be drawn (see astrostats.log)"]


def test_a_worker_without_the_tables_in_memory_reads_and_checks_them(tmp_path):
    manifest = stored_run(tmp_path)
    record = next(r for r in manifest["analyses"] if r["name"] == "calibration")
    drawn = build.draw_one(record["kind"], record["name"], tmp_path, records=record["tables"])
    assert drawn and all((tmp_path / path).is_file() for _, path in drawn)


def test_validation_says_which_misses_more_draws_or_sequences_or_a_wider_sweep_resolve():
    """The known-answers power table's reruns: a scenario that meets the aim with more draws or more sequences
    is named as the design's power, one that meets it with a wider sweep as its reach, one still missing it at
    every rerun with its last rates; a table written before the sweeps and the sequences (no max_m, no
    sequences) reads as draws alone; no reruns, no text."""
    power = pd.DataFrame({"claim": ["C2", "C2", "C1", "C1", "C1", "C1", "C1"],
                          "scenario": ["inside", "inside", "small_floor", "small_floor", "small_floor", "hetero",
                                       "hetero"],
                          "planted_verdict": ["SUPPORTED", "SUPPORTED"] + ["NOT_SUPPORTED"] * 3 + ["SUPPORTED"] * 2,
                          "design_draws": [4, 4, 8, 8, 8, 8, 8], "draws": [4, 16, 8, 16, 8, 8, 8],
                          "design_max_m": [100000, 100000, 8192, 8192, 8192, 8192, 8192],
                          "max_m": [100000, 100000, 8192, 8192, 131072, 8192, 131072],
                          "design_sequences": [8] * 7, "sequences": [8, 8, 8, 8, 8, 64, 8],
                          "planted_rate": [0.5, 1.0, 0.0, 0.2, 1.0, 1.0, 0.3],
                          "opposite_rate": [0.0, 0.0, 0.9, 0.75, 0.0, 0.0, 0.0],
                          "meets_aim": [False, True, False, False, True, True, False]})
    text = pdf._reruns(power, "known_answers_power")
    assert "the aim is met with 16 feature draws by C2 inside" in text
    assert "the aim is met with the sweep to m = 131072 by C1 small floor" in text
    assert "the aim is met with 64 sequences by C1 hetero" in text
    assert text.startswith("Run again with more feature draws (C1: the scaling run's seeds; C2, C6: draws per head), "
                           "with more sequences and with C1's sweep")
    assert "Met with more draws or sequences: the miss was this design's power" in text
    assert "met with a wider sweep: the miss was this design's reach" in text
    still = pdf._reruns(power.iloc[:-2].assign(sequences=8), "known_answers_power") + pdf._reruns(
        power.iloc[[-1]], "known_answers_power")
    assert "still missed with the sweep to m = 131072 by C1 hetero (the sweep to m = 131072: SUPPORTED 30%)" in still
    assert "sequences" not in pdf._reruns(power.iloc[:-2], "known_answers_power")
    # a table written before the sweeps (no max_m), its reruns out of order: read as draws alone, the most last
    before = power.drop(columns=["design_max_m", "max_m", "design_sequences", "sequences"])
    old = pd.concat([before.iloc[:4], before.iloc[[3]].assign(draws=32, planted_rate=0.3)])
    old_text = pdf._reruns(old.iloc[[0, 1, 2, 4, 3]], "known_answers_power")
    assert "still missed with 16 feature draws or 32 feature draws by C1 small floor (32 feature draws: " \
           "NOT_SUPPORTED 30%, the opposite 75%)" in old_text
    assert "sweep" not in old_text
    assert pdf._reruns(power[power["draws"] == power["design_draws"]].iloc[:1], "known_answers_power") == ""
    assert pdf._reruns(None, "known_answers_power") == ""


def test_known_answers_figure_shows_the_reruns_with_more_draws_beside_the_rates():
    """Each rerun level of the power table is its own hollow marker at the rerun's rate, on its scenario's row;
    without a power table the figure is as before."""
    from astrostats.report.figures import known_answers as figure

    summary = pd.DataFrame({"claim": ["C1", "C2"], "scenario": ["a", "b"], "planted_rate": [0.95, 0.5],
                            "ci_low": [0.9, 0.4], "ci_high": [1.0, 0.6], "opposite_rate": [0.0, 0.0],
                            "meets_aim": [True, False]})
    power = pd.DataFrame({"claim": ["C2"] * 3 + ["C1"] * 2, "scenario": ["b"] * 3 + ["a"] * 2,
                          "design_draws": [4] * 3 + [8] * 2, "draws": [4, 16, 32, 8, 8],
                          "design_max_m": [100000] * 3 + [8192] * 2, "max_m": [100000] * 3 + [8192, 131072],
                          "planted_rate": [0.5, 0.97, 1.0, 0.95, 0.9]})
    style.apply()
    fig = figure.draw({"known_answers_summary": summary, "known_answers_power": power})["rates"]
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "rerun: 16 draws" in labels and "rerun: 32 draws" in labels and "rerun: sweep to m = 131072" in labels
    marks = {collection.get_label(): collection.get_offsets().tolist() for collection in fig.axes[0].collections}
    assert marks["rerun: 16 draws"] == [[0.97, 0.0]]  # C2 b is the lower row (y = 0)
    assert marks["rerun: sweep to m = 131072"] == [[0.9, 1.0]]
    plain = figure.draw({"known_answers_summary": summary})["rates"]
    assert not any("rerun" in label for label in plain.axes[0].get_legend_handles_labels()[1])
    import matplotlib.pyplot as plt
    plt.close(fig)
    plt.close(plain)
