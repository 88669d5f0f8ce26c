import sys
import traceback

import pytest
from django.core.signals import got_request_exception

# Cases run by the attack suite in this pytest run, printed at the end (`make test` shows it).
COUNTS = {"URL x role cases": 0, "fuzz cases": 0}


def pytest_terminal_summary(terminalreporter):
    if any(COUNTS.values()):
        terminalreporter.write_sep("-", "attack suite")
        for name, count in COUNTS.items():
            terminalreporter.write_line(f"{name}: {count}")


@pytest.fixture
def server_errors():
    """Tracebacks of every exception a view raised during the test (the client answers 500)."""
    seen = []

    def record(sender, request=None, **kwargs):
        path = request.get_full_path()[:200] if request is not None else "?"
        frame = traceback.extract_tb(sys.exc_info()[2])[-1]
        error = traceback.format_exception_only(*sys.exc_info()[:2])[-1].strip()
        method = request.method if request is not None else ""
        seen.append(f"{method} {path}: {error[:300]} ({frame.filename}:{frame.lineno})")

    got_request_exception.connect(record)
    yield seen
    got_request_exception.disconnect(record)
