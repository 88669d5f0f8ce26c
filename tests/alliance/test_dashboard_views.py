"""The patient dashboard and cohort analytics pages: who sees them, what they show, and a
query count that does not grow with a patient's history or the size of the cohort."""

import datetime
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alliance import services as alliance_services
from clinic.models import AuditEvent, Program, User
from outcomes import services as outcome_services
from sessions import services as session_services
from tests.alliance.conftest import wai_answers
from tests.helpers import PERSONAS, assert_role_answer, built_once_for_the_module

pytestmark = pytest.mark.django_db


def _record(people, code, answers, *, days_ago, session=None):
    return outcome_services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=outcome_services.latest_version(code),
        answers=answers,
        administered_at=timezone.now() - datetime.timedelta(days=days_ago),
        session=session,
    )


def _history(people, *, weeks: int, hour: int = 9):
    """`weeks` of preparation sessions (at `hour`), each with a WAI-SR and a PHQ-9, then a
    dosing with its MEQ-30, PIQ and EBI."""
    start = timezone.now().replace(hour=hour, minute=0, second=0, microsecond=0)
    start -= datetime.timedelta(days=7 * weeks + 3)
    for week in range(weeks):
        when = start + datetime.timedelta(days=7 * week)
        session = session_services.session_book(
            actor=people.admin,
            program=people.enrolment.program,
            enrolment=people.enrolment,
            kind="preparation",
            start=when,
            end=when + datetime.timedelta(hours=1),
            facilitators=[people.coach],
        )
        days_ago = (timezone.now() - when).days
        _record(people, "wai-sr", wai_answers(2 + week % 3), days_ago=days_ago, session=session)
        phq = {n: 2 for n in range(1, 10)} | {9: 0}
        _record(people, "phq-9", phq, days_ago=days_ago)
    dosing_start = start + datetime.timedelta(days=7 * weeks + 1)
    dosing = session_services.session_book(
        actor=people.admin,
        program=people.enrolment.program,
        enrolment=people.enrolment,
        kind="dosing",
        start=dosing_start,
        end=dosing_start + datetime.timedelta(minutes=50),
    )
    _record(people, "meq-30", {n: 3 for n in range(1, 31)}, days_ago=1, session=dosing)
    _record(people, "piq", {n: 2 for n in range(1, 24)}, days_ago=1, session=dosing)
    _record(people, "ebi", {n: 60 for n in range(1, 7)}, days_ago=1, session=dosing)
    alliance_services.recompute_patient(patient_id=people.patient.pk)


def _figures(response) -> dict:
    html = response.content.decode()
    figures = {}
    for slug in ("alliance", "outcomes", "acute"):
        marker = f'<script id="{slug}-figure" type="application/json">'
        if marker in html:
            body = html.split(marker, 1)[1].split("</script>", 1)[0]
            figures[slug] = json.loads(body)
    return figures


@pytest.mark.parametrize("persona", PERSONAS)
def test_dashboard_is_for_the_patients_own_coach_and_clinical_staff(client, people, persona):
    expected = {"anonymous": 302, "coach": 200, "other_coach": 404}.get(persona, 200)
    url = reverse("patient_dashboard", args=[people.patient.public_id])
    assert_role_answer(client, people, persona, url, expected)


def test_dashboard_draws_every_chart_and_lists_the_numbers(client, people):
    _history(people, weeks=3)
    client.force_login(people.clinician)
    response = client.get(reverse("patient_dashboard", args=[people.patient.public_id]))
    figures = _figures(response)
    assert set(figures) == {"alliance", "outcomes", "acute"}
    bond = next(t for t in figures["alliance"]["data"] if t["name"] == "Bond")
    assert bond["y"] == [2, 3, 4]
    assert response.content.decode().count('class="js-chart chart"') == 3
    assert b"vendor/plotly/plotly-cartesian.min.js" in response.content
    assert b'id="plotly.js-style-global" class="no-inline-styles"' in response.content
    # The table view: every WAI-SR rating is a row a screen reader can reach.
    assert response.content.count(b'<th scope="row" class="fw-normal">') >= 3 + 3 + 1
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.VIEW, patient=people.patient, actor=people.clinician
    ).exists()


def test_a_new_patient_sees_empty_states_rather_than_blank_charts(client, people):
    client.force_login(people.coach)
    response = client.get(reverse("patient_dashboard", args=[people.patient.public_id]))
    assert _figures(response) == {}
    assert b"No WAI-SR ratings yet" in response.content
    assert b"No depression measures yet" in response.content
    assert b"No open flags" in response.content


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_dashboard_queries_do_not_grow_with_history(client, people, django_assert_max_num_queries):
    _history(people, weeks=1)
    client.force_login(people.coach)
    url = reverse("patient_dashboard", args=[people.patient.public_id])
    small = _queries(client, url)
    _history(people, weeks=12, hour=11)  # more of everything, at other times
    with django_assert_max_num_queries(small):
        assert client.get(url).status_code == 200


def test_analytics_is_for_clinicians_and_admins(client, people):
    for persona, expected in (("coach", 403), ("clinician", 200), ("admin", 200)):
        client.force_login(getattr(people, persona))
        assert client.get(reverse("cohort_analytics")).status_code == expected
    client.logout()
    assert client.get(reverse("cohort_analytics")).status_code == 302


@pytest.fixture(scope="module")
def seeded_clinic(django_db_setup, django_db_blocker):
    with built_once_for_the_module(django_db_blocker):
        call_command("seed_demo", patients=4, alumni=8, seed=5, stdout=io.StringIO())
        yield User.objects.get(email="clinician1@rapport.test")


@pytest.fixture
def seeded(seeded_clinic, db):
    return seeded_clinic


def test_analytics_has_numbers_on_the_seeded_clinic(client, seeded):
    client.force_login(seeded)
    response = client.get(reverse("cohort_analytics"))
    cohort = response.context["cohort"]
    assert cohort.patients >= 8
    headline = cohort.grids[0].rows[1][1][0]  # preparation bond x depression at 4 weeks
    assert (headline.row_label, headline.column_label) == (
        "Preparation alliance: bond",
        "GRID-HAMD-17 at 4 weeks",
    )
    assert headline.result is not None and headline.result.n >= 5
    assert f"r = {headline.result.r:.2f}".encode() in response.content
    assert b"does not show that the alliance caused" in response.content
    scatter = client.get(reverse("cohort_scatter"), {"cell": headline.id}).json()
    assert len(scatter["x"]) == headline.result.n
    assert scatter["fit"] is not None  # the least-squares line is drawn
    # The cell is tinted by its r, and the grid says what the tints mean.
    html = response.content.decode()
    cell = html.split(f'data-cell="{headline.id}"')[0].rsplit("<td", 1)[1]
    assert (f"r-{headline.strength}" in cell) if headline.strength else ("r-pos" not in cell)
    assert 'class="list-inline small r-legend' in html and "r ≥ 0.5" in html
    bond = next(change for change in cohort.changes if change.label == "Bond")
    assert bond.result is not None and bond.result.n >= 5


def test_analytics_embeds_no_scatter_and_names_the_cell_to_fetch(client, seeded):
    """The points grow with the cohort, so the page carries none of them, not even the
    chosen cell's: the plot fetches them (see `cohort_scatter`)."""
    client.force_login(seeded)
    opening = client.get(reverse("cohort_analytics"))
    assert b'data-default-cell="prep-1-0"' in opening.content
    for pseudonym in opening.context["cohort"].cell("prep-1-0").labels:
        assert pseudonym.encode() not in opening.content
    assert b'id="cohort-scatter"' not in opening.content
    chosen = client.get(reverse("cohort_analytics"), {"cell": "acute-0-0"})
    assert b'data-default-cell="acute-0-0"' in chosen.content
    unknown = client.get(reverse("cohort_analytics"), {"cell": "nonsense"})
    assert b'data-default-cell="prep-1-0"' in unknown.content


def test_another_cells_scatter_comes_as_json_for_the_same_filters(client, seeded):
    client.force_login(seeded)
    ketamine = Program.objects.get(modality="ketamine")
    filters = {"program": ketamine.pk, "depression": "phq-9"}
    page = client.get(reverse("cohort_analytics"), filters)
    cell = page.context["cohort"].cell("acute-1-0")  # peak MEQ-30 x PHQ-9 at 4 weeks
    answer = client.get(reverse("cohort_scatter"), {**filters, "cell": "acute-1-0"})
    assert answer.status_code == 200
    scatter = answer.json()
    assert (scatter["xTitle"], scatter["yTitle"]) == ("Peak MEQ-30", "PHQ-9 at 4 weeks")
    assert scatter["x"] == [x for _, x, _ in cell.points]
    assert scatter["y"] == [y for _, _, y in cell.points]
    everyone = client.get(reverse("cohort_scatter"), {"depression": "phq-9", "cell": "acute-1-0"})
    assert len(everyone.json()["x"]) > len(scatter["x"])


def test_a_scatter_for_no_such_cell_or_a_bad_filter_is_refused(client, seeded):
    client.force_login(seeded)
    url = reverse("cohort_scatter")
    assert client.get(url, {"cell": "prep-9-9"}).status_code == 404
    bad = client.get(url, {"cell": "prep-1-0", "start": "2026-05-01", "end": "2026-04-01"})
    assert bad.status_code == 400
    assert "The end date is before the start date." in json.dumps(bad.json())


def test_a_scatter_is_for_clinicians_and_admins(client, people):
    url = reverse("cohort_scatter") + "?cell=prep-1-0"
    for persona, expected in (("coach", 403), ("clinician", 200), ("admin", 200)):
        client.force_login(getattr(people, persona))
        assert client.get(url).status_code == expected
    client.logout()
    assert client.get(url).status_code == 302


def test_analytics_filters_by_program_and_dates(client, seeded):
    client.force_login(seeded)
    everyone = client.get(reverse("cohort_analytics")).context["cohort"]
    ketamine = Program.objects.get(modality="ketamine")
    only = client.get(reverse("cohort_analytics"), {"program": ketamine.pk}).context["cohort"]
    assert only.patients < everyone.patients
    by_modality = client.get(reverse("cohort_analytics"), {"modality": "psilocybin"})
    assert by_modality.context["cohort"].patients == everyone.patients - only.patients
    future = timezone.localdate() + datetime.timedelta(days=1)
    none = client.get(reverse("cohort_analytics"), {"start": future.isoformat()})
    assert none.context["cohort"].patients == 0
    assert b"No completed dosings match these filters" in none.content


def test_an_end_before_the_start_is_refused_and_kept(client, people):
    client.force_login(people.clinician)
    response = client.get(reverse("cohort_analytics"), {"start": "2026-05-01", "end": "2026-04-01"})
    assert response.context["cohort"] is None
    assert b"The end date is before the start date." in response.content
    assert b'value="2026-04-01"' in response.content and b'value="2026-05-01"' in response.content


def test_analytics_queries_do_not_grow_with_the_cohort(client, django_assert_max_num_queries):
    call_command("seed_demo", patients=2, alumni=3, seed=5, stdout=io.StringIO())
    client.force_login(User.objects.get(email="clinician1@rapport.test"))
    url = reverse("cohort_analytics")
    small = _queries(client, url)
    call_command("seed_demo", patients=2, alumni=9, seed=5, stdout=io.StringIO())
    assert client.get(url).context["cohort"].patients >= 9
    with django_assert_max_num_queries(small):
        assert client.get(url).status_code == 200
