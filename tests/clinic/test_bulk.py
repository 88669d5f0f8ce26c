"""clinic.bulk.copy_rows: rows copied in come out as bulk_create would have written them."""

import datetime

import pytest
from django.db import IntegrityError, connection, transaction

from clinic.bulk import copy_rows, next_ids, references_checked_once, unsaved_copy
from clinic.models import Enrolment, Patient
from clinic.roles import Role
from tests.factories import PatientFactory, ProgramFactory, UserFactory

pytestmark = pytest.mark.django_db


def _unsaved(record_number: str, *, program, admin) -> tuple[Patient, Enrolment]:
    patient = Patient(
        record_number=record_number,
        first_name="Ada",
        last_name="Lee",
        date_of_birth=datetime.date(1980, 1, 1),
    )
    # Assigned before the patient has an id, as the demo's bulk plan does.
    enrolment = Enrolment(
        patient=patient, program=program, start_date=datetime.date(2026, 1, 5), enrolled_by=admin
    )
    return patient, enrolment


def test_copied_rows_name_the_ids_their_parents_got_after_they_were_assigned():
    admin, program = UserFactory(role=Role.ADMIN), ProgramFactory()
    patient, enrolment = _unsaved("B-0001", program=program, admin=admin)
    patient.pk = next_ids(Patient, 1)[0]
    enrolment.pk = next_ids(Enrolment, 1)[0]

    assert copy_rows(Patient, [patient]) == 1
    assert copy_rows(Enrolment, [enrolment]) == 1

    saved = Enrolment.objects.select_related("patient").get()
    assert saved.patient.record_number == "B-0001"
    assert saved.patient.public_id == patient.public_id
    assert saved.status == Enrolment.Status.ACTIVE  # the field's default
    assert saved.created_at is not None and saved.patient.created_at is not None
    assert enrolment.patient_id == patient.pk
    # Rows the ORM inserts later take the next ids from the same sequence.
    assert PatientFactory().pk > patient.pk


def test_a_row_whose_parent_has_no_id_yet_is_refused_and_nothing_is_written():
    admin, program = UserFactory(role=Role.ADMIN), ProgramFactory()
    _patient, enrolment = _unsaved("B-0002", program=program, admin=admin)
    enrolment.pk = next_ids(Enrolment, 1)[0]

    with pytest.raises(ValueError, match="no id"), transaction.atomic():
        copy_rows(Enrolment, [enrolment])

    assert not Enrolment.objects.exists()


def _foreign_keys(model) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid), condeferrable, condeferred "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass ORDER BY conname",
            [model._meta.db_table],
        )
        return cursor.fetchall()


def test_keys_dropped_for_a_load_come_back_exactly_as_they_were_and_deferred_again():
    admin, program = UserFactory(role=Role.ADMIN), ProgramFactory()
    before = _foreign_keys(Enrolment)
    assert before

    with references_checked_once(Patient, Enrolment):
        assert _foreign_keys(Enrolment) == []
        patient, enrolment = _unsaved("B-0003", program=program, admin=admin)
        patient.pk, enrolment.pk = next_ids(Patient, 1)[0], next_ids(Enrolment, 1)[0]
        copy_rows(Enrolment, [enrolment])  # before its patient: nothing checks yet
        copy_rows(Patient, [patient])

    assert _foreign_keys(Enrolment) == before
    assert Enrolment.objects.get().patient == patient
    # Deferred again: a missing parent is only found when the transaction checks its keys.
    with transaction.atomic():
        Enrolment.objects.filter(pk=enrolment.pk).update(patient_id=patient.pk + 10_000)
        with pytest.raises(IntegrityError), connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        transaction.set_rollback(True)


def test_a_loaded_row_naming_a_missing_parent_fails_the_load_when_the_keys_come_back():
    admin, program = UserFactory(role=Role.ADMIN), ProgramFactory()
    before = _foreign_keys(Enrolment)
    patient, enrolment = _unsaved("B-0004", program=program, admin=admin)
    patient.pk, enrolment.pk = next_ids(Patient, 1)[0], next_ids(Enrolment, 1)[0]

    with (
        pytest.raises(IntegrityError),
        transaction.atomic(),
        references_checked_once(Enrolment),
    ):
        copy_rows(Enrolment, [enrolment])  # its patient is never copied

    assert not Enrolment.objects.exists()
    assert _foreign_keys(Enrolment) == before


def test_values_repeated_across_copied_rows_come_out_as_each_row_gave_them():
    # copy_rows prepares each distinct value once per field: every row must still get its own.
    rows = [
        Patient(
            pk=pk,
            record_number=f"B-01{n}",
            first_name="Ada" if n % 2 else "Bo",
            last_name="Lee",
            date_of_birth=datetime.date(1980, 1, 1 + n % 2),
            email_consent=bool(n % 2),
            status=status,
        )
        for n, (pk, status) in enumerate(
            zip(
                next_ids(Patient, 4),
                [
                    Patient.Status.REFERRED,
                    Patient.Status.ENROLLED,
                    Patient.Status.REFERRED,
                    "in_treatment",
                ],
                strict=True,
            )
        )
    ]

    copy_rows(Patient, rows)

    stored = Patient.objects.order_by("record_number").values_list(
        "first_name", "date_of_birth", "email_consent", "status"
    )
    assert list(stored) == [
        (r.first_name, r.date_of_birth, r.email_consent, str(r.status)) for r in rows
    ]


def test_an_unsaved_copy_draws_its_own_public_id_and_keeps_its_own_parents_and_state():
    admin, program, other = UserFactory(role=Role.ADMIN), ProgramFactory(), ProgramFactory()
    first, enrolment = _unsaved("B-0005", program=program, admin=admin)

    copied = unsaved_copy(enrolment)
    copied.program = other

    assert enrolment.program is program and copied.program is other
    assert copied.patient is first and copied.enrolled_by is admin
    assert copied.start_date == enrolment.start_date
    assert copied._state is not enrolment._state
    assert unsaved_copy(first).public_id != first.public_id
    assert unsaved_copy(first).record_number == "B-0005"

    first.pk = next_ids(Patient, 1)[0]
    copy_rows(Patient, [first])
    with pytest.raises(ValueError, match="only an unsaved row"):
        unsaved_copy(first)
