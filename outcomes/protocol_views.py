"""Protocols, for admins, inside the app: a protocol's settings and its steps, with the
questionnaires due after each step. Here rather than in `sessions` because a step names
instruments, which this app owns (the measurement plan). Writes go through
`sessions.services` (validated, audited)."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from clinic import access
from clinic.pages import form_page
from sessions import selectors as session_selectors
from sessions import services as session_services
from sessions.models import Protocol, ProtocolStep

from . import selectors
from .forms import ProtocolForm, ProtocolStepForm


def _require_admin(user) -> None:
    """Coaches and clinicians get 403, like the other admin pages."""
    if not access.can_manage_programs(user):
        raise PermissionDenied


def _crumbs(protocol: Protocol | None = None) -> list[tuple[str, str]]:
    crumbs = [(reverse("program_list"), "Programs"), (reverse("protocol_list"), "Protocols")]
    if protocol is not None:
        crumbs.append((reverse("protocol_edit", args=[protocol.pk]), protocol.name))
    return crumbs


@login_required
def protocol_list(request):
    _require_admin(request.user)
    return render(
        request, "outcomes/protocol_list.html", {"protocols": session_selectors.protocols()}
    )


@login_required
@require_http_methods(["GET", "POST"])
def protocol_create(request):
    _require_admin(request.user)
    return form_page(
        request,
        ProtocolForm(request.POST or None, submit_label="Create protocol"),
        save=lambda data: session_services.protocol_save(actor=request.user, **data),
        success=lambda protocol: f"Protocol {protocol.name} is created: now add its steps.",
        redirect_to=lambda protocol: reverse("protocol_edit", args=[protocol.pk]),
        template="sessions/setup_form.html",
        context={"title": "New protocol", "crumbs": _crumbs()},
    )


@login_required
@require_http_methods(["GET", "POST"])
def protocol_edit(request, protocol_id):
    """The protocol's settings (a form) and its steps (a table, each step edited on its own)."""
    _require_admin(request.user)
    protocol = get_object_or_404(Protocol, pk=protocol_id)
    initial = {name: getattr(protocol, name) for name in session_services.PROTOCOL_FIELDS}
    return form_page(
        request,
        ProtocolForm(request.POST or None, initial=initial),
        save=lambda data: session_services.protocol_save(
            actor=request.user, protocol=protocol, **data
        ),
        success=lambda protocol: f"Protocol {protocol.name} is saved.",
        redirect_to=lambda protocol: reverse("protocol_edit", args=[protocol.pk]),
        template="outcomes/protocol_edit.html",
        context={
            "title": protocol.name,
            "protocol": protocol,
            "steps": protocol.steps.order_by("order"),
            "crumbs": _crumbs(),
        },
    )


def _step_form(request, *, protocol, step=None):
    initial = (
        {name: getattr(step, name) for name in session_services.STEP_FIELDS}
        if step is not None
        else {
            "order": (
                protocol.steps.order_by("-order").values_list("order", flat=True).first() or 0
            )
            + 1
        }
    )
    return ProtocolStepForm(
        request.POST or None,
        initial=initial,
        instruments=selectors.plannable_instruments(),
        kept_order=step.instruments_due if step is not None else (),
        submit_label="Save step" if step is not None else "Add step",
    )


@login_required
@require_http_methods(["GET", "POST"])
def protocol_step_create(request, protocol_id):
    _require_admin(request.user)
    protocol = get_object_or_404(Protocol, pk=protocol_id)
    return form_page(
        request,
        _step_form(request, protocol=protocol),
        save=lambda data: session_services.protocol_step_save(
            actor=request.user, protocol=protocol, **data
        ),
        success=lambda step: f"Step {step.order} ({step.label}) is added.",
        redirect_to=lambda _: reverse("protocol_edit", args=[protocol.pk]),
        template="sessions/setup_form.html",
        context={"title": "New step", "crumbs": _crumbs(protocol), "intro": STEP_INTRO},
    )


@login_required
@require_http_methods(["GET", "POST"])
def protocol_step_edit(request, protocol_id, step_id):
    _require_admin(request.user)
    protocol = get_object_or_404(Protocol, pk=protocol_id)
    step = get_object_or_404(ProtocolStep, pk=step_id, protocol=protocol)
    return form_page(
        request,
        _step_form(request, protocol=protocol, step=step),
        save=lambda data: session_services.protocol_step_save(
            actor=request.user, protocol=protocol, step=step, **data
        ),
        success=lambda step: f"Step {step.order} ({step.label}) is saved.",
        redirect_to=lambda _: reverse("protocol_edit", args=[protocol.pk]),
        template="sessions/setup_form.html",
        context={
            "title": f"Step {step.order}: {step.label}",
            "crumbs": _crumbs(protocol),
            "intro": STEP_INTRO,
        },
    )


STEP_INTRO = (
    "Patients enrolled from now on get this step in their schedule. Schedules already made keep "
    "their dates; the questionnaires due after a step apply to its sessions at once."
)
