from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # `sessions` would clash with django.contrib.sessions.
    label = "clinic_sessions"
    verbose_name = "Sessions and scheduling"

    def ready(self):
        from . import receivers  # noqa: F401  (connects the signal receivers)
