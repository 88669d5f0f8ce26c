"""Peak memory (RSS) of building the FHIR export for the first N patients of the database in
DATABASE_URL: `python scripts/fhir_export_rss.py 100` then `... 500`; flat means the two
peaks differ by far less than the exports' sizes. Run it from a checkout whose
alliance/fhir.py has `write_bundle` (streamed) or only `bundle` (the old, in-memory build)."""

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinic.settings.dev")

import django  # noqa: E402

django.setup()

from alliance import fhir  # noqa: E402
from clinic.models import Patient  # noqa: E402
from outcomes.models import Response  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(count: int) -> None:
    patients = Patient.objects.filter(
        pk__in=list(Patient.objects.order_by("pk").values_list("pk", flat=True)[:count])
    )
    responses = Response.objects.filter(patient__in=patients).count()
    before = peak_mb()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        if hasattr(fhir, "write_bundle"):
            entries = fhir.write_bundle(out, patients=patients)
        else:
            data = fhir.bundle(patients=patients)
            entries = len(data["entry"])
            out.write(json.dumps(data, indent=1).encode())
        size = out.tell()
    print(
        f"{Path(fhir.__file__).parent.parent.name}: {count} patients, {responses} responses, "
        f"{entries} entries, {size / 1e6:.1f} MB written in {time.perf_counter() - started:.1f} s; "
        f"peak RSS {before:.0f} MB after start-up, {peak_mb():.0f} MB at the end "
        f"(+{peak_mb() - before:.0f} MB)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
