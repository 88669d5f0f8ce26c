"""Reads about questionnaires: responses, scores, and the measurement plan (what is due after a
session, what is overdue for a patient).

The plan itself lives on the protocol: each `ProtocolStep.instruments_due` lists the
instrument codes due after a session generated from that step. A code is answered for a
session once a Response for that patient is linked to that session.
"""

import datetime

from django.conf import settings
from django.db.models import F, FloatField, Func, QuerySet, TextField, Value
from django.db.models.functions import Cast
from django.http import Http404
from django.utils import timezone

from clinic.access import patients_visible_to
from sessions.models import Attendance, Session, SessionKind

from . import scoring
from .models import Instrument, InstrumentVersion, Respondent, Response


def item_answer(number: int) -> Cast:
    """An item's answer as a SQL number, for filters and aggregates over `Response.answers`:

        Response.objects.annotate(item_9=item_answer(9)).filter(item_9__gte=1)

    (Django reads a numeric key like `answers__9` as an array index, so it cannot be used.)
    """
    text = Func(
        F("answers"),
        Value(str(number)),
        function="jsonb_extract_path_text",
        output_field=TextField(),
    )
    return Cast(text, FloatField())


def get_response_for(user, public_id) -> Response:
    try:
        return (
            Response.objects.select_related(
                "patient", "version__instrument", "session", "about_coach", "entered_by"
            )
            .prefetch_related("scores")
            .get(public_id=public_id, patient__in=patients_visible_to(user))
        )
    except (Response.DoesNotExist, ValueError) as exc:
        raise Http404("No such response.") from exc


# Alliance ratings may be about one named coach rather than the care team.
RATES_A_COACH = ("wai-sr", "srs")


def coaches_of(patient) -> QuerySet:
    """Staff who are or were assigned to the patient, or facilitated one of their sessions:
    whom an alliance rating may name."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    return (
        get_user_model()
        .objects.filter(
            Q(assignments__enrolment__patient=patient)
            | Q(facilitated_sessions__attendances__patient=patient)
        )
        .distinct()
        .order_by("display_name")
    )


def newest_definitions(codes) -> dict[str, dict]:
    """The newest definition of each instrument named, by code.

    What belongs to the instrument rather than to one version's wording (its subscales, its
    response and remission rule) is read from here: PHQ-9 gained its rule in version 2, and a
    version-1 response is judged by the same rule.
    """
    newest: dict[str, InstrumentVersion] = {}
    for version in InstrumentVersion.objects.filter(instrument__code__in=codes).select_related(
        "instrument"
    ):
        code = version.instrument.code
        if code not in newest or scoring.version_key(version.version) > scoring.version_key(
            newest[code].version
        ):
            newest[code] = version
    return {code: version.definition for code, version in newest.items()}


def wording_for(version: InstrumentVersion) -> dict[int, str]:
    return dict(version.wording.values_list("item", "text"))


def score_rows(response: Response) -> list[dict]:
    """The response's scales in the definition's order, each as clinicians read it (the
    instrument's primary statistic: PHQ-9 sum, WAI-SR mean, MEQ-30 % of max) and whether
    items were missing from it."""
    stored = {score.scale: score for score in response.scores.all()}
    return [
        {
            "primary": primary,
            "items_missing": primary.scale in stored and not stored[primary.scale].complete,
        }
        for primary in response.primary_scores
    ]


def findings(response: Response) -> list[str]:
    """Plain sentences for results beyond the scale scores (MEQ-30 complete mystical
    experience, SRS cut-off, how the score is formed where that is not obvious)."""
    extras, special = response.extras, response.version.definition.get("special", {})
    found = []
    if "complete_mystical_experience" in extras:
        found.append(
            {
                True: "Complete mystical experience: yes (at least 60% of maximum on all four "
                "subscales).",
                False: "Complete mystical experience: no (below 60% of maximum on at least one "
                "subscale).",
                None: "Complete mystical experience: not determined (it needs every item).",
            }[extras["complete_mystical_experience"]]
        )
    if extras.get("below_cutoff") is not None:
        side = "below" if extras["below_cutoff"] else "not below"
        found.append(f"Total is {side} the clinic's cut-off of {special.get('cutoff')}.")
    if special.get("score_label"):
        found.append(special["score_label"])
    return found


def answer_rows(response: Response, wording: dict[int, str]) -> list[dict]:
    """Each item with its label (official wording when imported) and the answer given."""
    definition = response.version.definition
    rows = []
    for item in definition["items"]:
        labels = {**definition["scale"], **item.get("scale", {})}.get("labels", {})
        value = response.answers.get(str(item["number"]))
        shown = None if value is None else (int(value) if float(value).is_integer() else value)
        rows.append(
            {
                "number": item["number"],
                "label": wording.get(item["number"], item["label"]),
                "answer": shown,
                "anchor": labels.get(str(shown), "") if shown is not None else "",
                "scored": item.get("scored", True),
            }
        )
    return rows


def responses_for(*, patient) -> QuerySet[Response]:
    return (
        Response.objects.filter(patient=patient)
        .select_related("version__instrument", "session")
        .prefetch_related("scores")
        .order_by("-administered_at", "-id")
    )


# --- the measurement plan ----------------------------------------------------------------


# A session booked outside the protocol (an extra preparation, an extra integration) asks for
# what the protocols ask after those kinds: the alliance, so the flags see it (DESIGN §1).
ADHOC_DUE = {
    SessionKind.PREPARATION: ("wai-sr", "srs"),
    SessionKind.INTEGRATION: ("wai-sr", "srs"),
}


def codes_due(kind: str, step_codes: list[str] | None) -> list[str]:
    """What is due after a session: its protocol step's codes, in the step's order, or for a
    session with no step (`step_codes` None) what ADHOC_DUE asks after its kind."""
    if step_codes is not None:
        return list(step_codes)
    return list(ADHOC_DUE.get(kind, ()))


def planned_codes(session) -> list[str]:
    """Instrument codes due after this session (see `codes_due`)."""
    step = session.protocol_step
    return codes_due(session.kind, step.instruments_due if step is not None else None)


def _due_patients(session) -> list:
    """Who owes the session's questionnaires: those who came once it is logged; before that,
    everyone still expected."""
    attendances = session.attendances.all()
    if session.status == Session.Status.COMPLETED:
        return [a.patient for a in attendances if a.status in Attendance.PRESENT]
    if session.status == Session.Status.SCHEDULED:
        return [a.patient for a in attendances if a.status not in Attendance.NOT_COMING]
    return []


def unanswered_codes(session, *, patient=None) -> list[str]:
    """What is still due for a session: the plan's codes minus the responses already linked
    to it — for one patient, or (without one) those not yet answered by everyone who owes
    them. Codes of instruments that are not loaded are left out."""
    codes = planned_codes(session)
    if not codes:
        return []
    known = set(Instrument.objects.filter(code__in=codes).values_list("code", flat=True))
    patients = [patient] if patient is not None else _due_patients(session)
    answered = set(
        Response.objects.filter(session=session, patient__in=[p.pk for p in patients]).values_list(
            "patient_id", "version__instrument__code"
        )
    )
    return [
        code
        for code in codes
        if code in known and any((p.pk, code) not in answered for p in patients)
    ]


def due_for_session(session, *, user=None) -> list[dict]:
    """The after-session page's list: per patient who owes them (and whom `user` may see),
    every planned questionnaire with the response already entered for it, if any."""
    codes = planned_codes(session)
    patients = _due_patients(session)
    if not codes or not patients:
        return []
    if user is not None:
        visible = set(
            patients_visible_to(user)
            .filter(pk__in=[p.pk for p in patients])
            .values_list("pk", flat=True)
        )
        patients = [p for p in patients if p.pk in visible]
    instruments = {i.code: i for i in Instrument.objects.filter(code__in=codes)}
    answered = {
        (r.patient_id, r.version.instrument.code): r
        for r in Response.objects.filter(session=session)
        .select_related("version__instrument")
        .order_by("administered_at", "id")
    }
    rows = []
    for patient in patients:
        items = [
            {
                "code": code,
                "instrument": instruments[code],
                "response": answered.get((patient.pk, code)),
            }
            for code in codes
            if code in instruments
        ]
        rows.append(
            {
                "patient": patient,
                "items": items,
                "some_entered": any(i["response"] for i in items),
                "link_codes": [
                    i["code"]
                    for i in items
                    if i["response"] is None and i["instrument"].respondent == Respondent.PATIENT
                ],
            }
        )
    return rows


def _overdue_window() -> tuple[datetime.datetime, datetime.datetime]:
    """Sessions that ended between these two moments have overdue questionnaires: at least
    QUESTIONNAIRE_OVERDUE_HOURS ago, and not so long ago that the measure is simply missed."""
    now = timezone.now()
    return (
        now - datetime.timedelta(days=settings.QUESTIONNAIRE_MISSED_AFTER_DAYS),
        now - datetime.timedelta(hours=settings.QUESTIONNAIRE_OVERDUE_HOURS),
    )


def _overdue(patient_ids, *, patient_rated_only: bool) -> list[tuple[int, int, str]]:
    """(patient id, session id, code) still unanswered after completed sessions in the
    overdue window. Three queries whatever the number of patients."""
    since, until = _overdue_window()
    rows = Attendance.objects.filter(
        patient_id__in=patient_ids,
        status__in=Attendance.PRESENT,
        session__status=Session.Status.COMPLETED,
        session__scheduled_end__gte=since,
        session__scheduled_end__lte=until,
    ).values_list(
        "patient_id", "session_id", "session__kind", "session__protocol_step__instruments_due"
    )
    answered = set(
        Response.objects.filter(
            patient_id__in=patient_ids,
            session__scheduled_end__gte=since,
            session__scheduled_end__lte=until,
        ).values_list("patient_id", "session_id", "version__instrument__code")
    )
    instruments = Instrument.objects.all()
    if patient_rated_only:
        instruments = instruments.filter(respondent=Respondent.PATIENT)
    wanted = set(instruments.values_list("code", flat=True))
    return [
        (patient_id, session_id, code)
        for patient_id, session_id, kind, step_codes in rows
        for code in codes_due(kind, step_codes)
        if code in wanted and (patient_id, session_id, code) not in answered
    ]


def overdue_counts(*, patient_ids: list[int]) -> dict[int, int]:
    """Per patient: patient-rated questionnaires due after completed sessions and still
    unanswered (see `_overdue_window`). For the caseload badge; three queries a page."""
    counts: dict[int, int] = {}
    for patient_id, _session_id, _code in _overdue(patient_ids, patient_rated_only=True):
        counts[patient_id] = counts.get(patient_id, 0) + 1
    return counts


def overdue_for(*, patient) -> list[dict]:
    """One patient's overdue questionnaires (clinician-rated ones too), oldest session first,
    each as {"session", "instrument"}."""
    rows = _overdue([patient.pk], patient_rated_only=False)
    sessions = Session.objects.in_bulk({session_id for _, session_id, _ in rows})
    instruments = {i.code: i for i in Instrument.objects.filter(code__in={c for *_, c in rows})}
    found = [{"session": sessions[s], "instrument": instruments[c]} for _, s, c in rows]
    return sorted(found, key=lambda row: row["session"].scheduled_start)


def plannable_instruments() -> QuerySet[Instrument]:
    """The questionnaires a protocol step may ask for, for the protocol pages."""
    return Instrument.objects.order_by("code")
