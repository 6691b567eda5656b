"""Bulk writes that stay fast on PostgreSQL: COPY into the table, or into a scratch table and then one
INSERT ... ON CONFLICT. Other databases take Django's bulk_create with the same meaning.

Rows are tuples of values in the order of `field_names` (no model instances: building hundreds of
thousands of them costs more than the write). Primary keys are left to the database.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import JSONField, Model


def _converters(fields) -> list[Callable[[Any], Any]]:
    """psycopg adapts plain values itself; JSON needs Django's adapter."""
    return [
        (lambda value, field=field: field.get_db_prep_save(value, connection))
        if isinstance(field, JSONField)
        else None
        for field in fields
    ]


def _copy(cursor, table: str, fields, rows: Iterable[Sequence]) -> None:
    quote = connection.ops.quote_name
    names = ", ".join(quote(field.column) for field in fields)
    converters = _converters(fields)
    needs_conversion = any(converters)
    with cursor.cursor.copy(f"COPY {quote(table)} ({names}) FROM STDIN") as copy:
        for row in rows:
            if needs_conversion:
                row = [
                    convert(value) if convert else value
                    for convert, value in zip(converters, row, strict=True)
                ]
            copy.write_row(row)


def bulk_insert(
    model: type[Model],
    field_names: Sequence[str],
    rows: Sequence[Sequence],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """Insert new rows; with `ignore_conflicts`, rows that collide with a unique constraint are skipped."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            [model(**dict(zip(field_names, row, strict=True))) for row in rows],
            batch_size=2000,
            ignore_conflicts=ignore_conflicts,
        )
        return
    fields = [model._meta.get_field(name) for name in field_names]
    with connection.cursor() as cursor:
        if not ignore_conflicts:
            _copy(cursor, model._meta.db_table, fields, rows)
            return
        scratch = _scratch_table(cursor, model, fields)
        _copy(cursor, scratch, fields, rows)
        names = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({names}) "  # noqa: S608 (quoted model identifiers)
            f"SELECT {names} FROM {connection.ops.quote_name(scratch)} ON CONFLICT DO NOTHING"
        )


def _scratch_table(cursor, model: type[Model], fields) -> str:
    """A session-lived scratch table with the columns and types only (no constraints), filled by COPY."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(field.column) for field in fields)
    scratch = f"scratch_{model._meta.db_table}"
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {quote(scratch)} AS "  # noqa: S608 (quoted model identifiers)
        f"SELECT {names} FROM {quote(model._meta.db_table)} WITH NO DATA"
    )
    cursor.execute(f"TRUNCATE {quote(scratch)}")
    return scratch


def bulk_upsert(
    model: type[Model],
    field_names: Sequence[str],
    rows: Sequence[Sequence],
    unique_fields: Sequence[str],
) -> None:
    """Insert rows, or update every other given field of the rows that match on `unique_fields`."""
    if not rows:
        return
    unique = {model._meta.get_field(name).name for name in unique_fields}
    update_fields = [name for name in field_names if model._meta.get_field(name).name not in unique]
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            [model(**dict(zip(field_names, row, strict=True))) for row in rows],
            update_conflicts=True,
            unique_fields=list(unique_fields),
            update_fields=[model._meta.get_field(name).name for name in update_fields],
            batch_size=2000,
        )
        return
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in field_names]
    names = ", ".join(quote(field.column) for field in fields)
    conflict = ", ".join(quote(model._meta.get_field(name).column) for name in unique_fields)
    updates = ", ".join(
        f"{quote(column)} = EXCLUDED.{quote(column)}"
        for column in (model._meta.get_field(name).column for name in update_fields)
    )
    with connection.cursor() as cursor:
        scratch = _scratch_table(cursor, model, fields)
        _copy(cursor, scratch, fields, rows)
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT {names} FROM {quote(scratch)} "  # noqa: S608 (quoted model identifiers)
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
        )


def database_analyze() -> None:
    """Refresh the query planner's statistics after a bulk load. Without them both PostgreSQL (until
    autovacuum gets to it, if it runs at all) and SQLite (which never gathers them by itself) plan for
    near-empty tables: a trace's link walk on the freshly loaded demo ran for minutes on PostgreSQL."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
