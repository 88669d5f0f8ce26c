"""The hook other apps use to react to questionnaire answers.

`response_saved` is sent once for every response that is recorded (in clinic, by a
self-report link or by an import) or corrected, **after the transaction that wrote it has
committed**, so a receiver reads committed rows and may enqueue Celery tasks safely:

    from django.dispatch import receiver
    from outcomes.signals import response_saved

    @receiver(response_saved)
    def recompute_flags(sender, *, response_id, patient_id, instrument, created, **kwargs):
        ...

Arguments are ids and codes only (no patient data): `response_id` (Response pk),
`patient_id` (Patient pk), `instrument` (code, e.g. "wai-sr"), `created` (False for a
correction). Receivers run with `send_robust`: one that raises is logged and neither undoes
the response nor stops the other receivers. Connect receivers in an AppConfig.ready().
"""

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

response_saved = Signal()


def announce(*, sender, saved: list[tuple[int, int, str]], created: bool) -> None:
    """Send `response_saved` for (response_id, patient_id, instrument) triples."""
    for response_id, patient_id, instrument in saved:
        results = response_saved.send_robust(
            sender=sender,
            response_id=response_id,
            patient_id=patient_id,
            instrument=instrument,
            created=created,
        )
        for receiver, result in results:
            if isinstance(result, Exception):
                log.error(
                    "response_saved receiver %r failed for response id %s",
                    receiver,
                    response_id,
                    exc_info=result,
                )
