"""The worker runs the flag engine and the nightly band job without Plotly, pandas,
statsmodels or the PDF library: charts, the supervision model and reports are the web's."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("plotly", "pandas", "statsmodels", "fpdf")

PROBE = f"""
import sys, django
django.setup()
from clinic.celery import app
app.loader.import_default_modules()
import alliance.tasks, alliance.trajectories, alliance.services, alliance.flag_inputs
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_the_worker_imports_no_plotting_modelling_or_pdf_library():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings.test"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
