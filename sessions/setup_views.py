"""Rooms, for admins, inside the app (the Django admin is the superuser's). Protocols are
edited in the outcomes app, since their steps name the instruments due."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from clinic import access
from clinic.pages import form_page

from . import selectors, services
from .forms import RoomForm
from .models import Room


def _require_admin(user) -> None:
    """Coaches and clinicians get 403, like the other admin pages."""
    if not access.can_manage_programs(user):
        raise PermissionDenied


def _crumbs() -> list[tuple[str, str]]:
    return [(reverse("program_list"), "Programs"), (reverse("room_list"), "Rooms")]


@login_required
def room_list(request):
    _require_admin(request.user)
    return render(request, "sessions/room_list.html", {"rooms": selectors.rooms()})


@login_required
@require_http_methods(["GET", "POST"])
def room_create(request):
    _require_admin(request.user)
    return form_page(
        request,
        RoomForm(request.POST or None, submit_label="Add room"),
        save=lambda data: services.room_save(actor=request.user, **data),
        success=lambda room: f"Room {room.name} is added.",
        redirect_to=lambda _: reverse("room_list"),
        template="sessions/setup_form.html",
        context={"title": "New room", "crumbs": _crumbs()},
    )


@login_required
@require_http_methods(["GET", "POST"])
def room_edit(request, room_id):
    _require_admin(request.user)
    room = get_object_or_404(Room, pk=room_id)
    initial = {"name": room.name, "is_active": room.is_active}
    return form_page(
        request,
        RoomForm(request.POST or None, initial=initial),
        save=lambda data: services.room_save(actor=request.user, room=room, **data),
        success=lambda room: f"Room {room.name} is saved.",
        redirect_to=lambda _: reverse("room_list"),
        template="sessions/setup_form.html",
        context={"title": room.name, "crumbs": _crumbs()},
    )
