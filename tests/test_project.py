"""The shape of the project that operators and newcomers rely on."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_compose_runs_postgres_redis_web_worker_and_beat():
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "web", "worker-interactive", "worker", "beat"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_web_migrates_then_serves_with_gunicorn():
    web = _command(_compose()["services"]["web"])
    assert web.index("manage.py migrate") < web.index("gunicorn clinic.wsgi:application")


def test_worker_and_beat_run_celery_against_the_database_scheduler():
    services = _compose()["services"]
    assert _command(services["worker"]).startswith("celery -A clinic worker")
    beat = _command(services["beat"])
    assert beat.startswith("celery -A clinic beat")
    assert "django_celery_beat.schedulers:DatabaseScheduler" in beat


def test_each_queue_has_a_worker_of_its_own():
    """A coach's recomputes never wait behind a sweep: the interactive queue's worker takes
    nothing else, and the bulk worker takes the default queue the router leaves the rest on."""
    from clinic.celery import app, interactive_queue

    services = _compose()["services"]
    default = app.conf.task_default_queue

    def queues(name):
        command = services[name]["command"]
        return command[command.index("--queues") + 1].split(",")

    assert queues("worker-interactive") == [interactive_queue(default)]
    assert queues("worker") == [default]
    for name in ("worker-interactive", "worker"):
        assert _command(services[name]).startswith("celery -A clinic worker")


def test_app_services_share_production_settings_and_real_services():
    services = _compose()["services"]
    for name in ("web", "worker-interactive", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "clinic.settings.production"
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379")
        # No default secret: compose refuses to start without one.
        assert ":?" in env["DJANGO_SECRET_KEY"]


def test_dockerfile_serves_static_files_through_gunicorn_and_whitenoise():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "collectstatic --noinput" in dockerfile
    assert "gunicorn" in dockerfile


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert [line.strip() for line in first_block.strip().splitlines()[-2:]] == [
        "make demo",
        "make test",
    ]


def test_gunicorn_runs_with_the_config_that_masks_tokens_in_the_access_log():
    # clinic/gunicorn_conf.py sets the access log's logger class (clinic.logsafe).
    web = _command(_compose()["services"]["web"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--config python:clinic.gunicorn_conf" in web
    assert '"--config", "python:clinic.gunicorn_conf"' in dockerfile
    assert "--access-logfile" not in web and "--access-logfile" not in dockerfile


# --- the layers (DESIGN §2) -------------------------------------------------------------------

LAYERS = ("clinic", "sessions", "outcomes", "alliance")  # each may import only those before it
# The project package wires every app together; nothing else in clinic may look up.
WIRING = {"clinic/urls.py", "clinic/celery.py"}


def _imported_modules(tree):
    """Every module an import statement names, at module level or inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def upward_imports(root: Path = ROOT) -> list[str]:
    rank = {app: i for i, app in enumerate(LAYERS)}
    found = []
    for app in LAYERS:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if "migrations" in path.parts or relative in WIRING or "/settings/" in relative:
                continue
            for line, module in _imported_modules(ast.parse(path.read_text())):
                if rank.get(module.split(".")[0], -1) > rank[app]:
                    found.append(f"{relative}:{line} imports {module}")
    return found


def test_no_app_imports_an_app_above_it():
    assert upward_imports() == []


def test_the_layer_check_sees_imports_hidden_in_functions(tmp_path):
    (tmp_path / "clinic").mkdir()
    (tmp_path / "clinic" / "services.py").write_text(
        "def enrol():\n    from sessions.services import schedule\n    return schedule()\n"
    )
    for app in LAYERS[1:]:
        (tmp_path / app).mkdir()
    assert upward_imports(tmp_path) == ["clinic/services.py:2 imports sessions.services"]


def test_a_worker_loads_its_tasks_without_plotly():
    """Load the task modules the way a Celery worker does (its Django fix-up sets Django up
    and runs on this call); the charts and Plotly belong to the web pages only, and so do
    the supervision model (statsmodels, pandas) and the report's PDF library (fpdf)."""
    heavy = "{'plotly', 'pandas', 'statsmodels', 'fpdf'}"
    code = (
        "import sys; from clinic.celery import app; app.loader.import_default_modules(); "
        "print(sorted(m for m in sys.modules if m.endswith('.tasks') and '.' in m "
        "and m.split('.')[0] in {'clinic', 'sessions', 'outcomes', 'alliance'})); "
        f"print([m for m in sys.modules if m.split('.')[0] in {heavy}])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clinic.settings.test"}
    env.pop("CELERY_SKIP_CHECKS", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tasks, plotly = result.stdout.strip().splitlines()[-2:]
    assert "alliance.tasks" in tasks and "outcomes.tasks" in tasks
    assert plotly == "[]"
