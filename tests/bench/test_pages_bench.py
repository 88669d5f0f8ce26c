"""`make bench`: the clinic of DESIGN.md (10,000 patients, about 300,000 responses) against a
tenth of it, page by page, export by export, and the flag recompute.

`make bench ARGS="--patients 2000"` runs a smaller clinic. Prints, per row: median and p95
(milliseconds), bytes, query count, the ratio large/small, and the ratio to `/healthz` in the
same run. It asserts only that the pages answer; speed is read by people, never gated.
Seeding is `seed_demo` in bulk; four patients in seven are alumni (a year of follow-ups each)
so responses come to about 28 a patient.
"""

import io
import statistics
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alliance.flag_inputs import patients_to_sweep_ids
from alliance.services import recompute_patients
from clinic.models import Patient, Program, User
from outcomes.models import Response

pytestmark = [pytest.mark.bench, pytest.mark.django_db]

REPEATS = 7
EXPORT_REPEATS = 2
ALUMNI_SHARE = 4 / 7
# One pass of SQL over every score: what a set-based recompute can be held against.
SCORES_IN_ONE_PASS = """
    SELECT r.patient_id, s.scale, count(*), avg(s.value), min(s.value), max(s.value)
    FROM outcomes_score s JOIN outcomes_response r ON r.id = s.response_id
    GROUP BY r.patient_id, s.scale
"""


def _p95(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _seed(total: int) -> dict:
    alumni = round(total * ALUMNI_SHARE)
    started = time.perf_counter()
    out = io.StringIO()
    call_command(
        "seed_demo",
        patients=total - alumni,
        alumni=alumni,
        seed=11,
        bulk="on",
        stdout=out,
    )
    return {
        "seconds": time.perf_counter() - started,
        "said": out.getvalue().splitlines()[0],
        "patients": Patient.objects.count(),
        "responses": Response.objects.count(),
    }


def _get(client, url, repeats=REPEATS) -> dict:
    timings = []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, url
    return {
        "median": statistics.median(timings),
        "p95": _p95(timings),
        "bytes": len(body),
        "queries": len(ctx.captured_queries),
    }


def _export(client, form: str, repeats=EXPORT_REPEATS) -> dict:
    """Time to the first byte and to the last, as a browser downloading it would see them."""
    firsts, totals = [], []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.post(reverse("export"), {"form": form})
            assert response.status_code == 200, form
            chunks = iter(response.streaming_content if response.streaming else [response.content])
            size = len(next(chunks, b""))
            firsts.append((time.perf_counter() - start) * 1000)
            size += sum(len(chunk) for chunk in chunks)
            totals.append((time.perf_counter() - start) * 1000)
    return {
        "median": statistics.median(totals),
        "p95": _p95(totals),
        "first byte": statistics.median(firsts),
        "bytes": size,
        "queries": len(ctx.captured_queries),
        "MB/s": size / 1e6 / (statistics.median(totals) / 1000),
        "streams": response.streaming,
    }


def _fhir() -> dict:
    """The bundle as the worker's job writes it (`alliance.fhir_exports`): into a spool file,
    every entry validated (by shape, `alliance.fhir.ShapeValidator`), for every patient a
    clinician may see."""
    import resource
    import tempfile

    from alliance import fhir

    with CaptureQueriesContext(connection) as ctx, tempfile.TemporaryFile() as spool:
        start = time.perf_counter()
        entries = fhir.write_bundle(spool, patients=Patient.objects.all())
        elapsed = (time.perf_counter() - start) * 1000
        size = spool.tell()
    return {
        "median": elapsed,
        "p95": elapsed,
        "bytes": size,
        "queries": len(ctx.captured_queries),
        "entries": entries,
        "peak RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _recompute() -> dict:
    ids = patients_to_sweep_ids()
    queries = []

    def counted(execute, sql, params, many, context):
        queries.append(1)
        return execute(sql, params, many, context)

    start = time.perf_counter()
    with connection.execute_wrapper(counted):
        recompute_patients(patient_ids=ids)
    recompute_ms = (time.perf_counter() - start) * 1000
    passes = []
    with connection.cursor() as cursor:
        for _ in range(3):
            start = time.perf_counter()
            cursor.execute(SCORES_IN_ONE_PASS)
            rows = cursor.fetchall()
            passes.append((time.perf_counter() - start) * 1000)
    one_pass = statistics.median(passes)
    return {
        "median": recompute_ms,
        "p95": recompute_ms,
        "bytes": 0,
        "queries": len(queries),
        "sql pass ms": one_pass,
        "x sql": recompute_ms / one_pass,
        "groups": len(rows),
        "patients": len(ids),
    }


def _measure(client, clinic_size: int) -> dict:
    client.force_login(User.objects.get(email="clinician1@rapport.test"))
    package = Program.objects.get(name="Psilocybin for depression")
    alumnus = Patient.objects.order_by("record_number").filter(record_number__startswith="DEMO-A")
    patient = alumnus.first() or Patient.objects.order_by("record_number").first()
    results = {
        "/healthz": _get(client, reverse("healthz")),
        "cohort analytics": _get(client, reverse("cohort_analytics")),
        "caseload first page": _get(client, reverse("home")),
        "caseload last page": _get(client, reverse("home") + "?page=1000000"),
        "program dashboard": _get(client, reverse("program_sessions", args=[package.pk])),
        "patient dashboard": _get(client, reverse("patient_dashboard", args=[patient.public_id])),
        "CSV export long": _export(client, "long"),
        "CSV export wide": _export(client, "wide"),
    }
    results["FHIR export"] = _fhir()
    results["full flag recompute"] = _recompute()
    return results


def test_the_clinic_of_the_design_at_scale(client, request):
    large = request.config.getoption("--patients")
    small = max(large // 10, 20)
    seeded, results = {}, {}
    for size in (small, large):
        seeded[size] = _seed(size)
        results[size] = _measure(client, size)
    _print(seeded, results, small, large)


def _print(seeded, results, small, large):
    print()
    for size in (small, large):
        s = seeded[size]
        print(
            f"seed_demo to {size:,} patients: {s['seconds']:.1f} s "
            f"({s['patients']:,} patients, {s['responses']:,} responses in the clinic)\n"
            f"  {s['said']}"
        )
    healthz = results[large]["/healthz"]["median"]
    print(
        f"\n{'':<22}{f'{small:,} patients':>22}{f'{large:,} patients':>22}"
        f"{'bytes':>12}{'queries':>9}{'large/small':>12}{'/healthz':>10}"
    )
    names = list(results[large]) + [name for name in results[small] if name not in results[large]]
    for name in names:
        before, row = results[small].get(name), results[large].get(name)
        if row is None:  # measured on the small clinic only
            print(
                f"{name:<22}{before['median']:>12.1f} / {before['p95']:<7.1f}{before['bytes']:>14,}"
            )
            continue
        ratio = f"{row['median'] / before['median']:.2f}" if before else "-"
        small_cell = f"{before['median']:.1f} / {before['p95']:.1f}" if before else "not run"
        print(
            f"{name:<22}{small_cell:>22}{row['median']:>12.1f} / {row['p95']:<7.1f}"
            f"{row['bytes']:>12,}{row['queries']:>9}{ratio:>12}{row['median'] / healthz:>10.1f}"
        )
        if "first byte" in row:
            print(
                f"{'':<22}first byte {row['first byte']:.1f} ms, {row['MB/s']:.2f} MB/s, "
                f"{'streamed' if row['streams'] else 'built whole'}"
            )
        if "entries" in row:
            print(
                f"{'':<22}{row['entries']:,} entries, "
                f"{row['entries'] / (row['median'] / 1000):,.0f} a second; "
                f"peak RSS of the process so far {row['peak RSS MB']:.0f} MB"
            )
        if "x sql" in row:
            print(
                f"{'':<22}one SQL pass over the same scores {row['sql pass ms']:.1f} ms "
                f"({row['groups']:,} patient-scale groups); recompute of {row['patients']:,} "
                f"patients = {row['x sql']:.0f}x"
            )
    print("median / p95 in ms; submit -> flag with a live worker: not measured here yet")
