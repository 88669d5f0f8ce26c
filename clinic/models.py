"""People and programs: users, roles, patients, programs, enrolments, coach assignments, audit."""

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .roles import Role


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, username):
        return self.get(**{f"{self.model.USERNAME_FIELD}__iexact": username})


class User(AbstractBaseUser, PermissionsMixin):
    """A member of staff. Logs in with an e-mail address; the role is a Group."""

    email = models.EmailField("e-mail address", unique=True)
    display_name = models.CharField(max_length=150)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(
        "may use the Django admin", default=False, help_text="Admins only."
    )
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["display_name"]

    class Meta:
        ordering = ["display_name"]

    def __str__(self):
        return self.display_name or self.email

    def get_full_name(self):
        return self.display_name

    def get_short_name(self):
        return self.display_name.split(" ")[0] if self.display_name else self.email

    @property
    def role(self) -> Role | None:
        """The highest role the user holds; superusers count as admins."""
        if self.is_superuser:
            return Role.ADMIN
        # Prefetched groups are used when present, so caseload lists do not query per row.
        names = {g.name for g in self.groups.all()}
        for role in (Role.ADMIN, Role.CLINICIAN, Role.COACH):
            if role.value in names:
                return role
        return None


class PatientStatus(models.TextChoices):
    REFERRED = "referred", "Referred"
    SCREENING = "screening", "Screening"
    ENROLLED = "enrolled", "Enrolled"
    IN_TREATMENT = "in_treatment", "In treatment"
    FOLLOW_UP = "follow_up", "Follow-up"
    COMPLETED = "completed", "Completed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Patient(models.Model):
    Status = PatientStatus

    # The lifecycle moves forward one step at a time; withdrawal is possible until completion.
    TRANSITIONS = {
        Status.REFERRED: {Status.SCREENING, Status.WITHDRAWN},
        Status.SCREENING: {Status.ENROLLED, Status.WITHDRAWN},
        Status.ENROLLED: {Status.IN_TREATMENT, Status.WITHDRAWN},
        Status.IN_TREATMENT: {Status.FOLLOW_UP, Status.WITHDRAWN},
        Status.FOLLOW_UP: {Status.COMPLETED, Status.WITHDRAWN},
        Status.COMPLETED: set(),
        Status.WITHDRAWN: set(),
    }
    ACTIVE_STATUSES = (
        Status.REFERRED,
        Status.SCREENING,
        Status.ENROLLED,
        Status.IN_TREATMENT,
        Status.FOLLOW_UP,
    )

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    record_number = models.CharField(
        "clinic record number",
        max_length=32,
        unique=True,
        error_messages={"unique": "Another patient already has this record number."},
    )
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    email = models.EmailField("e-mail", blank=True)
    email_consent = models.BooleanField(
        "agrees to questionnaires by e-mail",
        default=False,
        help_text="Only then does the clinic send questionnaire links by e-mail.",
    )
    phone = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REFERRED)
    withdrawal_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The caseload's sort keys, stored so that its pages read an index in order instead of
    # ranking every patient in care on each view. Written only by the flag engine
    # (alliance.services.caseload_order_refresh) after it writes flags or a schedule changes:
    # the most severe unresolved flag (0 = urgent) and the next scheduled dosing.
    caseload_flag_rank = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    caseload_next_dosing_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["last_name", "first_name"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status=PatientStatus.WITHDRAWN) | ~Q(withdrawal_reason=""),
                name="patient_withdrawn_has_reason",
                violation_error_message="A withdrawal needs a reason.",
            ),
            models.CheckConstraint(
                condition=Q(date_of_birth__gte="1900-01-01"),
                name="patient_dob_plausible",
            ),
        ]
        indexes = [
            models.Index(fields=["status"]),
            models.Index(fields=["last_name"]),
            # The caseload's order, for patients in care only.
            models.Index(
                F("caseload_flag_rank").asc(nulls_last=True),
                F("caseload_next_dosing_at").asc(nulls_last=True),
                "last_name",
                "first_name",
                "id",
                name="patient_caseload_order",
                condition=Q(
                    status__in=[
                        PatientStatus.REFERRED,
                        PatientStatus.SCREENING,
                        PatientStatus.ENROLLED,
                        PatientStatus.IN_TREATMENT,
                        PatientStatus.FOLLOW_UP,
                    ]
                ),
            ),
        ]

    def __str__(self):
        return f"{self.full_name} ({self.record_number})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    def allowed_next_statuses(self) -> list[str]:
        allowed = self.TRANSITIONS[self.Status(self.status)]
        return [s for s in self.Status if s in allowed]


class PatientStatusChange(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=20, choices=Patient.Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=Patient.Status.choices)
    reason = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self):
        return f"{self.patient_id}: {self.from_status or '—'} → {self.to_status}"


class ProgramKind(models.TextChoices):
    SINGLE = "single", "Single session"
    PACKAGE = "package", "Multi-session package"
    GROUP = "group", "Group program"


class Program(models.Model):
    Kind = ProgramKind

    class Modality(models.TextChoices):
        PSILOCYBIN = "psilocybin", "Psilocybin"
        KETAMINE = "ketamine", "Ketamine"
        MDMA = "mdma", "MDMA"
        OTHER = "other", "Other"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    modality = models.CharField(max_length=20, choices=Modality.choices)
    protocol = models.ForeignKey(
        "clinic_sessions.Protocol",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="programs",
        help_text="Generates each enrolled patient's sessions.",
    )
    capacity = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most patients enrolled at once (group programs)."
    )
    start_date = models.DateField()
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start_date", "name"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind=ProgramKind.GROUP) | Q(capacity__isnull=False, capacity__gt=0),
                name="program_group_has_capacity",
                violation_error_message="A group program needs a capacity.",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_group(self) -> bool:
        return self.kind == self.Kind.GROUP


class EnrolmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Enrolment(models.Model):
    Status = EnrolmentStatus

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="enrolments")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="enrolments")
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    enrolled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start_date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "program"],
                condition=Q(status=EnrolmentStatus.ACTIVE),
                name="enrolment_one_active_per_patient_program",
                violation_error_message="The patient is already enrolled in this program.",
            ),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("start_date")),
                name="enrolment_ends_after_start",
            ),
        ]

    def __str__(self):
        return f"{self.patient} in {self.program}"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class AssignmentRole(models.TextChoices):
    LEAD = "lead", "Lead coach"
    PREPARATION = "preparation", "Preparation"
    DOSING = "dosing", "Dosing facilitator"
    INTEGRATION = "integration", "Integration"


class CoachAssignment(models.Model):
    Role = AssignmentRole

    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="assignments")
    coach = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    start_date = models.DateField()
    # An assignment is active until it has an end date; ended rows are history, never deleted.
    end_date = models.DateField(null=True, blank=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["end_date", "-start_date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["enrolment"],
                condition=Q(role=AssignmentRole.LEAD, end_date__isnull=True),
                name="assignment_one_active_lead",
                violation_error_message="This enrolment already has an active lead coach.",
            ),
            models.UniqueConstraint(
                fields=["enrolment", "coach", "role"],
                condition=Q(end_date__isnull=True),
                name="assignment_no_duplicate_active",
                violation_error_message="This coach already has this role for the enrolment.",
            ),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("start_date")),
                name="assignment_ends_after_start",
            ),
        ]
        indexes = [models.Index(fields=["coach", "end_date"])]

    def __str__(self):
        return f"{self.coach} – {self.get_role_display()} for {self.enrolment}"

    @property
    def is_active(self) -> bool:
        return self.end_date is None


class AuditEvent(models.Model):
    """Who did what to which record, and when. Written in the same transaction as the change."""

    class Action(models.TextChoices):
        VIEW = "view", "Viewed"
        CREATE = "create", "Created"
        UPDATE = "update", "Updated"
        STATUS = "status", "Changed status"
        ENROL = "enrol", "Enrolled"
        ASSIGN = "assign", "Assigned coach"
        END_ASSIGNMENT = "end_assignment", "Ended assignment"
        EXPORT = "export", "Exported"
        ROLE = "role", "Changed role"
        SECOND_FACTOR_RESET = "second_factor_reset", "Reset second factor"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    patient = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["patient", "-at"])]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_type}"


class WorkerHeartbeat(models.Model):
    """Last time a Celery worker ran the heartbeat task; /healthz reads it."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.hostname} @ {self.seen_at:%H:%M:%S}"
