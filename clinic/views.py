import base64

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import access, selectors, services
from .forms import (
    AssignmentForm,
    EndAssignmentForm,
    EnrolmentForm,
    PatientForm,
    ReassignmentForm,
    SearchForm,
    StatusChangeForm,
    TokenForm,
)
from .health import health
from .models import Patient
from .pages import form_page, paginate
from .pages import qr_data_uri as qr_image


def _require(check, user) -> None:
    """Staff without the right role get 403: they know the page exists, it is not for them."""
    if not check(user):
        raise PermissionDenied


@login_required
def patient_list(request):
    search = SearchForm(request.GET)
    query = search.query()
    status = request.GET.get("status", "")
    if status not in Patient.Status.values:
        status = ""
    patients = selectors.patient_list(user=request.user, query=query, status=status)
    page = paginate(request, patients if search.is_valid() else patients.none())
    if query:
        services.record_patients_view(actor=request.user, patients=page.object_list, via="search")
    return render(
        request,
        "clinic/patient_list.html",
        {
            "page": page,
            "query": query,
            "search": search,
            "status": status,
            "statuses": Patient.Status.choices,
        },
    )


def _form_page(request, form, *, save, success, title, patient=None, next_url=None, warning=None):
    """A form page that goes back to the patient (or to `next_url(result)`)."""
    return form_page(
        request,
        form,
        save=save,
        success=success,
        warning=warning,
        redirect_to=lambda result: (
            (next_url(result) if next_url else None)
            or reverse("patient_detail", args=[patient.public_id])
        ),
        template="clinic/form.html",
        context={"title": title, "patient": patient},
    )


def _not_facilitating(assignment) -> str:
    """The warning that names (and links) each session the coach could not facilitate."""
    if not assignment.not_facilitating:
        return ""
    return render_to_string(
        "clinic/_not_facilitating.html",
        {"coach": assignment.coach, "sessions": assignment.not_facilitating},
    )


@login_required
@require_http_methods(["GET", "POST"])
def patient_create(request):
    _require(access.can_edit_patients, request.user)
    return _form_page(
        request,
        PatientForm(request.POST or None, submit_label="Register patient"),
        save=lambda data: services.patient_create(actor=request.user, **data),
        success=lambda patient: f"{patient.full_name} is registered.",
        next_url=lambda patient: reverse("patient_detail", args=[patient.public_id]),
        title="Register a patient",
    )


@login_required
@require_http_methods(["GET", "POST"])
def patient_edit(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    _require(access.can_edit_patients, request.user)
    services.record_patient_view(actor=request.user, patient=patient)
    # The ModelForm writes typed values onto its instance while validating; the service
    # compares against the stored row, so the form gets its own copy.
    return _form_page(
        request,
        PatientForm(request.POST or None, instance=Patient.objects.get(pk=patient.pk)),
        save=lambda data: services.patient_update(actor=request.user, patient=patient, **data),
        success=lambda _: "Patient details saved.",
        title="Edit patient details",
        patient=patient,
    )


@login_required
@require_http_methods(["GET", "POST"])
def patient_status(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    _require(access.can_edit_patients, request.user)
    services.record_patient_view(actor=request.user, patient=patient)
    return _form_page(
        request,
        StatusChangeForm(request.POST or None, patient=patient),
        save=lambda data: services.patient_change_status(
            actor=request.user, patient=patient, **data
        ),
        success=lambda changed: f"Status changed to {changed.get_status_display()}.",
        title="Change status",
        patient=patient,
    )


@login_required
@require_http_methods(["GET", "POST"])
def patient_enrol(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    _require(access.can_manage_programs, request.user)
    services.record_patient_view(actor=request.user, patient=patient)
    return _form_page(
        request,
        EnrolmentForm(request.POST or None, programs=selectors.programs_open_for_enrolment()),
        save=lambda data: services.patient_enrol(actor=request.user, patient=patient, **data),
        success=lambda enrolment: f"Enrolled in {enrolment.program}.",
        title="Enrol in a program",
        patient=patient,
    )


@login_required
@require_http_methods(["GET", "POST"])
def assignment_create(request, public_id, enrolment_id):
    enrolment = selectors.enrolment_for(
        user=request.user, public_id=public_id, enrolment_id=enrolment_id
    )
    _require(access.can_manage_programs, request.user)
    services.record_patient_view(actor=request.user, patient=enrolment.patient)
    return _form_page(
        request,
        AssignmentForm(request.POST or None, coaches=selectors.coaches()),
        save=lambda data: services.coach_assign(actor=request.user, enrolment=enrolment, **data),
        success=lambda a: f"{a.coach} is now {a.get_role_display().lower()}.",
        warning=_not_facilitating,
        title=f"Assign a coach — {enrolment.program}",
        patient=enrolment.patient,
    )


def _assignment(request, public_id, assignment_id):
    assignment = selectors.assignment_for(
        user=request.user, public_id=public_id, assignment_id=assignment_id
    )
    _require(access.can_manage_programs, request.user)
    services.record_patient_view(actor=request.user, patient=assignment.enrolment.patient)
    return assignment


@login_required
@require_http_methods(["GET", "POST"])
def assignment_reassign(request, public_id, assignment_id):
    assignment = _assignment(request, public_id, assignment_id)
    coaches = selectors.coaches().exclude(pk=assignment.coach_id)
    return _form_page(
        request,
        ReassignmentForm(request.POST or None, coaches=coaches),
        save=lambda data: services.coach_reassign(
            actor=request.user,
            assignment=assignment,
            new_coach=data["coach"],
            start_date=data["start_date"],
        ),
        success=lambda new: f"{new.coach} takes over from {assignment.coach}.",
        warning=_not_facilitating,
        title=f"Reassign {assignment.get_role_display().lower()} ({assignment.coach})",
        patient=assignment.enrolment.patient,
    )


@login_required
@require_http_methods(["GET", "POST"])
def assignment_end(request, public_id, assignment_id):
    assignment = _assignment(request, public_id, assignment_id)
    return _form_page(
        request,
        EndAssignmentForm(request.POST or None),
        save=lambda data: services.assignment_end(
            actor=request.user, assignment=assignment, **data
        ),
        success=lambda ended: f"{ended.coach}'s assignment has ended.",
        title=f"End {assignment.coach}'s assignment",
        patient=assignment.enrolment.patient,
    )


def _safe_next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or reverse("home")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("home")


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_setup(request):
    if request.user.totpdevice_set.filter(confirmed=True).exists():
        return redirect(f"{reverse('two_factor_verify')}?next={_safe_next(request)}")
    device, _ = TOTPDevice.objects.get_or_create(
        user=request.user, confirmed=False, defaults={"name": "Authenticator app"}
    )
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            messages.success(request, "Two-factor sign-in is set up.")
            return redirect(_safe_next(request))
        form.add_error("token", "That code did not match. Check the time on your phone and retry.")
    qr_data_uri = qr_image(device.config_url)
    secret = base64.b32encode(device.bin_key).decode()
    return render(
        request,
        "registration/two_factor_setup.html",
        {"form": form, "qr_data_uri": qr_data_uri, "secret": secret, "next": _safe_next(request)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_verify(request):
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        for device in request.user.totpdevice_set.filter(confirmed=True):
            if device.verify_token(form.cleaned_data["token"]):
                otp_login(request, device)
                return redirect(_safe_next(request))
        form.add_error("token", "That code did not match. Try the newest code in your app.")
    return render(
        request, "registration/two_factor_verify.html", {"form": form, "next": _safe_next(request)}
    )


def healthz(request):
    report, serving = health()
    return JsonResponse(report, status=200 if serving else 503)


def favicon(request):
    # Resolved per request: the hashed static name only exists after collectstatic.
    return redirect(static("favicon.svg"), permanent=True)


@login_required
def patient_audit(request, public_id):
    """Who viewed or changed this patient's record, and when: clinicians and admins."""
    patient = access.get_patient_for(request.user, public_id)
    _require(access.sees_all_patients, request.user)
    services.record_patient_view(actor=request.user, patient=patient)
    return render(
        request,
        "clinic/patient_audit.html",
        {
            "patient": patient,
            "page": paginate(request, selectors.audit_events_for(patient=patient)),
        },
    )
