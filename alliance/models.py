import dataclasses
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from clinic.models import Patient, Program

from . import bands, rules

DEFAULTS = rules.Thresholds()


def _between(low, high):
    return [MinValueValidator(low), MaxValueValidator(high)]


class FlagRule(models.Model):
    """Flag thresholds for one program; the row without a program is the clinic default.

    Ranges are the instruments' own (WAI-SR means 1-5, SRS 0-40), held in the database too.
    """

    program = models.OneToOneField(
        Program, null=True, blank=True, on_delete=models.PROTECT, related_name="flag_rule"
    )
    weak_bond_below = models.FloatField(
        "weak bond: WAI-SR bond mean below",
        default=DEFAULTS.weak_bond_below,
        validators=_between(1, 5),
    )
    weak_bond_days_before_dosing = models.PositiveSmallIntegerField(
        "weak bond: days before dosing",
        default=DEFAULTS.weak_bond_days_before_dosing,
        validators=_between(1, 60),
    )
    percentile = models.PositiveSmallIntegerField(
        "weak bond: clinic percentile", default=DEFAULTS.percentile, validators=_between(1, 99)
    )
    percentile_min_ratings = models.PositiveSmallIntegerField(
        "weak bond: ratings needed before the percentile applies",
        default=DEFAULTS.percentile_min_ratings,
        validators=_between(5, 10000),
    )
    bond_drop_rci = models.FloatField(
        "bond drop: fall larger than (bond mean points)",
        default=DEFAULTS.bond_drop_rci,
        validators=_between(0.1, 4),
    )
    missing_hours_before_dosing = models.PositiveSmallIntegerField(
        "missing rating: hours before dosing",
        default=DEFAULTS.missing_hours_before_dosing,
        validators=_between(1, 336),
    )
    srs_below = models.FloatField(
        "SRS total below", default=DEFAULTS.srs_below, validators=_between(0, 40)
    )
    srs_drop = models.FloatField(
        "SRS drop of at least (points)", default=DEFAULTS.srs_drop, validators=_between(0.1, 40)
    )
    wai_total_below = models.FloatField(
        "WAI-SR total mean below", default=DEFAULTS.wai_total_below, validators=_between(1, 5)
    )
    off_track_percentile = models.PositiveSmallIntegerField(
        "off track: below this percentile of earlier patients at the same step",
        default=DEFAULTS.off_track_percentile,
        validators=_between(1, 50),
    )
    band_min_patients = models.PositiveSmallIntegerField(
        "expected bands: earlier patients needed at a step (else the published default)",
        default=DEFAULTS.band_min_patients,
        validators=_between(5, 10000),
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["program"], nulls_distinct=False, name="flagrule_one_per_program"
            ),
            models.CheckConstraint(
                condition=Q(weak_bond_below__gte=1, weak_bond_below__lte=5)
                & Q(wai_total_below__gte=1, wai_total_below__lte=5)
                & Q(srs_below__gte=0, srs_below__lte=40)
                & Q(srs_drop__gt=0, srs_drop__lte=40)
                & Q(bond_drop_rci__gt=0, bond_drop_rci__lte=4)
                & Q(percentile__gte=1, percentile__lte=99)
                & Q(off_track_percentile__gte=1, off_track_percentile__lte=50)
                & Q(band_min_patients__gte=5),
                name="flagrule_thresholds_in_instrument_range",
            ),
        ]

    def __str__(self):
        return f"Flag thresholds for {self.program or 'the clinic (default)'}"

    FIELDS = tuple(f.name for f in dataclasses.fields(rules.Thresholds))

    def thresholds(self) -> rules.Thresholds:
        return rules.Thresholds(**{name: getattr(self, name) for name in self.FIELDS})


class FlagStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    AUTO_RESOLVED = "auto_resolved", "Cleared automatically"


class Flag(models.Model):
    class Kind(models.TextChoices):
        WEAK_BOND = rules.Kind.WEAK_BOND, "Weak bond before dosing"
        BOND_DROP = rules.Kind.BOND_DROP, "Bond dropped"
        ALLIANCE_MISSING = rules.Kind.ALLIANCE_MISSING, "No alliance rating before dosing"
        LOW_ALLIANCE = rules.Kind.LOW_ALLIANCE, "Low alliance"
        SAFETY = rules.Kind.SAFETY, "Safety"
        SAFETY_UNANSWERED = rules.Kind.SAFETY_UNANSWERED, "Safety item not answered"
        OFF_TRACK = rules.Kind.OFF_TRACK, "Off track for this step"
        ADVERSE_EVENT = rules.Kind.ADVERSE_EVENT, "Serious adverse event"

    class Severity(models.TextChoices):
        LOW = rules.Severity.LOW, "Low"
        MEDIUM = rules.Severity.MEDIUM, "Medium"
        HIGH = rules.Severity.HIGH, "High"
        URGENT = rules.Severity.URGENT, "Urgent"

    Status = FlagStatus

    UNRESOLVED = (Status.OPEN, Status.ACKNOWLEDGED)
    SEVERITY_RANK = {"urgent": 0, "high": 1, "medium": 2, "low": 3}

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="flags")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    dosing_session = models.ForeignKey(
        "clinic_sessions.Session",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="flags",
    )
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    raised_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.TextField(blank=True)
    # For a flag a person resolved: the rule still finds the very same condition (same
    # ratings, same dosing), so the dosing stays at risk until a newer rating clears it.
    still_applies = models.BooleanField(default=False)
    # Claimed with a conditional update so that exactly one worker sends the e-mail.
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "kind", "dosing_session"],
                condition=Q(status__in=[FlagStatus.OPEN, FlagStatus.ACKNOWLEDGED]),
                nulls_distinct=False,
                name="flag_one_open_per_patient_kind_dosing",
            ),
            models.CheckConstraint(
                condition=~Q(status=FlagStatus.RESOLVED) | ~Q(resolution_note=""),
                name="flag_resolved_has_note",
            ),
        ]
        indexes = [models.Index(fields=["patient", "status"]), models.Index(fields=["status"])]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.get_status_display()})"

    @property
    def is_unresolved(self) -> bool:
        return self.status in self.UNRESOLVED


class DosingSignOff(models.Model):
    """A clinician's "go ahead" for one dosing, with the risks they saw and accepted.

    It covers exactly the risks it lists (`alliance.readiness`): a risk that appears later
    puts the dosing at risk again.
    """

    dosing_session = models.ForeignKey(
        "clinic_sessions.Session", on_delete=models.PROTECT, related_name="sign_offs"
    )
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    signed_at = models.DateTimeField()
    note = models.TextField(blank=True)
    # [{"key": ..., "text": ...}] as shown when signing.
    risks = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-signed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(risks=[]) | ~Q(note=""), name="signoff_with_risks_has_note"
            )
        ]

    def __str__(self):
        return f"Sign-off for dosing {self.dosing_session_id} at {self.signed_at:%Y-%m-%d %H:%M}"

    @property
    def risk_keys(self) -> frozenset[str]:
        return frozenset(r["key"] for r in self.risks)


class StalePatient(models.Model):
    """The flag engine's outbox: a change committed at `since` means this patient's flags
    must be recomputed. Written in the same transaction as the change, so no broker outage
    can lose it; a worker drains it every minute and a recompute clears what it covered."""

    patient = models.OneToOneField(
        Patient, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    since = models.DateTimeField()

    def __str__(self):
        return f"Flags of patient {self.patient_id} stale since {self.since:%Y-%m-%d %H:%M:%S}"


class CohortMeasures(models.Model):
    """One patient's cohort-analytics measures (`analytics`) over every completed dosing they
    attended, kept by the flag recompute (per patient and set-based alike), so the analytics
    page reads one small row per patient instead of choosing among every score in the clinic.

    `first_dosing` and `last_dosing` are the dosings the measures were taken around: a page
    filtered to fewer dosings uses a row only where they are the same, and computes the
    others live. `measures` maps a measure key (`prep_bond`, `meq_peak`, and the follow-ups
    per depression instrument, `phq-9:dep_4w`) to its exact value; a measure the patient has
    no rating for is absent."""

    patient = models.OneToOneField(
        Patient, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    first_dosing = models.DateTimeField()
    last_dosing = models.DateTimeField()
    measures = models.JSONField(default=dict)
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "cohort measures"

    def __str__(self):
        return f"Cohort measures of patient {self.patient_id}"


class AdverseEventTally(models.Model):
    """A program's adverse events per completed dosing (`selectors.adverse_event_tally`) as
    the beat task last counted them: counting walks every present patient at every completed
    dosing of the program (half the program page's time at 10,000 patients), reading this is
    one row. Pages use it only while it is recent (`selectors.program_adverse_events`) and
    count afresh otherwise, so a stopped beat makes the page slower, never wrong for long."""

    program = models.OneToOneField(
        Program, on_delete=models.CASCADE, related_name="adverse_event_tally"
    )
    counted_at = models.DateTimeField()
    dosings = models.PositiveIntegerField(help_text="Patients present at a completed dosing.")
    any = models.PositiveIntegerField(help_text="Of those, with any adverse event.")
    worse = models.PositiveIntegerField(help_text="Of those, with a moderate or worse one.")
    serious = models.PositiveIntegerField(help_text="Of those, with a serious one.")

    def __str__(self):
        return f"Adverse events of program {self.program_id}"


class ExpectedBand(models.Model):
    """Earlier patients' ratings at one protocol step, recomputed nightly (METHODS §1).

    One row per step and measure: the percentiles of every patient's mean at that step, the
    n behind them, and each patient's value (so a patient is compared with the others, never
    with themselves). The nightly job replaces the rows in one transaction: if it fails,
    yesterday's rows stay."""

    class Measure(models.TextChoices):
        BOND = "bond", "WAI-SR bond (mean)"
        TOTAL = "total", "WAI-SR total (mean)"
        SRS = "srs", "SRS total"

    step = models.ForeignKey(
        "clinic_sessions.ProtocolStep", on_delete=models.CASCADE, related_name="expected_bands"
    )
    measure = models.CharField(max_length=10, choices=Measure.choices)
    n = models.PositiveIntegerField()
    p10 = models.FloatField()
    p25 = models.FloatField()
    p50 = models.FloatField()
    # [[patient id, the patient's mean at this step], ...]
    values = models.JSONField(default=list)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["step__protocol", "step__order", "measure"]
        constraints = [
            models.UniqueConstraint(fields=["step", "measure"], name="band_one_per_step_measure"),
            models.CheckConstraint(
                condition=Q(p10__lte=models.F("p25")) & Q(p25__lte=models.F("p50")),
                name="band_percentiles_in_order",
            ),
        ]

    def __str__(self):
        return f"{self.get_measure_display()} at step {self.step_id} (n = {self.n})"

    def values_without(self, patient_id: int | None) -> tuple[float, ...]:
        return bands.values_without(bands.pairs_of(self.values), patient_id)


class FhirExport(models.Model):
    """A FHIR Bundle built by a worker into the default storage, then offered for download
    until `expires_at`. Building it in a request would outlast the web worker's timeout and
    hold the whole bundle in its memory.

    A file is named in `file_name` only once it is complete, so a half-written bundle is
    never offered. At most one export per person and kind (identified or not) is being built
    at a time: a second request while it runs reuses it (database constraint)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        BUILDING = "building", "Being built"
        READY = "ready", "Ready to download"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (file deleted)"

    ACTIVE = (Status.QUEUED, Status.BUILDING)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    identified = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    entries_total = models.PositiveIntegerField(default=0)
    entries_written = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    file_name = models.CharField(max_length=255, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "identified"],
                condition=Q(status__in=["queued", "building"]),
                name="fhir_export_one_active_per_person_and_kind",
            ),
            models.CheckConstraint(
                condition=~Q(status="ready") | (~Q(file_name="") & Q(expires_at__isnull=False)),
                name="fhir_export_ready_has_file",
            ),
        ]

    def __str__(self):
        return f"FHIR export {self.public_id} ({self.get_status_display()})"

    @property
    def percent_done(self) -> int:
        if not self.entries_total:
            return 0
        return min(100, round(100 * self.entries_written / self.entries_total))


class WideBuild(models.Model):
    """When one patient's `WideLine` rows were built, and in which time zone (a time point
    outside sessions is a local day). The wide export reads a patient's stored lines only
    if they were built for its time zone and no change is recorded for the patient since
    (`WideChange`), and pivots their scores live otherwise, so its text never depends on
    whether the rows are up to date."""

    patient = models.OneToOneField(
        Patient, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    time_zone = models.CharField(max_length=64)
    built_at = models.DateTimeField()
    # How many scores the patient has per instrument version and scale ("version_id:scale"):
    # the export's columns and audited count, without counting every score in the clinic.
    scores = models.JSONField(default=dict)

    def __str__(self):
        return f"Wide lines of patient {self.patient_id} built at {self.built_at:%Y-%m-%d %H:%M}"


class WideLine(models.Model):
    """One time point of the wide export, pivoted from its scores: where it falls among the
    patient's lines, the day, session kind and label of its first score, and each column's
    cell by column name (`filled`). Kept by `exports.wide_lines_refresh`."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    first_at = models.DateTimeField()
    first_score = models.BigIntegerField()
    day_on = models.DateField()
    kind = models.CharField(max_length=20, null=True)  # NULL: outside any session
    label = models.CharField(max_length=80, null=True)
    filled = models.JSONField()

    class Meta:
        indexes = [models.Index(fields=["patient", "first_at", "first_score"])]

    def __str__(self):
        return f"Wide line of patient {self.patient_id} at {self.first_at:%Y-%m-%d %H:%M}"


class WideChange(models.Model):
    """A transaction (`xid`) that changed what a patient's wide lines say:
    their answers or scores, the kind or label of a session they answered in, or their
    enrolments. Written by database triggers (migration 0012), so that no write path, the
    admin, a bulk load or raw SQL, can leave stored lines looking fresh; cleared by the
    build that read the change. One row per transaction and patient, so that writers never
    wait on each other here. No foreign key: a deleted patient's last change is recorded
    while the patient row goes."""

    patient_id = models.BigIntegerField()
    xid = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient_id", "xid"], name="wide_change_once")
        ]

    def __str__(self):
        return f"Patient {self.patient_id} changed by transaction {self.xid}"
