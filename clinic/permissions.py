from django.contrib.auth.models import Group, Permission

from .roles import Role

# Apps whose records admins manage in the Django admin.
ADMIN_APPS = ["clinic", "clinic_sessions", "outcomes", "alliance", "django_celery_beat", "axes"]


def grant_admin_permissions(**kwargs) -> None:
    """After every migrate: the admin role holds the model permissions for the clinic's models.

    The Django admin lets in superusers only (clinic/admin_site.py), so these matter only for
    an admin who is also a superuser. What the admin pages then allow (no deleting clinical
    records, a read-only audit log) is decided by the ModelAdmin classes, not here.
    """
    group = Group.objects.filter(name=Role.ADMIN).first()
    if group is None:
        return
    permissions = Permission.objects.filter(content_type__app_label__in=ADMIN_APPS)
    auth_user = Permission.objects.filter(
        content_type__app_label="clinic", content_type__model="user"
    )
    group.permissions.add(*permissions, *auth_user)
