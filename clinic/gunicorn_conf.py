"""gunicorn settings for the web container (Dockerfile and docker-compose use this file).

The access log never carries a self-report link or calendar token, nor a query string:
SafeAccessLogger masks every URL it writes (see clinic/logsafe.py).
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
accesslog = "-"
logger_class = "clinic.logsafe.SafeAccessLogger"
# The combined format, with the path (no query string) in place of the raw request line.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
