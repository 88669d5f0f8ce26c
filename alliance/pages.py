"""The care team's pages that bring every app together: the caseload, the patient page, the
session page and the program page. They live here, in the top app, because they show what
each app below holds (people, sessions, questionnaires) beside flags and readiness."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render

from clinic import access
from clinic import selectors as clinic_selectors
from clinic.forms import SearchForm
from clinic.models import Patient, Program
from clinic.pages import paginate
from clinic.services import record_patient_view, record_patients_view
from outcomes.models import Instrument
from outcomes.selectors import (
    delivery_log,
    due_for_session,
    measures_for,
    measures_in_words,
    program_completion,
    responses_for,
)
from sessions import selectors as session_selectors
from sessions.models import Session
from sessions.services import record_session_view

from . import caseload, dosing_day, selectors
from .models import Flag


@login_required
def home(request):
    search = SearchForm(request.GET)
    query = search.query()
    patients = caseload.caseload_for(user=request.user, query=query)
    page = paginate(request, patients if search.is_valid() else patients.none())
    page.object_list = caseload.caseload_rows(user=request.user, patients=page.object_list)
    if query:
        record_patients_view(actor=request.user, patients=page.object_list, via="search")
    measures = measures_in_words(patient_ids=[p.pk for p in page.object_list])
    for patient in page.object_list:
        patient.measures = measures.get(patient.pk, [])
    return render(
        request,
        "alliance/caseload.html",
        {
            "page": page,
            "query": query,
            "search": search,
            "to_log": session_selectors.to_log_for_coach(user=request.user),
        },
    )


@login_required
def patient_detail(request, public_id):
    patient = clinic_selectors.patient_detail(user=request.user, public_id=public_id)
    record_patient_view(actor=request.user, patient=patient)
    return render(
        request,
        "alliance/patient_detail.html",
        {
            "patient": patient,
            "responses": responses_for(patient=patient)[:10],
            "measures": measures_for(patient=patient),
            "deliveries": delivery_log(patient=patient),
            "instruments": Instrument.objects.order_by("code"),
            "open_flags": patient.flags.filter(status__in=Flag.UNRESOLVED).order_by("-raised_at"),
        },
    )


@login_required
def session_detail(request, public_id):
    session = session_selectors.get_session_for(request.user, public_id)
    record_session_view(actor=request.user, session=session)
    return render(
        request,
        "alliance/session_detail.html",
        {
            "session": session,
            "due": due_for_session(session, user=request.user),
            "can_log": session_selectors.can_log(request.user, session),
            "can_schedule": access.can_manage_programs(request.user),
            "readiness": caseload.readiness_of(session)
            if session.status == Session.Status.SCHEDULED
            else None,
            "day": dosing_day.dosing_day(session=session) if session.is_dosing else None,
        },
    )


@login_required
def program_sessions(request, program_id):
    if not access.can_edit_patients(request.user):  # clinicians and admins
        raise PermissionDenied
    program = get_object_or_404(Program, pk=program_id)
    # A package program may have thousands of members: one page of them at a time, in name
    # order (the enrolment's index), with their flags, readiness and attendance.
    page = paginate(request, session_selectors.program_roster(program=program))
    overview = session_selectors.group_program_overview(program=program, roster=page.object_list)
    members = caseload.with_flags_and_latest_bond(
        Patient.objects.filter(pk__in=[e.patient_id for e in page.object_list])
    ).order_by("last_name", "first_name", "pk")
    members = list(members)
    caseload.attach_readiness(members)
    return render(
        request,
        "alliance/program.html",
        {
            "program": program,
            "members": members,
            "page": page,
            "upcoming": session_selectors.program_upcoming(program=program),
            "adverse_events": selectors.program_adverse_events(program=program),
            "completion": program_completion(program=program),
            **overview,
        },
    )
