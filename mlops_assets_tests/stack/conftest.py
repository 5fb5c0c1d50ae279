"""Fixtures of the stack tests: the stack's databases as config/postgres/init-databases.sh
makes them (one server, one database and one role per component, a read-only Grafana role),
with unique names on the test PostgreSQL server, dropped afterwards."""

from __future__ import annotations

import pytest

from mlops_assets_tests.conftest import PG_ADMIN_URL
from mlops_assets_tests.stack.support import StackDatabases, drop_stack_databases, init_stack_databases


@pytest.fixture
def stack_db() -> StackDatabases:
    try:
        databases = init_stack_databases(PG_ADMIN_URL)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield databases
    drop_stack_databases(PG_ADMIN_URL, databases)
