"""Work that must not run twice at once, across every worker, held by PostgreSQL."""

import contextlib
import zlib

from django.db import connection


@contextlib.contextmanager
def advisory_lock(name: str):
    """Yield True if this process holds the lock named `name` (held until the block ends),
    False if another holds it. Session-level, so the block may commit many transactions."""
    key = zlib.crc32(name.encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        mine = cursor.fetchone()[0]
    try:
        yield mine
    finally:
        if mine:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
