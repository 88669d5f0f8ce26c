# Production image: gunicorn serves the app, whitenoise serves static files.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=clinic.settings.production

RUN useradd --create-home --uid 1000 rapport
WORKDIR /app

COPY pyproject.toml README.md ./
COPY clinic ./clinic
COPY alliance ./alliance
COPY sessions ./sessions
COPY outcomes ./outcomes
RUN pip install .

COPY . .
# collectstatic needs settings but no database or real secret.
RUN DJANGO_SECRET_KEY=collectstatic-only DATABASE_URL=postgres://unused/unused \
    python manage.py collectstatic --noinput

# FHIR exports are written here (a volume shared by web and worker in docker-compose.yml).
RUN mkdir -p /app/media && chown rapport /app/media
USER rapport
EXPOSE 8000
# Bind, workers and an access log that masks link and calendar tokens: clinic/gunicorn_conf.py.
CMD ["gunicorn", "clinic.wsgi:application", "--config", "python:clinic.gunicorn_conf"]
