"""A fresh PostgreSQL schema per test (127.0.0.1:5432, database ``test``),
for the store-backed cluster fixtures of the de-duplication, adjudication
and idempotency tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def schema_dsn() -> Iterator[str]:
    """The DSN of a new schema, dropped afterwards; skips (fails under CI)
    when PostgreSQL is not reachable."""
    try:
        import psycopg

        schema = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3) as c:
            c.execute(f"CREATE SCHEMA {schema}")
    except Exception:  # noqa: BLE001
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def store_env(backend: str) -> Iterator[dict[str, str]]:
    """The store's settings for a test backend: none for SQLite (the
    default), a fresh schema's DSN for ``"postgres"``."""
    if backend != "postgres":
        yield {}
        return
    with schema_dsn() as dsn:
        yield {"TANU_STORE_DSN": dsn}
