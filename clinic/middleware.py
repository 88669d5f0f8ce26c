from django.conf import settings
from django.db.models import prefetch_related_objects
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from .access import role_of
from .roles import Role

# Pages a signed-in clinician or admin may reach before passing the second factor.
_OPEN_PREFIXES = ("/account/two-factor/", "/accounts/logout/", "/static/", "/healthz")


class UserGroupsOnceMiddleware:
    """Reads the signed-in user's groups once a request. The navigation, the context
    processors and the view each ask for the role (`User.role`), which uses prefetched groups
    when present: one query a page instead of one per question (seven on the caseload).
    Changing the user's groups (`groups.set`, `add`, `remove`) drops the prefetched copy."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            prefetch_related_objects([user], "groups")
        return self.get_response(request)


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


class NoStoreForSignedInMiddleware:
    """Nothing a signed-in user is shown (patient pages, exports) is kept by the browser or a
    proxy cache: Cache-Control: no-store. Static files never get here (WhiteNoise answers
    them earlier in the chain), so they stay cacheable."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            add_never_cache_headers(response)
        return response
