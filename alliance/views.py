from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from clinic import access
from clinic.forms import apply_service_errors
from clinic.models import Program
from clinic.pages import form_page
from clinic.services import record_patient_view
from sessions import monitoring
from sessions import services as session_services
from sessions.forms import DischargeForm
from sessions.selectors import (
    attendee_choices,
    can_log,
    chosen_patient,
    get_session_for,
    unlogged_without_facilitator,
)
from sessions.services import record_session_view

from . import (
    analytics,
    caseload,
    charts,
    cohort_selectors,
    dashboard,
    dosing_day,
    exports,
    fhir_exports,
    flag_inputs,
    reports,
    selectors,
    services,
    supervision,
    trajectories,
)
from .forms import (
    CohortFilterForm,
    ExportForm,
    FlagRuleForm,
    ReportFilterForm,
    ResolveForm,
    SignOffForm,
    SupervisionFilterForm,
    WorklistFilterForm,
)
from .models import FhirExport


@login_required
def flag_detail(request, public_id):
    flag = selectors.flag_for(user=request.user, public_id=public_id)
    record_patient_view(actor=request.user, patient=flag.patient)
    return render(
        request,
        "alliance/flag_detail.html",
        {
            "flag": flag,
            "summary": selectors.flag_summary(flag),
            "form": ResolveForm(),
            "more": selectors.flag_page(flag=flag, user=request.user),
        },
    )


@login_required
@require_POST
def flag_acknowledge(request, public_id):
    flag = selectors.flag_for(user=request.user, public_id=public_id)
    try:
        services.flag_acknowledge(actor=request.user, flag=flag)
    except ValidationError as exc:
        messages.info(request, exc.messages[0])
    else:
        messages.success(request, "Flag acknowledged. Resolve it once you have acted.")
    return redirect("flag_detail", public_id=public_id)


@login_required
@require_http_methods(["POST"])
def flag_resolve(request, public_id):
    flag = selectors.flag_for(user=request.user, public_id=public_id)
    record_patient_view(actor=request.user, patient=flag.patient)
    form = ResolveForm(request.POST)
    if form.is_valid():
        try:
            services.flag_resolve(actor=request.user, flag=flag, note=form.cleaned_data["note"])
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Flag resolved.")
            return redirect("flag_detail", public_id=public_id)
    return render(
        request,
        "alliance/flag_detail.html",
        {
            "flag": flag,
            "summary": selectors.flag_summary(flag),
            "form": form,
            "more": selectors.flag_page(flag=flag, user=request.user),
        },
        status=200,
    )


@login_required
def flag_worklist(request):
    """Every open flag across patients (a coach: their own), safety first."""
    form = WorklistFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    flags = selectors.flag_worklist(
        user=request.user,
        kind=filters.get("kind") or "",
        program_id=filters["program"].pk if filters.get("program") else None,
        coach_id=filters["coach"].pk if filters.get("coach") else None,
    )
    page = Paginator(flags, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "alliance/flag_worklist.html",
        {
            "page": page,
            "rows": [{"flag": flag, "summary": selectors.flag_summary(flag)} for flag in page],
            "form": form,
            "filtered": bool(filters and any(filters.values())),
            "query_string": form.query_string() if form.is_valid() else "",
            "unfacilitated": unlogged_without_facilitator(user=request.user),
        },
    )


@login_required
def patient_flags(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    record_patient_view(actor=request.user, patient=patient)
    series = selectors.trajectories(patient=patient)
    rule = flag_inputs.rule_or_default(patient=patient)
    return render(
        request,
        "alliance/patient_flags.html",
        {
            "patient": patient,
            "step_tables": [
                (
                    label,
                    trajectories.patient_steps(
                        patient=patient, min_n=rule.band_min_patients, measure=measure
                    ),
                )
                for measure, label in trajectories.ExpectedBand.Measure.choices
            ],
            "band_min_patients": rule.band_min_patients,
            "flags": selectors.flag_history(patient=patient),
            "series": series,
            "before_dosing": selectors.latest_before_dosing(patient=patient, series=series),
        },
    )


@login_required
def patient_dashboard(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    record_patient_view(actor=request.user, patient=patient)
    facts = dashboard.dashboard_facts(patient=patient)
    return render(
        request,
        "alliance/patient_dashboard.html",
        {
            "patient": patient,
            "charts": charts.dashboard_charts(facts),
            "open_flags": [flag for flag in facts.flags if flag.is_open],
            "upcoming_dosings": dashboard.upcoming_dosings(facts),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def dosing_ready(request, public_id):
    """Mark a dosing ready: the same readiness as everywhere, and a note to go ahead
    despite any risk."""
    session = get_session_for(request.user, public_id)
    if not access.can_edit_patients(request.user):
        raise PermissionDenied
    if not session.is_dosing or session.enrolment_id is None:
        raise Http404("Not a dosing session.")
    record_patient_view(actor=request.user, patient=session.enrolment.patient)
    answer = caseload.readiness_of(session)
    return form_page(
        request,
        SignOffForm(request.POST or None, has_risks=bool(answer.risks)),
        save=lambda data: services.dosing_sign_off(
            actor=request.user, dosing=session, note=data["note"]
        ),
        success=lambda sign_off: (
            "Dosing confirmed despite the risks listed."
            if sign_off.risks
            else "Dosing marked ready."
        ),
        redirect_to=lambda sign_off: reverse("session_detail", args=[session.public_id]),
        template="alliance/dosing_ready.html",
        context={"session": session, "readiness": answer},
    )


@login_required
@require_http_methods(["GET", "POST"])
def flag_rule_edit(request, program_id=None):
    if not access.can_manage_programs(request.user):
        raise PermissionDenied
    rule = selectors.flag_rule_for_editing(program_id=program_id)
    form = FlagRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        services.flag_rule_update(actor=request.user, rule=rule, **form.cleaned_data)
        messages.success(
            request,
            "Thresholds saved. The flags of the patients they apply to are being recomputed.",
        )
        return redirect(request.path)
    return render(
        request,
        "alliance/flag_rule_form.html",
        {"form": form, "rule": rule, "programs": Program.objects.order_by("name")},
    )


@login_required
@require_http_methods(["GET", "POST"])
def export(request):
    """Clinicians and admins: every score as CSV (streamed) or a FHIR Bundle (built by a
    worker, then downloaded from this page), de-identified unless an admin gives a reason."""
    if not access.can_use_analytics(request.user):
        raise PermissionDenied
    form = ExportForm(request.POST or None, allow_identified=access.is_admin(request.user))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = {
            "actor": request.user,
            "identified": data.get("identified", False),
            "reason": data.get("reason", ""),
        }
        try:
            if data["form"] == "fhir":
                fhir_exports.fhir_export_request(**options)
                messages.info(
                    request, "The FHIR export is being built. It appears below when ready."
                )
                return redirect("export")
            body = exports.export_csv(
                form=data["form"], patients=access.patients_visible_to(request.user), **options
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            response = StreamingHttpResponse(body, content_type="text/csv; charset=utf-8")
            name = f"rapport-scores-{data['form']}-{timezone.localdate():%Y%m%d}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
            return response
    return render(
        request,
        "alliance/export.html",
        {
            "form": form,
            "fhir_exports": selectors.recent_fhir_exports(user=request.user),
            "now": timezone.now(),
        },
    )


@login_required
@require_http_methods(["GET"])
def fhir_export_download(request, export_id):
    """The finished bundle, for the person who asked for it, until the link expires."""
    if not access.can_use_analytics(request.user):
        raise PermissionDenied
    try:
        export, handle = fhir_exports.fhir_export_open(actor=request.user, public_id=export_id)
    except FhirExport.DoesNotExist as exc:
        raise Http404 from exc
    name = f"rapport-fhir-{timezone.localtime(export.finished_at):%Y%m%d-%H%M}.json"
    return FileResponse(
        handle, as_attachment=True, filename=name, content_type="application/fhir+json"
    )


def _cohort(request) -> tuple[CohortFilterForm, analytics.Cohort | None]:
    """The filtered cohort of the patients this user may see; None when a filter makes no
    sense (end before start), which the form then explains."""
    form = CohortFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return form, None
    filters = form.cleaned_data if form.is_bound else {}
    depression = filters.get("depression") or analytics.DEFAULT_DEPRESSION
    measured = cohort_selectors.cohort_measures(
        user=request.user,
        depression=depression,
        program=filters.get("program"),
        modality=filters.get("modality", ""),
        start=filters.get("start"),
        end=filters.get("end"),
    )
    cohort = analytics.cohort(measured.columns, dosings=measured.dosings, depression=depression)
    return form, cohort


@login_required
def cohort_analytics(request):
    if not access.can_use_analytics(request.user):
        raise PermissionDenied
    form, cohort = _cohort(request)
    # No scatter is embedded, not even the chosen cell's: its points grow with the cohort,
    # so the page fetches them from `cohort_scatter` when it draws the plot.
    chosen = cohort.cell(request.GET.get("cell", "")) if cohort else None
    if cohort and chosen is None:
        chosen = cohort.cell(analytics.DEFAULT_CELL)
    return render(
        request,
        "alliance/cohort_analytics.html",
        {
            "form": form,
            "cohort": cohort,
            "chosen": chosen,
            "min_n": analytics.statistics.MIN_N,
            "strength_legend": analytics.STRENGTH_LEGEND,
        },
    )


@login_required
@require_http_methods(["GET"])
def cohort_scatter(request):
    """One cell's scatter plot as JSON, for the same filters and the same patients as the
    page."""
    if not access.can_use_analytics(request.user):
        raise PermissionDenied
    form, cohort = _cohort(request)
    if cohort is None:
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    cell = cohort.cell(request.GET.get("cell", ""))
    if cell is None:
        raise Http404("No such cell.")
    return JsonResponse(analytics.scatter(cell))


@login_required
def program_report(request):
    """Clinicians and admins: a program's outcomes as a printable page, CSV or PDF."""
    if not access.can_use_analytics(request.user):
        raise PermissionDenied
    form = ReportFilterForm(request.GET or None)
    report = None
    if not form.is_bound or form.is_valid():
        filters = form.cleaned_data if form.is_bound else {}
        report = reports.program_report(
            user=request.user,
            program=filters.get("program"),
            modality=filters.get("modality", ""),
            start=filters.get("start"),
            end=filters.get("end"),
        )
        wanted = request.GET.get("download", "")
        name = f"rapport-program-report-{timezone.localdate():%Y%m%d}"
        if wanted == "csv":
            response = HttpResponse(reports.report_csv(report), content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
            return response
        if wanted == "pdf":
            from .report_pdf import report_pdf

            response = HttpResponse(report_pdf(report), content_type="application/pdf")
            response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
            return response
    query = request.GET.copy()
    query.pop("download", None)
    return render(
        request,
        "alliance/program_report.html",
        {
            "form": form,
            "report": report,
            "charts": charts.report_charts(report) if report else [],
            "query": query.urlencode(),
            "min_n": reports.MIN_N,
        },
    )


@login_required
def supervision_page(request):
    """Alliance and outcomes by coach. Clinicians and admins see every coach; a coach sees
    their own numbers only; anyone else is refused."""
    if access.role_of(request.user) is None:
        raise PermissionDenied
    sees_all = access.sees_all_patients(request.user)
    form = SupervisionFilterForm(request.GET or None) if sees_all else None
    filters = form.cleaned_data if form is not None and form.is_valid() else {}
    page = supervision.supervision_for(
        user=request.user, program=filters.get("program"), coach=filters.get("coach")
    )
    return render(
        request,
        "alliance/supervision.html",
        {
            "form": form,
            "page": page,
            "funnel": charts.funnel_chart(page),
            "sees_all": sees_all,
        },
    )


def _dosing_for_room(request, public_id):
    """A dosing the user may record in the room (coaches: ones they facilitate)."""
    session = get_session_for(request.user, public_id)
    if not session.is_dosing or not can_log(request.user, session):
        raise Http404("Not a dosing session of yours.")
    record_session_view(actor=request.user, session=session)
    return session


@login_required
@require_http_methods(["GET", "POST"])
def session_discharge(request, public_id):
    """May the patient leave? The check as it stands now, and the decision (a clinician may
    override an unmet check with a note)."""
    session = _dosing_for_room(request, public_id)
    patients = attendee_choices(session)
    form = DischargeForm(request.POST or None, patients=patients)
    patient = chosen_patient(session, request.POST or {}) or (
        session.enrolment.patient if session.enrolment else None
    )
    sedation = (
        dosing_day.last_sedation(session=session, patient_id=patient.pk) if patient else (False, "")
    )
    check = (
        monitoring.discharge_problems(
            session_services.discharge_facts(
                session=session,
                patient=patient,
                sedation_resolved=sedation[0],
                escort="shown as its own field",
                last_sedation=sedation[1],
            )
        )
        if patient
        else []
    )
    return form_page(
        request,
        form,
        save=lambda data: session_services.discharge_record(
            actor=request.user,
            session=session,
            patient=patient,
            escort=data["escort"],
            sedation_resolved=sedation[0],
            last_sedation=sedation[1],
            override_note=data["override_note"],
        ),
        success=lambda discharge: (
            "Discharged despite the check; your note is kept."
            if discharge.is_override
            else "Discharge recorded. The dosing can now be logged completed."
        ),
        redirect_to=lambda discharge: reverse("session_detail", args=[session.public_id]),
        template="alliance/discharge.html",
        context={
            "session": session,
            "check": check,
            "sedation": sedation[1],
            "discharged": list(session.discharges.select_related("decided_by", "patient")),
        },
    )


@login_required
def session_monitoring_summary(request, public_id):
    """The monitoring record of one dosing, laid out to print for the clinic's files."""
    session = get_session_for(request.user, public_id)
    if not session.is_dosing:
        raise Http404("Not a dosing session.")
    record_session_view(actor=request.user, session=session)
    return render(
        request,
        "alliance/monitoring_summary.html",
        {
            "session": session,
            "day": dosing_day.dosing_day(session=session),
            "printed": timezone.now(),
        },
    )
