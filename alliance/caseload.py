"""Flags and readiness beside each patient on the caseload and program pages, and the one
readiness answer for any dosing (`alliance.readiness` holds the pure rules of it)."""

import datetime

from django.db.models import (
    Count,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinic.access import patients_visible_to
from clinic.models import Patient
from clinic.selectors import current_care_prefetch, search_patients
from outcomes.models import Instrument, Response, Score
from outcomes.selectors import codes_due
from sessions.models import Attendance, Session, SessionKind
from sessions.selectors import (
    attach_next_dosing,
    attach_sessions_beside,
    latest_pre_dose_vitals,
)

from . import readiness
from .flag_inputs import recent_clinic_bond_percentiles
from .models import Flag, FlagRule
from .selectors import flag_summary

# The caseload's order: open flags first (most severe), then the nearest dosing, then name.
# The keys are stored on the patient (`caseload_order_refresh` keeps them) and indexed for
# patients in care, so a page reads the index in order whatever its number.
CASELOAD_ORDER = (
    F("caseload_flag_rank").asc(nulls_last=True),
    F("caseload_next_dosing_at").asc(nulls_last=True),
    "last_name",
    "first_name",
    "pk",
)


def caseload_for(*, user, query: str = "") -> QuerySet[Patient]:
    """Patients in care that the user looks after (a coach) or may see (clinicians, admins),
    open flags first, as bare rows to page through: `caseload_rows` then fills in one page."""
    qs = patients_visible_to(user).filter(status__in=Patient.ACTIVE_STATUSES)
    return search_patients(qs, query).order_by(*CASELOAD_ORDER)


def caseload_rows(*, user, patients) -> list[Patient]:
    """One page of `caseload_for`, in its order, with what the caseload shows beside each
    patient: its next session and the latest one this user facilitated and has not logged
    (`attach_sessions_beside`), its current care, open flags, next dosing and its readiness
    (`attach_readiness`)."""
    # The page's rows as `caseload_for` read them, in its order: reading them again with a
    # subquery per row for each annotation cost more than the rest of the rows together.
    rows = list(patients)
    prefetch_related_objects(rows, current_care_prefetch(), _flags_prefetch())
    attach_sessions_beside(rows, user=user)
    attach_readiness(rows)
    return rows


def _flags_that_count() -> QuerySet[Flag]:
    """The flags readiness weighs (open ones, and resolved ones whose condition still holds),
    oldest first."""
    return (
        Flag.objects.filter(
            Q(status__in=Flag.UNRESOLVED) | Q(status=Flag.Status.RESOLVED, still_applies=True)
        )
        .select_related("resolved_by")
        .order_by("raised_at", "id")
    )


def _flags_prefetch() -> Prefetch:
    # One read serves the badges (the open ones) and readiness (`attach_readiness`): a round
    # trip to the database costs more than the few resolved flags it brings along.
    return Prefetch(
        "flags",
        queryset=_flags_that_count().select_related("dosing_session"),
        to_attr="flags_that_count",
    )


def with_flags_and_latest_bond(patients: QuerySet[Patient]) -> QuerySet[Patient]:
    """Adds `latest_bond` (the latest WAI-SR bond mean, for the program page) and the
    prefetched `open_flags`; `attach_readiness` then answers for a page at once."""
    latest_bond = (
        Score.objects.filter(
            response__patient=OuterRef("pk"),
            response__version__instrument__code="wai-sr",
            scale="bond",
        )
        .order_by("-response__administered_at")
        .values("mean")[:1]
    )
    return patients.annotate(latest_bond=Subquery(latest_bond)).prefetch_related(_flags_prefetch())


def attach_readiness(patients) -> None:
    """Set the next dosing (`attach_next_dosing`), its `readiness` (a Readiness, or None
    without a dosing ahead), `open_flags` (newest first) and `flag_badges` on patients with
    their prefetched `flags_that_count`."""
    attach_next_dosing(patients)
    answers = dosing_readiness(
        [Session(pk=p.next_dosing_id) for p in patients if p.next_dosing_id is not None],
        flags={p.pk: p.flags_that_count for p in patients},
    )
    for patient in patients:
        # Flag's own order, newest first (the later id first for flags a sweep raised at once).
        patient.open_flags = [f for f in reversed(patient.flags_that_count) if f.is_unresolved]
        patient.readiness = answers.get(patient.next_dosing_id)
        patient.flag_badges = flag_badges(patient)


def flag_badges(patient: Patient) -> list[dict]:
    """One badge per kind of open flag (most severe first), linking to the newest of them."""
    grouped: dict[str, dict] = {}
    for flag in patient.open_flags:
        badge = grouped.setdefault(flag.kind, {"flag": flag, "count": 0, "rank": 9})
        badge["count"] += 1
        rank = Flag.SEVERITY_RANK[flag.severity]
        if rank < badge["rank"]:
            badge.update(rank=rank, flag=flag)
    return sorted(grouped.values(), key=lambda b: b["rank"])


def _flag_fact(flag: Flag) -> readiness.FlagFact:
    return readiness.FlagFact(
        public_id=str(flag.public_id),
        kind=flag.kind,
        label=flag.get_kind_display(),
        summary=flag_summary(flag),
        resolved_by=flag.resolved_by.display_name if flag.resolved_by else "",
        resolution_note=flag.resolution_note,
    )


def _concerns(flag: Flag, dosing: Session) -> bool:
    """Per-dosing flags count for their own dosing (a weak bond for every dosing its evidence
    lists: one flag for the series, each dosing's readiness still at risk); the rest are about
    the patient."""
    if flag.kind == Flag.Kind.WEAK_BOND:
        listed = {d.get("session_id") for d in flag.evidence.get("dosings", [])}
        return flag.dosing_session_id in (None, dosing.pk) or dosing.pk in listed
    if flag.kind == Flag.Kind.ALLIANCE_MISSING:
        return flag.dosing_session_id in (None, dosing.pk)
    return True


def dosing_readiness(dosings, *, flags=None) -> dict[int, readiness.Readiness]:
    """{dosing session id: Readiness} for individual dosing sessions, in a fixed number of
    queries however many there are (the caseload asks for a page at a time). `flags`, when
    the caller has read them (`_flags_prefetch`): {patient id: flags that count, oldest
    first} for at least the dosings' patients."""
    dosings = list(
        Session.objects.filter(pk__in=[d.pk for d in dosings], kind=SessionKind.DOSING)
        .exclude(enrolment=None)
        .select_related("enrolment")
        # Two numbers, not the protocols and facilitators: those rows (the protocols with
        # their JSON schedules) cost a page more to read than everything readiness uses.
        .annotate(
            facilitator_count=Count("facilitators"),
            # The protocol of the dosing's step, else the program's; none asks for none.
            preparations_required=Coalesce(
                F("protocol_step__protocol__min_preparation_before_dosing"),
                F("program__protocol__min_preparation_before_dosing"),
                Value(0),
            ),
        )
        .prefetch_related("sign_offs__signed_by")
    )
    if not dosings:
        return {}
    now = timezone.now()
    patient_ids = {d.enrolment.patient_id for d in dosings}
    if flags is None:
        flags = {}
        for flag in _flags_that_count().filter(patient_id__in=patient_ids):
            flags.setdefault(flag.patient_id, []).append(flag)
    bonds = {
        row["response__patient_id"]: row
        for row in Score.objects.filter(
            response__patient_id__in=patient_ids,
            response__version__instrument__code="wai-sr",
            response__administered_at__lte=now,
            scale="bond",
            mean__isnull=False,
        )
        .order_by("response__patient_id", "-response__administered_at", "-response_id")
        .distinct("response__patient_id")
        .values("response__patient_id", "response_id", "response__administered_at", "mean")
    }
    rules_by_program = {r.program_id: r for r in FlagRule.objects.all()}
    default_rule = rules_by_program.get(None) or FlagRule()
    rule_of = {d.pk: rules_by_program.get(d.program_id, default_rule) for d in dosings}
    percentiles = recent_clinic_bond_percentiles(r.percentile for r in rule_of.values())
    preparations: dict[int, list[dict]] = {}
    for row in (
        Attendance.objects.filter(
            patient_id__in=patient_ids,
            session__kind=SessionKind.PREPARATION,
            session__status=Session.Status.COMPLETED,
        )
        .order_by("session__scheduled_start")
        .values(
            "patient_id",
            "status",
            "session_id",
            "session__enrolment_id",
            "session__is_group",
            "session__program_id",
            "session__scheduled_start",
            "session__label",
            "session__kind",
            "session__protocol_step__instruments_due",
        )
    ):
        preparations.setdefault(row["patient_id"], []).append(row)

    counted: dict[int, list[dict]] = {}
    for dosing in dosings:
        counted[dosing.pk] = [
            row
            for row in preparations.get(dosing.enrolment.patient_id, [])
            if row["session__scheduled_start"] < dosing.scheduled_start
            and (
                row["session__enrolment_id"] == dosing.enrolment_id
                or (
                    row["session__is_group"]
                    and row["session__program_id"] == dosing.program_id
                    and row["status"] in Attendance.PRESENT
                )
            )
        ]
    last_ids = {rows[-1]["session_id"] for rows in counted.values() if rows}
    answered = set(
        Response.objects.filter(session_id__in=last_ids, patient_id__in=patient_ids).values_list(
            "patient_id", "session_id", "version__instrument__code"
        )
    )
    names = dict(Instrument.objects.values_list("code", "name"))
    pre_dose = latest_pre_dose_vitals(dosing_ids=[d.pk for d in dosings])

    result = {}
    for dosing in dosings:
        patient_id = dosing.enrolment.patient_id
        rule = rule_of[dosing.pk]
        value, ratings = percentiles[rule.percentile]
        bond = bonds.get(patient_id)
        done = counted[dosing.pk]
        last = done[-1] if done else None
        unanswered = (
            [
                names[code]
                for code in codes_due(
                    last["session__kind"], last["session__protocol_step__instruments_due"]
                )
                if code in names and (patient_id, last["session_id"], code) not in answered
            ]
            if last
            else []
        )
        sign_offs = list(dosing.sign_offs.all())
        latest = sign_offs[0] if sign_offs else None
        concerning = [f for f in flags.get(patient_id, []) if _concerns(f, dosing)]
        facts = readiness.DosingFacts(
            open_flags=[_flag_fact(f) for f in concerning if f.is_unresolved],
            resolved_flags_still_applying=[
                _flag_fact(f) for f in concerning if not f.is_unresolved
            ],
            latest_bond=bond["mean"] if bond else None,
            latest_bond_response_id=bond["response_id"] if bond else None,
            latest_bond_at=(
                timezone.localtime(bond["response__administered_at"]) if bond else None
            ),
            bond_threshold=rule.weak_bond_below,
            clinic_percentile=rule.percentile,
            clinic_percentile_value=value if ratings >= rule.percentile_min_ratings else None,
            preparations_done=len(done),
            preparations_required=dosing.preparations_required,
            unanswered_after_preparation=unanswered,
            last_preparation_id=last["session_id"] if last else None,
            last_preparation_label=(
                f"{last['session__label'] or 'the last preparation'} on "
                f"{timezone.localtime(last['session__scheduled_start']):%-d %b}"
                if last
                else ""
            ),
            facilitators=dosing.facilitator_count,
            dose_recorded=bool(dosing.substance and dosing.dose_mg and dosing.route),
            logistics_due=dosing.scheduled_start
            <= now + datetime.timedelta(days=rule.weak_bond_days_before_dosing),
            sign_off=readiness.SignOff(
                by=latest.signed_by.display_name if latest.signed_by else "",
                at=latest.signed_at,
                note=latest.note,
                risk_keys=latest.risk_keys,
            )
            if latest
            else None,
            pre_dose_vitals=(
                (
                    pre_dose[dosing.pk][0].pk,
                    timezone.localtime(pre_dose[dosing.pk][0].measured_at),
                    pre_dose[dosing.pk][1],
                )
                if dosing.pk in pre_dose
                else None
            ),
        )
        result[dosing.pk] = readiness.assess(facts)
    return result


def readiness_of(dosing: Session) -> readiness.Readiness | None:
    return dosing_readiness([dosing]).get(dosing.pk)
