"""Keep live secrets out of log lines: self-report link tokens and calendar feed tokens.

Both travel in URL paths (a patient's e-mailed link, a calendar app's subscription), and
gunicorn's access log writes the request line and the Referer of every request. Everything
that logs a URL goes through `mask_text`: query strings are dropped and the token part of
/q/<token>/ and /calendar/<token>.ics is replaced by "***".
"""

import logging
import re

from gunicorn.glogging import Logger

MASK = "***"
# /q/answer/ is the token-free page a link redirects to; every other /q/<x>/ carries a token.
_SECRET_PATHS = [
    (re.compile(r"/q/(?!answer/)[^/?#\s\"]+"), f"/q/{MASK}"),
    (re.compile(r"/calendar/(?!link/)[^/?#\s\"]+\.ics"), f"/calendar/{MASK}.ics"),
]
# A query string inside a logged URL (up to the end of the URL).
_QUERY = re.compile(r"\?[^\s\"]*")


def mask_text(text: str) -> str:
    """`text` with secret path segments masked and query strings removed."""
    if not isinstance(text, str) or not text:
        return text
    text = _QUERY.sub("", text)
    for pattern, replacement in _SECRET_PATHS:
        text = pattern.sub(replacement, text)
    return text


class SafeAccessLogger(Logger):
    """gunicorn's logger (logger_class in clinic/gunicorn_conf.py) with every URL-bearing
    atom masked: the request line, path, query, Referer and any header or environ value."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["q"] = ""
        atoms["{query_string}e"] = ""
        atoms["r"] = " ".join(
            [environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-"), atoms["H"] or "-"]
        )
        return {key: mask_text(value) for key, value in atoms.items()}


class MaskSecretsFilter(logging.Filter):
    """For Django's own log lines ("Not Found: /q/<token>/"): the message, masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
