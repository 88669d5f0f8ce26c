"""Instruments (versioned definitions), responses, per-item answers and normalised scores."""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from clinic.models import Patient

from . import scoring


class Respondent(models.TextChoices):
    PATIENT = "patient", "Patient"
    COACH = "coach", "Coach"
    CLINICIAN = "clinician", "Clinician"


class Instrument(models.Model):
    code = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    respondent = models.CharField(max_length=20, choices=Respondent.choices)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.name

    @property
    def short_name(self) -> str:
        return self.code.upper()


class InstrumentVersion(models.Model):
    """One definition file, stored as loaded. A changed file must get a new version."""

    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=20)
    definition = models.JSONField()
    content_hash = models.CharField(max_length=64)
    loaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["instrument__code", "-loaded_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "version"], name="instrumentversion_unique"
            )
        ]

    def __str__(self):
        return f"{self.instrument.code} v{self.version}"


class ItemWording(models.Model):
    """Official item text imported by an admin (licensed instruments); replaces our labels."""

    version = models.ForeignKey(InstrumentVersion, on_delete=models.CASCADE, related_name="wording")
    item = models.PositiveSmallIntegerField()
    text = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "item"], name="wording_one_per_item")
        ]

    def __str__(self):
        return f"{self.version} item {self.item}"


class Response(models.Model):
    class Source(models.TextChoices):
        CLINIC = "clinic", "Entered in clinic"
        LINK = "link", "Self-report link"
        IMPORT = "import", "Imported"
        KIOSK = "kiosk", "Kiosk in the room"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="responses")
    version = models.ForeignKey(
        InstrumentVersion, on_delete=models.PROTECT, related_name="responses"
    )
    respondent = models.CharField(max_length=20, choices=Respondent.choices)
    entered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    administered_at = models.DateTimeField()
    session = models.ForeignKey(
        "clinic_sessions.Session",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="responses",
    )
    # WAI-SR may rate one coach rather than the team.
    about_coach = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # One per rendered form: a double click or a resubmitted page finds the first response.
    submission_key = models.UUIDField(null=True, blank=True, unique=True)
    complete = models.BooleanField(default=False)
    safety_hits = models.JSONField(default=list, blank=True)
    has_safety_hit = models.BooleanField(default=False)
    # Safety item numbers (PHQ-9 item 9, ...) left unanswered although others were answered:
    # the total may still be prorated, but nobody has asked about self-harm yet.
    safety_unanswered = models.JSONField(default=list, blank=True)
    # Queryable in SQL: annotate(item_9=outcomes.selectors.item_answer(9)).filter(item_9__gte=1),
    # or answers__contains={"9": 2}.
    answers = models.JSONField(
        default=dict, help_text="Item number to answer, as entered (null = not answered)."
    )
    extras = models.JSONField(
        default=dict,
        blank=True,
        help_text="Derived results beyond scale scores (percent of maximum, complete mystical "
        "experience, below cut-off, QIDS domains), as the scoring engine returned them.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-administered_at", "-id"]
        indexes = [
            models.Index(fields=["patient", "administered_at"]),
            # The flag engine's clinic-wide bond percentiles find every response of one
            # instrument's versions; carrying the id lets that be read from the index alone
            # instead of visiting each response row, scattered over the whole table.
            models.Index(fields=["version"], include=["id"], name="response_version_covering"),
        ]

    def __str__(self):
        return f"{self.version} for {self.patient_id} at {self.administered_at:%Y-%m-%d}"

    # Scores as clinicians read them (reads the prefetched `scores` and the version's definition).

    def _stored_scores(self) -> dict:
        return {score.scale: score for score in self.scores.all()}

    @property
    def primary(self) -> scoring.PrimaryScore:
        """The instrument's primary score: PHQ-9 sum, WAI-SR mean, MEQ-30 % of max, ..."""
        return scoring.primary_score(self.version.definition, self._stored_scores(), self.extras)

    @property
    def primary_scores(self) -> list[scoring.PrimaryScore]:
        """Total and every subscale, in the definition's order, with the primary statistic."""
        definition, stored = self.version.definition, self._stored_scores()
        codes = ["total", *(sub["code"] for sub in definition["subscales"])]
        return [
            scoring.primary_score(definition, stored, self.extras, scale=code) for code in codes
        ]

    @property
    def safety_unanswered_items(self) -> list[dict]:
        """Each unanswered safety item with its label: {"item": 9, "label": "..."}."""
        labels = {item["number"]: item["label"] for item in self.version.definition["items"]}
        return [{"item": n, "label": labels.get(n, "")} for n in self.safety_unanswered]


class Score(models.Model):
    """One scale of one response, so dashboards and analytics are plain SQL."""

    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="scores")
    scale = models.CharField(max_length=40)
    value = models.FloatField(null=True, blank=True, help_text="Sum (prorated where allowed).")
    mean = models.FloatField(null=True, blank=True, help_text="Item mean.")
    band = models.CharField(max_length=60, blank=True)
    prorated = models.BooleanField(default=False)
    complete = models.BooleanField(default=False)

    class Meta:
        ordering = ["response", "id"]
        constraints = [
            models.UniqueConstraint(fields=["response", "scale"], name="score_one_per_scale"),
            models.CheckConstraint(
                condition=Q(value__isnull=False) | Q(mean__isnull=True),
                name="score_mean_needs_value",
            ),
        ]
        indexes = [
            models.Index(fields=["scale"]),
            # Every sweep takes the clinic's percentiles over all bond means (a tenth of the
            # scores): this small index holds just those, so the sweep reads it and not the table.
            models.Index(
                fields=["response"],
                include=["mean"],
                condition=Q(scale="bond", mean__isnull=False),
                name="score_bond_means",
            ),
        ]

    def __str__(self):
        return f"{self.scale}={self.value}"


class SelfReportLink(models.Model):
    """A patient's expiring, single-use link to answer questionnaires without an account.

    Only the SHA-256 of the token is stored; the token itself is shown or mailed once.
    """

    # A first e-mail the mail server refused is tried again on later runs, this many times.
    MAX_SEND_ATTEMPTS = 6

    token_hash = models.CharField(max_length=64, unique=True)
    # A reminder mails a fresh token (the old one is not stored, so it cannot be repeated);
    # the tokens of earlier e-mails keep working until the link is used or expires.
    earlier_token_hashes = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="links")
    instruments = models.JSONField(help_text="Instrument codes to answer, in order.")
    session = models.ForeignKey(
        "clinic_sessions.Session",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="links",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    by_email = models.BooleanField(default=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    # How many reminders the patient gets (0: staff opted out when creating it).
    reminders = models.PositiveSmallIntegerField(default=3)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    # A mail server that refused the e-mail: kept for the delivery log, retried by beat.
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.CharField(max_length=200, blank=True)
    # Links sent by the calendar (a protocol's measurement schedule) rather than after a
    # session: which occasion ("e12/last_dosing+28"), its name, its date and window.
    schedule_key = models.CharField(max_length=80, blank=True)
    time_point = models.CharField(max_length=80, blank=True)
    due_on = models.DateField(null=True, blank=True)
    window_days = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(reminders_sent__lte=3), name="link_max_3_reminders"),
            models.CheckConstraint(condition=Q(reminders__lte=3), name="link_plans_3_reminders"),
            # The calendar's claim: beat running twice sends one e-mail per due occasion.
            models.UniqueConstraint(
                fields=["patient", "schedule_key"],
                condition=Q(by_email=True) & ~Q(schedule_key=""),
                name="link_one_email_per_time_point",
            ),
            # The e-mail job's claim: two workers cannot both mail a session's questionnaires.
            models.UniqueConstraint(
                fields=["patient", "session"],
                condition=Q(by_email=True),
                name="link_one_email_per_session",
            ),
        ]
        indexes = [
            models.Index(fields=["used_at", "expires_at"]),
            GinIndex(fields=["earlier_token_hashes"], name="link_earlier_tokens_gin"),
        ]

    def __str__(self):
        return f"Link for {self.patient_id} ({', '.join(self.instruments)})"

    @staticmethod
    def hash_token(token: str) -> str:
        import hashlib

        return hashlib.sha256(token.encode()).hexdigest()


class LinkGuess(models.Model):
    """One request with a token that matched no link, for rate-limiting guesses per client.

    Kept in the database (not a per-process cache) so every web worker counts the same
    guesses. `client` is a keyed hash of the address, never the address itself.
    """

    client = models.CharField(max_length=64)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["client", "at"])]

    def __str__(self):
        return f"guess at {self.at:%Y-%m-%d %H:%M}"


class KioskEnd(models.TextChoices):
    SUBMITTED = "submitted", "Answers sent"
    IDLE = "idle", "Left idle"
    HANDED_BACK = "handed_back", "Handed back unanswered"
    REPLACED = "replaced", "Replaced by a new kiosk"


class Kiosk(models.Model):
    """A tablet handed to a patient in the room to answer the questionnaires due at a session.

    The browser that runs it is signed out of the coach's account; it holds only a signed
    token naming this row, which opens this patient's due questionnaires and nothing else.
    Unlocking it again takes the coach's sign-in or the short code shown when it started
    (only a hash of the code is kept).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="kiosks")
    session = models.ForeignKey(
        "clinic_sessions.Session", on_delete=models.PROTECT, related_name="kiosks"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    instruments = models.JSONField(help_text="Instrument codes to answer, in order.")
    unlock_code_hash = models.CharField(max_length=128)
    unlock_attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField()
    # The patient's last request: idle time counts from here.
    last_seen_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=KioskEnd.choices, blank=True)
    unlocked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One tablet per patient and session at a time: a second start ends the first.
            models.UniqueConstraint(
                fields=["patient", "session"],
                condition=Q(ended_at__isnull=True),
                name="kiosk_one_running_per_patient_session",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | ~Q(end_reason=""),
                name="kiosk_ended_has_reason",
            ),
        ]

    def __str__(self):
        return f"Kiosk for {self.patient_id} at session {self.session_id}"


class CompletionSummary(models.Model):
    """A program's follow-up completion (`selectors.completion_by_time_point`) as the beat
    task last counted it, so that the program page reads a few rows instead of looking up
    every member's answers at every time point (most of that page at 10,000 patients).
    Pages use it only while it is recent, for today and for the schedule it was counted
    against (`selectors.program_completion`); otherwise they count afresh."""

    program = models.OneToOneField(
        "clinic.Program", on_delete=models.CASCADE, related_name="completion_summary"
    )
    counted_for = models.DateField(help_text="The clinic's date the time points were due by.")
    counted_at = models.DateTimeField()
    schedule = models.JSONField(help_text="The protocol's measurement schedule counted against.")
    rows = models.JSONField()

    def __str__(self):
        return f"Completion of program {self.program_id} on {self.counted_for}"
