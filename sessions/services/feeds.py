"""A coach's private calendar feed: created with a secret token, revoked at will."""

import secrets

from django.db import transaction
from django.utils import timezone

from clinic.audit import audit_record
from clinic.models import AuditEvent

from ..models import (
    CalendarFeed,
)


@transaction.atomic
def feed_create(*, actor, show_details: bool = False) -> str:
    """A new private calendar link for the coach; any previous one stops working. Events
    carry record numbers and session kinds only when the coach opts in (`show_details`)."""
    feed_revoke(actor=actor)
    token = secrets.token_urlsafe(32)
    feed = CalendarFeed.objects.create(
        coach=actor, token_hash=CalendarFeed.hash_token(token), show_details=show_details
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.CREATE,
        target=feed,
        detail={"show_details": show_details},
    )
    return token


@transaction.atomic
def feed_revoke(*, actor) -> int:
    feeds = list(CalendarFeed.objects.select_for_update().filter(coach=actor, revoked_at=None))
    for feed in feeds:
        feed.revoked_at = timezone.now()
        feed.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor, action=AuditEvent.Action.UPDATE, target=feed, detail={"revoked": True}
        )
    return len(feeds)
