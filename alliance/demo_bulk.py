"""The demo clinic at database speed: `seed_demo --bulk` for thousands of patients.

The same clinic as seed_demo's service path, draw for draw (the same random streams, consumed
in the same order), so a bulk-seeded and a service-seeded clinic of the same seed hold the same
sessions, responses, scores and flags. What the services check one row at a time is decided
here in memory, from the same rules:

- calendars come from `sessions.services.planned_schedule` (the protocol's steps), group steps
  shared by the cohort;
- a coach is made facilitator of an upcoming session only when they facilitate nothing else
  overlapping it (the services' conflict check, against an in-memory index of each coach's
  sessions, seeded from the database);
- answers are the demo's stories (`outcomes.demo.planned_responses`), checked and scored by
  `outcomes.services.responses_bulk_record` with the scoring engine;
- every change gets the audit row its service writes (`clinic.audit.audit_values`).

Rows are copied in (PostgreSQL COPY, clinic/bulk.py), in one transaction with the caller's,
with the loaded tables' foreign keys checked once at the end of the load rather than row by
row (`references_checked_once`): the tables are locked until the caller commits.
Flags are not computed here: the caller recomputes every patient once at the end.
"""

import datetime
from collections import defaultdict
from dataclasses import dataclass, field

from django.utils import timezone

from clinic.audit import AUDIT_FIELDS, audit_values
from clinic.bulk import (
    copy_rows,
    copy_values,
    next_ids,
    references_checked_once,
    unsaved_copy,
)
from clinic.models import (
    AuditEvent,
    CoachAssignment,
    Enrolment,
    Patient,
    PatientStatusChange,
)
from outcomes import services as outcome_services
from outcomes.demo import planned_responses
from outcomes.models import Response, Score
from sessions import monitoring
from sessions import services as session_services
from sessions.models import Attendance, Discharge, Session, SessionKind
from sessions.selectors import limits_for

from .exports import wide_changes_recorded_once

# Sessions are at most a day long (clinic.dates.LONGEST_SESSION), so an overlap is found among
# the sessions that start on the same day or the day before.
OVERLAP_DAYS = (0, -1)

# Rows nobody names: their ids come from the table's default as they are copied.
_WITHOUT_ID = {
    model: [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    for model in (PatientStatusChange, Discharge)
}

# Every table `BulkClinic.save` copies rows into.
_LOADED = (
    Patient,
    Enrolment,
    Session,
    Attendance,
    Session.facilitators.through,
    CoachAssignment,
    PatientStatusChange,
    Discharge,
    AuditEvent,
    Response,
    Response.history.model,
    Score,
)

NO_SHOW_NOTE = "Did not attend; rebooking."
DISCHARGE_ESCORT = "Partner drove home"
DISCHARGE_NOTE = "Entered afterwards from the paper monitoring form (demo data)."


def _day(moment: datetime.datetime) -> datetime.date:
    return moment.astimezone(datetime.UTC).date()


@dataclass
class _Planned:
    """One session to insert, with its attendees (patient, enrolment, status) and facilitators."""

    row: Session
    places: list = field(default_factory=list)
    facilitators: list = field(default_factory=list)  # added by this run
    facilitated_before: set = field(default_factory=set)  # coach ids, from an earlier run
    seeded_before: bool = False


class BulkClinic:
    """Plans the demo clinic in memory as seed_demo's services would build it, then inserts it."""

    def __init__(self, *, admin, coaches, programs, now=None):
        self.admin = admin
        self.coaches = coaches
        self.programs = programs
        self.now = now or timezone.now()
        self.today = timezone.localdate(self.now)
        self.patients: list[Patient] = []
        self.enrolments: list[Enrolment] = []
        self.assignments: list[CoachAssignment] = []
        self.status_changes: list[PatientStatusChange] = []
        self.sessions: list[_Planned] = []
        self.discharges: list[Discharge] = []
        # Audit rows are built once their targets have ids: (action, target, patient, detail).
        self.audits: list[tuple] = []
        self.stale: dict = {}  # id() to patient: whose flags the services would mark stale
        self.steps = {
            p.pk: list(p.protocol.steps.order_by("order")) if p.protocol else [] for p in programs
        }
        group = next(p for p in programs if p.is_group)
        self.group_active = group.enrolments.filter(status=Enrolment.Status.ACTIVE).count()
        self.group_sessions = {
            s.protocol_step_id: _Planned(
                row=s,
                facilitated_before={c.pk for c in s.facilitators.all()},
                seeded_before=True,
            )
            for s in Session.objects.filter(program=group, is_group=True).prefetch_related(
                "facilitators"
            )
        }
        self.busy = self._coach_index()
        self._first_sessions: dict[tuple, Session] = {}  # by program and protocol step

    # --- what the services decide, in memory -------------------------------------------------

    def _coach_index(self):
        """Each coach's scheduled sessions by start day, from the database (by id)."""
        busy = defaultdict(lambda: defaultdict(list))
        rows = Session.facilitators.through.objects.filter(
            session__status=Session.Status.SCHEDULED,
            session__scheduled_end__gt=self.now - datetime.timedelta(days=1),
        ).values_list("user_id", "session__scheduled_start", "session__scheduled_end", "session_id")
        for coach_id, start, end, session_id in rows:
            busy[coach_id][_day(start)].append((start, end, session_id))
        return busy

    def _coach_free(self, coach, planned: _Planned) -> bool:
        start, end = planned.row.scheduled_start, planned.row.scheduled_end
        days = self.busy[coach.pk]
        for offset in OVERLAP_DAYS:
            for other_start, other_end, other in days[_day(start) + datetime.timedelta(offset)]:
                itself = other is planned or (other is not None and other == planned.row.pk)
                if not itself and other_start < end and start < other_end:
                    return False
        return True

    def _audit(self, action, target, patient, detail=None):
        self.audits.append((action, target, patient, detail))

    def _status(self, patient, to_status, reason=""):
        self.status_changes.append(
            PatientStatusChange(
                patient=patient,
                from_status=patient.status,
                to_status=to_status,
                reason=reason,
                changed_by=self.admin,
                changed_at=self.now,
            )
        )
        patient.status = to_status

    def _status_audited(self, patient, to_status):
        previous = patient.status
        self._status(patient, to_status)
        self._audit(
            AuditEvent.Action.STATUS,
            patient,
            patient,
            {"from": str(previous), "to": str(to_status)},
        )

    def patient(
        self, *, record_number, first_name, last_name, date_of_birth, email="", consent=False
    ):
        patient = Patient(
            record_number=record_number,
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            date_of_birth=date_of_birth,
            email=email.strip().lower(),
            email_consent=consent,
        )
        self.patients.append(patient)
        self.status_changes.append(
            PatientStatusChange(
                patient=patient, from_status="", to_status=patient.status, changed_by=self.admin
            )
        )
        self._audit(AuditEvent.Action.CREATE, patient, patient)
        return patient

    def group_has_room(self, group) -> bool:
        return self.group_active < group.capacity

    def enrol(self, patient, *, program, start_date) -> Enrolment:
        enrolment = Enrolment(
            patient=patient, program=program, start_date=start_date, enrolled_by=self.admin
        )
        enrolment.planned_sessions, enrolment.planned_assignments = [], []
        self.enrolments.append(enrolment)
        if program.is_group:
            self.group_active += 1
        self._audit(AuditEvent.Action.ENROL, enrolment, patient, {"program": program.name})
        if program.protocol is not None:
            self._schedule(enrolment)
        if patient.status in (Patient.Status.REFERRED, Patient.Status.SCREENING):
            self._status(patient, Patient.Status.ENROLLED, reason=f"Enrolled in {program.name}")
        return enrolment

    def _schedule(self, enrolment):
        program, patient = enrolment.program, enrolment.patient
        created = 0
        for step, start, end in session_services.planned_schedule(
            program=program, steps=self.steps[program.pk], start_date=enrolment.start_date
        ):
            planned = self.group_sessions.get(step.pk) if step.is_group else None
            if planned is None:
                planned = _Planned(row=self._session(enrolment, step, start, end))
                self.sessions.append(planned)
                created += 1
                if step.is_group:
                    self.group_sessions[step.pk] = planned
            planned.places.append([patient, enrolment, Attendance.Status.EXPECTED])
            enrolment.planned_sessions.append(planned)
        self._audit(
            AuditEvent.Action.CREATE,
            enrolment,
            patient,
            {"schedule": program.protocol.name, "sessions": created},
        )
        self.stale[id(patient)] = patient

    def _session(self, enrolment, step, start, end) -> Session:
        """`session_for_step`'s row, copied from the step's first one: building 100,000
        sessions field by field was a tenth of the seed's time."""
        program = enrolment.program
        first = self._first_sessions.get((program.pk, step.pk))
        if first is None:
            first = self._first_sessions[program.pk, step.pk] = session_services.session_for_step(
                program=program, enrolment=None, step=step, start=start, end=end
            )
        session = unsaved_copy(first)
        session.enrolment = None if step.is_group else enrolment
        session.scheduled_start, session.scheduled_end = start, end
        return session

    def assign(self, enrolment, *, coach, role, start_date) -> CoachAssignment:
        assignment = CoachAssignment(
            enrolment=enrolment,
            coach=coach,
            role=role,
            start_date=start_date,
            assigned_by=self.admin,
        )
        self.assignments.append(assignment)
        enrolment.planned_assignments.append(assignment)
        kinds = session_services.ROLE_KINDS[CoachAssignment.Role(role)]
        skipped = []
        for planned in enrolment.planned_sessions:
            row = planned.row
            upcoming = row.status == Session.Status.SCHEDULED and row.scheduled_start >= self.now
            if (
                row.kind not in kinds
                or not upcoming
                or coach in planned.facilitators
                or coach.pk in planned.facilitated_before
            ):
                continue
            if not self._coach_free(coach, planned):
                skipped.append(planned)
                continue
            planned.facilitators.append(coach)
            self.busy[coach.pk][_day(row.scheduled_start)].append(
                (row.scheduled_start, row.scheduled_end, planned)
            )
        self._audit(
            AuditEvent.Action.ASSIGN,
            assignment,
            enrolment.patient,
            lambda: {
                "coach": coach.pk,
                "role": role,
                "not_facilitating": [str(p.row.public_id) for p in skipped],
            },
        )
        return assignment

    def start_treatment(self, patient):
        self._status_audited(patient, Patient.Status.IN_TREATMENT)

    def log_past_sessions(self, enrolment, *, rng):
        """The coach's logs of an enrolment's individual sessions that ended before yesterday."""
        yesterday = self.now - datetime.timedelta(days=1)
        past = [
            p
            for p in enrolment.planned_sessions
            if not p.row.is_group
            and p.row.status == Session.Status.SCHEDULED
            and p.row.scheduled_end < yesterday
        ]
        for planned in sorted(past, key=lambda p: p.row.scheduled_start):
            self.log_if_past(planned, rng=rng)

    def log_group_sessions(self, *, rng):
        """Group circles, logged once everyone is enrolled, with attendance per member."""
        group = [p for p in self.sessions if p.row.is_group]
        for planned in sorted(group, key=lambda p: p.row.scheduled_start):
            self.log_if_past(planned, rng=rng)

    def log_if_past(self, planned: _Planned, *, rng):
        row = planned.row
        if row.status != Session.Status.SCHEDULED or row.scheduled_end > self.now:
            return
        no_show = not row.is_group and rng.random() < 0.07
        attendance = None
        if row.is_group:
            attendance = {
                id(place[0]): Attendance.Status.ABSENT
                if rng.random() < 0.1
                else Attendance.Status.ATTENDED
                for place in sorted(planned.places, key=lambda place: place[0].last_name)
            }
        if row.kind == SessionKind.DOSING and not no_show:
            for patient, _enrolment, _status in planned.places:
                if attendance and attendance.get(id(patient)) == Attendance.Status.ABSENT:
                    continue
                self._discharge(planned, patient)
        status = Session.Status.NO_SHOW if no_show else Session.Status.COMPLETED
        actor = planned.facilitators[0] if planned.facilitators else self.admin
        row.status = status
        row.duration_minutes = None if no_show else row.protocol_step.duration_minutes
        row.status_reason = NO_SHOW_NOTE if no_show else ""
        row.logged_by = actor
        row.logged_at = self.now
        for place in planned.places:
            if attendance and id(place[0]) in attendance:
                place[2] = attendance[id(place[0])]
            else:
                place[2] = Attendance.Status.ABSENT if no_show else Attendance.Status.ATTENDED
        self.audits.append(
            (
                AuditEvent.Action.UPDATE,
                row,
                row.enrolment.patient if row.enrolment else None,
                {"logged": status},
                actor,
            )
        )
        if row.kind in (SessionKind.PREPARATION, SessionKind.DOSING):
            self.stale.update((id(place[0]), place[0]) for place in planned.places)

    def _discharge(self, planned: _Planned, patient):
        problems = self._discharge_problems(planned.row)
        self.discharges.append(
            Discharge(
                session=planned.row,
                patient=patient,
                decided_by=self.admin,
                decided_at=self.now,
                observed_minutes=None,
                sedation_resolved=True,
                escort=DISCHARGE_ESCORT,
                overridden=problems,
                override_note=DISCHARGE_NOTE if problems else "",
            )
        )
        self._audit(
            AuditEvent.Action.UPDATE,
            planned.row,
            patient,
            {
                "discharge": "override" if problems else "check passed",
                "unmet": problems,
                "note": DISCHARGE_NOTE if problems else "",
                "sedation": "",
            },
        )

    def _discharge_problems(self, row: Session) -> list[str]:
        """What discharge_record's check finds for a dosing entered afterwards: no dose time
        and no vitals recorded (the same for every such dosing of a step)."""
        cache = self.__dict__.setdefault("_problems", {})
        if row.protocol_step_id not in cache:
            schedule = monitoring.schedule_from(row.protocol_step.monitoring or None)
            facts = monitoring.DischargeFacts(
                now=self.now,
                dose_at=None,
                observation_minutes=schedule.observation_minutes,
                last_reading=None,
                limits=limits_for(row.program),
                sedation_resolved=True,
                escort_confirmed=True,
            )
            cache[row.protocol_step_id] = monitoring.discharge_problems(facts)
        return list(cache[row.protocol_step_id])

    def finish(self, patient, enrolment, *, last_day):
        """An alumnus after their answers are in: completed, enrolment closed, coaches released."""
        self._status_audited(patient, Patient.Status.FOLLOW_UP)
        self._status_audited(patient, Patient.Status.COMPLETED)
        enrolment.status = Enrolment.Status.COMPLETED
        enrolment.end_date = max(enrolment.start_date, self.today)
        for assignment in enrolment.planned_assignments:
            if assignment.end_date is None:
                assignment.end_date = last_day
                self._audit(
                    AuditEvent.Action.END_ASSIGNMENT,
                    assignment,
                    patient,
                    {"coach": assignment.coach_id, "role": assignment.role},
                )

    # --- writing -----------------------------------------------------------------------------

    def save(self, *, seed: int) -> int:
        """Insert everything planned, then the answers; returns how many responses."""
        # Checked row by row, the foreign keys of a 10,000-patient load cost a third of the
        # seed's time at commit; one join per key when the load is done costs a second or two.
        # Likewise the triggers that record whose wide export lines changed: once per
        # patient at the end, not for every batch of answers copied.
        with (
            references_checked_once(*_LOADED),
            wide_changes_recorded_once(lambda: [p.pk for p in self.patients]),
        ):
            return self._save(seed=seed)

    def _save(self, *, seed: int) -> int:
        # Parents take their ids from their tables' sequences first, so every row can name
        # its parents and all of them go in with COPY: `bulk_create` spent most of its time
        # compiling the INSERTs and reading the ids back.
        sessions = [p.row for p in self.sessions]
        for model, rows in (
            (Patient, self.patients),
            (Enrolment, self.enrolments),
            (Session, sessions),
            (CoachAssignment, self.assignments),
        ):
            for row, pk in zip(rows, next_ids(model, len(rows)), strict=True):
                row.pk = pk
        copy_rows(Patient, self.patients)
        copy_rows(Enrolment, self.enrolments)
        copy_rows(Session, sessions)
        # Group circles seeded by an earlier run take the new members too.
        planned = self.sessions + [p for p in self.group_sessions.values() if p.seeded_before]
        copy_values(
            Attendance,
            (
                (p.row.pk, patient.pk, enrolment.pk, str(status))
                for p in planned
                for patient, enrolment, status in p.places
            ),
            fields=["session_id", "patient_id", "enrolment_id", "status"],
        )
        copy_values(
            Session.facilitators.through,
            ((p.row.pk, coach.pk) for p in planned for coach in p.facilitators),
            fields=["session_id", "user_id"],
        )
        copy_rows(CoachAssignment, self.assignments)
        copy_rows(PatientStatusChange, self.status_changes, fields=_WITHOUT_ID[PatientStatusChange])
        copy_rows(Discharge, self.discharges, fields=_WITHOUT_ID[Discharge])
        copy_values(AuditEvent, self._audit_rows(), fields=AUDIT_FIELDS)
        return self._save_responses(seed=seed)

    def _audit_rows(self):
        for action, target, patient, detail, *actor in self.audits:
            yield audit_values(
                at=self.now,
                actor=actor[0] if actor else self.admin,
                action=action,
                target=target,
                patient=patient,
                detail=detail() if callable(detail) else detail,
            )

    def _save_responses(self, *, seed: int) -> int:
        versions = {}
        attended = defaultdict(list)
        for planned in self.sessions:
            row = planned.row
            if row.status != Session.Status.COMPLETED or row.protocol_step_id is None:
                continue
            for patient, _enrolment, status in planned.places:
                if status in Attendance.PRESENT:
                    attended[id(patient)].append(row)
        drafts = []
        for patient in sorted(self.patients, key=lambda p: p.pk):
            sessions = sorted(attended[id(patient)], key=lambda s: (s.scheduled_start, s.pk))
            for session, code, answers, when in planned_responses(
                record_number=patient.record_number, sessions=sessions, seed=seed, now=self.now
            ):
                if code not in versions:
                    versions[code] = outcome_services.latest_version(code)
                drafts.append((patient, versions[code], answers, when, session))
        return outcome_services.responses_bulk_record(actor=self.admin, drafts=drafts)
