"""Writes about sessions, one module per concern:

- `scheduling`: a patient's calendar (generated on enrolment, booked, moved, cancelled);
- `conflicts`: nobody in two places at once, and the row locks that make it hold;
- `records`: logging what happened at a session, and corrections;
- `dosing`: substance, dose and route, checked against sane ranges;
- `dosing_day`: vital signs, adverse events and the discharge check in the room;
- `facilitators`: who facilitates which session, from a coach assignment;
- `feeds`: a coach's private calendar feed;
- `protocols`: protocol templates loaded from data files;
- `rooms`: rooms and protocol templates changed by admins in the app.

Callers use `from sessions import services` and the names below.
"""

from .conflicts import (
    find_conflicts,
)
from .dosing import (
    DOSE_RANGES_MG,
    KETAMINE_MG_PER_KG,
    KETAMINE_ORAL_MG,
    ORAL,
    PARENTERAL,
    dosing_record,
)
from .dosing_day import (
    AE_FIELDS,
    CLOCK_SKEW,
    LATE_ENTRY,
    adverse_event_record,
    adverse_event_update,
    discharge_facts,
    discharge_record,
    vital_limits_update,
    vitals_record,
)
from .facilitators import (
    ROLE_KINDS,
    facilitators_end_assignment,
    facilitators_for_assignment,
)
from .feeds import (
    feed_create,
    feed_revoke,
)
from .protocols import (
    PROTOCOLS_DIR,
    load_protocols,
)
from .records import (
    LOGGABLE,
    LOGGED_FIELDS,
    record_session_view,
    session_correct,
    session_log,
)
from .rooms import (
    PROTOCOL_FIELDS,
    STEP_FIELDS,
    protocol_save,
    protocol_step_save,
    room_save,
)
from .scheduling import (
    cancel_future_sessions_for_patient,
    clinic_zone,
    local_datetime,
    planned_schedule,
    schedule_for_enrolment,
    session_book,
    session_cancel,
    session_for_step,
    session_reschedule,
)

__all__ = [
    "AE_FIELDS",
    "CLOCK_SKEW",
    "DOSE_RANGES_MG",
    "KETAMINE_MG_PER_KG",
    "KETAMINE_ORAL_MG",
    "LATE_ENTRY",
    "LOGGABLE",
    "LOGGED_FIELDS",
    "ORAL",
    "PARENTERAL",
    "PROTOCOLS_DIR",
    "PROTOCOL_FIELDS",
    "ROLE_KINDS",
    "STEP_FIELDS",
    "adverse_event_record",
    "adverse_event_update",
    "cancel_future_sessions_for_patient",
    "clinic_zone",
    "discharge_facts",
    "discharge_record",
    "dosing_record",
    "facilitators_end_assignment",
    "facilitators_for_assignment",
    "feed_create",
    "feed_revoke",
    "find_conflicts",
    "load_protocols",
    "local_datetime",
    "planned_schedule",
    "protocol_save",
    "protocol_step_save",
    "record_session_view",
    "room_save",
    "schedule_for_enrolment",
    "session_for_step",
    "session_book",
    "session_cancel",
    "session_correct",
    "session_log",
    "session_reschedule",
    "vital_limits_update",
    "vitals_record",
]
