from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from clinic import access
from clinic.forms import apply_service_errors
from clinic.selectors import coaches
from sessions.selectors import get_session_for

from . import selectors, services
from .forms import ResponseForm


@login_required
@require_http_methods(["GET", "POST"])
def response_new(request, public_id, code):
    patient = access.get_patient_for(request.user, public_id)
    try:
        version = services.latest_version(code)
    except ValidationError as exc:
        raise Http404("No such questionnaire.") from exc
    session = None
    if request.GET.get("session"):
        session = get_session_for(request.user, request.GET["session"])
    form = ResponseForm(
        request.POST or None,
        definition=version.definition,
        wording=selectors.wording_for(version),
        coaches=coaches() if code == "wai-sr" else None,
    )
    if request.method == "POST" and form.is_valid():
        try:
            response = services.response_record(
                actor=request.user,
                patient=patient,
                version=version,
                answers=form.answers(),
                administered_at=form.cleaned_data["administered_at"],
                session=session,
                about_coach=form.cleaned_data.get("about_coach"),
                submission_key=form.cleaned_data["submission_key"],
                allow_incomplete=form.cleaned_data["allow_incomplete"],
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, f"{version.instrument.short_name} saved.")
            return redirect("response_detail", public_id=response.public_id)
    return render(
        request,
        "outcomes/response_form.html",
        {"form": form, "patient": patient, "version": version, "session": session},
    )


@login_required
def response_detail(request, public_id):
    response = selectors.get_response_for(request.user, public_id)
    return render(request, "outcomes/response_detail.html", {"response": response})
