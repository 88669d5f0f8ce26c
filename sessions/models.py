"""Protocols, scheduled sessions, attendance and dosing details."""

import hashlib
import uuid

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.db import models
from django.db.models import F, Func, Q
from django.utils import timezone

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
            models.Index(fields=["kind", "status", "scheduled_start"]),
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
