"""`animate-anyone deploy` refusing what cannot work, before it touches a server: no server
configured, one that does not answer, a bad URL, an unknown flow, a bad pipeline. (Deploying for
real, with a server and workers, is tests/deploy/.)"""
from __future__ import annotations

import socket

import pytest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_without_a_server_says_how_to_start_one(cli):
    out = cli("deploy", check=2)
    assert "deploy needs a running Prefect server" in out.stderr and "prefect server start" in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--api-url", "http://127.0.0.1:{port}/api"], "no Prefect server answers at http://127.0.0.1:{port}/api"),
    (["--api-url", "not-a-url"], "--api-url 'not-a-url': not an http(s) URL"),
    (["--api-url", "0"], "--api-url '0': not an http(s) URL"),
    (["--api-url", "-1"], "--api-url '-1': not an http(s) URL"),
    (["--flow", "ingest"], "--flow 'ingest': not a deployable flow; one of refresh, train, evaluate, animate"),
    (["--flow", "0"], "--flow '0': not a deployable flow"),
    (["--pipeline", "nope"], "no pipeline named 'nope'"),
])
def test_bad_deploy_options_are_refused_with_what_and_where(cli, args, message):
    port = _closed_port()
    out = cli("deploy", *[a.format(port=port) for a in args], check=2)
    assert message.format(port=port) in " ".join(out.stderr.split()), out.stderr
