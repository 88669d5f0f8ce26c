from django.db import models


class Role(models.TextChoices):
    """Staff roles. Each is a Group of the same name, created by a data migration."""

    COACH = "coach", "Coach"
    CLINICIAN = "clinician", "Clinician"
    ADMIN = "admin", "Admin"
