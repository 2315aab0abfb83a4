"""The pipeline as its operators run it: `prefect server start`, `animate-anyone deploy`, one
process worker per pool, runs triggered with `prefect deployment run`, an interval schedule, the
refresh deployment's limit of one run at once, the animate deployment refusing bad
parameters, and the web page (`animate-anyone app --deployment`) animating through it. Every command is its own process, started from a clean folder with relative paths."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from prefect_stack import BIN, write_pipelines

from animate_anyone.tables import DataRoot, read_table

# one server, one deployment and its workers for the whole module (`make test` keeps a file on one
# xdist worker: --dist loadfile)
pytestmark = [pytest.mark.deploy, pytest.mark.slow, pytest.mark.timeout(900)]

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def deployed(stack, tmp_path_factory):
    """`animate-anyone deploy` of the smallest demo from an operator's folder, then both workers."""
    work = tmp_path_factory.mktemp("operator")
    write_pipelines(work / "pipelines.yaml", Path("data"))  # relative: deploy makes it absolute
    result = stack.run([str(BIN / "animate-anyone"), "deploy"], cwd=work)  # ./pipelines.yaml, its default
    assert result.returncode == 0, result.stdout + result.stderr
    stack.start_worker("cpu", work)
    stack.start_worker("gpu", work)
    return work, result.stdout


def _deployments(stack) -> dict:
    with stack.client() as c:
        return {f"{c.read_flow(d.flow_id).name}/{d.name}": d for d in c.read_deployments()}


def _runs(stack, deployment) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with stack.client() as c:
        return c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _wait(stack, run_ids, timeout=600) -> dict:
    deadline = time.monotonic() + timeout
    with stack.client() as c:
        while time.monotonic() < deadline:
            runs = {rid: c.read_flow_run(rid) for rid in run_ids}
            if all(r.state.type.value in FINAL for r in runs.values()):
                return runs
            time.sleep(1)
    raise AssertionError(f"runs not finished in {timeout} s: { {str(k): v.state.name for k, v in runs.items()} }\n"
                         f"{stack.log('worker-cpu')[-3000:]}")


def _clip_rows(work: Path) -> tuple[list, list]:
    root = DataRoot.from_uri(work / "data")
    clips = sorted(r["clip_id"] for r in read_table(root, "clips").to_pylist())
    posed = sorted(r["clip_id"] for r in read_table(root, "clip_pose_summary").to_pylist())
    return clips, posed


def test_deploy_creates_pools_limits_schedules_and_one_deployment_per_flow(stack, deployed):
    work, printed = deployed
    for name in ("refresh/test", "train/test", "evaluate/test", "animate/test", "prefect worker start --pool cpu"):
        assert name in printed
    deps = _deployments(stack)
    assert set(deps) == {"refresh/test", "train/test", "evaluate/test", "animate/test"}
    assert {k: d.work_pool_name for k, d in deps.items()} == {
        "refresh/test": "cpu", "train/test": "gpu", "evaluate/test": "gpu", "animate/test": "gpu"}
    assert [s.schedule.cron for s in deps["evaluate/test"].schedules] == ["0 3 * * *"]  # evaluate.schedule
    assert deps["refresh/test"].schedules == [] and deps["animate/test"].schedules == []
    refresh_limit = deps["refresh/test"].global_concurrency_limit
    assert refresh_limit.limit == 1 and deps["refresh/test"].concurrency_options.collision_strategy.value == "ENQUEUE"
    assert deps["animate/test"].global_concurrency_limit is None
    assert deps["refresh/test"].parameters == {"pipeline": "test", "config": str(work / "pipelines.yaml"),
                                               "data_root": str(work / "data")}
    with stack.client() as c:
        assert (c.read_work_pool("cpu").type, c.read_work_pool("cpu").concurrency_limit) == ("process", None)
        assert (c.read_work_pool("gpu").type, c.read_work_pool("gpu").concurrency_limit) == ("process", 1)
        assert c.read_global_concurrency_limit_by_name("gpu").limit == 1
    # deploying again updates in place: still four deployments, the same ids
    again = stack.run([str(BIN / "animate-anyone"), "deploy"], cwd=work)
    assert again.returncode == 0, again.stderr
    assert {k: d.id for k, d in _deployments(stack).items()} == {k: d.id for k, d in deps.items()}


def test_two_refreshes_at_once_wait_for_each_other_and_never_duplicate_rows(stack, deployed):
    """One refresh triggered from the command line and watched (`prefect deployment run --watch`),
    one from Python while it is queued or running: both run on the CPU worker, one after the
    other (the deployment's limit of one), and the tables hold each clip once, with its poses."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    work, _ = deployed
    before = _clip_rows(work)
    watch = subprocess.Popen([str(BIN / "prefect"), "deployment", "run", "refresh/test", "--watch",
                              "--watch-interval", "2"], cwd=work, env=stack.env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _runs(stack, _deployments(stack)["refresh/test"]):  # the command line's run is made
            assert time.monotonic() < deadline and watch.poll() is None, "`prefect deployment run` made no run"
            time.sleep(0.5)
        with temporary_settings({PREFECT_API_URL: stack.url}):
            second = run_deployment("refresh/test", timeout=0).id
        printed, _ = watch.communicate(timeout=600)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0 and "Completed" in printed, printed[-3000:] + stack.log("worker-cpu")[-3000:]
    first = re.search(r"UUID: ([0-9a-f-]{36})", printed).group(1)
    ids = [first, second]
    runs = _wait(stack, ids)
    assert all(r.state.is_completed() for r in runs.values()), {str(k): r.state.message for k, r in runs.items()}
    one, other = sorted(runs.values(), key=lambda r: r.start_time)
    assert other.start_time >= one.end_time  # one at a time: the deployment's limit is 1
    with stack.client() as c:
        states = [s.name for rid in ids for s in c.read_flow_run_states(rid)]
    assert "AwaitingConcurrencySlot" in states  # the second one waited (ENQUEUE), it was not dropped
    clips, posed = _clip_rows(work)
    assert clips and posed == clips and len(set(clips)) == len(clips)  # every clip cut has its poses, once
    if before[0]:
        assert (clips, posed) == before
    # one run each, as a rule; a full suite on a loaded machine once found an extra one (cause not
    # confirmed: the CLI's create request retried after a timeout would do it). Every run completed
    made = [r for r in _runs(stack, _deployments(stack)["refresh/test"]) if r.state.type.value != "SCHEDULED"]
    assert all(r.state.is_completed() for r in made), [(r.name, r.state.name) for r in made]
    assert "test-cpu" in stack.log("worker-cpu")


def test_a_cancelled_refresh_reruns_to_the_same_rows(stack, deployed, tmp_path):
    """An operator cancels a running refresh (its process is killed) and runs it again."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    work, _ = deployed
    fresh = tmp_path / "fresh-data"  # a data root of its own, so the run has real work to cut short
    with temporary_settings({PREFECT_API_URL: stack.url}):
        run = run_deployment("refresh/test", parameters={"data_root": str(fresh)}, timeout=0)
    deadline = time.monotonic() + 300
    with stack.client() as c:
        while not c.read_flow_run(run.id).state.is_running():
            assert time.monotonic() < deadline, c.read_flow_run(run.id).state
            time.sleep(0.5)
    time.sleep(3)  # mid-ingest
    cancel = stack.run([str(BIN / "prefect"), "flow-run", "cancel", str(run.id)], cwd=work)
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert _wait(stack, [run.id], timeout=120)[run.id].state.type.value == "CANCELLED"
    with temporary_settings({PREFECT_API_URL: stack.url}):
        again = run_deployment("refresh/test", parameters={"data_root": str(fresh)}, timeout=600)
    assert again.state.is_completed(), again.state.message
    root = DataRoot.from_uri(fresh)
    clips = sorted(r["clip_id"] for r in read_table(root, "clips").to_pylist())
    posed = sorted(r["clip_id"] for r in read_table(root, "clip_pose_summary").to_pylist())
    assert clips == posed == _clip_rows(work)[0]  # content-derived ids: the same clips as the first data root


def test_the_animate_deployment_refuses_bad_parameters_and_fails_a_bad_input(stack, deployed):
    work, _ = deployed
    run = [str(BIN / "prefect"), "deployment", "run", "animate/test"]
    for bad in ("frames=0", "frames=-3", "frames=\"many\"", "steps=0", "fit=\"squash\"", "device=\"tpu\""):
        result = stack.run(run + ["--param", bad], cwd=work)
        assert result.returncode != 0, bad
        assert "validation" in (result.stdout + result.stderr).lower(), (bad, result.stdout, result.stderr)
    assert _runs(stack, _deployments(stack)["animate/test"]) == []  # nothing was created
    # a run that animates is the web page's, next test (a watching command's exit 0: the refreshes')
    # an input that cannot be animated fails the run, so a watching operator's command fails too
    bad = stack.run(run + ["--param", "reference=no-such.png", "--watch", "--watch-interval", "2"], cwd=work)
    assert bad.returncode != 0 and "Failed" in bad.stdout, bad.stdout[-3000:]


def test_the_web_page_sends_a_request_to_the_animate_deployment_and_follows_its_run(stack, deployed):
    """`animate-anyone app --deployment` from the operator's folder: a picture and a clip of the
    tables become a run of animate/test on the gpu worker (the module's one animation); the page
    answers with its video."""
    import PIL.Image
    from gradio_client import Client, handle_file
    from prefect_stack import _free_port, stop_tree

    from animate_anyone.media.video import iter_frames, probe

    work, _ = deployed
    root = DataRoot.from_uri(work / "data")
    clip = sorted(read_table(root, "clips").to_pylist(), key=lambda r: r["clip_id"])[-1]
    picture = work / "dancer.png"  # a person's picture: another clip's first frame
    first = sorted(read_table(root, "clips").to_pylist(), key=lambda r: r["clip_id"])[0]
    frame = next(iter(iter_frames(root.media_path(first["clip_uri"])))).to_ndarray(format="rgb24")
    PIL.Image.fromarray(frame).save(picture)
    port = _free_port()
    page = stack.spawn("app", [str(BIN / "animate-anyone"), "app", "--deployment", "--port", str(port)], work)
    deadline = time.monotonic() + 120
    while f"127.0.0.1:{port}" not in stack.log("app"):
        assert page.poll() is None and time.monotonic() < deadline, stack.log("app")[-3000:]
        time.sleep(0.3)
    before = {r.id for r in _runs(stack, _deployments(stack)["animate/test"])}
    try:
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        status, video, grid, _, *errors = client.predict(
            ref=handle_file(str(picture)), kind_="Clip from the tables", upload=None, clip=clip["clip_id"],
            model_="tiny-random", frames_="3", steps_="2", guidance_="1", w="32", h="", retarget_=False, fit_="pad",
            seed_="0", api_name="/do_animate")
    finally:
        stop_tree(page)  # the page's process, not left to the module's end
    runs = [r for r in _runs(stack, _deployments(stack)["animate/test"]) if r.id not in before]
    assert len(runs) == 1 and runs[0].state.type.value == "COMPLETED", (status, errors, stack.log("app")[-3000:])
    assert f"run {runs[0].name} on animate/test" in status, status
    assert runs[0].parameters["pose"] == clip["clip_id"] and "/uploads/" in runs[0].parameters["reference"]
    out = Path(runs[0].parameters["out"])
    info = probe(out, count_frames=True)
    assert (info.width, info.num_frames) == (32, 3) and out.with_name(out.stem + ".grid.mp4").is_file()
    assert Path(video["video"] if isinstance(video, dict) else video).stat().st_size == out.stat().st_size
    assert str(runs[0].id) in stack.log("worker-gpu") and "test-gpu" in stack.log("worker-gpu"), \
        stack.log("worker-gpu")[-2000:]


def test_an_interval_schedule_gets_runs_created_and_executed_by_the_worker(stack, deployed):
    work, _ = deployed
    before = _clip_rows(work)
    # every 20 s: longer than one refresh of what is there takes on CI's 2 cores. At every 5 s the
    # runs came faster than they finished, queued on the deployment's limit of one, and each retry
    # was a new process: the server stopped answering (a ReadTimeout in the redeploy below)
    write_pipelines(work / "ticking.yaml", Path("data"), refresh={"pool": "cpu", "interval_s": 20})
    result = stack.run([str(BIN / "animate-anyone"), "deploy", "--config", "ticking.yaml", "--flow", "refresh"], cwd=work)
    assert result.returncode == 0, result.stderr
    assert "every 20 s" in result.stdout
    dep = _deployments(stack)["refresh/test"]
    # the scheduler makes the runs ahead of time (several, 20 s apart) and the worker executes them;
    # one completed run is enough to see both
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        made = [r for r in _runs(stack, dep) if r.auto_scheduled]
        if len(made) >= 2 and any(r.state.is_completed() for r in made):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"no scheduled run completed: {[r.state.name for r in _runs(stack, dep)]}")
    # back to on demand: redeploying without a schedule removes it
    assert stack.run([str(BIN / "animate-anyone"), "deploy", "--flow", "refresh"], cwd=work).returncode == 0
    assert _deployments(stack)["refresh/test"].schedules == []
    clips, posed = _clip_rows(work)
    assert clips and posed == clips and len(set(clips)) == len(clips)  # no row twice, however many runs
    if before[0]:
        assert (clips, posed) == before  # a refresh of what is already there writes no new rows
