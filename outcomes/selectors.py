import datetime

from django.http import Http404

from clinic.access import patients_visible_to

from .models import Instrument, InstrumentVersion, Response


def get_response_for(user, public_id) -> Response:
    try:
        return (
            Response.objects.select_related("patient", "version__instrument", "session")
            .prefetch_related("scores")
            .get(public_id=public_id, patient__in=patients_visible_to(user))
        )
    except (Response.DoesNotExist, ValueError) as exc:
        raise Http404("No such response.") from exc


def wording_for(version: InstrumentVersion) -> dict[int, str]:
    return dict(version.wording.values_list("item", "text"))


def due_for_session(session, codes: list[str]) -> list[dict]:
    """The session's due instruments, each with the response already entered for it, if any."""
    instruments = {i.code: i for i in Instrument.objects.filter(code__in=codes)}
    answered = {
        r.version.instrument.code: r
        for r in Response.objects.filter(session=session).select_related("version__instrument")
    }
    return [
        {"code": code, "instrument": instruments.get(code), "response": answered.get(code)}
        for code in codes
        if code in instruments
    ]


def responses_for(*, patient) -> list[Response]:
    return list(
        Response.objects.filter(patient=patient)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("-administered_at")
    )


def overdue_counts(*, patient_ids: list[int], grace_hours: int = 48) -> dict[int, int]:
    """Per patient: patient-rated questionnaires due after completed sessions that are still
    unanswered `grace_hours` after the session ended. Two queries for a whole page."""
    from django.utils import timezone

    from sessions.models import Attendance

    cutoff = timezone.now() - datetime.timedelta(hours=grace_hours)
    rows = Attendance.objects.filter(
        patient_id__in=patient_ids,
        status__in=[Attendance.Status.ATTENDED, Attendance.Status.LATE],
        session__status="completed",
        session__scheduled_end__lte=cutoff,
        session__protocol_step__isnull=False,
    ).values_list("patient_id", "session_id", "session__protocol_step__instruments_due")
    answered = set(
        Response.objects.filter(patient_id__in=patient_ids, session__isnull=False).values_list(
            "patient_id", "session_id", "version__instrument__code"
        )
    )
    clinician_rated = set(
        Instrument.objects.exclude(respondent="patient").values_list("code", flat=True)
    )
    counts: dict[int, int] = {}
    for patient_id, session_id, due in rows:
        missing = [
            code
            for code in due
            if code not in clinician_rated and (patient_id, session_id, code) not in answered
        ]
        if missing:
            counts[patient_id] = counts.get(patient_id, 0) + len(missing)
    return counts
