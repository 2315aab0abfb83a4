"""The train use case: a pipeline's configured stages, in order, from a selection snapshot.

Stage k starts from stage k-1's pipeline folder (`DATA_ROOT/models/OUTPUT-stage<k-1>`), or from
`train.init` for the first stage run. A stage's run id is derived from what decides its result:
the snapshot's content, the stage's settings, the run's settings and the starting weights'
fingerprint. Its checkpoints live in `DATA_ROOT/checkpoints/RUN_ID/`, so running the same thing
again resumes it (after a crash, a kill or a Prefect retry) or, when it finished, skips it. The
last stage's folder is also `DATA_ROOT/models/OUTPUT` (a link), which `animate --model OUTPUT`
loads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from animate_anyone import progress
from animate_anyone.config import PipelineConfig
from animate_anyone.devices import free_port, has_cuda, resolve_device, usable_cpus
from animate_anyone.errors import PermanentError
from animate_anyone.files import write_text
from animate_anyone.ids import sha256_json
from animate_anyone.models import store
from animate_anyone.models.store import ModelStore
from animate_anyone.tables.io import DataRoot, Dataset
from animate_anyone.tables.selection import load_snapshot
from animate_anyone.training.launch import PROGRESS
from animate_anyone.training.loop import StageJob, run_stage
from animate_anyone.training.request import TrainInputError, parse_stages

TRAIN_VERSION = "2"  # bump when the loop's results change for the same inputs
# an exception's last line in a launched process's output (torchrun may prefix "[rankN]:")
EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]:\s*)?[A-Za-z_][\w.]*(Error|Exception|Stopped)\b[^:]*: ")


def _env_int(name: str) -> int | None:
    try:
        return max(0, int(os.environ.get(name, "")))
    except ValueError:
        return None


def model_store(cfg: PipelineConfig) -> ModelStore:
    return ModelStore(DataRoot.from_uri(cfg.data_root).path)


def stage_output(cfg: PipelineConfig, stage: int) -> Path:
    return model_store(cfg).stage(cfg.train.output, stage)


def start_of(cfg: PipelineConfig, stage: int) -> Path | None:
    """The folder stage ``stage`` starts from: the previous configured stage's output, if any."""
    before = [k for k in cfg.train.stages() if k < stage]
    if not before:
        return None
    prev = stage_output(cfg, before[-1])
    if not store.is_model(prev):
        raise TrainInputError(f"stage {stage} starts from stage {before[-1]}'s model, and {prev} does not exist yet; "
                              f"run `animate-anyone train --stage {before[-1]}` (or --stage all) first", "missing_stage")
    return prev


def plan_stage(cfg: PipelineConfig, stage: int, snapshot: dict, max_steps: int | None = None, resume: bool = True) -> StageJob:
    """The job of one stage (its starting weights must exist: run the stages in order)."""
    start = start_of(cfg, stage)
    stage_cfg = cfg.train.stages()[stage].model_dump()
    train_cfg = cfg.train.model_dump()
    decides = {"version": TRAIN_VERSION, "stage": stage, "snapshot": snapshot["clips_sha256"], "stage_cfg": stage_cfg,
               "train": {k: train_cfg[k] for k in ("size", "init", "seed")},
               "start": store.fingerprint(start) if start else None}
    run_id = f"{cfg.name}-s{stage}-" + sha256_json(decides)[:12]
    root = DataRoot.from_uri(cfg.data_root)
    return StageJob(data_root=root.uri, dataset=cfg.dataset, pipeline=cfg.name, stage=stage, stage_cfg=stage_cfg,
                    train_cfg=train_cfg, base_dir=cfg.base_dir, snapshot=snapshot, run_id=run_id,
                    run_dir=str(root.checkpoints_dir / run_id), start=str(start) if start else None,
                    output=str(stage_output(cfg, stage)), max_steps=max_steps, resume=resume)


def finished(job: StageJob) -> dict | None:
    """The stage's summary if its output folder is this run's, trained to the wanted step."""
    if not store.is_model(job.output):
        return None
    trained = store.trained_by(job.output)
    if trained.get("run_id") == job.run_id and trained.get("step", -1) >= job.end:
        return {"stage": job.stage, "run_id": job.run_id, "step": trained["step"], "output": job.output, "cached": True}
    return None


def run_stage_job(job: StageJob, processes: int = 1, accelerate_config: str | None = None,
                  stream=None) -> dict:
    """One stage, in this process or under `accelerate launch` with ``processes`` processes (its
    output passed line by line to ``stream``). One run per run id at a time: another waits."""
    Path(job.run_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(job.run_dir) / ".lock")):
        write_text(Path(job.run_dir) / "job.json", job.to_json())  # what `evaluate` rebuilds a checkpoint from
        done = finished(job) if job.resume else None
        if done:
            return done
        if processes <= 1 and not accelerate_config:
            return run_stage(job)
        return launch(job, processes, accelerate_config, stream)


def launch(job: StageJob, processes: int, accelerate_config: str | None, stream=None) -> dict:
    """The stage's processes as a subprocess (no shell): `accelerate launch` on GPUs (with
    ``accelerate_config``: multi-GPU, several nodes, DeepSpeed); on a CPU `torchrun` (gloo), since
    accelerate's own CPU launcher needs MPI. Accelerate picks either up from the environment.
    Their output goes line by line to ``stream``; the main process's ``progress`` reports are
    reported again here, as a run in this process would report them."""
    job_file = Path(job.run_dir) / "job.json"
    job_file.write_text(job.to_json())
    result = Path(job.run_dir) / "result.json"
    result.unlink(missing_ok=True)
    entry = ["-m", "animate_anyone.training.launch", str(job_file), str(result)]
    port = str(free_port())
    if job.train_cfg["device"] == "cpu" or not has_cuda():
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", port, *entry]
        # the CPUs this process may use (a container's or `taskset`'s set), or the threads the user
        # gave it (OMP_NUM_THREADS), shared among the processes: more threads than cores run slower
        budget = _env_int("OMP_NUM_THREADS") or usable_cpus()
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, budget // processes)), "ACCELERATE_USE_CPU": "true"}
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--main_process_port", port]
        cmd += ["--config_file", str(accelerate_config)] if accelerate_config else ["--multi_gpu"] * (processes > 1)
        cmd += entry
        env = dict(os.environ)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    tail: list[str] = []
    cause = None  # the first process's own exception line: the launcher's summary comes after it
    for line in proc.stdout:
        if line.startswith(PROGRESS):
            line_report = json.loads(line[len(PROGRESS):])
            progress.report(line_report["what"], line_report["done"], line_report["total"], **line_report["details"])
            continue
        tail = (tail + [line.rstrip()])[-30:]
        if cause is None and EXCEPTION_LINE.match(line) and "ChildFailedError" not in line:
            cause = line.strip()
        if stream:
            stream(line.rstrip())
    if proc.wait() != 0 or not result.is_file():
        said = f" ({cause[:2000]})" if cause else ""
        raise PermanentError(f"stage {job.stage} with {processes} processes ({cmd[2]}) exited with "
                             f"{proc.returncode}{said}:\n" + "\n".join(tail), "train_failed")
    return json.loads(result.read_text())


def train_device(cfg: PipelineConfig) -> str:
    """Where the pipeline trains: its ``train.device``, ``auto`` meaning a GPU when there is one."""
    return resolve_device(cfg.train.device)


def link_final(cfg: PipelineConfig, stage: int) -> Path:
    """``models/OUTPUT`` → ``OUTPUT-stage<k>`` (a relative link, replaced atomically; the store
    removes nothing outside ``models/``)."""
    return model_store(cfg).link(cfg.train.output, stage_output(cfg, stage))


@dataclass(frozen=True)
class TrainPlan:
    """What a train request resolves to: the stages to run, in order, and the snapshot."""

    stages: list[int]
    snapshot: dict
    max_steps: int | None = None
    resume: bool = True


def plan_training(cfg: PipelineConfig, stage: str | int | None = "all", snapshot_id: str | None = None,
                  resume: bool = True, max_steps: int | None = None) -> TrainPlan:
    """Check the request and resolve its stages and snapshot (default: the pipeline's, ``latest``)."""
    if max_steps is not None and max_steps < 1:
        raise TrainInputError(f"--max-steps must be at least 1; got {max_steps}", "bad_option")
    stages = parse_stages(stage, cfg)
    snapshot = load_snapshot(Dataset.of(cfg), snapshot_id or cfg.train.snapshot)
    return TrainPlan(stages, snapshot, max_steps, resume)


def stage_job(cfg: PipelineConfig, plan: TrainPlan, stage: int) -> StageJob:
    """Stage ``stage`` of ``plan`` as a job (after the stages before it have run)."""
    return plan_stage(cfg, stage, plan.snapshot, plan.max_steps, plan.resume)


def finish_training(cfg: PipelineConfig, plan: TrainPlan, results: list[dict]) -> dict:
    """Link ``models/OUTPUT`` to the last stage's folder when the plan ran the pipeline's last stage."""
    last = plan.stages[-1]
    link = link_final(cfg, last) if last == max(cfg.train.stages()) else None
    return {"snapshot_id": plan.snapshot["snapshot_id"], "stages": results, "model": str(link or results[-1]["output"])}


def train(cfg: PipelineConfig, stage: str | int | None = "all", snapshot_id: str | None = None, resume: bool = True,
          max_steps: int | None = None, stream=None) -> dict:
    """Train ``cfg``'s stages (``all`` or one) on a snapshot (default: the pipeline's, ``latest``)."""
    plan = plan_training(cfg, stage, snapshot_id, resume, max_steps)
    results = [run_stage_job(stage_job(cfg, plan, k), cfg.train.processes, cfg.train.accelerate_config, stream) for k in plan.stages]
    return finish_training(cfg, plan, results)
