"""What the flag rules read: one patient's measurements, the thresholds that apply, the
clinic's percentiles, and which patients a sweep or the outbox drain must recompute.

Read by the recompute (services, tasks); nothing here draws or pages."""

import datetime

from django.db import connection
from django.db.models import (
    Q,
)
from django.utils import timezone

from clinic.models import Enrolment, Patient
from outcomes.models import Response
from sessions.models import AdverseEvent, Attendance, Session, SessionKind

from . import rules, trajectories
from .models import DEFAULTS, Flag, FlagRule, StalePatient


def flag_rule_for(*, patient: Patient) -> FlagRule | None:
    program_ids = patient.enrolments.filter(status=Enrolment.Status.ACTIVE).values("program")
    rule = FlagRule.objects.filter(program__in=program_ids).order_by("pk").first()
    return rule or FlagRule.objects.filter(program__isnull=True).first()


def rule_or_default(*, patient: Patient) -> FlagRule:
    """The active program's rule, else the clinic default, else an unsaved default row."""
    return flag_rule_for(patient=patient) or FlagRule()


def patients_under_rule(*, rule: FlagRule) -> list[int]:
    """Patients whose flags this rule decides: the program's active members, or for the
    clinic default everyone to sweep whose programs have no rule of their own."""
    active = Enrolment.objects.filter(status=Enrolment.Status.ACTIVE)
    if rule.program_id is not None:
        members = active.filter(program_id=rule.program_id).values("patient_id")
        return list(Patient.objects.filter(pk__in=members).values_list("pk", flat=True))
    ruled = set(
        active.filter(program__flag_rule__isnull=False).values_list("patient_id", flat=True)
    )
    return [pk for pk in patients_to_sweep_ids() if pk not in ruled]


def session_label(session: Session | None) -> str:
    return (session.label or session.get_kind_display()) if session else ""


def _scores(response: Response) -> dict[str, object]:
    return {s.scale: s for s in response.scores.all()}


def clinic_bond_percentiles(percentiles) -> dict[int, tuple[float | None, int]]:
    """The clinic's own percentiles of WAI-SR bond means over every rating, in one pass:
    {percentile: (value, number of ratings)}. A sweep asks once for every program's."""
    wanted = sorted(set(percentiles))
    if not wanted:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY s.mean), count(*)
            FROM outcomes_score s
            JOIN outcomes_response r ON r.id = s.response_id
            JOIN outcomes_instrumentversion v ON v.id = r.version_id
            JOIN outcomes_instrument i ON i.id = v.instrument_id
            WHERE i.code = 'wai-sr' AND s.scale = 'bond' AND s.mean IS NOT NULL
            """,
            [[p / 100 for p in wanted]],
        )
        values, count = cursor.fetchone()
    values = values or [None] * len(wanted)
    return {
        p: (float(v) if v is not None else None, count) for p, v in zip(wanted, values, strict=True)
    }


def rule_percentiles() -> list[int]:
    """Every percentile a flag rule uses (the default's too), for one pass per sweep."""
    return sorted({*FlagRule.objects.values_list("percentile", flat=True), DEFAULTS.percentile})


def _resolved_safety_responses(patient: Patient) -> dict[str, set[int]]:
    """Per kind (safety, safety_unanswered): responses a person has dealt with."""
    covered = {Flag.Kind.SAFETY: set(), Flag.Kind.SAFETY_UNANSWERED: set()}
    for kind, evidence in Flag.objects.filter(
        patient=patient, kind__in=list(covered), status=Flag.Status.RESOLVED
    ).values_list("kind", "evidence"):
        covered[kind].update(rules.basis(kind, evidence))
    return covered


def flag_facts(
    *,
    patient: Patient,
    now: datetime.datetime,
    clinic_bond: tuple[float | None, int],
    bond_bands=None,
) -> rules.Facts:
    """Everything the rules read for one patient; `clinic_bond` is the clinic's percentile
    of bond means at the patient's program's percentile, and the number of ratings;
    `bond_bands` the expected-band table as a sweep loaded it once (else read here)."""
    responses = list(
        Response.objects.filter(patient=patient, administered_at__lte=now)
        .select_related("version__instrument", "session__protocol_step")
        .prefetch_related("scores")
        .order_by("administered_at", "id")
    )
    alliance, srs, safety, gaps = [], [], [], []
    resolved = _resolved_safety_responses(patient)
    # A skipped safety item matters until the instrument is answered again.
    latest_of = {r.version.instrument.code: r.pk for r in responses}
    for response in responses:
        code = response.version.instrument.code
        scores = _scores(response)
        if code == "wai-sr":
            bond, total = scores.get("bond"), scores.get("total")
            alliance.append(
                rules.AlliancePoint(
                    response_id=response.pk,
                    at=response.administered_at,
                    bond=bond.mean if bond else None,
                    total=total.mean if total else None,
                    session_id=response.session_id,
                    session_kind=response.session.kind if response.session else "",
                    session_label=session_label(response.session),
                    step_id=response.session.protocol_step_id if response.session else None,
                    step_order=response.session.protocol_step.order
                    if response.session and response.session.protocol_step
                    else None,
                )
            )
        elif code == "srs" and scores.get("total") and scores["total"].value is not None:
            srs.append(
                rules.SrsPoint(
                    response_id=response.pk,
                    at=response.administered_at,
                    total=scores["total"].value,
                    session_id=response.session_id,
                    session_label=session_label(response.session),
                )
            )
        if response.has_safety_hit and response.pk not in resolved[Flag.Kind.SAFETY]:
            safety.extend(
                rules.SafetyHit(
                    response_id=response.pk,
                    at=response.administered_at,
                    instrument=code,
                    item=hit["item"],
                    value=hit["value"],
                    urgent=hit["urgent"],
                )
                for hit in response.safety_hits
            )
        if (
            response.safety_unanswered
            and latest_of[code] == response.pk
            and response.pk not in resolved[Flag.Kind.SAFETY_UNANSWERED]
        ):
            total = scores.get("total")
            gaps.extend(
                rules.SafetyGap(
                    response_id=response.pk,
                    at=response.administered_at,
                    instrument=code,
                    item=item,
                    total_given=bool(total and total.value is not None),
                )
                for item in response.safety_unanswered
            )
    mine = Session.objects.filter(attendances__patient=patient).exclude(
        attendances__status=Attendance.Status.CANCELLED
    )
    dosings = [
        rules.Dosing(session_id=pk, start=start)
        for pk, start in mine.filter(
            kind=SessionKind.DOSING, status=Session.Status.SCHEDULED
        ).values_list("pk", "scheduled_start")
    ]
    preparations = list(
        mine.filter(kind=SessionKind.PREPARATION, status=Session.Status.COMPLETED).values_list(
            "scheduled_start", flat=True
        )
    )
    serious_events = [
        rules.SeriousEvent(
            event_id=e.pk,
            public_id=str(e.public_id),
            onset_at=e.onset_at,
            grade=e.grade,
            description=e.description[:200],
            criteria=tuple(e.serious_criteria),
            dosing_session_id=e.session_id if e.session and e.session.is_dosing else None,
        )
        for e in AdverseEvent.objects.filter(
            patient=patient, serious=True, resolved_on__isnull=True
        ).select_related("session")
    ]
    value, count = clinic_bond
    step_bands = trajectories.bond_bands_for_rules(
        step_ids=[p.step_id for p in alliance if p.step_id is not None],
        patient_id=patient.pk,
        loaded=bond_bands,
    )
    return rules.Facts(
        now=now,
        alliance=alliance,
        srs=srs,
        safety=safety,
        safety_unanswered=gaps,
        dosings=dosings,
        preparations=preparations,
        clinic_bond_percentile=value,
        clinic_bond_ratings=count,
        step_bands=step_bands,
        serious_events=serious_events,
    )


def unnotified_flag_ids() -> list[int]:
    return list(
        Flag.objects.filter(status=Flag.Status.OPEN, notified_at__isnull=True).values_list(
            "pk", flat=True
        )
    )


def patients_with_dosing_within(*, days: int) -> list[int]:
    now = timezone.now()
    return list(
        Attendance.objects.filter(
            session__kind=SessionKind.DOSING,
            session__status=Session.Status.SCHEDULED,
            session__scheduled_start__gte=now,
            session__scheduled_start__lte=now + datetime.timedelta(days=days),
        )
        .exclude(status=Attendance.Status.CANCELLED)
        .values_list("patient_id", flat=True)
        .distinct()
    )


def stale_patient_ids(*, limit: int = 1000) -> list[int]:
    """The outbox, oldest first."""
    return list(StalePatient.objects.order_by("since").values_list("patient_id", flat=True)[:limit])


def patients_to_sweep_ids() -> list[int]:
    """Every patient in care, and anyone else with a flag still open (a completed or
    withdrawn patient's flags must still clear or stay visible, never hang)."""
    with_open_flags = Flag.objects.filter(status__in=Flag.UNRESOLVED).values("patient_id")
    return list(
        Patient.objects.filter(
            Q(status__in=Patient.ACTIVE_STATUSES) | Q(pk__in=with_open_flags)
        ).values_list("pk", flat=True)
    )
