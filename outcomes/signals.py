"""What the outcomes app announces to the apps above it (DESIGN §2, README "Architecture").

`responses_saved` is sent for responses recorded (in clinic, by a self-report link, by an
import) or corrected, **inside the transaction that wrote them**. A receiver writes in that
same transaction, so the answers and what follows from them (a safety flag) commit together
or not at all; it must be quick and must not talk to the broker: slow work is recorded and
done later (the flag engine keeps an outbox of patients whose flags are stale).

    from django.dispatch import receiver
    from outcomes.signals import responses_saved

    @receiver(responses_saved)
    def on_responses_saved(sender, *, responses, created, **kwargs):
        ...

Arguments: `responses` (the Response rows, with `patient_id`, `safety_hits` and
`safety_unanswered` set) and `created` (False for a correction). Connect receivers in an
AppConfig.ready(). A receiver that raises undoes the response: all or nothing.
"""

from django.dispatch import Signal

responses_saved = Signal()
