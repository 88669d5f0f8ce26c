"""Local development and `make demo`: debug on, second factor off, e-mail to the console."""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("REQUIRE_2FA", "false")
# A fixed key is fine here: this module is never used in production.
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "dev-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

from .base import *  # noqa: E402,F403
