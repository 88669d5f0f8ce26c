"""Protocols, scheduled sessions, attendance and dosing details."""

import hashlib
import uuid

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from clinic.models import Enrolment, Patient, Program


class SessionKind(models.TextChoices):
    PREPARATION = "preparation", "Preparation"
    DOSING = "dosing", "Dosing"
    INTEGRATION = "integration", "Integration"
    FOLLOW_UP = "follow_up", "Follow-up"


class Protocol(models.Model):
    """A template of ordered steps that generates a patient's schedule on enrolment."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    modality = models.CharField(max_length=20, choices=Program.Modality.choices)
    min_preparation_before_dosing = models.PositiveSmallIntegerField(
        default=2, help_text="Completed preparation sessions expected before any dosing."
    )
    is_active = models.BooleanField(default=True)
    # Questionnaires due by the calendar rather than after a session (follow-ups at offsets
    # from the last dosing, recurring measures): see sessions/schedules.py for the format.
    measurement_schedule = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ProtocolStep(models.Model):
    class Anchor(models.TextChoices):
        START = "start", "Days after the enrolment (or group program) start"
        PREVIOUS_DOSING = "previous_dosing", "Days after the previous dosing"

    protocol = models.ForeignKey(Protocol, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=20, choices=SessionKind.choices)
    label = models.CharField(max_length=80)
    anchor = models.CharField(max_length=20, choices=Anchor.choices, default=Anchor.START)
    day_offset = models.PositiveSmallIntegerField()
    start_time = models.TimeField(help_text="Suggested local start time.")
    duration_minutes = models.PositiveSmallIntegerField()
    is_group = models.BooleanField(
        default=False, help_text="One session shared by everyone in a group program."
    )
    instruments_due = models.JSONField(
        default=list, blank=True, help_text="Instrument codes due after this step."
    )
    # Dosing steps: the observation points and minimum observation time, from the protocol
    # file (`sessions.monitoring.schedule_from` reads it; empty means the REMS fallback).
    monitoring = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["protocol", "order"]
        constraints = [
            models.UniqueConstraint(fields=["protocol", "order"], name="step_unique_order"),
            models.CheckConstraint(condition=Q(duration_minutes__gt=0), name="step_has_duration"),
        ]

    def __str__(self):
        return f"{self.protocol}: {self.order}. {self.label}"


class Room(models.Model):
    name = models.CharField(max_length=80, unique=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class TsTzRange(Func):
    """`tstzrange(start, end)`: half-open, so back-to-back sessions do not overlap."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class SessionStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    NO_SHOW = "no_show", "No-show"


class Session(models.Model):
    Status = SessionStatus

    class Route(models.TextChoices):
        ORAL = "oral", "Oral"
        INTRAVENOUS = "iv", "Intravenous"
        INTRAMUSCULAR = "im", "Intramuscular"
        INTRANASAL = "intranasal", "Intranasal"
        SUBLINGUAL = "sublingual", "Sublingual"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="sessions")
    # Individual sessions belong to one enrolment; group sessions to the program only.
    enrolment = models.ForeignKey(
        Enrolment, null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    protocol_step = models.ForeignKey(
        ProtocolStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    kind = models.CharField(max_length=20, choices=SessionKind.choices)
    label = models.CharField(max_length=80, blank=True)
    is_group = models.BooleanField(default=False)
    scheduled_start = models.DateTimeField()
    scheduled_end = models.DateTimeField()
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    facilitators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="facilitated_sessions"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SCHEDULED)
    status_reason = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    duration_minutes = models.PositiveSmallIntegerField(null=True, blank=True)
    logged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    logged_at = models.DateTimeField(null=True, blank=True)
    # Dosing details (dosing sessions only).
    substance = models.CharField(
        max_length=20, choices=Program.Modality.choices, blank=True, default=""
    )
    dose_mg = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)
    weight_kg = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    route = models.CharField(max_length=20, choices=Route.choices, blank=True)
    actual_start = models.DateTimeField(null=True, blank=True)
    actual_end = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scheduled_start", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scheduled_end__gt=F("scheduled_start")),
                name="session_ends_after_start",
                violation_error_message="The session must end after it starts.",
            ),
            models.CheckConstraint(
                condition=Q(is_group=True) | Q(enrolment__isnull=False),
                name="session_individual_has_enrolment",
            ),
            models.CheckConstraint(
                condition=Q(actual_end__isnull=True)
                | Q(actual_start__isnull=True)
                | Q(actual_end__gt=F("actual_start")),
                name="session_actual_end_after_start",
            ),
            # The services refuse a double-booked room with a message first (under row locks);
            # this is the database's own guarantee behind them (needs btree_gist).
            ExclusionConstraint(
                name="session_room_no_overlap",
                expressions=[
                    (TsTzRange("scheduled_start", "scheduled_end"), RangeOperators.OVERLAPS),
                    ("room", RangeOperators.EQUAL),
                ],
                condition=Q(status=SessionStatus.SCHEDULED, room__isnull=False),
                violation_error_message="The room is already booked at that time.",
            ),
        ]
        indexes = [
            models.Index(fields=["scheduled_start"]),
            # Carries the id and program so that the cohort analytics' dosing spans (every
            # completed dosing of the clinic, joined to its attendances) read the index alone
            # instead of visiting a heap page per session.
            models.Index(
                fields=["kind", "status", "scheduled_start"],
                include=["id", "program"],
                name="session_kind_status_start",
            ),
            # The program page's upcoming sessions: without it the database walks every
            # session of the clinic in start order (most of them past) to find 15 ahead.
            models.Index(
                fields=["program", "status", "scheduled_start"], name="session_program_status"
            ),
            # Its group sessions: a handful in a package program of 100,000 sessions.
            models.Index(
                fields=["program", "scheduled_start"],
                condition=Q(is_group=True),
                name="session_group_by_program",
            ),
        ]

    def __str__(self):
        return f"{self.label or self.get_kind_display()} {self.scheduled_start:%Y-%m-%d %H:%M}"

    @property
    def is_dosing(self) -> bool:
        return self.kind == SessionKind.DOSING

    @property
    def awaits_log(self) -> bool:
        """Started, and still marked scheduled: its facilitators have not logged it yet."""
        return self.status == SessionStatus.SCHEDULED and self.scheduled_start <= timezone.now()

    @property
    def dose_mg_per_kg(self):
        if self.dose_mg is None or not self.weight_kg:
            return None
        return round(self.dose_mg / self.weight_kg, 3)


class Attendance(models.Model):
    """Who is expected at a session and whether they came (one row per patient)."""

    class Status(models.TextChoices):
        EXPECTED = "expected", "Expected"
        ATTENDED = "attended", "Attended"
        LATE = "late", "Late"
        ABSENT = "absent", "Absent"
        CANCELLED = "cancelled", "Cancelled"

    # Who came (and so owes the session's questionnaires and counts as prepared), and who
    # will not come.
    PRESENT = (Status.ATTENDED, Status.LATE)
    NOT_COMING = (Status.ABSENT, Status.CANCELLED)

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="attendances")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="attendances")
    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.EXPECTED)

    class Meta:
        ordering = ["session", "patient__last_name"]
        constraints = [
            models.UniqueConstraint(fields=["session", "patient"], name="attendance_once"),
        ]

    def __str__(self):
        return f"{self.patient_id} at {self.session_id}: {self.status}"


class CalendarFeed(models.Model):
    """A coach's private iCalendar subscription; only a hash of the secret is stored."""

    coach = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="calendar_feeds"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    # Off: events say only "<clinic> session", the time and the room. On (the coach chose
    # it): also the session kind or label and the record number or group program.
    show_details = models.BooleanField(
        "show record numbers and session kinds",
        default=False,
        help_text="Calendar apps keep copies on phones and in the cloud.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["coach"], condition=Q(revoked_at__isnull=True), name="feed_one_active"
            )
        ]

    def __str__(self):
        return f"Calendar feed for {self.coach}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


def _within(name: str) -> Q:
    from .monitoring import PLAUSIBLE

    low, high, _ = PLAUSIBLE[name]
    return Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gte": low, f"{name}__lte": high})


class VitalLimits(models.Model):
    """A program's vital-sign alert thresholds (a program setting); without a row the
    program's modality defaults apply (`sessions.monitoring.DEFAULT_LIMITS`, with sources)."""

    program = models.OneToOneField(Program, on_delete=models.PROTECT, related_name="vital_limits")
    pre_dose_systolic_above = models.PositiveSmallIntegerField("pre-dose systolic above (mmHg)")
    pre_dose_diastolic_above = models.PositiveSmallIntegerField("pre-dose diastolic above (mmHg)")
    systolic_above = models.PositiveSmallIntegerField("systolic above (mmHg)")
    diastolic_above = models.PositiveSmallIntegerField("diastolic above (mmHg)")
    heart_rate_above = models.PositiveSmallIntegerField("heart rate above (/min)")
    heart_rate_below = models.PositiveSmallIntegerField("heart rate below (/min)")
    spo2_below = models.PositiveSmallIntegerField("SpO₂ below (%)")
    source = models.TextField(blank=True, help_text="Where these values come from.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name_plural = "vital limits"
        constraints = [
            models.CheckConstraint(
                condition=Q(pre_dose_systolic_above__range=(80, 250))
                & Q(systolic_above__range=(80, 280))
                & Q(pre_dose_diastolic_above__range=(40, 180))
                & Q(diastolic_above__range=(40, 180))
                & Q(heart_rate_above__range=(60, 250))
                & Q(heart_rate_below__range=(20, 100))
                & Q(spo2_below__range=(70, 100)),
                name="vitallimits_in_range",
            )
        ]

    def __str__(self):
        return f"Vital-sign limits for {self.program}"


class VitalSigns(models.Model):
    """One set of vital signs taken in the room: when measured, by whom, and when and by
    whom it was entered (a reading typed in late keeps its measured time)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="vitals")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="vitals")
    point = models.CharField("observation point", max_length=32, blank=True)
    measured_at = models.DateTimeField()
    taken_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    entered_at = models.DateTimeField()
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    systolic = models.PositiveSmallIntegerField("systolic (mmHg)")
    diastolic = models.PositiveSmallIntegerField("diastolic (mmHg)")
    heart_rate = models.PositiveSmallIntegerField("heart rate (/min)")
    spo2 = models.PositiveSmallIntegerField("SpO₂ (%)")
    respiratory_rate = models.PositiveSmallIntegerField(
        "respiratory rate (/min)", null=True, blank=True
    )
    temperature_c = models.DecimalField(
        "temperature (°C)", max_digits=3, decimal_places=1, null=True, blank=True
    )
    note = models.CharField(max_length=200, blank=True)
    # Made by the form when it is shown: a double tap sends the same token twice.
    token = models.UUIDField(unique=True)

    class Meta:
        ordering = ["measured_at", "id"]
        verbose_name_plural = "vital signs"
        constraints = [
            models.CheckConstraint(
                condition=_within("systolic")
                & _within("diastolic")
                & _within("heart_rate")
                & _within("spo2")
                & _within("respiratory_rate")
                & _within("temperature_c"),
                name="vitals_plausible",
            )
        ]
        indexes = [models.Index(fields=["patient", "measured_at"])]

    def __str__(self):
        return f"{self.systolic}/{self.diastolic} mmHg at {self.measured_at:%Y-%m-%d %H:%M}"


class AdverseEvent(models.Model):
    """An adverse event of a dosing (or between sessions). Edits keep the previous versions
    (`history`); a serious one is flagged to the clinicians until it is closed."""

    class Grade(models.TextChoices):
        MILD = "mild", "Mild"
        MODERATE = "moderate", "Moderate"
        SEVERE = "severe", "Severe"
        LIFE_THREATENING = "life_threatening", "Life-threatening"

    class Criterion(models.TextChoices):
        DEATH = "death", "Resulted in death"
        LIFE_THREATENING = "life_threatening", "Life-threatening"
        HOSPITALISATION = "hospitalisation", "Hospitalisation or longer stay"
        DISABILITY = "disability", "Persistent or significant disability"
        CONGENITAL = "congenital", "Congenital anomaly"
        MEDICALLY_IMPORTANT = "medically_important", "Other medically important event"

    class Relatedness(models.TextChoices):
        NOT_RELATED = "not_related", "Not related"
        UNLIKELY = "unlikely", "Unlikely"
        POSSIBLE = "possible", "Possible"
        PROBABLE = "probable", "Probable"
        DEFINITE = "definite", "Definite"

    class Outcome(models.TextChoices):
        ONGOING = "ongoing", "Not yet recovered"
        RECOVERING = "recovering", "Recovering"
        RECOVERED = "recovered", "Recovered"
        SEQUELAE = "sequelae", "Recovered with lasting effects"
        FATAL = "fatal", "Fatal"
        UNKNOWN = "unknown", "Unknown"

    CLOSING = (Outcome.RECOVERED, Outcome.SEQUELAE, Outcome.FATAL)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="adverse_events")
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.PROTECT, related_name="adverse_events"
    )
    description = models.TextField()
    onset_at = models.DateTimeField("onset")
    grade = models.CharField("severity grade", max_length=20, choices=Grade.choices)
    serious = models.BooleanField(default=False)
    serious_criteria = models.JSONField(default=list, blank=True)
    relatedness = models.CharField(max_length=20, choices=Relatedness.choices)
    action_taken = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.ONGOING)
    resolved_on = models.DateField("resolution date", null=True, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField()
    token = models.UUIDField(unique=True)
    history = HistoricalRecords(excluded_fields=["token"])

    class Meta:
        ordering = ["onset_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(serious=False) | ~Q(serious_criteria=[]),
                name="adverse_event_serious_has_criteria",
            ),
            models.CheckConstraint(
                condition=Q(resolved_on__isnull=True)
                | Q(outcome__in=["recovered", "sequelae", "fatal"]),
                name="adverse_event_resolved_has_outcome",
            ),
        ]
        indexes = [models.Index(fields=["patient", "onset_at"])]

    def __str__(self):
        return f"{self.get_grade_display()} adverse event {self.onset_at:%Y-%m-%d}"

    @property
    def is_closed(self) -> bool:
        return self.resolved_on is not None

    def criteria_display(self) -> list[str]:
        names = dict(self.Criterion.choices)
        return [names.get(c, c) for c in self.serious_criteria]


class Discharge(models.Model):
    """The decision that a dosed patient may leave: the check as it stood, or a clinician's
    override with a note. A dosing session is logged completed only after one."""

    session = models.ForeignKey(Session, on_delete=models.PROTECT, related_name="discharges")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="discharges")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField()
    observed_minutes = models.PositiveSmallIntegerField(null=True, blank=True)
    last_vitals = models.ForeignKey(
        VitalSigns, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sedation_resolved = models.BooleanField(default=False)
    escort = models.CharField("escort or transport", max_length=200, blank=True)
    # The check's unmet conditions at the time, when a clinician overrode them.
    overridden = models.JSONField(default=list, blank=True)
    override_note = models.TextField(blank=True)

    class Meta:
        constraints = [
            # One discharge per patient and dosing: a double submit cannot make two.
            models.UniqueConstraint(fields=["session", "patient"], name="discharge_once"),
            models.CheckConstraint(
                condition=Q(overridden=[]) | ~Q(override_note=""),
                name="discharge_override_has_note",
            ),
        ]

    def __str__(self):
        return f"Discharge of session {self.session_id} at {self.decided_at:%Y-%m-%d %H:%M}"

    @property
    def is_override(self) -> bool:
        return bool(self.overridden)
