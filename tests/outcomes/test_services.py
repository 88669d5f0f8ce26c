import copy
import datetime
import re
import uuid

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from outcomes import services
from outcomes.models import InstrumentVersion, Response, Score
from tests.helpers import assert_role_answer, matrix_cases

pytestmark = pytest.mark.django_db

WAI_LOW_BOND = {1: 4, 2: 4, 3: 2, 4: 4, 5: 3, 6: 4, 7: 2, 8: 4, 9: 3, 10: 4, 11: 4, 12: 4}


def _record(people, answers=WAI_LOW_BOND, **extra):
    return services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version("wai-sr"),
        answers=answers,
        administered_at=timezone.now(),
        **extra,
    )


def test_instruments_are_loaded_by_migration_and_loading_again_changes_nothing():
    shipped = 12  # nine instruments (PHQ-9 in two versions), MOAA/S and CADSS
    assert InstrumentVersion.objects.count() == shipped
    services.load_instruments()
    assert InstrumentVersion.objects.count() == shipped


def test_a_changed_definition_under_the_same_version_is_refused():
    version = services.latest_version("gad-7")
    changed = copy.deepcopy(version.definition)
    changed["name"] = "GAD-7 with a silent edit"
    with pytest.raises(ValidationError, match="Give the changed file a new version number"):
        services.load_instruments(definitions=[changed])


def test_response_and_its_scores_are_written_together(people):
    response = _record(people)
    scores = {s.scale: s for s in response.scores.all()}
    # bond items 3, 5, 7, 9 = 2, 3, 2, 3 -> sum 10, mean 2.5
    assert scores["bond"].value == 10 and scores["bond"].mean == 2.5
    # total: 4*8 + 10 = 42 over 12 items -> mean 3.5
    assert scores["total"].value == 42 and scores["total"].mean == 3.5
    assert response.answers["3"] == 2.0
    assert response.entered_by == people.coach and response.respondent == "patient"


def test_out_of_range_answer_is_refused_and_nothing_is_written(people):
    with pytest.raises(ValidationError) as exc:
        _record(people, answers={**WAI_LOW_BOND, 3: 7})
    assert "item_3" in exc.value.message_dict
    assert Response.objects.count() == 0 and Score.objects.count() == 0


def test_too_many_missing_items_is_refused_unless_saved_incomplete(people):
    answers = {**WAI_LOW_BOND, 3: None, 5: None}  # bond has only 2 of 4 items
    with pytest.raises(ValidationError) as exc:
        _record(people, answers=answers)
    assert "missing: 3, 5" in exc.value.messages[0]
    assert Response.objects.count() == 0
    response = _record(people, answers=answers, allow_incomplete=True)
    assert not response.complete
    assert response.scores.get(scale="total").value is None


def test_the_same_submission_key_makes_one_response(people):
    key = uuid.uuid4()
    first = _record(people, submission_key=key)
    second = _record(people, submission_key=key)
    assert first.pk == second.pk and Response.objects.count() == 1


def test_phq9_item_9_is_stored_as_a_safety_hit(people):
    answers = {n: 1 for n in range(1, 10)} | {10: 1}
    answers[9] = 2
    response = services.response_record(
        actor=people.clinician,
        patient=people.patient,
        version=services.latest_version("phq-9"),
        answers=answers,
        administered_at=timezone.now(),
    )
    assert response.has_safety_hit
    assert response.safety_hits[0]["item"] == 9 and response.safety_hits[0]["urgent"]


def test_editing_keeps_the_old_version_with_a_reason_and_rescores(people):
    response = _record(people)
    with pytest.raises(ValidationError):
        services.response_edit(actor=people.coach, response=response, answers={}, reason="")
    services.response_edit(
        actor=people.coach,
        response=response,
        answers={**WAI_LOW_BOND, 3: 5, 7: 5},
        reason="Typed item 3 and 7 from the wrong column",
    )
    assert response.scores.get(scale="bond").mean == 4.0  # 5, 3, 5, 3
    history = list(response.history.order_by("history_date"))
    assert len(history) == 2
    assert history[0].answers["3"] == 2.0
    assert history[1].history_change_reason == "Typed item 3 and 7 from the wrong column"


# --- the entry page ------------------------------------------------------------------------

ENTRY_PAGE = {"response_new": [302, 200, 404, 200, 200]}


@pytest.mark.parametrize(("page", "persona", "expected"), matrix_cases(ENTRY_PAGE))
def test_entry_page_role_matrix(client, people, page, persona, expected):
    url = reverse(page, args=[people.patient.public_id, "wai-sr"])
    assert_role_answer(client, people, persona, url, expected)


def _post(client, people, answers, **extra):
    data = {
        "administered_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
        "submission_key": str(uuid.uuid4()),
        **{f"item_{k}": v for k, v in answers.items()},
        **extra,
    }
    url = reverse("response_new", args=[people.patient.public_id, "wai-sr"])
    return client.post(url, data), data


def test_coach_enters_a_wai_sr_and_sees_the_scores(client, people):
    client.force_login(people.coach)
    response, _ = _post(client, people, WAI_LOW_BOND)
    saved = Response.objects.get()
    assert response.url == reverse("response_detail", args=[saved.public_id])
    page = client.get(response.url).content.decode()
    assert "Bond" in page and "2.5" in page


def test_a_resubmitted_form_makes_one_response(client, people):
    client.force_login(people.coach)
    first, data = _post(client, people, WAI_LOW_BOND)
    again = client.post(reverse("response_new", args=[people.patient.public_id, "wai-sr"]), data)
    assert Response.objects.count() == 1
    assert again.url == first.url


def test_bad_answers_reshow_the_form_with_what_was_typed(client, people):
    client.force_login(people.coach)
    response, _ = _post(client, people, {**WAI_LOW_BOND, 3: "", 5: "", 9: ""})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Too many items are unanswered" in html
    assert re.search(r'<input[^>]*name="item_1"[^>]*value="4"[^>]*checked', html)
    assert not re.search(r'<input[^>]*name="item_1"[^>]*value="3"[^>]*checked', html)
    assert Response.objects.count() == 0


def test_unknown_instrument_is_404(client, people):
    client.force_login(people.coach)
    url = reverse("response_new", args=[people.patient.public_id, "nope"])
    assert client.get(url).status_code == 404


def test_administered_time_is_kept(client, people):
    client.force_login(people.coach)
    when = timezone.localtime() - datetime.timedelta(days=2)
    _post(client, people, WAI_LOW_BOND, administered_at=when.strftime("%Y-%m-%dT%H:%M"))
    assert Response.objects.get().administered_at.date() == when.date()


def test_a_correction_through_the_page_keeps_the_old_answers(client, people):
    response = _record(people)
    client.force_login(people.coach)
    url = reverse("response_correct", args=[response.public_id])
    form = client.get(url).content.decode()
    assert re.search(r'<input[^>]*name="item_3"[^>]*value="2"[^>]*checked', form)
    data = {f"item_{k}": v for k, v in {**WAI_LOW_BOND, 3: 5}.items()}
    data["administered_at"] = timezone.localtime(response.administered_at).strftime(
        "%Y-%m-%dT%H:%M"
    )
    refused = client.post(url, {**data, "reason": ""})
    assert "This field is required" in refused.content.decode()
    client.post(url, {**data, "reason": "Paper form misread"})
    response.refresh_from_db()
    assert response.answers["3"] == 5.0
    assert response.history.count() == 2
    page = client.get(reverse("response_detail", args=[response.public_id])).content.decode()
    assert "Paper form misread" in page


def test_caseload_counts_overdue_questionnaires(client, people, completed_session):
    # Ended two hours ago: not overdue yet (48 hours' grace), then overdue once it is older.
    from sessions.models import Session

    client.force_login(people.coach)
    assert "overdue" not in client.get(reverse("home")).content.decode()
    Session.objects.filter(pk=completed_session.pk).update(
        scheduled_start=timezone.now() - datetime.timedelta(days=4),
        scheduled_end=timezone.now() - datetime.timedelta(days=4) + datetime.timedelta(hours=1),
    )
    assert "2 overdue" in client.get(reverse("home")).content.decode()
    _record(people, session=completed_session)
    assert "1 overdue" in client.get(reverse("home")).content.decode()


# --- rules around a response ---------------------------------------------------------------


def test_answers_dated_in_the_future_are_refused(people):
    with pytest.raises(ValidationError) as exc:
        _record_at(people, administered_at=timezone.now() + datetime.timedelta(hours=2))
    assert "administered_at" in exc.value.message_dict
    assert Response.objects.count() == 0


def _record_at(people, **extra):
    return services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version("wai-sr"),
        answers=WAI_LOW_BOND,
        **extra,
    )


def test_a_rating_can_name_only_one_of_the_patients_coaches(people):
    with pytest.raises(ValidationError) as exc:
        _record_at(people, administered_at=timezone.now(), about_coach=people.other_coach)
    assert "about_coach" in exc.value.message_dict
    assert _record(people, about_coach=people.coach).about_coach == people.coach


def test_a_submission_key_cannot_fetch_another_patients_response(people):
    from tests.factories import PatientFactory

    key = uuid.uuid4()
    _record(people, submission_key=key)
    with pytest.raises(ValidationError, match="already used for another patient"):
        services.response_record(
            actor=people.coach,
            patient=PatientFactory(),
            version=services.latest_version("wai-sr"),
            answers=WAI_LOW_BOND,
            administered_at=timezone.now(),
            submission_key=key,
        )


def test_a_response_is_audited_with_its_instrument_and_source(people):
    from clinic.models import AuditEvent

    response = _record(people)
    event = AuditEvent.objects.get(object_type="outcomes.response", action="create")
    assert event.object_id == str(response.public_id) and event.actor == people.coach
    assert event.detail == {"instrument": "wai-sr", "source": "clinic"}


def test_answers_are_queryable_in_sql(people):
    from outcomes.selectors import item_answer

    _record(people)
    assert Response.objects.filter(answers__contains={"3": 2}).count() == 1
    bond_item = Response.objects.annotate(item_3=item_answer(3))
    assert bond_item.filter(item_3__gte=2).count() == 1
    assert bond_item.filter(item_3__gte=3).count() == 0


def test_a_correction_rescores_and_keeps_safety_in_step(people):
    version = services.latest_version("phq-9")
    answers = {n: 0 for n in range(1, 11)}
    response = services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=version,
        answers=answers,
        administered_at=timezone.now(),
    )
    assert not response.has_safety_hit
    services.response_edit(
        actor=people.clinician,
        response=response,
        answers={**answers, 9: 1},
        reason="Item 9 was ticked on the back of the sheet",
    )
    response.refresh_from_db()
    assert response.has_safety_hit and response.safety_hits[0]["item"] == 9
    assert response.scores.get(scale="total").value == 1
    assert Score.objects.filter(response=response).count() == 1  # replaced, not added


def test_a_refused_correction_changes_nothing(people):
    response = _record(people)
    with pytest.raises(ValidationError):
        services.response_edit(
            actor=people.coach,
            response=response,
            answers={**WAI_LOW_BOND, 3: 9},
            reason="typo",
        )
    response.refresh_from_db()
    assert response.answers["3"] == 2.0 and response.history.count() == 1
    assert response.scores.get(scale="bond").mean == 2.5


# --- the hook for the alliance app ---------------------------------------------------------


def test_responses_saved_is_announced_inside_the_transaction(people):
    from outcomes.signals import responses_saved

    heard = []

    def receiver(sender, *, responses, created, **kwargs):
        heard.append(([r.pk for r in responses], created))

    responses_saved.connect(receiver)
    try:
        response = _record(people)
        assert heard == [([response.pk], True)]
        services.response_edit(
            actor=people.coach, response=response, answers=WAI_LOW_BOND, reason="check"
        )
        assert heard[-1] == ([response.pk], False)
    finally:
        responses_saved.disconnect(receiver)


def test_a_failing_receiver_undoes_the_response_all_or_nothing(people):
    from outcomes.signals import responses_saved

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    responses_saved.connect(broken)
    try:
        with pytest.raises(RuntimeError):
            _record(people)
    finally:
        responses_saved.disconnect(broken)
    assert Response.objects.count() == 0


def test_a_refused_response_announces_nothing(people, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError):
        _record(people, answers={**WAI_LOW_BOND, 1: 0})
    assert callbacks == []


# --- safety items left unanswered, prorated totals, amended definitions -------------------

PHQ9_WITHOUT_ITEM_9 = {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1, 7: 1, 8: 1, 9: None}


def _phq9(people, answers):
    return services.response_record(
        actor=people.coach,
        patient=people.patient,
        version=services.latest_version("phq-9"),
        answers=answers,
        administered_at=timezone.now(),
    )


def test_a_phq9_without_item_9_records_it_as_unanswered_and_keeps_a_prorated_total(people):
    response = _phq9(people, PHQ9_WITHOUT_ITEM_9)
    response.refresh_from_db()
    assert response.safety_unanswered == [9]
    assert response.safety_hits == [] and response.has_safety_hit is False
    total = response.scores.get(scale="total")
    # 8 answered, sum 13: 13/8 x 9 = 14.625 -> 15, a whole number banded as shown
    assert (total.value, total.band, total.prorated) == (15, "Moderately severe", True)


def test_a_correction_answering_item_9_clears_the_unanswered_safety_item(people):
    response = _phq9(people, PHQ9_WITHOUT_ITEM_9)
    services.response_edit(
        actor=people.clinician,
        response=response,
        answers={**PHQ9_WITHOUT_ITEM_9, 9: 0},
        reason="Patient answered item 9 when asked",
    )
    response.refresh_from_db()
    assert response.safety_unanswered == []
    services.response_edit(
        actor=people.clinician, response=response, answers=PHQ9_WITHOUT_ITEM_9, reason="Undo"
    )
    response.refresh_from_db()
    assert response.safety_unanswered == [9]


def test_a_complete_phq9_and_a_wai_sr_have_no_unanswered_safety_items(people):
    assert _phq9(people, {**PHQ9_WITHOUT_ITEM_9, 9: 0}).safety_unanswered == []
    assert _record(people).safety_unanswered == []


def test_a_presentation_only_change_under_the_same_version_is_amended_in_place():
    version = services.latest_version("gad-7")
    amended = copy.deepcopy(version.definition)
    amended["primary"]["label"] = "total score"
    amended["verification"] += " Checked again."
    services.load_instruments(definitions=[amended])
    version.refresh_from_db()
    assert version.definition["primary"]["label"] == "total score"
    assert version.content_hash == services._hash(amended)


def test_the_migration_records_skipped_safety_items_and_rounds_prorated_sums(people):
    """Responses saved before the field and the whole-number rule are brought in step."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("outcomes.migrations.0006_response_safety_unanswered")
    response = _phq9(people, PHQ9_WITHOUT_ITEM_9)
    Response.objects.filter(pk=response.pk).update(safety_unanswered=[])
    Score.objects.filter(response=response, scale="total").update(value=14.6, band="Moderate")
    # A mean-scored instrument keeps its 1-decimal prorated subscale sum (bond 13/3 x 4 = 17.3).
    wai = _record(people, answers={n: 4 for n in range(1, 13)} | {3: 5, 9: None})
    migration.record_unanswered_safety_items(apps, None)
    migration.round_prorated_sums(apps, None)
    response.refresh_from_db()
    assert response.safety_unanswered == [9]
    total = response.scores.get(scale="total")
    assert (total.value, total.band) == (15, "Moderately severe")
    assert wai.scores.get(scale="bond").value == 17.3
