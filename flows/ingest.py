"""The ``ingest`` flow: per source, download → detect → cut → write, then refresh the catalog.

Tasks are thin wrappers over :mod:`animate_anyone.ingest.stages`. Detect and cut are cached on
the input's content (the file's sha256), the step's version, its parameters and the data root,
so a rerun skips finished work across flow runs; their results persist under the data root
(``.prefect/results``). The library underneath skips work whose outputs are complete on disk:
download is not cached at all (a source whose sidecar and file are on disk is not fetched
again, and one removed after a failure is fetched anew), and the write step is not cached at all: it compares the tables with the cut
result and writes only when they differ, so the tables never depend on the cache. After deleting
media by hand, ``refresh`` (CLI ``--refresh``) reruns the cached steps. Sources run in a thread
pool of ``ingest.workers``; puppet-world videos get their own shot settings (``sources.puppets.shots``).
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from animate_anyone import progress, storage, synthetic
from animate_anyone.config import Ingest, PipelineConfig
from animate_anyone.errors import AnimateAnyoneError, is_retryable
from animate_anyone.ids import sha256_json
from animate_anyone.ingest import stages
from animate_anyone.ingest.clips import CLIPS_VERSION
from animate_anyone.ingest.download import parse_source
from animate_anyone.ingest.serve import serve_directory
from animate_anyone.ingest.shots import SHOTS_VERSION
from animate_anyone.tables.catalog import refresh_catalog
from animate_anyone.tables.io import DataRoot, Dataset
from flows.common import cached_task_options, resolve_config, retry_delays, task_runner


def _key(step: str, version: str, *parts) -> str:
    return f"{step}-v{version}-{sha256_json(parts)[:40]}"


def _detect_key(ctx, p) -> str:
    cfg: Ingest = p["cfg"]
    checks = cfg.clips.model_dump(include={"min_seconds", "min_width", "min_height"})
    shots = cfg.shots.model_dump(exclude={"workers"})
    # the result carries the source's identity, so two sources with the same bytes need two entries
    return _key("detect", SHOTS_VERSION, p["fetched"].source_id, p["fetched"].sha256, shots, checks)


def _cut_key(ctx, p) -> str:
    det, root = p["detected"], DataRoot.from_uri(p["root"])
    return _key("cut", CLIPS_VERSION, det.fetched.source_id, det.fetched.sha256, det.shots.ranges,
                p["cfg"].clips.model_dump(exclude={"split", "workers"}), root.uri)


@task(name="download", cache_policy=NO_CACHE)  # the library skips a source whose sidecar is on disk
def download_task(source: str, root: str, cfg: Ingest):
    return stages.download(source, DataRoot.from_uri(root), cfg)


@task(name="detect", cache_key_fn=_detect_key)
def detect_task(fetched, cfg: Ingest, root: str):
    return stages.detect(fetched, cfg, DataRoot.from_uri(root))


@task(name="cut", cache_key_fn=_cut_key)
def cut_task(detected, root: str, cfg: Ingest):
    return stages.cut(detected, DataRoot.from_uri(root), cfg)


@task(name="write", cache_policy=NO_CACHE)
def write_task(result, root: str, dataset: str, cfg: Ingest) -> dict:
    return stages.write(result, Dataset(root, dataset), cfg)


# keyed by the data root's URI, not the folder: on a store every machine's mirror is its own
# folder, and the videos one machine made are fetched by the others instead of made again
@task(name="generate-puppets", cache_key_fn=lambda ctx, p: _key("puppets", "2", p["root"], p["spec"]))
def puppets_task(out_dir: str, spec: dict, root: str) -> list[str]:
    paths = synthetic.generate_world(Path(out_dir), spec["count"], spec["seed"], (spec["width"], spec["height"]), spec["seconds"])
    return [p.name for p in paths]


def _source_id(text: str) -> str | None:
    try:
        return parse_source(text).source_id
    except AnimateAnyoneError:
        return None


def _retry_if_transient(task, task_run, state) -> bool:
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_retryable(exc)


def run_ingest(cfg: PipelineConfig, sources: list[str] | None = None, refresh: bool = False, **kwargs):
    """The ingest flow with the task runner the pipeline asks for (``ingest.workers`` threads)."""
    return ingest.with_options(task_runner=task_runner(cfg, cfg.ingest.workers))(cfg=cfg, sources=sources,
                                                                              refresh=refresh, **kwargs)


@flow(name="ingest")
def ingest(pipeline: str | None = None, config: str | None = None, cfg: PipelineConfig | None = None,
           sources: list[str] | None = None, data_root: str | None = None, dataset: str | None = None,
           refresh: bool = False) -> dict:
    """Download, split into shots and cut the pipeline's sources (or ``sources``) into clips."""
    cfg = resolve_config(cfg, pipeline, config, data_root=data_root, dataset=dataset)
    log = get_run_logger()
    root = DataRoot.from_uri(cfg.data_root)
    items = list(sources) if sources else stages.pipeline_sources(cfg, Path(cfg.base_dir) if cfg.base_dir else None)
    puppets = cfg.sources.puppets if not sources else None
    if puppets:
        folder = root.puppets_dir
        spec = puppets.model_dump(exclude={"shots"})
        names = puppets_task.with_options(**cached_task_options(root, refresh))(str(folder), spec, root.uri)
        if not all(storage.fetch(folder / n) for n in names):  # made before, but deleted since
            names = puppets_task.with_options(**cached_task_options(root, refresh=True))(str(folder), spec, root.uri)
        puppet_cfg = cfg.ingest.model_copy(update={"shots": puppets.shots}) if puppets.shots else cfg.ingest
        with serve_directory(folder) as base:
            log.info("serving %d puppet videos at %s", len(names), base)
            outcomes = _ingest_all([f"{base}/{n}" for n in names], root, cfg.dataset, puppet_cfg, log, refresh)
        outcomes += _ingest_all(items, root, cfg.dataset, cfg.ingest, log, refresh) if items else []
    else:
        outcomes = _ingest_all(items, root, cfg.dataset, cfg.ingest, log, refresh)
    refresh_catalog(root)
    summary = {
        "pipeline": cfg.name, "dataset": cfg.dataset, "data_root": root.uri, "sources": len(outcomes),
        "ok": sum(o["status"] == "ok" for o in outcomes), "duplicate": sum(o["status"] == "duplicate" for o in outcomes),
        "failed": sum(o["status"] == "failed" for o in outcomes), "clips": sum(o["clips"] for o in outcomes),
    }
    create_table_artifact(table=[{k: o.get(k) for k in ("url", "status", "shots", "clips", "error")} for o in outcomes] or [{}],
                          key="ingest-summary", description=f"ingest of {cfg.name}: {summary}")
    log.info("ingest finished: %s", summary)
    return {**summary, "outcomes": outcomes}


def _ingest_all(items: list[str], root: DataRoot, dataset: str, cfg: Ingest, log, refresh: bool) -> list[dict]:
    opts = cached_task_options(root, refresh)
    ds = Dataset(root, dataset)
    r = cfg.download.retries
    dl = download_task.with_options(retries=r.attempts - 1, retry_delay_seconds=retry_delays(r),
                                    retry_jitter_factor=r.jitter or None, retry_condition_fn=_retry_if_transient)
    det, cut, wr = (t.with_options(**opts) for t in (detect_task, cut_task, write_task))
    total = len(items)
    bar = create_progress_artifact(progress=0.0, key="ingest-progress", description=f"{total} sources")
    outcomes: list[dict] = []

    def finished(outcome: dict) -> None:
        outcomes.append(outcome)
        if outcome["status"] == "failed":
            log.error("FAILED %s at %s: %s", outcome["url"], outcome.get("stage"), outcome["error"])
        update_progress_artifact(bar, progress=100.0 * len(outcomes) / max(total, 1))
        progress.report("sources", len(outcomes), total)

    progress.report("sources", 0, total)
    first: dict[str, str] = {}
    ids = {src: _source_id(src) for src in items}  # a local file's id hashes its bytes: once
    for src in items:  # two names of one source (a copy of a local file has its id): fetched once
        sid = ids[src]
        if sid is not None and sid in first:
            finished({"source_id": sid, "url": src, "status": "duplicate", "shots": 0, "clips": 0,
                      "error": f"the same source as {first[sid]}"})
        elif sid is not None:
            first[sid] = src
    futures = {dl.submit(src, root.uri, cfg): src for src in items
               if ids[src] is None or first[ids[src]] == src}
    chains = []
    for fut in as_completed(list(futures)):
        src = futures[fut]
        fetched = fut.result(raise_on_failure=False)
        if isinstance(fetched, BaseException):
            finished(stages.record_failure(ds, "download", src, fetched))
        elif fetched.duplicate_of:
            finished(stages.write_duplicate(fetched, ds))
        else:
            d = det.submit(fetched, cfg, root.uri)
            c = cut.submit(d, root.uri, cfg)
            chains.append((src, d, c, wr.submit(c, root.uri, dataset, cfg)))
    for src, *steps in chains:
        for stage, f in zip(("detect", "cut", "write"), steps):
            value = f.result(raise_on_failure=False)
            if isinstance(value, BaseException):
                finished(stages.record_failure(ds, stage, src, value))
                break
        else:
            finished(value)
    return outcomes
