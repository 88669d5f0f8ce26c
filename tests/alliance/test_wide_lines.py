"""The wide export's stored time points (`WideLine`): the export reads them only while no
change to a patient's answers, scores, sessions or enrolments has come after their build,
and then says byte for byte what pivoting the scores live says.

Transactional: whether a build covers a change depends on which transactions had committed
when it read, so these tests commit as the clinic would."""

import contextlib
import datetime
import threading
import zoneinfo

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from alliance import exports
from alliance.exports import pseudonym
from alliance.models import WideBuild, WideChange, WideLine
from clinic.models import Enrolment, Patient
from outcomes import services as outcome_services
from outcomes.models import Response, Score
from sessions.models import Session
from tests.alliance import test_exports as agreed
from tests.alliance.test_exports import exact_clinic  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _wide(client, user, **identified) -> bytes:
    return agreed._export(client, user, "wide", **identified)


@contextlib.contextmanager
def _nothing_stored():
    """Inside, the exports find no stored lines and count every score afresh."""
    kept = list(WideBuild.objects.values())
    WideBuild.objects.all().delete()
    try:
        yield
    finally:
        WideBuild.objects.bulk_create(WideBuild(**row) for row in kept)


def _live(client, user) -> bytes:
    """The export as the scores say it now, with no stored line to read."""
    with _nothing_stored():
        return _wide(client, user)


def _counted() -> dict:
    return exports._present(Patient.objects.all())


def _counted_live() -> dict:
    with _nothing_stored():
        return _counted()


def _agreed(people, *, identified: bool) -> bytes:
    other = Patient.objects.get(record_number="RP-B")
    rows = [
        (pseudonym(people.patient), "'+44-1", agreed.NAME, agreed.EXACT_POINTS),
        (pseudonym(other), "RP-B", "Bea Plain", agreed.EXACT_OTHER_POINTS),
    ]
    return agreed._exact(agreed.WIDE_COLUMNS, rows, identified=identified)


def _spoil_stored_lines(patient) -> None:
    """Stored lines changed behind the export's back (nothing records a change to them): an
    export that still read them would lose every cell."""
    WideLine.objects.filter(patient=patient).update(filled={})


def test_stored_lines_give_exactly_the_agreed_csv(client, exact_clinic):  # noqa: F811
    people = exact_clinic
    other = Patient.objects.get(record_number="RP-B")
    assert {people.patient.pk, other.pk} <= set(exports.wide_lines_due())

    exports.wide_lines_refresh()

    assert exports.wide_lines_due() == []
    assert not WideChange.objects.exists()
    assert WideLine.objects.filter(patient=people.patient).count() == len(agreed.EXACT_POINTS)
    assert _counted() == _counted_live()
    assert sum(_counted().values()) == len(agreed.EXACT_SCORES) + len(agreed.EXACT_OTHER_SCORES)
    assert _wide(client, people.clinician) == _agreed(people, identified=False)
    named = {"identified": "on", "reason": "Audit"}
    assert _wide(client, people.admin, **named) == _agreed(people, identified=True)


def test_the_export_reads_the_stored_lines_while_they_are_fresh(client, exact_clinic):  # noqa: F811
    people = exact_clinic
    exports.wide_lines_refresh()
    WideLine.objects.filter(patient=people.patient).update(
        filled={column: "stored" for column in agreed.WIDE_COLUMNS.split(",")}
    )
    assert _wide(client, people.clinician).count(b",stored") == 28 * len(agreed.EXACT_POINTS)
    # And its columns and audited count come from the counts stored with them.
    WideBuild.objects.filter(patient=people.patient).update(scores={})
    other = Patient.objects.get(record_number="RP-B")
    assert sum(_counted().values()) == len(agreed.EXACT_OTHER_SCORES)
    assert _counted() == exports._present(Patient.objects.filter(pk=other.pk))


def _new_answer(people):
    outcome_services.response_record(
        actor=people.admin,
        patient=people.patient,
        version=outcome_services.latest_version("gad-7"),
        answers=agreed._answered("gad-7", 1),
        administered_at=agreed._at(14, 9),
    )


def _corrected_answer(people):
    response = Response.objects.filter(patient=people.patient, version__instrument__code="ebi")
    outcome_services.response_edit(
        actor=people.admin,
        response=response.get(),
        answers={n: 5 * n for n in range(1, 7)},
        reason="Typed from the wrong form",
    )


def _score_changed_in_sql(people):
    Score.objects.filter(response__patient=people.patient).update(value=F("value") + 1)


def _answer_deleted(people):
    Response.objects.filter(patient=people.patient, version__instrument__code="srs").delete()


def _answer_moved_to_another_patient(people):
    other = Patient.objects.get(record_number="RP-B")
    Response.objects.filter(patient=people.patient, version__instrument__code="piq").update(
        patient=other
    )


def _session_relabelled(people):
    Session.objects.filter(label__startswith="-Prep").update(label="Preparation one")


def _session_kind_corrected(people):
    Session.objects.filter(kind="integration").update(kind="preparation")


def _enrolment_starting_earlier(people):
    Enrolment.objects.filter(patient=people.patient).update(start_date=datetime.date(2026, 5, 1))


@pytest.mark.parametrize(
    "change",
    [
        _new_answer,
        _corrected_answer,
        _score_changed_in_sql,
        _answer_deleted,
        _answer_moved_to_another_patient,
        _session_relabelled,
        _session_kind_corrected,
        _enrolment_starting_earlier,
    ],
)
def test_every_change_makes_the_export_pivot_live_until_the_next_build(
    client,
    exact_clinic,  # noqa: F811
    change,
):
    people = exact_clinic
    exports.wide_lines_refresh()
    before = _wide(client, people.clinician)
    _spoil_stored_lines(people.patient)

    change(people)

    assert people.patient.pk in exports.wide_lines_due()
    after = _wide(client, people.clinician)
    assert after == _live(client, people.clinician)
    assert after != before  # the change shows, and not through spoiled lines
    counted = _counted()
    assert counted == _counted_live()
    exports.wide_lines_refresh()
    assert exports.wide_lines_due() == []
    assert _wide(client, people.clinician) == after
    assert _counted() == counted


def test_lines_built_in_another_time_zone_are_not_read(client, exact_clinic):  # noqa: F811
    people = exact_clinic
    exports.wide_lines_refresh()
    _spoil_stored_lines(people.patient)
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        assert people.patient.pk in exports.wide_lines_due()
        assert _wide(client, people.clinician) == _live(client, people.clinician)


def test_a_change_still_uncommitted_while_lines_are_built_leaves_the_patient_due(
    client,
    exact_clinic,  # noqa: F811
):
    people = exact_clinic
    exports.wide_lines_refresh()
    writing, built = threading.Event(), threading.Event()

    def coach_saves():
        try:
            with transaction.atomic():
                _score_changed_in_sql(people)
                writing.set()
                assert built.wait(10)
        finally:
            connection.close()

    coach = threading.Thread(target=coach_saves)
    coach.start()
    assert writing.wait(10)
    exports.wide_lines_refresh(patient_ids=[people.patient.pk])
    built.set()
    coach.join(10)

    assert people.patient.pk in exports.wide_lines_due()
    _spoil_stored_lines(people.patient)
    assert _wide(client, people.clinician) == _live(client, people.clinician)


def test_the_command_builds_what_is_due_and_then_nothing(exact_clinic, capsys):  # noqa: F811
    call_command("refresh_wide_lines")
    assert "Wide export lines built for" in capsys.readouterr().out
    assert exports.wide_lines_due() == []
    call_command("refresh_wide_lines")
    assert "built for 0 patient(s)" in capsys.readouterr().out


def test_a_deleted_patients_changes_are_cleared_by_the_next_build(exact_clinic):  # noqa: F811
    gone = Patient.objects.get(record_number="RP-C")
    WideChange.objects.create(patient_id=gone.pk, xid=1)
    Patient.objects.filter(pk=gone.pk).delete()
    exports.wide_lines_refresh()
    assert not WideChange.objects.filter(patient_id=gone.pk).exists()
