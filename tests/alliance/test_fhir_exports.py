"""The FHIR export as a background job: requested on the exports page, built by the worker's
task into the default storage, downloaded by its requester until the link expires."""

import datetime
import os

import pytest
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from alliance import fhir, fhir_exports
from alliance.models import FhirExport
from alliance.tasks import build_fhir_export
from clinic.models import AuditEvent, Patient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


@pytest.fixture
def rated(people, rate):
    rate(bond=2, days_ago=2)
    rate(bond=4, days_ago=1)
    return people


def _stored_files(media) -> list[str]:
    folder = media / fhir_exports.FOLDER
    return sorted(os.listdir(folder)) if folder.exists() else []


def _request(client, **form) -> FhirExport:
    response = client.post(reverse("export"), {"form": "fhir", **form})
    assert response.status_code == 302
    return FhirExport.objects.get()


def _request_another(client) -> FhirExport:
    response = client.post(reverse("export"), {"form": "fhir"})
    assert response.status_code == 302
    return FhirExport.objects.latest("requested_at")


def test_the_bundle_is_built_by_the_worker_and_downloaded_by_who_asked(
    client, rated, django_capture_on_commit_callbacks
):
    from fhir.resources.R4B.bundle import Bundle

    client.force_login(rated.clinician)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        export = _request(client)
    assert len(queued) == 1  # the job is handed to the queue once the request commits
    page = client.get(reverse("export")).content.decode()
    assert "Waiting for a worker" in page and "Download the bundle" not in page

    assert build_fhir_export.apply(args=[export.pk]).get() == FhirExport.Status.READY

    page = client.get(reverse("export")).content.decode()
    link = reverse("fhir_export_download", args=[export.public_id])
    assert link in page and "Download the bundle" in page
    response = client.get(link)
    assert response["Content-Type"] == "application/fhir+json"
    assert response["Content-Disposition"].startswith("attachment")
    body = b"".join(response.streaming_content)
    bundle = Bundle.model_validate_json(body)
    kinds = [entry.resource.__resource_type__ for entry in bundle.entry]
    assert kinds.count("QuestionnaireResponse") == 2 and kinds.count("Questionnaire") == 1
    assert rated.patient.last_name.encode() not in body
    built = AuditEvent.objects.get(action="export", object_id="fhir")
    assert built.actor == rated.clinician and built.detail["rows"] == len(kinds)
    downloaded = AuditEvent.objects.get(action="export", object_id=str(export.public_id))
    assert downloaded.actor == rated.clinician


def test_only_the_requester_may_download_and_coaches_not_at_all(client, rated):
    client.force_login(rated.clinician)
    export = _request(client)
    build_fhir_export.apply(args=[export.pk])
    link = reverse("fhir_export_download", args=[export.public_id])
    client.force_login(rated.admin)
    assert client.get(link).status_code == 404
    client.force_login(rated.coach)
    assert client.get(link).status_code == 403
    assert not AuditEvent.objects.filter(object_id=str(export.public_id), action="export")


def test_a_second_request_while_one_is_waiting_reuses_it(client, rated):
    client.force_login(rated.clinician)
    first = _request(client)
    client.post(reverse("export"), {"form": "fhir"})
    assert FhirExport.objects.get() == first
    # The database holds the rule too, for two requests that arrive at the same moment.
    with pytest.raises(IntegrityError):
        FhirExport.objects.create(requested_by=rated.clinician, requested_at=timezone.now())


def test_an_identified_export_needs_an_admin_reason_and_is_a_separate_job(client, rated):
    client.force_login(rated.admin)
    refused = client.post(reverse("export"), {"form": "fhir", "identified": "on", "reason": ""})
    assert "Say why identified data is needed." in refused.content.decode()
    assert not FhirExport.objects.exists()
    client.post(reverse("export"), {"form": "fhir"})
    client.post(reverse("export"), {"form": "fhir", "identified": "on", "reason": "Transfer"})
    identified = FhirExport.objects.get(identified=True)
    assert FhirExport.objects.count() == 2 and identified.reason == "Transfer"
    build_fhir_export.apply(args=[identified.pk])
    body = b"".join(
        client.get(reverse("fhir_export_download", args=[identified.public_id])).streaming_content
    )
    assert rated.patient.record_number.encode() in body


def test_a_failing_build_is_retried_then_reported_and_never_offered(
    client, rated, media, monkeypatch
):
    def half_then_disk_full(out, **kwargs):
        out.write(b'{"resourceType":"Bundle","entry":[')
        raise OSError("No space left on device")

    monkeypatch.setattr(fhir, "write_bundle", half_then_disk_full)
    client.force_login(rated.clinician)
    export = _request(client)
    build_fhir_export.apply(args=[export.pk])
    export.refresh_from_db()
    assert export.status == FhirExport.Status.FAILED
    assert export.attempts == fhir_exports.MAX_ATTEMPTS and export.file_name == ""
    assert _stored_files(media) == []
    page = client.get(reverse("export")).content.decode()
    assert "Failed:" in page and "OSError" in page and "Download the bundle" not in page
    assert client.get(reverse("fhir_export_download", args=[export.public_id])).status_code == 404

    monkeypatch.undo()
    again = client.post(reverse("export"), {"form": "fhir"})
    assert again.status_code == 302 and FhirExport.objects.count() == 2  # a new job, not the failed


def test_a_repeated_message_does_not_build_twice(client, rated, media):
    client.force_login(rated.clinician)
    export = _request(client)
    build_fhir_export.apply(args=[export.pk])
    assert build_fhir_export.apply(args=[export.pk]).get() == "skipped"
    assert len(_stored_files(media)) == 1
    assert FhirExport.objects.get().status == FhirExport.Status.READY


def test_progress_shows_on_the_exports_page(client, rated, monkeypatch):
    client.force_login(rated.clinician)
    export = _request(client)
    pages = []
    write_bundle = fhir.write_bundle

    def look_at_the_page_on_each_report(out, *, progress, **kwargs):
        def report(entries):
            progress(entries)
            pages.append(client.get(reverse("export")).content.decode())

        return write_bundle(out, progress=report, **kwargs)

    monkeypatch.setattr(fhir, "PROGRESS_EVERY", 2)
    monkeypatch.setattr(fhir, "write_bundle", look_at_the_page_on_each_report)
    build_fhir_export.apply(args=[export.pk])
    total = fhir.entry_count(patients=Patient.objects.all())
    assert pages and f"Being built: 2 of about {total} entries" in pages[0]
    assert 'progress max="100"' in pages[0]


def test_the_link_expires_and_the_file_is_then_deleted(
    client, rated, media, time_machine, django_capture_on_commit_callbacks
):
    client.force_login(rated.clinician)
    export = _request(client)
    build_fhir_export.apply(args=[export.pk])
    link = reverse("fhir_export_download", args=[export.public_id])
    assert client.get(link).status_code == 200
    time_machine.move_to(
        timezone.now() + fhir_exports.DOWNLOAD_VALID_FOR + datetime.timedelta(minutes=1)
    )
    client.force_login(rated.clinician)  # the sign-in itself lasts a working day only
    assert client.get(link).status_code == 404
    assert "Download the bundle" not in client.get(reverse("export")).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        assert fhir_exports.fhir_exports_purge_expired() == 1
    assert _stored_files(media) == []
    assert FhirExport.objects.get(pk=export.pk).status == FhirExport.Status.EXPIRED
    assert AuditEvent.objects.filter(object_id=str(export.public_id), action="status").exists()


def test_a_scheduled_purge_deletes_expired_files_and_keeps_fresh_ones(
    client, rated, media, time_machine, django_capture_on_commit_callbacks
):
    from django_celery_beat.models import PeriodicTask

    from alliance.tasks import purge_expired_fhir_exports

    client.force_login(rated.clinician)
    old = _request(client)
    build_fhir_export.apply(args=[old.pk])
    time_machine.move_to(timezone.now() + fhir_exports.DOWNLOAD_VALID_FOR / 2)
    client.force_login(rated.admin)
    fresh = _request_another(client)
    build_fhir_export.apply(args=[fresh.pk])
    time_machine.move_to(
        timezone.now() + fhir_exports.DOWNLOAD_VALID_FOR / 2 + datetime.timedelta(minutes=1)
    )
    assert len(_stored_files(media)) == 2

    # Nobody asks for another export: the beat's job deletes the file all the same.
    assert PeriodicTask.objects.filter(
        task="alliance.purge_expired_fhir_exports", enabled=True
    ).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_fhir_exports.apply().get() == 1
    assert _stored_files(media) == [f"{fresh.public_id}.json"]
    assert FhirExport.objects.get(pk=old.pk).status == FhirExport.Status.EXPIRED
    assert FhirExport.objects.get(pk=fresh.pk).status == FhirExport.Status.READY
    client.force_login(rated.admin)
    link = reverse("fhir_export_download", args=[fresh.public_id])
    assert client.get(link).status_code == 200
