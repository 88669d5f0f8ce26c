"""The program report as a PDF, drawn server-side with fpdf2 (pure Python: no system
libraries, no browser), with its charts: each measure's rates at every time point as bars with
their Wilson 95% intervals. The web process imports this on demand; the worker never does."""

from fpdf import FPDF

from . import reports

FIGURES = (
    ("response", "Response", (13, 110, 253)),
    ("remission", "Remission", (25, 135, 84)),
    ("improved", "Reliable improvement", (102, 16, 242)),
    ("deteriorated", "Reliable deterioration", (220, 53, 69)),
)
# The core PDF fonts are Latin-1: the few other characters the report uses, in plain text.
PLAIN = str.maketrans({"—": "-", "–": "-", "·": "-", "≥": ">=", "≤": "<=", "’": "'", "×": "x"})


def _text(value) -> str:
    return str(value).translate(PLAIN).encode("latin-1", "replace").decode("latin-1")


class _Report(FPDF):
    def footer(self):
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(108, 117, 125)
        self.cell(
            0,
            6,
            _text(f"Rapport program outcome report - page {self.page_no()}"),
            align="C",
        )


def _heading(pdf: FPDF, text: str, size: int = 13) -> None:
    pdf.set_font("Helvetica", "B", size)
    pdf.set_text_color(0, 0, 0)
    pdf.multi_cell(0, 7, _text(text), new_x="LMARGIN", new_y="NEXT")


def _para(pdf: FPDF, text: str, size: int = 9) -> None:
    pdf.set_font("Helvetica", size=size)
    pdf.multi_cell(0, 4.6, _text(text), new_x="LMARGIN", new_y="NEXT")


def _table(pdf: FPDF, headers: list[str], rows: list[list[str]], widths: list[float]) -> None:
    pdf.set_font("Helvetica", "B", 8)
    for header, width in zip(headers, widths, strict=True):
        pdf.cell(width, 6, _text(header), border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    for row in rows:
        if pdf.get_y() > pdf.h - 25:
            pdf.add_page()
        for value, width in zip(row, widths, strict=True):
            pdf.cell(width, 6, _text(value), border=1)
        pdf.ln()
    pdf.ln(2)


def _chart(pdf: FPDF, measure: reports.MeasureOutcomes) -> None:
    """Grouped bars (one group per time point), 0-100%, with interval whiskers."""
    height, left = 55.0, pdf.l_margin + 12
    width = pdf.w - pdf.r_margin - left
    if pdf.get_y() + height + 20 > pdf.h - 15:
        pdf.add_page()
    top = pdf.get_y() + 2
    bottom = top + height
    pdf.set_draw_color(173, 181, 189)
    pdf.set_font("Helvetica", size=7)
    for tick in (0, 25, 50, 75, 100):
        y = bottom - height * tick / 100
        pdf.line(left, y, left + width, y)
        pdf.set_xy(pdf.l_margin, y - 2)
        pdf.cell(11, 4, f"{tick}%", align="R")
    group = width / len(measure.rows)
    bar = group / (len(FIGURES) + 1)
    for i, row in enumerate(measure.rows):
        x0 = left + i * group + bar / 2
        for j, (name, _label, colour) in enumerate(FIGURES):
            rate = getattr(row, name)
            if rate is None:
                continue
            x = x0 + j * bar
            pdf.set_fill_color(*colour)
            bar_height = height * rate.share
            if bar_height > 0:
                pdf.rect(x, bottom - bar_height, bar * 0.85, bar_height, style="F")
            pdf.set_draw_color(33, 37, 41)
            middle = x + bar * 0.425
            pdf.line(middle, bottom - height * rate.low, middle, bottom - height * rate.high)
        pdf.set_xy(left + i * group, bottom + 1)
        pdf.cell(group, 4, _text(f"{row.time_point} (n = {row.n})"), align="C")
    pdf.set_xy(left, bottom + 6)
    for _name, label, colour in FIGURES:
        pdf.set_fill_color(*colour)
        pdf.rect(pdf.get_x(), pdf.get_y() + 1, 3, 3, style="F")
        pdf.set_x(pdf.get_x() + 4)
        pdf.cell(38, 5, _text(label))
    pdf.set_xy(pdf.l_margin, bottom + 12)
    pdf.set_draw_color(0, 0, 0)


def report_pdf(report: reports.ProgramReport) -> bytes:
    pdf = _Report(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(report.title)
    pdf.add_page()
    _heading(pdf, report.title, 16)
    _para(pdf, f"{report.filters}. Generated {report.generated_at:%d %b %Y %H:%M} UTC.")
    pdf.ln(2)
    _heading(pdf, "Patients")
    _table(
        pdf,
        ["Enrolled", "Completed", "Withdrawn", "With a completed dosing"],
        [[str(report.enrolled), str(report.completed), str(report.withdrawn), str(report.dosed)]],
        [40, 40, 40, 60],
    )
    _heading(pdf, "Questionnaire completion per time point")
    _table(
        pdf,
        ["Time point", "Due", "Answered", "Rate (Wilson 95% CI)"],
        [
            [c.time_point, str(c.due), str(c.answered), reports.pct(c.rate)]
            for c in report.completion
        ],
        [30, 20, 25, 105],
    )
    for measure in report.measures:
        _heading(pdf, f"{measure.label}: {measure.with_baseline} patients with a baseline", 12)
        _para(pdf, measure.rule)
        _para(pdf, measure.rci)
        _chart(pdf, measure)
        _table(
            pdf,
            ["Time point", "n", "Missing", "Figure", "Rate (Wilson 95% CI)"],
            [
                [row.time_point, str(row.n), str(row.missing), label, reports.pct(getattr(row, n))]
                for row in measure.rows
                for n, label, _ in FIGURES
            ]
            + [
                [
                    row.time_point,
                    str(row.n),
                    str(row.missing),
                    "Mean change",
                    reports.change_text(row.change),
                ]
                for row in measure.rows
            ],
            [24, 12, 16, 40, 88],
        )
    _para(
        pdf,
        "These are counts in a small, non-random sample of this clinic's patients, with "
        "Wilson 95% intervals; they describe the program, they do not rank anyone. Missing is "
        "the number of patients with a baseline but no score at that time point.",
        8,
    )
    return bytes(pdf.output())
