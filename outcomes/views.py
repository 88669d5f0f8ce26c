import datetime
import functools

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from clinic import access
from clinic.forms import apply_service_errors
from clinic.pages import qr_data_uri
from clinic.services import record_patient_view
from sessions.selectors import get_session_for
from sessions.services import record_session_view

from . import kiosk, links, selectors, services
from .forms import (
    CorrectionForm,
    ItemsForm,
    KioskStartForm,
    KioskUnlockForm,
    LinkForm,
    ResponseForm,
)
from .models import Instrument, Kiosk, KioskEnd, Respondent, SelfReportLink


def _session_of(request):
    """The ?session= the entry belongs to, if any: one the user may see."""
    if not request.GET.get("session"):
        return None
    return get_session_for(request.user, request.GET["session"])


@login_required
@require_http_methods(["GET", "POST"])
def response_new(request, public_id, code):
    patient = access.get_patient_for(request.user, public_id)
    try:
        version = services.latest_version(code)
    except ValidationError as exc:
        raise Http404("No such questionnaire.") from exc
    session = _session_of(request)
    record_patient_view(actor=request.user, patient=patient)
    answered_at = timezone.localtime()
    if session is not None and session.scheduled_end < timezone.now():
        answered_at = timezone.localtime(session.scheduled_end)
    form = ResponseForm(
        request.POST or None,
        definition=version.definition,
        wording=selectors.wording_for(version),
        coaches=selectors.coaches_of(patient) if code in selectors.RATES_A_COACH else None,
        initial={"administered_at": answered_at},
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
    record_patient_view(actor=request.user, patient=response.patient)
    return render(
        request,
        "outcomes/response_detail.html",
        {
            "response": response,
            "scores": selectors.score_rows(response),
            "findings": selectors.findings(response),
            "answers": selectors.answer_rows(response, selectors.wording_for(response.version)),
            "corrections": response.history.select_related("history_user").order_by(
                "-history_date"
            ),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def response_correct(request, public_id):
    response = selectors.get_response_for(request.user, public_id)
    record_patient_view(actor=request.user, patient=response.patient)
    initial = {f"item_{k}": v for k, v in response.answers.items() if v is not None}
    # Radio values are the scale's own spelling ("4", not "4.0").
    initial = {k: (int(v) if float(v).is_integer() else v) for k, v in initial.items()}
    initial["administered_at"] = timezone.localtime(response.administered_at)
    form = CorrectionForm(
        request.POST or None,
        initial=initial,
        definition=response.version.definition,
        wording=selectors.wording_for(response.version),
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.response_edit(
                actor=request.user,
                response=response,
                answers=form.answers(),
                reason=form.cleaned_data["reason"],
                administered_at=form.cleaned_data["administered_at"],
                allow_incomplete=not response.complete,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, "Correction saved; the previous answers are kept.")
            return redirect("response_detail", public_id=public_id)
    return render(
        request,
        "outcomes/response_form.html",
        {
            "form": form,
            "patient": response.patient,
            "version": response.version,
            "session": response.session,
            "correcting": response,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def link_new(request, public_id):
    patient = access.get_patient_for(request.user, public_id)
    session = _session_of(request)
    record_patient_view(actor=request.user, patient=patient)
    choices = [
        (i.code, i.name)
        for i in Instrument.objects.filter(respondent=Respondent.PATIENT).order_by("code")
    ]
    patient_rated = {code for code, _ in choices}
    initial = {}
    if session is not None:
        due = selectors.unanswered_codes(session, patient=patient)
        initial["instruments"] = [code for code in due if code in patient_rated]
    form = LinkForm(request.POST or None, choices=choices, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            link, token = links.link_create(
                actor=request.user,
                patient=patient,
                instruments=form.cleaned_data["instruments"],
                session=session,
                hours=form.cleaned_data["hours"],
                reminders=links.MAX_REMINDERS if form.cleaned_data["reminders"] else 0,
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            # The token exists only now: it is shown on this response and never again.
            page = render(
                request,
                "outcomes/link_created.html",
                {
                    "patient": patient,
                    "link": link,
                    "url": links.url_for(token),
                    "qr": qr_data_uri(links.url_for(token)),
                },
            )
            page["Cache-Control"] = "no-store"
            return page
    return render(
        request,
        "outcomes/link_form.html",
        {"form": form, "patient": patient, "session": session},
    )


NOT_VALID = "This link is not valid. Check that you copied the whole link from the e-mail."
TOO_MANY = "Too many attempts with links that do not work. Please try again later."


def _unusable(request, reason: str, status: int):
    return render(request, "outcomes/link_unusable.html", {"reason": reason}, status=status)


def _item_forms(request, codes: list[str]) -> list[tuple[str, ItemsForm]]:
    forms = []
    for code in codes:
        version = services.latest_version(code)
        forms.append(
            (
                code,
                ItemsForm(
                    request.POST or None,
                    prefix=code,
                    definition=version.definition,
                    wording=selectors.wording_for(version),
                    stacked=True,
                ),
            )
        )
    return forms


def _apply_link_errors(item_forms, error: ValidationError) -> None:
    """Errors keyed "<code>-item_N" go beside the item, "<code>" above that questionnaire."""
    longest_first = sorted(item_forms, key=lambda pair: -len(pair[0]))
    for key, messages_ in error.message_dict.items():
        for code, form in longest_first:
            if key == code or key.startswith(f"{code}-"):
                field = key[len(code) + 1 :]
                form.add_error(field if field in form.fields else None, messages_)
                break
        else:
            item_forms[0][1].add_error(None, messages_)


NOT_OPEN = (
    "This page has closed. Please open the link from your e-mail again to answer the "
    "questionnaires."
)
# The server-side session entry a link's token is exchanged for, and how long it lasts.
LINK_SESSION_KEY = "self_report_link"
LINK_SESSION_LIFETIME = datetime.timedelta(hours=2)


def _patient_page(referrer_policy: str):
    """Patient pages: never cached, with their own Referrer-Policy."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            response["Referrer-Policy"] = referrer_policy
            return response

        return never_cache(wrapped)

    return decorate


# The URL holds the token: nothing that follows it (the redirect, an error page's static
# files) may send it on as a Referer.
@_patient_page("no-referrer")
@require_GET
def link_open(request, token):
    """The e-mailed link: trade the token for a session entry and move to a URL without it,
    so the token is not repeated in request lines, Referers or the browser's history."""
    client = links.client_id(request.META, token=token)
    if links.too_many_guesses(client):
        return _unusable(request, TOO_MANY, 429)
    try:
        link = links.link_for_token(token, client=client)
    except SelfReportLink.DoesNotExist:
        return _unusable(request, NOT_VALID, 404)
    except links.LinkUnusable as exc:
        return _unusable(request, exc.reason, 410)
    request.session.cycle_key()
    until = timezone.now() + LINK_SESSION_LIFETIME
    request.session[LINK_SESSION_KEY] = {"link": link.pk, "until": until.isoformat()}
    return redirect("link_answer")


def _opened_link_id(request) -> int | None:
    entry = request.session.get(LINK_SESSION_KEY)
    if not isinstance(entry, dict):
        return None
    until = datetime.datetime.fromisoformat(entry.get("until", "1970-01-01T00:00:00+00:00"))
    if until <= timezone.now():
        request.session.pop(LINK_SESSION_KEY, None)
        return None
    return entry.get("link")


# No token in this URL. Not "no-referrer": browsers then send "Origin: null" with the form's
# POST and the CSRF check refuses it. "same-origin" sends /q/answer/ to this site only.
@_patient_page("same-origin")
@require_http_methods(["GET", "POST"])
def link_answer(request):
    """The patient's page: no account, nothing identifying beyond the first name."""
    link_id = _opened_link_id(request)
    if link_id is None:
        return _unusable(request, NOT_OPEN, 410)
    try:
        link = links.link_by_id(link_id, submitting=request.method == "POST")
    except SelfReportLink.DoesNotExist:
        return _unusable(request, NOT_OPEN, 410)
    except links.LinkUnusable as exc:
        return _unusable(request, exc.reason, 410)
    item_forms = _item_forms(request, links.outstanding(link))
    if request.method == "POST" and all([form.is_valid() for _, form in item_forms]):
        try:
            links.link_submit(
                link=link, answers={code: form.answers() for code, form in item_forms}
            )
        except ValidationError as exc:
            _apply_link_errors(item_forms, exc)
        except links.LinkUnusable as exc:
            return _unusable(request, exc.reason, 410)
        else:
            return render(
                request, "outcomes/link_thanks.html", {"first_name": link.patient.first_name}
            )
    return render(
        request,
        "outcomes/link_answer.html",
        {
            "first_name": link.patient.first_name,
            "forms": item_forms,
            "has_errors": any(form.errors for _, form in item_forms),
        },
    )


# --- kiosk mode ---------------------------------------------------------------------------
# The server-side session entry of a tablet in kiosk mode: the kiosk's signed token, and
# nothing of the coach's (their sign-in on this browser ends when the kiosk starts).
KIOSK_SESSION_KEY = "kiosk"


@login_required
@require_http_methods(["GET", "POST"])
def kiosk_start(request, public_id):
    session = get_session_for(request.user, public_id)
    if not kiosk.may_start(request.user, session=session):
        raise PermissionDenied
    record_session_view(actor=request.user, session=session)
    due = {
        row["patient"].public_id: (row["patient"], codes)
        for row in selectors.due_for_session(session, user=request.user)
        if (codes := selectors.due_in_room(session=session, patient=row["patient"]))
    }
    choices = [
        (str(public), f"{patient.full_name}: {', '.join(code.upper() for code in codes)}")
        for public, (patient, codes) in due.items()
    ]
    form = KioskStartForm(request.POST or None, choices=choices)
    if request.GET.get("patient") in dict(choices):
        form.fields["patient"].initial = request.GET["patient"]
    if request.method == "POST" and form.is_valid():
        patient = access.get_patient_for(request.user, form.cleaned_data["patient"])
        try:
            started, code = kiosk.kiosk_start(actor=request.user, session=session, patient=patient)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            # The coach's sign-in ends on this browser: the patient holds it next.
            logout(request)
            request.session[KIOSK_SESSION_KEY] = kiosk.token_for(started)
            page = render(
                request,
                "outcomes/kiosk_handover.html",
                {
                    "first_name": patient.first_name,
                    "code": code,
                    "count": len(started.instruments),
                    "idle_minutes": int(kiosk.IDLE.total_seconds() // 60),
                },
            )
            page["Cache-Control"] = "no-store"
            return page
    return render(
        request,
        "outcomes/kiosk_start.html",
        {"form": form, "session": session, "has_choices": bool(choices)},
    )


def _running_kiosk(request) -> Kiosk | None:
    token = request.session.get(KIOSK_SESSION_KEY)
    if not isinstance(token, str):
        return None
    try:
        return kiosk.kiosk_for_token(token)
    except Kiosk.DoesNotExist:
        return None


@_patient_page("same-origin")
@require_http_methods(["GET", "POST"])
def kiosk_answer(request):
    """The patient's page on the tablet: only the questionnaires due at the session."""
    running = _running_kiosk(request)
    if running is None or request.user.is_authenticated:
        return redirect("kiosk_locked")
    try:
        running, codes = kiosk.kiosk_open(kiosk=running)
    except kiosk.KioskClosed:
        return redirect("kiosk_locked")
    if not codes:  # the clinic entered everything meanwhile
        kiosk.kiosk_hand_back(kiosk=running)
        return redirect("kiosk_locked")
    item_forms = _item_forms(request, codes)
    if request.method == "POST" and all([form.is_valid() for _, form in item_forms]):
        try:
            kiosk.kiosk_submit(
                kiosk=running, answers={code: form.answers() for code, form in item_forms}
            )
        except ValidationError as exc:
            _apply_link_errors(item_forms, exc)
        except kiosk.KioskClosed:
            return redirect("kiosk_locked")
        else:
            return redirect("kiosk_locked")
    return render(
        request,
        "outcomes/kiosk_answer.html",
        {
            "first_name": running.patient.first_name,
            "forms": item_forms,
            "has_errors": any(form.errors for _, form in item_forms),
            # The tablet's own timer (static/js/kiosk.js): one second past the idle limit,
            # so the locked page it opens finds the kiosk idle.
            "idle_seconds": int(kiosk.IDLE.total_seconds()) + 1,
        },
    )


@_patient_page("same-origin")
@require_http_methods(["POST"])
def kiosk_hand_back(request):
    running = _running_kiosk(request)
    if running is not None and not request.user.is_authenticated:
        kiosk.kiosk_hand_back(kiosk=running)
    return redirect("kiosk_locked")


@_patient_page("same-origin")
@require_http_methods(["GET", "POST"])
def kiosk_locked(request):
    """The locked tablet. The coach's sign-in (the normal page, coming back here) or their
    short code ends kiosk mode and returns them to the session."""
    running = _running_kiosk(request)
    if request.user.is_authenticated:
        if running is not None:
            kiosk.kiosk_unlock_by_sign_in(kiosk=running, actor=request.user)
            request.session.pop(KIOSK_SESSION_KEY, None)
            if kiosk.may_start(request.user, session=running.session):
                return redirect("session_detail", public_id=running.session.public_id)
        return redirect("home")
    if running is not None and not kiosk.kiosk_lock_if_idle(kiosk=running):
        return redirect("kiosk_answer")  # still the patient's turn
    form = KioskUnlockForm(request.POST or None) if running is not None else None
    if form is not None and request.method == "POST" and form.is_valid():
        try:
            coach = kiosk.kiosk_unlock_with_code(kiosk=running, code=form.cleaned_data["code"])
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            if coach is None:
                form.add_error("code", kiosk.WRONG_CODE)
            else:
                request.session.pop(KIOSK_SESSION_KEY, None)
                login(request, coach, backend="django.contrib.auth.backends.ModelBackend")
                return redirect("session_detail", public_id=running.session.public_id)
    return render(
        request,
        "outcomes/kiosk_locked.html",
        {
            "form": form,
            "answered": running is not None and running.end_reason == KioskEnd.SUBMITTED,
        },
    )
