"""FHIR exports as a background job: requested on the exports page, built by a worker into
Django's default storage (local files under MEDIA_ROOT in the demo, an S3-compatible bucket
through django-storages when web and workers run on several machines), then downloaded by
the person who asked through a link that expires.

The bundle is written to a private temporary file first and handed to the storage only when
it is complete; the row names the file only after that, so a half-written bundle is never
offered. A failed build is retried by the task and then shown as failed on the exports page.
"""

import datetime
import logging
import tempfile

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from clinic.access import patients_visible_to
from clinic.audit import audit_record
from clinic.models import AuditEvent

from . import fhir
from .exports import check_identified
from .models import FhirExport

log = logging.getLogger(__name__)

# How long a finished export may be downloaded; after that its file is deleted.
DOWNLOAD_VALID_FOR = datetime.timedelta(hours=24)
# A redelivered task (a worker died mid-build) counts as an attempt; past this it gives up.
MAX_ATTEMPTS = 4
FOLDER = "exports/fhir"


def fhir_export_request(*, actor, identified: bool = False, reason: str = "") -> FhirExport:
    """The export being built for this person and kind, or a new one queued for a worker.
    A second request (a double click, another tab) while one is waiting or building gets
    the same row; the database's constraint decides between two at once."""
    check_identified(actor=actor, identified=identified, reason=reason)
    fhir_exports_purge_expired()
    running = FhirExport.objects.filter(
        requested_by=actor, identified=identified, status__in=FhirExport.ACTIVE
    ).first()
    if running is not None:
        return running
    try:
        with transaction.atomic():
            export = FhirExport.objects.create(
                requested_by=actor,
                requested_at=timezone.now(),
                identified=identified,
                reason=reason.strip(),
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.CREATE,
                target=export,
                detail={"identified": identified, "reason": reason.strip()},
            )
            transaction.on_commit(lambda: _enqueue(export.pk), robust=True)
    except IntegrityError:
        return FhirExport.objects.get(
            requested_by=actor, identified=identified, status__in=FhirExport.ACTIVE
        )
    return export


def _enqueue(export_id: int) -> None:
    from .tasks import build_fhir_export

    try:
        build_fhir_export.apply_async(args=[export_id], retry=False)
    except Exception:  # broker down: say so now rather than leave it waiting for ever
        log.warning("Could not queue FHIR export %s.", export_id)
        fhir_export_failed(export_id=export_id, error="The job queue could not be reached.")


def fhir_export_build(*, export_id: int) -> FhirExport | None:
    """Build the bundle of one requested export. Returns None when there is nothing to do
    (already finished, or given up): a repeated message never builds twice."""
    claimed = FhirExport.objects.filter(
        pk=export_id, status__in=FhirExport.ACTIVE, attempts__lt=MAX_ATTEMPTS
    ).update(
        status=FhirExport.Status.BUILDING,
        attempts=F("attempts") + 1,
        entries_written=0,
    )
    if not claimed:
        # Redelivered after a worker died too often: give up visibly instead of leaving it
        # "being built" for ever (and blocking the person's next request).
        fhir_export_failed(export_id=export_id, error=f"It was interrupted {MAX_ATTEMPTS} times.")
        return None
    export = FhirExport.objects.select_related("requested_by").get(pk=export_id)
    patients = patients_visible_to(export.requested_by)
    FhirExport.objects.filter(pk=export_id).update(
        entries_total=fhir.entry_count(patients=patients)
    )

    def progress(entries: int) -> None:
        FhirExport.objects.filter(pk=export_id).update(entries_written=entries)

    with tempfile.TemporaryFile() as spool:
        entries = fhir.write_bundle(
            spool, patients=patients, identified=export.identified, progress=progress
        )
        size = spool.tell()
        spool.seek(0)
        name = default_storage.save(f"{FOLDER}/{export.public_id}.json", File(spool))
    now = timezone.now()
    with transaction.atomic():
        done = FhirExport.objects.filter(pk=export_id, status=FhirExport.Status.BUILDING).update(
            status=FhirExport.Status.READY,
            file_name=name,
            size_bytes=size,
            entries_written=entries,
            entries_total=entries,
            finished_at=now,
            expires_at=now + DOWNLOAD_VALID_FOR,
            error="",
        )
        if not done:  # marked failed meanwhile (given up): the file is nobody's
            transaction.on_commit(lambda: default_storage.delete(name))
            return None
        audit_record(
            actor=export.requested_by,
            action=AuditEvent.Action.EXPORT,
            object_type="export",
            object_id="fhir",
            detail={
                "identified": export.identified,
                "reason": export.reason,
                "rows": entries,
                "export": str(export.public_id),
            },
        )
    export.refresh_from_db()
    return export


def fhir_export_failed(*, export_id: int, error: str) -> bool:
    """Mark an export that could not be built as failed, so the page says so and a new
    request starts afresh. False when it had already finished."""
    with transaction.atomic():
        export = (
            FhirExport.objects.select_for_update()
            .filter(pk=export_id, status__in=FhirExport.ACTIVE)
            .first()
        )
        if export is None:
            return False
        export.status = FhirExport.Status.FAILED
        export.error = error
        export.finished_at = timezone.now()
        export.save(update_fields=["status", "error", "finished_at"])
        audit_record(
            actor=None,
            action=AuditEvent.Action.STATUS,
            target=export,
            detail={"status": export.status, "attempts": export.attempts},
        )
    return True


def fhir_export_open(*, actor, public_id) -> tuple[FhirExport, File]:
    """The finished bundle for its requester to download, audited. Anyone else, a bundle
    not ready yet, or one past its time, is FhirExport.DoesNotExist (a 404 to the caller)."""
    now = timezone.now()
    export = FhirExport.objects.get(
        public_id=public_id,
        requested_by=actor,
        status=FhirExport.Status.READY,
        expires_at__gt=now,
    )
    audit_record(
        actor=actor,
        action=AuditEvent.Action.EXPORT,
        target=export,
        detail={"download": True, "identified": export.identified},
    )
    return export, default_storage.open(export.file_name, "rb")


def fhir_exports_purge_expired() -> int:
    """Delete the files of exports past their time (identified data must not linger); the
    rows stay, marked expired, as the record of what was exported."""
    expired = FhirExport.objects.filter(
        status=FhirExport.Status.READY, expires_at__lte=timezone.now()
    )
    for export in expired:
        with transaction.atomic():
            claimed = FhirExport.objects.filter(
                pk=export.pk, status=FhirExport.Status.READY
            ).update(status=FhirExport.Status.EXPIRED)
            if not claimed:
                continue
            audit_record(
                actor=None,
                action=AuditEvent.Action.STATUS,
                target=export,
                detail={"status": FhirExport.Status.EXPIRED},
            )
            transaction.on_commit(lambda name=export.file_name: default_storage.delete(name))
    return len(expired)
