"""Who may open each questionnaire page (the role matrix), and what the pages show."""

import datetime
import re
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from clinic.models import AuditEvent
from outcomes import links, services
from outcomes.models import Response
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

WAI = {n: 4 for n in range(1, 13)}
# persona -> expected status for a page about the coach's own patient
STAFF = {"coach": 200, "other_coach": 404, "clinician": 200, "admin": 200}


def _response(people, code="wai-sr", answers=WAI, **extra):
    return services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version(code),
        answers=answers,
        administered_at=timezone.now(),
        **extra,
    )


def _pages(people):
    response = _response(people)
    pid = people.patient.public_id
    return {
        "response_new": reverse("response_new", args=[pid, "wai-sr"]),
        "response_new_clinician_rated": reverse("response_new", args=[pid, "grid-hamd-17"]),
        "response_detail": reverse("response_detail", args=[response.public_id]),
        "response_correct": reverse("response_correct", args=[response.public_id]),
        "link_new": reverse("link_new", args=[pid]),
    }


PAGES = [
    "response_new",
    "response_new_clinician_rated",
    "response_detail",
    "response_correct",
    "link_new",
]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(("persona", "status"), sorted(STAFF.items()))
def test_role_matrix(client, people, page, persona, status):
    url = _pages(people)[page]
    client.force_login(getattr(people, persona))
    assert client.get(url).status_code == status


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_is_sent_to_login(client, people, page):
    response = client.get(_pages(people)[page])
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_a_coach_cannot_post_for_someone_elses_patient(client, people):
    client.force_login(people.other_coach)
    url = reverse("response_new", args=[people.patient.public_id, "wai-sr"])
    data = {"administered_at": "2026-01-01T10:00", "submission_key": str(uuid.uuid4())}
    assert client.post(url, {**data, **{f"item_{n}": 4 for n in range(1, 13)}}).status_code == 404
    assert Response.objects.count() == 0


def test_a_response_id_of_an_unknown_or_unseen_patient_is_404(client, people):
    stranger = PatientFactory()
    other = services.response_record(
        actor=people.admin,
        patient=stranger,
        version=services.latest_version("gad-7"),
        answers={n: 1 for n in range(1, 8)},
        administered_at=timezone.now(),
    )
    client.force_login(people.coach)
    assert client.get(reverse("response_detail", args=[other.public_id])).status_code == 404
    assert client.get(reverse("response_detail", args=[uuid.uuid4()])).status_code == 404


def test_the_self_report_page_needs_no_account_and_no_second_factor(client, people, settings):
    settings.REQUIRE_2FA = True
    _, token = links.link_create(actor=people.coach, patient=people.patient, instruments=["srs"])
    response = client.get(reverse("link_open", args=[token]), follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0] == "/q/answer/"
    assert "no-store" in response.headers["Cache-Control"]
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "no inline scripts"
    assert " style=" not in html, "no inline styles"


def test_staff_pages_have_no_inline_scripts_or_styles(client, people):
    client.force_login(people.coach)
    for url in _pages(people).values():
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert " style=" not in html, url


# --- the entry form ------------------------------------------------------------------------


def test_every_item_is_a_fieldset_with_a_legend_and_labelled_choices(client, people):
    client.force_login(people.coach)
    html = client.get(reverse("response_new", args=[people.patient.public_id, "phq-9"]))
    html = html.content.decode()
    assert html.count("<legend") >= 10 + 1  # one per item, plus the questionnaire
    assert re.search(r'<input type="radio"[^>]*name="item_9"[^>]*value="3"[^>]*id="(\w+)"', html)
    ids = re.findall(r'<input type="radio"[^>]*name="item_9"[^>]*id="(\w+)"', html)
    assert all(f'for="{i}"' in html for i in ids)
    assert html.count('name="csrfmiddlewaretoken"') == 2  # the form's and the sign-out form's


def test_visual_analogue_items_are_typed_numbers_with_a_slider_script(client, people):
    client.force_login(people.coach)
    html = client.get(reverse("response_new", args=[people.patient.public_id, "srs"]))
    html = html.content.decode()
    assert re.search(r'<input type="number" name="item_1" step="0.1" min="0" max="10"', html)
    assert "data-vas" in html and "js/vas.js" in html


def test_wai_sr_may_name_one_of_the_patients_coaches_only(client, people):
    client.force_login(people.coach)
    url = reverse("response_new", args=[people.patient.public_id, "wai-sr"])
    html = client.get(url).content.decode()
    assert "Cora Coach" in html and "Otto Othercoach" not in html
    data = {
        "administered_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
        "submission_key": str(uuid.uuid4()),
        "about_coach": people.coach.pk,
        **{f"item_{n}": 4 for n in range(1, 13)},
    }
    client.post(url, data)
    assert Response.objects.get().about_coach == people.coach


def test_entry_from_the_session_page_files_it_under_the_session(client, people, completed_session):
    client.force_login(people.coach)
    page = client.get(reverse("session_detail", args=[completed_session.public_id]))
    enter = reverse("response_new", args=[people.patient.public_id, "wai-sr"])
    enter += f"?session={completed_session.public_id}"
    assert enter in page.content.decode()
    form = client.get(enter).content.decode()
    ended = timezone.localtime(completed_session.scheduled_end).strftime("%Y-%m-%dT%H:%M")
    assert f'value="{ended}"' in form  # answered at the end of the session, editable
    data = {
        "administered_at": ended,
        "submission_key": str(uuid.uuid4()),
        **{f"item_{n}": 4 for n in range(1, 13)},
    }
    saved = client.post(enter, data)
    response = Response.objects.get()
    assert response.session == completed_session
    detail = client.get(saved.url).content.decode()
    assert "Back to the session" in detail
    page = client.get(reverse("session_detail", args=[completed_session.public_id]))
    assert reverse("response_detail", args=[response.public_id]) in page.content.decode()


def test_the_score_page_names_subscales_and_shows_safety_first(client, people):
    answers = {n: 1 for n in range(1, 11)} | {9: 2}
    response = _response(people, "phq-9", answers)
    client.force_login(people.clinician)
    html = client.get(reverse("response_detail", args=[response.public_id])).content.decode()
    assert html.index("Urgent safety answer") < html.index("<table")
    assert "Item 9 answered 2." in html
    assert "Moderate" in html  # items 1-8 answered 1, item 9 answered 2: total 10
    wai = _response(people)
    html = client.get(reverse("response_detail", args=[wai.public_id])).content.decode()
    assert '<th scope="row">Bond</th>' in html and '<th scope="row">Total</th>' in html


def test_meq_shows_percent_of_maximum_and_the_complete_mystical_experience(client, people):
    response = _response(people, "meq-30", {n: 4 for n in range(1, 31)})
    assert response.extras["complete_mystical_experience"] is True
    assert response.extras["percent_of_max"]["total"] == 80.0
    client.force_login(people.coach)
    html = client.get(reverse("response_detail", args=[response.public_id])).content.decode()
    assert "<strong>80</strong> % of max" in html  # MEQ-30's primary score
    assert "Complete mystical experience: yes" in html


def test_viewing_scores_is_audited(client, people):
    response = _response(people)
    client.force_login(people.clinician)
    client.get(reverse("response_detail", args=[response.public_id]))
    assert AuditEvent.objects.filter(actor=people.clinician, patient=people.patient).exists()


def test_a_correction_can_fix_the_date_and_is_listed_with_its_reason(client, people):
    response = _response(people)
    client.force_login(people.coach)
    url = reverse("response_correct", args=[response.public_id])
    when = timezone.localtime() - datetime.timedelta(days=3)
    client.post(
        url,
        {
            **{f"item_{n}": 4 for n in range(1, 13)},
            "administered_at": when.strftime("%Y-%m-%dT%H:%M"),
            "reason": "Paper form was dated three days ago",
        },
    )
    response.refresh_from_db()
    assert response.administered_at.date() == when.date()
    page = client.get(reverse("response_detail", args=[response.public_id])).content.decode()
    assert "Paper form was dated three days ago" in page


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_score_page_shows_the_primary_score_with_its_label(client, people):
    phq = _response(people, "phq-9", {n: 2 for n in range(1, 8)} | {8: 1, 9: 1})  # 16
    srs = _response(people, "srs", {1: 8.1, 2: 8.2, 3: 8.1, 4: 8.2})  # 32.6
    client.force_login(people.clinician)
    text = _text(client.get(reverse("response_detail", args=[phq.public_id])).content.decode())
    assert "Total 16 sum Moderately severe" in text
    assert "1.78" not in text  # the item mean is not shown, let alone as a "total"
    text = _text(client.get(reverse("response_detail", args=[srs.public_id])).content.decode())
    assert "Total 32.6 sum" in text and "8.15" not in text


def test_a_phq9_without_item_9_warns_and_shows_its_prorated_total(client, people):
    answers = {1: 2, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1, 8: None, 9: None}  # 11/7 x 9 -> 14
    response = _response(people, "phq-9", answers)
    client.force_login(people.coach)
    html = client.get(reverse("response_detail", args=[response.public_id])).content.decode()
    text = _text(html)
    assert "Item 9 (Thoughts of death or self-harm) was not answered: ask the patient." in text
    assert html.index("Safety item not answered") < html.index("<table")
    assert "Total 14 sum Moderate prorated (items missing)" in text
    assert "14.1" not in text
