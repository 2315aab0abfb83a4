"""The deploy tests' Prefect server: one per test module, stopped at its end, failed or not."""
from __future__ import annotations

import pytest
from prefect_stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("prefect-stack"))
    try:
        s.start_server()
        yield s
    finally:
        s.stop()
