"""Production: secrets come from the environment with no default; HTTPS only (see base)."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DEBUG

if DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off with production settings.")
