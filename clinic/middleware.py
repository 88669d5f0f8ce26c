from django.conf import settings
from django.shortcuts import redirect
from django.urls import reverse

from .access import role_of
from .roles import Role

# Pages a signed-in clinician or admin may reach before passing the second factor.
_OPEN_PREFIXES = ("/account/two-factor/", "/accounts/logout/", "/static/", "/healthz")


class SecondFactorMiddleware:
    """With REQUIRE_2FA on, clinicians and admins must pass a TOTP check after the password."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            settings.REQUIRE_2FA
            and not request.path.startswith(_OPEN_PREFIXES)
            and self._needs_second_factor(request)
        ):
            has_device = request.user.totpdevice_set.filter(confirmed=True).exists()
            name = "two_factor_verify" if has_device else "two_factor_setup"
            return redirect(f"{reverse(name)}?next={request.get_full_path()}")
        return self.get_response(request)

    @staticmethod
    def _needs_second_factor(request) -> bool:
        user = request.user
        if not user.is_authenticated or user.is_verified():
            return False
        return role_of(user) in (Role.CLINICIAN, Role.ADMIN)
