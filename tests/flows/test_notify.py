"""Failure notices: a refresh with bad items, and a run that fails outright, each send one notice
through the pipeline's Prefect notification block (a webhook on loopback here) that names what
failed and says how to retry; the run itself goes on, and a notice that cannot be sent is only a
warning."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.flow]


@pytest.fixture()
def webhook():
    """A loopback HTTP endpoint that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _with_notify(test_config, block: str):
    cfg = yaml.safe_load(test_config.read_text())
    cfg["pipelines"]["test"]["deploy"] = {"notify": block}
    test_config.write_text(yaml.safe_dump(cfg))
    return test_config


def test_a_refresh_with_bad_items_sends_one_notice_naming_them_and_how_to_retry(test_config, bad_media, webhook, api):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.refresh import refresh_flow

    url, received = webhook
    CustomWebhookNotificationBlock(name="ops", url=url, allow_private_urls=True,
                                   json_data={"subject": "{{subject}}", "body": "{{body}}"}).save("ops", overwrite=True)
    config = _with_notify(test_config, "custom-webhook/ops")
    bad = [str(bad_media / "text.mp4"), str(bad_media / "missing.mp4")]
    state = refresh_flow(config=str(config), sources=bad + [str(bad_media / "good.mp4")], return_state=True)
    summary = state.result()  # the run finished: bad items do not fail it
    assert summary["failed"] == 2 and summary["ingest"]["ok"] == 1 and summary["pose"]["ok"] >= 1
    (notice,) = received
    assert notice["subject"] == "animate-anyone refresh of test: 2 items failed"
    for name in ("text.mp4", "missing.mp4", "To retry", "prefect deployment run 'refresh/test'", "FROM failures"):
        assert name in notice["body"], name
    assert "good.mp4" not in notice["body"]
    arts = api.artifacts(state.state_details.flow_run_id)
    assert arts["failures-refresh-test"].data == notice["body"]


def test_a_failed_run_sends_a_notice_and_an_unsendable_one_is_only_a_warning(test_config, webhook, api):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.train import train_flow

    url, received = webhook
    CustomWebhookNotificationBlock(name="ops", url=url, allow_private_urls=True,
                                   json_data={"subject": "{{subject}}", "body": "{{body}}"}).save("ops", overwrite=True)
    config = _with_notify(test_config, "custom-webhook/ops")
    state = train_flow(config=str(config), snapshot="s-no-such-snapshot", return_state=True)
    assert state.is_failed()
    (notice,) = received
    assert notice["subject"] == "animate-anyone train of test: the run failed"
    assert "s-no-such-snapshot" in notice["body"] and "animate-anyone train --pipeline test" in notice["body"]
    # a block that does not exist: the run's own outcome is unchanged, the notice is logged
    config = _with_notify(test_config, "custom-webhook/nobody")
    state = train_flow(config=str(config), snapshot="s-no-such-snapshot", return_state=True)
    assert state.is_failed() and len(received) == 1
    assert any("could not send the failure notice" in line for line in api.flow_log(state.state_details.flow_run_id))
