"""The program report on a small fixture whose rates are worked out by hand."""

import datetime
import io

import pytest
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader
from statsmodels.stats.proportion import proportion_confint

from alliance import reports
from alliance.report_pdf import report_pdf
from clinic.models import Enrolment
from outcomes import services as outcome_services
from outcomes.scoring import get_definition
from sessions import services as session_services
from sessions.models import SessionKind
from tests.factories import EnrolmentFactory
from tests.helpers import log_dosing_completed

T0 = datetime.datetime(2026, 1, 5, 10, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)

# patient: (GRID-HAMD-17 baseline, at 4 weeks), (PHQ-9 baseline, at 4 weeks or None)
HAND = {
    1: ((24, 10), (20, 8)),  # HAMD: -58% response; PHQ-9 -12 reliable improvement
    2: ((20, 6), (15, 12)),  # response and remission (6 <= 7); PHQ-9 -3: no reliable change
    3: ((18, 12), (10, 17)),  # -33%: neither; PHQ-9 +7: reliable deterioration
    4: ((22, 11), (18, 11)),  # exactly -50%: response; PHQ-9 -7: improvement
    5: ((16, 7), (12, 6)),  # response and remission; PHQ-9 -6: improvement (at the RCI)
    6: ((20, 22), (14, None)),  # worse; no PHQ-9 at 4 weeks: missing
}
# By hand: HAMD response 4/6, remission 2/6, mean change (-14-14-6-11-9+2)/6 = -52/6;
# GRID-HAMD-17 has no RCI in its definition, so no reliable change is reported for it.
# PHQ-9 (RCI 6): reliable improvement 3/5, deterioration 1/5, 1 missing. Version 1 has no
# response rule; version 2's (>= 50% drop; remission 4 or less): response 2/5 (patients 1
# and 5), remission 0/5.


def _rows():
    dosings = {pid: (T0, T0) for pid in HAND}
    totals = []
    for pid, ((hamd_0, hamd_4), (phq_0, phq_4)) in HAND.items():
        totals.append(reports.TotalRow(pid, "grid-hamd-17", hamd_0, T0 - 5 * DAY))
        totals.append(reports.TotalRow(pid, "grid-hamd-17", hamd_4, T0 + 29 * DAY))
        totals.append(reports.TotalRow(pid, "phq-9", phq_0, T0 - 5 * DAY))
        if phq_4 is not None:
            totals.append(reports.TotalRow(pid, "phq-9", phq_4, T0 + 27 * DAY))
    return dosings, totals


def test_rates_match_the_hand_calculation():
    dosings, totals = _rows()
    hamd = reports.measure_outcomes(
        "grid-hamd-17", "GRID-HAMD-17", get_definition("grid-hamd-17"), dosings, totals
    )
    four = hamd.rows[0]
    assert (four.time_point, four.n, four.missing) == ("4 weeks", 6, 0)
    assert (four.response.count, four.response.n) == (4, 6)
    assert (four.remission.count, four.remission.n) == (2, 6)
    low, high = proportion_confint(4, 6, method="wilson")
    assert (four.response.low, four.response.high) == pytest.approx((low, high))
    assert (round(four.response.low, 3), round(four.response.high, 3)) == (0.300, 0.903)
    assert four.improved is None and four.deteriorated is None
    assert "no reliable change index" in hamd.rci.lower()
    assert four.change.mean == pytest.approx(-52 / 6)
    assert four.change.low < four.change.mean < four.change.high
    assert [row.n for row in hamd.rows[1:]] == [0, 0, 0]  # nobody at 3, 6 or 12 months

    version_1 = get_definition("phq-9", "1")
    phq = reports.measure_outcomes("phq-9", "PHQ-9", version_1, dosings, totals)
    four = phq.rows[0]
    assert (four.n, four.missing) == (5, 1)
    assert four.response is None and "defines no response or remission rule" in phq.rule
    newest = reports.measure_outcomes("phq-9", "PHQ-9", get_definition("phq-9"), dosings, totals)
    assert (newest.rows[0].response.count, newest.rows[0].response.n) == (2, 5)
    assert (newest.rows[0].remission.count, newest.rows[0].remission.n) == (0, 5)
    assert (four.improved.count, four.improved.n) == (3, 5)
    assert (four.deteriorated.count, four.deteriorated.n) == (1, 5)
    assert reports.pct(four.improved) == "3/5 = 60.0% (95% CI 23.1 to 88.2)"

    second = reports.measure_outcomes("phq-9", "PHQ-9", get_definition("phq-9"), dosings, totals)
    four = second.rows[0]
    assert (four.response.count, four.response.n) == (2, 5)
    assert (four.remission.count, four.remission.n) == (0, 5)
    assert "remission: 4 or less" in second.rule


def test_completion_counts_only_time_points_whose_window_has_closed():
    dosings, totals = _rows()
    rows = reports.completion(dosings, totals, now=T0 + 100 * DAY)
    by_label = {row.time_point: row for row in rows}
    assert (by_label["Baseline"].due, by_label["Baseline"].answered) == (6, 6)
    assert (by_label["4 weeks"].due, by_label["4 weeks"].answered) == (6, 6)
    assert (by_label["3 months"].due, by_label["3 months"].answered) == (0, 0)  # open till 105
    assert by_label["3 months"].rate is None


# --- on the database, through the page, the CSV and the PDF -------------------------------


def hamd_answers(total: int) -> dict[int, int]:
    """GRID-HAMD-17 answers summing to `total`; the suicide item (3) stays 0."""
    maxima = {n: (2 if n in (4, 5, 6, 12, 13, 14, 16, 17) else 4) for n in range(1, 18)}
    answers, left = {}, total
    for n in range(1, 18):
        answers[n] = 0 if n == 3 else min(maxima[n], left)
        left -= answers[n]
    assert left == 0
    return answers


def phq_answers(total: int) -> dict[int, int]:
    answers, left = {}, total
    for n in range(1, 10):
        answers[n] = 0 if n == 9 else min(3, left)
        left -= answers[n]
    answers[10] = 0
    assert left == 0
    return answers


@pytest.fixture
def program_fixture(people):
    """The six patients of HAND, each dosed 60 days ago in one program, plus one withdrawn
    and one completed enrolment without a dosing."""
    program = people.enrolment.program
    dosed_at = timezone.now().replace(microsecond=0) - 60 * DAY
    for pid, ((hamd_0, hamd_4), (phq_0, phq_4)) in HAND.items():
        enrolment = EnrolmentFactory(program=program, enrolled_by=people.admin)
        dosing = session_services.session_book(
            actor=people.admin,
            program=program,
            enrolment=enrolment,
            kind=SessionKind.DOSING,
            start=dosed_at + pid * datetime.timedelta(hours=1),
            end=dosed_at + pid * datetime.timedelta(hours=1) + datetime.timedelta(minutes=50),
        )
        log_dosing_completed(dosing, actor=people.admin, minutes=50)
        for code, answers, at in (
            ("grid-hamd-17", hamd_answers(hamd_0), dosed_at - 5 * DAY),
            ("grid-hamd-17", hamd_answers(hamd_4), dosed_at + 29 * DAY),
            ("phq-9", phq_answers(phq_0), dosed_at - 5 * DAY),
            *([("phq-9", phq_answers(phq_4), dosed_at + 27 * DAY)] if phq_4 is not None else []),
        ):
            outcome_services.response_record(
                actor=people.admin,
                patient=enrolment.patient,
                version=outcome_services.latest_version(code),
                answers=answers,
                administered_at=at,
            )
    EnrolmentFactory(program=program, enrolled_by=people.admin, status=Enrolment.Status.WITHDRAWN)
    people.enrolment.status = Enrolment.Status.COMPLETED
    people.enrolment.save(update_fields=["status"])
    return program


def test_the_report_csv_and_pdf_carry_the_hand_calculated_rates(
    people, program_fixture, client_for
):
    report = reports.program_report(user=people.clinician, program=program_fixture)
    assert (report.enrolled, report.completed, report.withdrawn, report.dosed) == (8, 1, 1, 6)
    hamd = next(m for m in report.measures if m.code == "grid-hamd-17")
    assert reports.pct(hamd.rows[0].response) == "4/6 = 66.7% (95% CI 30.0 to 90.3)"
    assert reports.pct(hamd.rows[0].remission) == "2/6 = 33.3% (95% CI 9.7 to 70.0)"

    client = client_for(people.clinician)
    url = reverse("program_report")
    page = client.get(url, {"program": program_fixture.pk})
    html = page.content.decode()
    assert page.status_code == 200
    assert "4/6 = 66.7% (95% CI 30.0 to 90.3)" in html
    assert "print.css" in html

    csv_text = client.get(url, {"program": program_fixture.pk, "download": "csv"}).content
    lines = csv_text.decode().splitlines()
    assert "outcome,GRID-HAMD-17,4 weeks,response,4,6,0.6667,0.3000,0.9032" in lines
    assert "outcome,PHQ-9,4 weeks,reliable improvement,3,5,0.6000,0.2307,0.8824" in lines

    pdf = client.get(url, {"program": program_fixture.pk, "download": "pdf"})
    assert pdf["Content-Type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    text = " ".join(text.split())
    assert "4/6 = 66.7% (95% CI 30.0 to 90.3)" in text
    assert "2/6 = 33.3% (95% CI 9.7 to 70.0)" in text
    assert "3/5 = 60.0% (95% CI 23.1 to 88.2)" in text
    assert "2/5 = 40.0% (95% CI 11.8 to 76.9)" in text  # PHQ-9 version 2's response
    assert "-8.7 (95% CI" in text
    assert "Enrolled" in text and "Response" in text


def test_only_clinicians_and_admins_get_the_report(people, client_for):
    url = reverse("program_report")
    assert client_for(people.coach).get(url).status_code == 403
    assert client_for(people.admin).get(url).status_code == 200
    bad = client_for(people.admin).get(url, {"start": "2026-03-02", "end": "2026-03-01"})
    assert "The end date is before the start date." in bad.content.decode()


def test_an_empty_selection_makes_a_pdf_without_numbers(people):
    report = reports.program_report(user=people.clinician, modality="ketamine")
    assert report.dosed == 0 and report.measures == []
    text = PdfReader(io.BytesIO(report_pdf(report))).pages[0].extract_text()
    assert "Program outcome report" in text
