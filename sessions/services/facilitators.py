"""Who facilitates which session: a coach assignment's role decides, from its
start until it ends.
"""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinic.models import CoachAssignment

from ..models import (
    Session,
    SessionKind,
)
from .conflicts import _lock_people, find_conflicts

# Which assignment role facilitates which kind of session.
ROLE_KINDS = {
    CoachAssignment.Role.LEAD: set(SessionKind.values),
    CoachAssignment.Role.PREPARATION: {SessionKind.PREPARATION},
    CoachAssignment.Role.DOSING: {SessionKind.DOSING},
    CoachAssignment.Role.INTEGRATION: {SessionKind.INTEGRATION, SessionKind.FOLLOW_UP},
}


@transaction.atomic
def facilitators_for_assignment(*, assignment: CoachAssignment) -> list[Session]:
    """Make a newly assigned coach facilitator of the enrolment's upcoming sessions of their
    role, skipping (and returning) those that clash with the coach's other sessions."""
    kinds = ROLE_KINDS[CoachAssignment.Role(assignment.role)]
    coach = assignment.coach
    _lock_people(coaches=[coach])
    upcoming = Session.objects.filter(
        Q(enrolment=assignment.enrolment)
        | Q(is_group=True, attendances__enrolment=assignment.enrolment),
        kind__in=kinds,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=timezone.now(),
    ).distinct()
    skipped = []
    for session in upcoming:
        if session.facilitators.filter(pk=coach.pk).exists():
            continue
        if find_conflicts(
            start=session.scheduled_start,
            end=session.scheduled_end,
            coaches=[coach],
            exclude_ids=[session.pk],
        ):
            skipped.append(session)
            continue
        session.facilitators.add(coach)
    return skipped


@transaction.atomic
def facilitators_end_assignment(*, assignment: CoachAssignment) -> None:
    """An ended assignment stops the coach facilitating the enrolment's upcoming sessions."""
    for session in Session.objects.filter(
        enrolment=assignment.enrolment,
        status=Session.Status.SCHEDULED,
        scheduled_start__gte=timezone.now(),
        facilitators=assignment.coach,
    ):
        session.facilitators.remove(assignment.coach)
