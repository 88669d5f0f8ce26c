"""Admin pages inside the app: staff accounts and programs, through the same services (and
audit) as everything else. The Django admin is left to superusers."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetConfirmView
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST

from . import access, selectors, services
from .forms import InviteForm, ProgramForm, StaffForm
from .models import User
from .pages import form_page
from .views import _require


@login_required
def staff_list(request):
    _require(access.is_admin, request.user)
    return render(request, "clinic/staff_list.html", {"staff": selectors.staff_for_admin()})


@login_required
@require_http_methods(["GET", "POST"])
def staff_invite(request):
    _require(access.is_admin, request.user)
    return form_page(
        request,
        InviteForm(request.POST or None),
        save=lambda data: services.user_invite(actor=request.user, **data),
        success=lambda user: (
            f"{user.display_name} is invited: an e-mail with a link to choose a password is "
            f"on its way to {user.email}."
        ),
        redirect_to=lambda _: reverse("staff_list"),
        template="clinic/staff_form.html",
        context={"title": "Invite a member of staff"},
    )


def _staff(request, user_id) -> User:
    _require(access.is_admin, request.user)
    return get_object_or_404(User, pk=user_id, is_superuser=False)


@login_required
@require_http_methods(["GET", "POST"])
def staff_edit(request, user_id):
    member = _staff(request, user_id)

    def save(data):
        role = data.pop("role")
        services.user_update(actor=request.user, user=member, **data)
        return services.user_change_role(actor=request.user, user=member, role=role)

    initial = {"display_name": member.display_name, "email": member.email}
    initial["role"] = member.role.value if member.role else ""
    return form_page(
        request,
        StaffForm(request.POST or None, initial=initial),
        save=save,
        success=lambda user: f"{user.display_name}'s account is saved.",
        redirect_to=lambda _: reverse("staff_list"),
        template="clinic/staff_form.html",
        context={"title": f"{member.display_name}", "member": member},
    )


@login_required
@require_POST
def staff_active(request, user_id):
    """Deactivate (nobody is deleted: their records keep their name) or reactivate."""
    member = _staff(request, user_id)
    active = request.POST.get("active") == "yes"
    try:
        services.user_update(actor=request.user, user=member, is_active=active)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        state = "active again" if active else "deactivated: they can no longer sign in"
        messages.success(request, f"{member.display_name} is {state}.")
    return redirect("staff_edit", member.pk)


@login_required
@require_POST
def staff_reset_second_factor(request, user_id):
    member = _staff(request, user_id)
    removed = services.user_reset_second_factor(actor=request.user, user=member)
    messages.success(
        request,
        f"{member.display_name}'s authenticator is reset ({removed} removed): they set up a "
        "new one at their next sign-in.",
    )
    return redirect("staff_edit", member.pk)


@login_required
@require_http_methods(["GET", "POST"])
def program_create(request):
    _require(access.can_manage_programs, request.user)

    def save(data):
        return services.program_save(actor=request.user, program=form.save(commit=False))

    form = ProgramForm(request.POST or None)
    return form_page(
        request,
        form,
        save=save,
        success=lambda program: f"Program {program.name} is created.",
        redirect_to=lambda program: reverse("program_sessions", args=[program.pk]),
        template="clinic/staff_form.html",
        context={"title": "New program"},
    )


class SetPasswordView(PasswordResetConfirmView):
    """An invited member of staff chooses a password. The link works once: setting the
    password changes what its token was made from. A used, expired or unknown link is a 404."""

    template_name = "registration/password_set.html"
    success_url = reverse_lazy("login")

    def dispatch(self, *args, **kwargs):
        response = super().dispatch(*args, **kwargs)
        if not self.validlink and response.status_code == 200:
            response.status_code = 404
        return response

    def form_valid(self, form):
        messages.success(self.request, "Your password is set. Sign in with your e-mail address.")
        return super().form_valid(form)
