"""The flag engine listens to the apps below it (connected in AllianceConfig.ready)."""

from django.dispatch import receiver

from outcomes.signals import responses_saved
from sessions.signals import adverse_event_saved, schedule_changed

from . import services


@receiver(responses_saved, dispatch_uid="alliance.responses_saved")
def on_responses_saved(sender, *, responses, **kwargs):
    services.responses_saved(responses=responses)


@receiver(schedule_changed, dispatch_uid="alliance.schedule_changed")
def on_schedule_changed(sender, *, patient_ids, **kwargs):
    services.mark_stale(patient_ids=patient_ids)
    # The caseload's order follows the new next dosing at once, not at the next recompute.
    services.caseload_order_refresh(patient_ids=patient_ids)


@receiver(adverse_event_saved, dispatch_uid="alliance.adverse_event_saved")
def on_adverse_event_saved(sender, *, patient_ids, **kwargs):
    services.adverse_event_saved(patient_ids=patient_ids)
