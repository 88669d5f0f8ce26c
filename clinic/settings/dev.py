"""Local development and `make demo`: debug on, second factor off, e-mail to the console."""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("REQUIRE_2FA", "false")
# A fixed key is fine here: this module is never used in production.
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "dev-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

from .base import *  # noqa: E402,F403
from .base import STORAGES, env_bool  # noqa: E402

# `make demo` collects the static files first and serves them like production: hashed names,
# gzip, far-future caching. Plain `runserver` keeps serving the source folders, edits included.
if env_bool("DEMO_SERVE_COLLECTED_STATIC", False):
    STORAGES = {
        **STORAGES,
        "staticfiles": {"BACKEND": "clinic.staticstorage.HashedStaticFilesStorage"},
    }
    WHITENOISE_USE_FINDERS = False
    WHITENOISE_AUTOREFRESH = False
