import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from clinic import access
from clinic.forms import apply_service_errors
from clinic.models import Enrolment
from clinic.pages import form_page
from clinic.selectors import coaches
from clinic.services import record_patient_view

from . import calendar, selectors, services, weekgrid
from .forms import (
    AdverseEventEditForm,
    AdverseEventForm,
    BookForm,
    CancelForm,
    DosingForm,
    RescheduleForm,
    SessionCorrectionForm,
    SessionLogForm,
    VitalsForm,
)
from .models import AdverseEvent, Session, SessionKind


def _session(request, public_id):
    return selectors.get_session_for(request.user, public_id)


def _loggable_session(request, public_id):
    """A session the user may log (coaches: those they facilitate); 404 otherwise, so a coach
    cannot tell others' sessions exist. Opening it is audited."""
    session = _session(request, public_id)
    if not selectors.can_log(request.user, session):
        raise Http404("Not your session.")
    services.record_session_view(actor=request.user, session=session)
    return session


def _form_page(request, form, *, session, save, success, title, template="sessions/form.html"):
    """A form page about one session that goes back to it."""
    return form_page(
        request,
        form,
        save=save,
        success=lambda result: success,
        redirect_to=lambda result: reverse("session_detail", args=[session.public_id]),
        template=template,
        context={"session": session, "title": title},
    )


@login_required
@require_http_methods(["GET", "POST"])
def session_log(request, public_id):
    session = _loggable_session(request, public_id)
    if request.method == "GET" and session.status != Session.Status.SCHEDULED:
        # Logged already: say so and offer the correction instead of a second log.
        return render(request, "sessions/logged.html", {"session": session, "title": "Log session"})
    form = SessionLogForm(request.POST or None, session=session)
    return _form_page(
        request,
        form,
        session=session,
        save=lambda data: services.session_log(
            actor=request.user,
            session=session,
            status=data["status"],
            duration_minutes=data["duration_minutes"],
            notes=data["notes"],
            attendance=form.attendance() if session.is_group else None,
        ),
        success="Session logged. Enter the questionnaires due below.",
        title="Log session",
    )


@login_required
@require_http_methods(["GET", "POST"])
def session_correct(request, public_id):
    session = _loggable_session(request, public_id)
    if session.status == Session.Status.SCHEDULED:
        return redirect("session_log", public_id=session.public_id)
    form = SessionCorrectionForm(request.POST or None, session=session)
    return _form_page(
        request,
        form,
        session=session,
        save=lambda data: services.session_correct(
            actor=request.user,
            session=session,
            status=data["status"],
            duration_minutes=data["duration_minutes"],
            notes=data["notes"],
            reason=data["reason"],
            attendance=form.attendance() if session.is_group else None,
        ),
        success="Log corrected. What was logged before is kept in the audit log.",
        title="Correct session log",
    )


def _require_scheduler(user):
    if not access.can_manage_programs(user):
        raise PermissionDenied


@login_required
@require_http_methods(["GET", "POST"])
def session_reschedule(request, public_id):
    session = _session(request, public_id)
    _require_scheduler(request.user)
    services.record_session_view(actor=request.user, session=session)
    initial = {
        "start": timezone.localtime(session.scheduled_start),
        "end": timezone.localtime(session.scheduled_end),
        "room": session.room,
    }
    return _form_page(
        request,
        RescheduleForm(request.POST or None, initial=initial),
        session=session,
        save=lambda data: services.session_reschedule(actor=request.user, session=session, **data),
        success="Session moved.",
        title="Move session",
    )


@login_required
@require_http_methods(["GET", "POST"])
def session_cancel(request, public_id):
    session = _session(request, public_id)
    _require_scheduler(request.user)
    services.record_session_view(actor=request.user, session=session)
    return _form_page(
        request,
        CancelForm(request.POST or None),
        session=session,
        save=lambda data: services.session_cancel(actor=request.user, session=session, **data),
        success="Session cancelled. It stays on the timeline.",
        title="Cancel session",
    )


@login_required
@require_http_methods(["GET", "POST"])
def session_dosing(request, public_id):
    session = _loggable_session(request, public_id)
    if not session.is_dosing:
        raise Http404("Not a dosing session.")
    initial = {
        "substance": session.substance,
        "dose_mg": session.dose_mg,
        "weight_kg": session.weight_kg,
        "route": session.route,
        "actual_start": session.actual_start and timezone.localtime(session.actual_start),
        "actual_end": session.actual_end and timezone.localtime(session.actual_end),
    }
    return _form_page(
        request,
        DosingForm(request.POST or None, initial=initial),
        session=session,
        save=lambda data: services.dosing_record(actor=request.user, session=session, **data),
        success="Dosing details saved.",
        title="Dosing details",
    )


@login_required
def patient_timeline(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    record_patient_view(actor=request.user, patient=patient)
    sessions = selectors.patient_timeline(patient=patient)
    now = timezone.now()
    return render(
        request,
        "sessions/timeline.html",
        {
            "patient": patient,
            "past": [s for s in sessions if s.scheduled_start < now],
            "enrolments": patient.enrolments.filter(status=Enrolment.Status.ACTIVE).select_related(
                "program"
            ),
            "upcoming": [s for s in sessions if s.scheduled_start >= now],
            "adverse_events": selectors.adverse_events_for(patient=patient),
        },
    )


@login_required
def my_calendar(request):
    week = selectors.calendar_week(request.GET.get("week"))
    days = selectors.coach_week(user=request.user, monday=week.monday)
    return render(
        request,
        "sessions/calendar.html",
        {
            "days": days,
            "grid": weekgrid.week_grid(days),
            "today": timezone.localdate(),
            "monday": week.monday,
            "week": week.label,
            "previous_week": week.previous_label,
            "next_week": week.next_label,
            "upcoming": selectors.upcoming_for_coach(user=request.user),
            "to_log": selectors.to_log_for_coach(user=request.user),
            "feed": request.user.calendar_feeds.filter(revoked_at__isnull=True).first(),
            "new_feed_url": request.session.pop("new_feed_url", None),
        },
    )


@login_required
@require_POST
def calendar_feed_create(request):
    token = services.feed_create(
        actor=request.user, show_details=request.POST.get("show_details") == "on"
    )
    url = request.build_absolute_uri(reverse("calendar_feed", args=[token]))
    # Shown once on the next page; only its hash is stored.
    request.session["new_feed_url"] = url
    messages.success(request, "Calendar link created. Copy it now: it is shown only once.")
    return redirect("my_calendar")


@login_required
@require_POST
def calendar_feed_revoke(request):
    services.feed_revoke(actor=request.user)
    messages.success(request, "Calendar link revoked. Calendar apps using it stop updating.")
    return redirect("my_calendar")


def calendar_feed(request, token):
    feed = selectors.feed_for_token(token)
    body = calendar.ics_for(
        coach=feed.coach,
        sessions=selectors.feed_sessions(coach=feed.coach),
        show_details=feed.show_details,
    )
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="rapport.ics"'
    response["Cache-Control"] = "private, max-age=300"
    return response


@login_required
def program_list(request):
    if not access.can_edit_patients(request.user):  # clinicians and admins
        raise PermissionDenied
    return render(request, "sessions/program_list.html", {"programs": selectors.programs()})


@login_required
@require_http_methods(["GET", "POST"])
def session_book(request, public_id, enrolment_id):
    """Book an extra session for one enrolment (e.g. one more preparation before dosing)."""
    patient = access.get_patient_for(request.user, public_id)
    _require_scheduler(request.user)
    enrolment = get_object_or_404(patient.enrolments.select_related("program"), pk=enrolment_id)
    record_patient_view(actor=request.user, patient=patient)
    initial = {}
    if request.GET.get("kind") == SessionKind.PREPARATION:  # "Book an extra preparation" on a flag
        initial = {"kind": SessionKind.PREPARATION, "label": "Extra preparation"}
    form = BookForm(request.POST or None, coaches=coaches(), initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            session = services.session_book(
                actor=request.user,
                program=enrolment.program,
                enrolment=enrolment,
                kind=data["kind"],
                label=data["label"],
                start=data["start"],
                end=data["end"],
                room=data["room"],
                facilitators=list(data["facilitators"]),
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Session booked.")
            return redirect("session_detail", public_id=session.public_id)
    return render(
        request,
        "sessions/book.html",
        {"form": form, "patient": patient, "enrolment": enrolment},
    )


def _dosing_session(request, public_id):
    session = _loggable_session(request, public_id)
    if not session.is_dosing:
        raise Http404("Not a dosing session.")
    return session


@login_required
@require_http_methods(["GET", "POST"])
def session_vitals(request, public_id):
    """Vital signs in the room, on a tablet: four numbers and the time, in seconds."""
    session = _dosing_session(request, public_id)
    schedule = selectors.dosing_schedule(session)
    recorded = set(session.vitals.values_list("point", flat=True))
    next_point = next((p.code for p in schedule.points if p.code not in recorded), "")
    form = VitalsForm(
        request.POST or None,
        schedule=schedule,
        staff=selectors.room_staff(session, user=request.user),
        recorded=recorded,
        patients=selectors.attendee_choices(session),
        initial={
            "token": uuid.uuid4(),
            "point": next_point,
            "measured_at": timezone.localtime().replace(second=0, microsecond=0),
            "taken_by": request.user,
        },
    )
    return form_page(
        request,
        form,
        save=lambda data: services.vitals_record(
            actor=request.user,
            session=session,
            token=data["token"],
            point=data["point"],
            measured_at=data["measured_at"],
            systolic=data["systolic"],
            diastolic=data["diastolic"],
            heart_rate=data["heart_rate"],
            spo2=data["spo2"],
            respiratory_rate=data["respiratory_rate"],
            temperature_c=data["temperature_c"],
            note=data["note"],
            taken_by=data["taken_by"] or request.user,
            patient=selectors.chosen_patient(session, data),
        ),
        success=lambda reading: "Vital signs saved.",
        warning=lambda reading: (
            "Out of range: " + "; ".join(alerts) + "."
            if (
                alerts := selectors.vitals_alerts(
                    reading, session, schedule, selectors.limits_for(session.program)
                )
            )
            else None
        ),
        redirect_to=lambda reading: reverse("session_detail", args=[session.public_id]),
        template="sessions/form.html",
        context={"session": session, "title": "Vital signs"},
    )


def _now_minute():
    return timezone.localtime().replace(second=0, microsecond=0)


def _event_values(data: dict) -> dict:
    return {name: data[name] for name in services.AE_FIELDS}


def _event_saved(event: AdverseEvent) -> str:
    if event.serious and not event.is_closed:
        return "Adverse event recorded. It is serious: the clinicians are alerted now."
    return "Adverse event recorded."


@login_required
@require_http_methods(["GET", "POST"])
def adverse_event_new(request, public_id):
    """An adverse event at a dosing (from the session page)."""
    session = _dosing_session(request, public_id)
    form = AdverseEventForm(
        request.POST or None,
        patients=selectors.attendee_choices(session),
        initial={"token": uuid.uuid4(), "onset_at": _now_minute()},
    )
    return form_page(
        request,
        form,
        save=lambda data: services.adverse_event_record(
            actor=request.user,
            patient=selectors.chosen_patient(session, data) or session.enrolment.patient,
            session=session,
            token=data["token"],
            **_event_values(data),
        ),
        success=_event_saved,
        redirect_to=lambda event: reverse("session_detail", args=[session.public_id]),
        template="sessions/form.html",
        context={"session": session, "title": "Adverse event"},
    )


@login_required
@require_http_methods(["GET", "POST"])
def patient_adverse_event_new(request, public_id):
    """An adverse event between sessions (from the patient's sessions page)."""
    patient = access.get_patient_for(request.user, public_id)
    record_patient_view(actor=request.user, patient=patient)
    form = AdverseEventForm(
        request.POST or None, initial={"token": uuid.uuid4(), "onset_at": _now_minute()}
    )
    return form_page(
        request,
        form,
        save=lambda data: services.adverse_event_record(
            actor=request.user, patient=patient, token=data["token"], **_event_values(data)
        ),
        success=_event_saved,
        redirect_to=lambda event: reverse("patient_timeline", args=[patient.public_id]),
        template="sessions/adverse_event_form.html",
        context={"patient": patient, "title": "Adverse event between sessions"},
    )


@login_required
@require_http_methods(["GET", "POST"])
def adverse_event_edit(request, public_id):
    """Update an adverse event (its outcome as it resolves); the previous version is kept."""
    event = selectors.adverse_event_for(user=request.user, public_id=public_id)
    record_patient_view(actor=request.user, patient=event.patient)
    initial = {
        **{name: getattr(event, name) for name in services.AE_FIELDS},
        "onset_at": timezone.localtime(event.onset_at),
    }
    form = AdverseEventEditForm(request.POST or None, initial=initial)
    back = (
        reverse("session_detail", args=[event.session.public_id])
        if event.session
        else reverse("patient_timeline", args=[event.patient.public_id])
    )
    return form_page(
        request,
        form,
        save=lambda data: services.adverse_event_update(
            actor=request.user, event=event, reason=data["reason"], **_event_values(data)
        ),
        success=lambda event: "Adverse event updated. The previous version is kept.",
        redirect_to=lambda result: back,
        template="sessions/adverse_event_form.html",
        context={
            "patient": event.patient,
            "event": event,
            "history": selectors.adverse_event_history(event=event),
            "title": "Update adverse event",
        },
    )
