"""The sessions app listens to the clinic app below it (connected in SessionsConfig.ready)."""

from django.dispatch import receiver

from clinic import signals

from . import services


@receiver(signals.enrolment_created, dispatch_uid="sessions.enrolment_created")
def on_enrolment_created(sender, *, enrolment, actor, **kwargs):
    services.schedule_for_enrolment(actor=actor, enrolment=enrolment)


@receiver(signals.assignment_started, dispatch_uid="sessions.assignment_started")
def on_assignment_started(sender, *, assignment, **kwargs):
    return services.facilitators_for_assignment(assignment=assignment)


@receiver(signals.assignment_ended, dispatch_uid="sessions.assignment_ended")
def on_assignment_ended(sender, *, assignment, **kwargs):
    services.facilitators_end_assignment(assignment=assignment)


@receiver(signals.patient_withdrawn, dispatch_uid="sessions.patient_withdrawn")
def on_patient_withdrawn(sender, *, patient, actor, reason, **kwargs):
    services.cancel_future_sessions_for_patient(actor=actor, patient=patient, reason=reason)
