"""What the clinic app announces to the apps above it (DESIGN §2, README "Architecture").

Every signal is sent inside the transaction that made the change, and receivers (connected
in their AppConfig.ready()) write in that same transaction: an enrolment and its schedule
commit together or not at all. Receivers must be quick and must not talk to the broker.

- `enrolment_created(enrolment, actor)`: the sessions app generates the protocol's schedule.
- `assignment_started(assignment, actor)`: the sessions app makes the coach facilitator of
  the enrolment's upcoming sessions of that role. A receiver returns what it could not do
  (sessions that clash with the coach's others); `coach_assign` reports them.
- `assignment_ended(assignment, actor)`: the coach stops facilitating upcoming sessions.
- `patient_withdrawn(patient, actor, reason)`: future sessions are cancelled.
"""

from django.dispatch import Signal

enrolment_created = Signal()
assignment_started = Signal()
assignment_ended = Signal()
patient_withdrawn = Signal()


def replies(responses) -> list:
    """What the receivers returned, flattened: `signal.send(...)` gives (receiver, reply)."""
    return [item for _receiver, reply in responses for item in (reply or [])]
