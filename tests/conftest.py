"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pg_server import PostgresCluster, missing_reason


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the whole run (skipped, or failed under CI, if none)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no PostgreSQL to test against: {reason}")
        pytest.skip(reason)
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_dsn(pg_cluster: PostgresCluster) -> str:
    """The DSN of a fresh, empty database of the session's cluster."""
    return pg_cluster.create_database()
