"""The deploy tests' Prefect server (one per test module, stopped at its end, failed or not) and
a PostgreSQL database of their own for the shared-server tests.

PostgreSQL: POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres, the service every
machine of ours and CI runs, trust auth). Without a reachable server a test that needs it skips on
a user's machine and fails in CI (CI=true)."""
from __future__ import annotations

import os
import uuid

import pytest
from prefect_stack import ADMIN_URL, Stack, sql


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("prefect-stack"))
    try:
        s.start_server()
        yield s
    finally:
        s.stop()


@pytest.fixture()
def database():
    try:
        sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 (any reason the server cannot be reached)
        message = f"no PostgreSQL at {ADMIN_URL} ({type(exc).__name__}: {exc}); set POSTGRES_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"aa_prefect_{uuid.uuid4().hex[:12]}"
    sql(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
