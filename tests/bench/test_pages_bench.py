"""`make bench`: how page time and query count change as the clinic grows.

Prints a table (median of several requests, milliseconds) and the large/small ratio. It
asserts only that the pages answer; speed is read by people, not gated in CI.
"""

import io
import statistics
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clinic.models import Patient, User

pytestmark = [pytest.mark.bench, pytest.mark.django_db]

SIZES = (20, 400)
REPEATS = 7


def _pages(client):
    patient = Patient.objects.order_by("record_number").first()
    return {
        "caseload": reverse("home"),
        "patient list": reverse("patient_list"),
        "caseload search": reverse("home") + "?q=demo-00",
        "patient page": reverse("patient_detail", args=[patient.public_id]),
        "dashboard": reverse("patient_dashboard", args=[patient.public_id]),
        "cohort analytics": reverse("cohort_analytics"),
    }


def _measure(client, url):
    timings = []
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return statistics.median(timings), len(ctx.captured_queries)


def test_page_speed_as_the_clinic_grows(client):
    results = {}
    for size in SIZES:
        # A quarter as many alumni (a year of follow-ups each) for the cohort analytics.
        call_command("seed_demo", patients=size, alumni=size // 4, seed=11, stdout=io.StringIO())
        client.force_login(User.objects.get(email="clinician1@rapport.test"))
        results[size] = {name: _measure(client, url) for name, url in _pages(client).items()}
    small, large = SIZES
    print(f"\n{'page':<18}{f'{small} patients':>16}{f'{large} patients':>16}{'ratio':>8}")
    for name in results[small]:
        (ms_small, q_small), (ms_large, q_large) = results[small][name], results[large][name]
        print(
            f"{name:<18}{ms_small:>9.1f} ms {q_small:>2}q{ms_large:>9.1f} ms {q_large:>2}q"
            f"{ms_large / ms_small:>8.2f}"
        )
