"""The test databases of the delivery tests: a PostgreSQL server when one runs, and reading a table back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa


def postgres_admin_url() -> str:
    """The test server's URL (``.ci/with-postgres`` sets it); skips the test without one, fails it
    when CI requires PostgreSQL."""
    url = os.environ.get("CRMVALUE_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CRMVALUE_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                "CRMVALUE_REQUIRE_POSTGRES=1 but CRMVALUE_TEST_POSTGRES_URL is not set (run under .ci/with-postgres)"
            )
        pytest.skip("no PostgreSQL server: set CRMVALUE_TEST_POSTGRES_URL or run `make test` with PostgreSQL installed")
    return url


def fresh_postgres_database() -> Iterator[str]:
    """A database of our own on the test server, dropped at the end (the body of a fixture)."""
    admin_url = sa.engine.make_url(postgres_admin_url())
    name = f"crmvalue_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def read_table(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql_table(table, conn)
    finally:
        engine.dispose()
