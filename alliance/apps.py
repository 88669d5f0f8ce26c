from django.apps import AppConfig


class AllianceConfig(AppConfig):
    name = "alliance"
    verbose_name = "Alliance and flags"

    def ready(self):
        from . import receivers  # noqa: F401  (connects the signal receivers)
