"""Failure notices: which items failed, where, and how to retry them.

A flow that finishes with failed items (a video that did not download, a clip without poses, a
model that did not score) or that fails outright calls :func:`send`: the notice is logged at
ERROR, kept as a markdown artifact on the flow run (``failures-FLOW-PIPELINE``), and, when the
pipeline names a Prefect notification block (``deploy.notify: "slack-webhook/ops"``), sent there.
A notice that cannot be sent is a warning, never a second failure.
"""
from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.core import Block
from prefect.logging import get_logger

from animate_anyone.config import PipelineConfig, load_config
from flows.common import artifact_key

MAX_LISTED = 20  # items named in one notice; the failures table has them all

RETRY = {
    "refresh": "rerun the refresh (`prefect deployment run 'refresh/{p}'`, or `animate-anyone ingest --pipeline {p}` "
               "then `animate-anyone pose --pipeline {p}`): finished work is skipped and only these items are tried again",
    "train": "rerun the training (`prefect deployment run 'train/{p}'` or `animate-anyone train --pipeline {p}`): "
             "it resumes from the stage's newest checkpoint",
    "evaluate": "rerun the evaluation (`prefect deployment run 'evaluate/{p}'` or `animate-anyone evaluate --pipeline {p}`): "
                "scored clips are kept and only the missing ones are scored",
    "animate": "fix the input named above and run the animation again (`prefect deployment run 'animate/{p}' "
               "--param reference=… --param pose=…` or `animate-anyone animate --pipeline {p} …`)",
}


def compose(flow: str, pipeline: str, items: list[dict], error: str | None = None) -> tuple[str, str]:
    """The notice's subject and markdown body; ``items`` are {stage, item, error} rows."""
    what = f"{len(items)} item{'s' * (len(items) != 1)} failed" if items else "the run failed"
    subject = f"animate-anyone {flow} of {pipeline}: {what}"
    lines = [f"# {subject}", ""]
    if error:
        lines += [f"The run ended with: {error}", ""]
    for it in items[:MAX_LISTED]:
        lines.append(f"- {it['stage']} `{it['item']}`: {it['error']}")
    if len(items) > MAX_LISTED:
        lines.append(f"- … and {len(items) - MAX_LISTED} more")
    lines += ["", f"To retry: {RETRY.get(flow, RETRY['refresh']).format(p=pipeline)}.",
              f"Every failure is a row of the failures table: `animate-anyone query --pipeline {pipeline} "
              f"\"SELECT stage, item_id, error_class, message FROM failures ORDER BY at DESC\"`."]
    return subject, "\n".join(lines)


def send(cfg: PipelineConfig | None, flow: str, pipeline: str, items: list[dict], error: str | None = None) -> str:
    """Log the notice, keep it as an artifact and send it to ``deploy.notify``; returns the body."""
    subject, body = compose(flow, pipeline, items, error)
    try:
        log = get_run_logger()
    except Exception:  # a state hook may run outside a run context  # noqa: BLE001
        log = get_logger("animate_anyone.notify")
    log.error("%s", body)
    try:
        create_markdown_artifact(body, key=artifact_key(f"failures-{flow}-{pipeline}"), description=subject)
    except Exception as exc:  # noqa: BLE001 (no run context: nothing to attach the artifact to)
        log.warning("the failure notice was not kept as an artifact: %s", exc)
    block = cfg.deploy.notify if cfg is not None else None
    if block:
        try:
            Block.load(block).notify(body, subject)
        except Exception as exc:  # noqa: BLE001 - a notice that cannot be sent must not fail the run
            log.warning("could not send the failure notice through block %r: %s: %s", block, type(exc).__name__, exc)
    return body


def on_run_failure(flow, flow_run, state) -> None:
    """A flow's ``on_failure`` / ``on_crashed`` hook: the notice for a run that did not finish."""
    params = flow_run.parameters or {}
    pipeline = params.get("pipeline")
    cfg = params.get("cfg")
    if not isinstance(cfg, PipelineConfig):
        try:
            cfg = load_config(pipeline, params.get("config"))
        except Exception:  # noqa: BLE001 (a bad configuration may be why the run failed)
            cfg = None
    send(cfg, flow.name, cfg.name if cfg else (pipeline or "?"), [], error=state.message or state.name)
