from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ClinicConfig(AppConfig):
    name = "clinic"
    verbose_name = "Clinic: people and programs"

    def ready(self):
        from .permissions import grant_admin_permissions

        post_migrate.connect(grant_admin_permissions, dispatch_uid="clinic.grant_admin_permissions")
