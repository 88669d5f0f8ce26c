"""Sign-in: one spelling of a username, used by the login form and by django-axes alike.

Login matches e-mail addresses case-insensitively, so the lockout must count `COACH@…`,
`coach@CLINIC…` and ` coach@…` as the same account, or each spelling gets its own five guesses.
"""

import unicodedata

from django.conf import settings

# The longest e-mail address an account can have (User.email is an EmailField).
MAX_USERNAME_LENGTH = 254


def normalise_username(raw: str | None) -> str:
    """The one spelling of what was typed: Unicode-normalised, trimmed, lower-case."""
    return unicodedata.normalize("NFKC", raw or "").strip().lower()


def axes_username(request, credentials: dict | None = None) -> str | None:
    """AXES_USERNAME_CALLABLE: the username axes records and locks, in the login's spelling."""
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials:
        raw = credentials.get(field)
    else:
        raw = getattr(request, "data", request.POST).get(field)
    if raw is None:
        return None
    # axes stores it in a 255-character column; nothing longer is an account anyway.
    return normalise_username(raw)[:MAX_USERNAME_LENGTH]
