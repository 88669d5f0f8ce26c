"""The Django admin, for superusers only.

Admins do their work on the app's own pages (staff, programs, rooms, protocols, thresholds),
which go through the services and the audit log. The raw admin shows tables (Axes, Celery beat,
OTP devices) that only someone running the installation should touch.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class SuperuserAdminSite(admin.AdminSite):
    site_header = "Rapport: superuser administration"

    def has_permission(self, request):
        return request.user.is_active and request.user.is_superuser


class SuperuserAdminConfig(AdminConfig):
    default_site = "clinic.admin_site.SuperuserAdminSite"
