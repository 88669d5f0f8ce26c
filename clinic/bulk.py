"""Rows straight into PostgreSQL with COPY (psycopg 3), for bulk writers such as the demo's
bulk seeding: several times faster than `bulk_create` for rows nobody needs the ids of."""

import copy
import functools
from contextlib import contextmanager

from django.db import connection, connections
from django.db.models import Field


def copy_rows(model, rows, *, fields: list[str] | None = None) -> int:
    """Insert unsaved `rows` of `model` in the caller's transaction, as `bulk_create` would:
    every concrete field (the primary key too, so give the rows ids from `next_ids` first) or
    only `fields` (by attribute name: `response_id`, not `response`). Values are prepared as
    `save()` prepares them, so defaults, `auto_now_add`, JSON and time zones come out as
    through the ORM, and a parent assigned before it had an id is named by the id it has now.
    The rows are left as saved ones. Returns how many rows were copied."""
    if fields is None:
        columns = list(model._meta.concrete_fields)
    else:
        columns = [model._meta.get_field(name) for name in fields]
    # The connection behind the proxy, once: looking it up per value cost more than the COPY.
    db = connections[connection.alias]
    values = [_reader(field, db) for field in columns]
    table = db.ops.quote_name(model._meta.db_table)
    names = ", ".join(db.ops.quote_name(field.column) for field in columns)
    copied = 0
    with db.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([value(row) for value in values])
            row._state.adding, row._state.db = False, db.alias
            copied += 1
    return copied


def _reader(field, db):
    """How `copy_rows` reads `field` of a row as a database value."""
    prepare = _remembered(field.get_db_prep_save)
    if field.is_relation:

        def value(row):
            if not field.is_cached(row):
                return prepare(getattr(row, field.attname), db)
            # What `save()` checks first: the parent was saved after it was assigned.
            parent = field.get_cached_value(row)
            if parent is not None and parent.pk is None:
                raise ValueError(f"{row!r}: its {field.name} has no id yet.")
            pk = None if parent is None else getattr(parent, field.target_field.attname)
            setattr(row, field.attname, pk)
            return prepare(pk, db)

    elif type(field).pre_save is not Field.pre_save:  # auto_now_add and the like

        def value(row):
            return field.get_db_prep_save(field.pre_save(row, True), db)

    else:

        def value(row):
            return prepare(getattr(row, field.attname), db)

    return value


def _remembered(prepare):
    """`prepare` (a field's `get_db_prep_save`) worked out once per value: a bulk load names
    the same parents, choices, flags and amounts thousands of times, and preparing each afresh
    was most of `copy_rows`' own time. Keyed by type too, so 1, 1.0 and True stay apart;
    values that cannot be hashed (JSON) are prepared every time."""
    known = {}

    def prepared(raw, db):
        key = (type(raw), raw)
        try:
            return known[key]
        except KeyError:
            known[key] = result = prepare(raw, db)
            return result
        except TypeError:
            return prepare(raw, db)

    return prepared


def copy_values(model, rows, *, fields: list[str]) -> int:
    """Like `copy_rows`, for rows already reduced to database values: one tuple per row in
    the order of `fields`, JSON as encoded text. Building tens of thousands of model instances
    only to read their attributes back costs more than the COPY itself."""
    columns = [model._meta.get_field(name).column for name in fields]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    copied = 0
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
            copied += 1
    return copied


def unsaved_copy(row):
    """A copy of the unsaved `row`, as `type(row)(**the same values)` would build it but
    without running the model's `__init__` per field (most of a bulk planner's time when it
    builds 100,000 rows alike): the values and cached parents are shared, the state is the
    copy's own, and every field with a callable default (a public id) draws a fresh one.
    No `pre_init`/`post_init` signal is sent: only for models nobody listens to those of."""
    model = type(row)
    if row.pk is not None or not row._state.adding:
        raise ValueError(f"{row!r}: only an unsaved row is copied.")
    copied = model.__new__(model)
    copied.__dict__.update(row.__dict__)
    copied._state = copy.copy(row._state)
    copied._state.fields_cache = dict(row._state.fields_cache)
    for field in _drawn_defaults(model):
        setattr(copied, field.attname, field.get_default())
    return copied


@functools.cache
def _drawn_defaults(model) -> tuple:
    return tuple(f for f in model._meta.concrete_fields if f.has_default() and callable(f.default))


def next_ids(model, count: int) -> list[int]:
    """`count` primary keys drawn from the table's own sequence, so rows copied with them can
    be referenced by their children before they are inserted, and rows inserted later through
    the ORM never collide with them."""
    if count <= 0:
        return []
    table = model._meta.db_table
    column = model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, column, count],
        )
        return [pk for (pk,) in cursor.fetchall()]


@contextmanager
def references_checked_once(*models):
    """Load `models` with their foreign keys checked once, by one join per key, when the block
    ends, instead of once per row at commit: PostgreSQL's advice for bulk loads. Each foreign
    key of their tables is dropped and re-added exactly as it was (`pg_get_constraintdef`);
    re-adding it checks every row, so a row naming a missing parent still fails the load.

    Only inside a transaction, so the keys come back even if the load fails (the DDL rolls
    back with it). The tables and those they reference are locked until commit: for loads
    nobody is working beside, such as the demo's seeding.

    Deferred checks already queued by the transaction run at the start (PostgreSQL will not
    alter a table with checks pending); the keys that are deferred by default are deferred
    again at the end."""
    if not connection.in_atomic_block:
        raise RuntimeError("references_checked_once drops foreign keys: only in a transaction.")
    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', conrelid::regclass, conname),
                   format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s',
                          conrelid::regclass, conname, pg_get_constraintdef(oid))
            FROM pg_constraint
            WHERE contype = 'f'
              AND conrelid IN (SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
            ORDER BY conrelid::regclass::text, conname
            """,
            [tables],
        )
        keys = cursor.fetchall()
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for drop, _add in keys:
            cursor.execute(drop)
    yield
    with connection.cursor() as cursor:
        for _drop, add in keys:
            cursor.execute(add)
        cursor.execute(
            """
            SELECT format('%I.%I', nspname, conname)
            FROM pg_constraint JOIN pg_namespace ON pg_namespace.oid = connamespace
            WHERE condeferred
            """
        )
        deferred = [name for (name,) in cursor.fetchall()]
        if deferred:
            cursor.execute(f"SET CONSTRAINTS {', '.join(deferred)} DEFERRED")
