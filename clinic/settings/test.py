"""The test suite: real PostgreSQL, fast password hashing, e-mail kept in memory."""

import os

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("REQUIRE_2FA", "false")
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "test-only-not-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

from .base import *  # noqa: E402,F403
from .base import PASSWORD_HASHERS  # noqa: E402

# Argon2 stays configured (a test checks it); MD5 first only to keep the suite fast.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
# The test client and the live test server speak plain HTTP.
SECURE_SSL_REDIRECT = False
# Serve static files from the source folders (the live server for browser tests needs them).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
