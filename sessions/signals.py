"""What the sessions app announces to the apps above it (DESIGN §2, README "Architecture").

`schedule_changed` is sent, inside the writing transaction, when a session that matters for
readiness or flags is booked, moved, cancelled or logged (preparation and dosing sessions,
and every session cancelled by a withdrawal). Argument: `patient_ids`. Receivers write in the
same transaction and must not talk to the broker.

`adverse_event_saved` is sent, inside the writing transaction, when an adverse event is
recorded or changed (a serious one must reach the clinicians at once). Arguments:
`patient_ids`, `serious` (whether any of them is serious).
"""

from django.dispatch import Signal

schedule_changed = Signal()
adverse_event_saved = Signal()
