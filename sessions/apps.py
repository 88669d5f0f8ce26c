from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # `sessions` would clash with django.contrib.sessions.
    label = "clinic_sessions"
    verbose_name = "Sessions and scheduling"
