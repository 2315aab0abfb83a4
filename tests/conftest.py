"""Shared fixtures: puppet videos with ground truth, a loopback server that misbehaves on
purpose, the real fixtures folder, and one Prefect test server for the whole session."""
from __future__ import annotations

import os


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker (and every process it starts) gets its share of the CPUs as
    its thread budget, set before torch is imported. With 2 workers on 2 cores, torch's default of
    one thread per core ran the training tests at twice the CPU time (tests/training: 5 min of CPU
    against 2.5, and 185 s against 109 s of wall time). A budget the user set wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        from animate_anyone.devices import usable_cpus  # no torch there

        per = str(max(1, usable_cpus() // workers))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, per)


_share_the_cores()

import socket  # noqa: E402 - after the thread budget above
import threading  # noqa: E402
from collections import Counter  # noqa: E402
from http.server import SimpleHTTPRequestHandler  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import shared_once  # noqa: E402

from animate_anyone import synthetic  # noqa: E402
from animate_anyone.ingest.serve import serve_directory  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


# the suite's longest tests first, so that pytest-xdist's workers do not end on one of them
# alone (longest-first scheduling); the rest keep their order. `make test` distributes whole files
# (`--dist loadfile`): a module-scoped fixture such as tests/deploy's server then starts once; and
# it passes `--no-loadscope-reorder`, without which xdist 3.8 sends the files with the most tests
# first and this order is lost (the rehearsal, 4 minutes, started 19 minutes into a 24-minute run).
# (`--dist loadgroup` would not do: pytest-xdist 3.8.0 tags groups through `item._nodeid`, which
# pytest 9 no longer reads, so its groups are split across workers.)
LONGEST_FIRST = ("tests/deploy/test_rehearsal.py", "test_cli.py::test_main_job_runs_the_demo_end_to_end",
                 "tests/deploy/test_deployments.py", "tests/e2e/test_reproducible_cli.py",
                 "tests/e2e/test_animate_cli.py", "tests/e2e/test_evaluate_cli.py", "tests/e2e/test_ingest_cli.py",
                 "tests/e2e/test_hostile_cli.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        for k, name in enumerate(LONGEST_FIRST):
            if name in item.nodeid:
                return k
        return len(LONGEST_FIRST) if item.get_closest_marker("slow") else len(LONGEST_FIRST) + 1

    items.sort(key=rank)



def need_shared_fixtures() -> Path:
    """The real media folder; CI always has it (missing there is a failure), a user's clone skips."""
    if not SHARED_FIXTURES.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have the shared fixtures at {SHARED_FIXTURES}")
        pytest.skip(f"real media fixtures not present at {SHARED_FIXTURES} (only in the project's own checkouts)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    return need_shared_fixtures()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """An S3-compatible server on loopback (moto's server mode, its own process) for this module."""
    from s3_server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One temporary Prefect API (real server, temporary database) for every flow test."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _multi_shot_spec(name: str, seed: int) -> synthetic.VideoSpec:
    """A 256x448 video with 6 cuts: two to the same dancer from another camera, one short shot."""
    C = synthetic.Camera
    shots = (
        synthetic.ShotSpec(95, 0, 0, "wave", C(0.5, 0.0), 0.8, 0.0),
        synthetic.ShotSpec(130, 0, 0, "wave", C(0.35, 0.1), 0.8, 1.0),  # same dancer and room, closer camera
        synthetic.ShotSpec(40, 3, 5, "jacks", C(0.45, -0.05), 1.0, 0.5),  # 1.3 s: too short for a clip
        synthetic.ShotSpec(340, 5, 2, "roll", C(0.48, 0.05), 0.6, 2.0),  # 11.3 s: split in two
        synthetic.ShotSpec(80, 5, 2, "roll", C(0.33, -0.08), 0.6, 0.3),  # same dancer and room again
        synthetic.ShotSpec(100, 6, 7, "squat", C(0.45, 0.0), 0.7, 1.2),
        synthetic.ShotSpec(75, 1, 9, "step", C(0.5, 0.02), 0.9, 0.7),
    )
    return synthetic.VideoSpec(name=name, width=256, height=448, shots=shots, seed=seed)


@pytest.fixture(scope="session", autouse=True)
def _shared_base(tmp_path_factory) -> None:
    shared_once.set_base(tmp_path_factory)


def _puppets(out: Path) -> None:
    for k in range(2):
        synthetic.write_video(_multi_shot_spec(f"planned_{k}", seed=k), out)
    for k in range(2):
        synthetic.write_video(synthetic.plan_video(f"random_{k}", 40 + k, 20.0, 256, 448), out)


@pytest.fixture(scope="session")
def puppet_dir() -> Path:
    """Two hand-planned multi-shot videos and two planned by the world's own planner (read only)."""
    return shared_once.built_once("puppets", _puppets)


@pytest.fixture(scope="session")
def bad_media(puppet_dir) -> Path:
    """Files that look like videos and are not, or are too short to give a clip (read only)."""
    return shared_once.built_once("bad-media", lambda out: _bad_media(out, puppet_dir))


def _bad_media(out: Path, puppet_dir: Path) -> None:
    good = (puppet_dir / "planned_0.mp4").read_bytes()
    (out / "truncated.mp4").write_bytes(good[: len(good) * 6 // 10])
    (out / "empty.mp4").write_bytes(b"")
    (out / "text.mp4").write_text("this is not a video, just text with a video's name\n" * 20)
    (out / "page.html").write_text("<html><head><title>Nothing here</title></head><body><p>No video.</p></body></html>")
    C = synthetic.Camera
    synthetic.write_video(synthetic.VideoSpec("short", 256, 448, (synthetic.ShotSpec(45, 2, 1, "sway", C(0.5)),)), out)
    synthetic.write_video(synthetic.VideoSpec("single", 256, 448, (synthetic.ShotSpec(1, 2, 1, "sway", C(0.5)),)), out)
    synthetic.write_video(synthetic.VideoSpec("good", 256, 448, (synthetic.ShotSpec(90, 4, 3, "wave", C(0.5)),)), out)
    synthetic.write_video(synthetic.VideoSpec("retry", 256, 448, (synthetic.ShotSpec(75, 7, 8, "step", C(0.5)),)), out)
    (out / "mirror").mkdir()
    (out / "mirror" / "good.mp4").write_bytes((out / "good.mp4").read_bytes())
    (out / "other").mkdir()
    (out / "other" / "good.mp4").write_bytes((out / "retry.mp4").read_bytes())  # same name, other video


class FaultServer:
    """Loopback HTTP server over a folder with scripted failures; counts requests per path.

    /404/…             always 404            /500/…      always 500
    /429once/NAME      429 on the first GET of NAME, then the file
    anything else      the file (Content-Type from its extension)
    """

    def __init__(self, base: str, hits: Counter):
        self.base, self.hits = base, hits

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


@pytest.fixture()
def fault_server(bad_media):
    hits: Counter = Counter()
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            """Quiet: the test counts requests instead."""

        def _count(self) -> int:
            with lock:
                hits[self.path] += 1
                return hits[self.path]

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            n = self._count()
            if self.path.startswith("/404/"):
                return self.send_error(404, "Not Found")
            if self.path.startswith("/500/"):
                return self.send_error(500, "Internal Server Error")
            if self.path.startswith("/429once/"):
                if n == 1:
                    self.send_response(429, "Too Many Requests")
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.path = "/" + self.path.split("/", 2)[2]
            return super().do_GET()

        def do_HEAD(self) -> None:  # noqa: N802
            if self.path.startswith(("/404/", "/500/", "/429once/")):
                return self.do_GET()
            return super().do_HEAD()

    with serve_directory(bad_media, Handler) as base:
        yield FaultServer(base, hits)


@pytest.fixture()
def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/video.mp4"


@pytest.fixture()
def test_config(tmp_path) -> Path:
    """A pipelines file like the demo's, with short retry waits and small puppets."""
    text = (REPO / "pipelines.yaml").read_text()
    import yaml

    cfg = yaml.safe_load(text)
    demo = cfg["pipelines"]["demo"]
    demo["ingest"]["download"]["retries"] = {"attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.2, "jitter": 0.2}
    demo["sources"]["puppets"].update({"count": 2, "seed": 3, "width": 256, "height": 448, "seconds": 7})
    demo["data_root"] = str(tmp_path / "data")
    # training at the smallest size, two steps a stage; animate with a random model unless trained
    demo["animate"].update(model="tiny-random", height=64)
    tiny = {"steps": 2, "batch": 2, "width": 32, "height": 64, "val_clips": 1, "val_frames": 3, "val_steps": 2}
    demo["train"].update(size="tiny", stage0=dict(tiny), stage1=dict(tiny),
                         stage2=dict(tiny, batch=1, frames=4, stride=2))
    cfg["pipelines"]["test"] = demo
    cfg["default"] = "test"
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# --- a Moore-AnimateAnyone checkpoint folder at tiny size ---------------------------------------------

def _to_moore_motion(key: str) -> str:
    """Our motion key → AnimateDiff/Moore layout (the inverse of `motion_key`)."""
    head, _, tail = key.partition(".motion_modules.")
    idx, _, rest = tail.partition(".")
    for new, old in ((".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1."),
                     (".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm.")):
        rest = ("." + rest).replace(new, old)[1:]
    return f"{head}.motion_modules.{idx}.temporal_transformer.{rest}"


@pytest.fixture(scope="session")
def moore_tiny(tmp_path_factory):
    """Moore-AnimateAnyone's four files and an SD-style base folder, at tiny size, random values."""
    import json

    import torch

    from animate_anyone.models.sizes import build_components

    tiny = build_components("tiny", seed=0)
    tmp = tmp_path_factory.mktemp("moore")
    torch.manual_seed(3)
    rand = lambda sd: {k: torch.randn_like(v.float()) for k, v in sd.items()}  # noqa: E731
    ref = rand(tiny["reference_unet"].state_dict())
    unet_sd = tiny["unet"].state_dict()
    den = rand({k: v for k, v in unet_sd.items() if "motion_modules" not in k})
    mm = rand({_to_moore_motion(k): v for k, v in unet_sd.items() if "motion_modules" in k and not k.endswith(".pe")})
    for k, v in unet_sd.items():
        if k.endswith(".pe"):
            for i in (0, 1):
                mm[_to_moore_motion(k).replace(".pos_embed.pe", f".attention_blocks.{i}.pos_encoder.pe")] = v.clone()
    pg = rand(tiny["pose_guider"].state_dict())
    moore = tmp / "moore"
    moore.mkdir()
    for name, sd in (("reference_unet", ref), ("denoising_unet", den), ("motion_module", mm), ("pose_guider", pg)):
        torch.save(sd, moore / f"{name}.pth")
    base = tmp / "sd15"
    config = {k: v for k, v in tiny["reference_unet"].config.items() if not k.startswith("_")}
    (base / "unet").mkdir(parents=True)
    (base / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", **config}))
    tiny["vae"].save_pretrained(base / "vae")
    tiny["image_encoder"].save_pretrained(base / "image_encoder")
    return {"moore": moore, "base": base, "ref": ref, "den": den, "mm": mm, "pg": pg, "tmp": tmp}


# --- the Prefect API as tests read it ---------------------------------------------------------------

class PrefectApi:
    """What a flow run left on the (test) Prefect server: task states, log lines, artifacts."""

    @staticmethod
    def task_states(flow_run_id) -> dict[str, str]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {r.name: r.state.name for r in runs}

    @staticmethod
    def artifacts(flow_run_id) -> dict:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        return {a.key: a for a in found}

    @staticmethod
    def flow_log(flow_run_id) -> list[str]:
        """The messages the flow run sent to the Prefect API (what its page in the UI shows)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
        return [entry.message for entry in logs]

    @staticmethod
    def run_ingest(**kwargs):
        from flows.ingest import ingest

        state = ingest(return_state=True, **kwargs)
        return state.result(), state.state_details.flow_run_id


@pytest.fixture()
def api(prefect_server) -> PrefectApi:
    return PrefectApi()


@pytest.fixture(scope="session")
def person_inputs() -> dict:
    """A puppet's first frame as the reference (MediaPipe finds it) and 16 frames of another
    puppet's poses drawn as a pose video (256x448, 30 fps): what a user brings (read only)."""
    import PIL.Image

    out = shared_once.built_once("inputs", _person_inputs)
    return {"ref": out / "ref.png", "kps": out / "kps.mp4", "frame": np.asarray(PIL.Image.open(out / "ref.png"))}


def _person_inputs(out: Path) -> None:
    import PIL.Image

    from animate_anyone import synthetic
    from animate_anyone.media.video import VideoWriter, iter_frames
    from animate_anyone.pose.render import draw_pose

    C = synthetic.Camera
    spec = synthetic.VideoSpec("dancer", 256, 448, (synthetic.ShotSpec(40, 2, 1, "wave", C(0.5)),))
    synthetic.write_video(spec, out, stamp=False)
    frame = next(iter(iter_frames(out / "dancer.mp4"))).to_ndarray(format="rgb24")
    PIL.Image.fromarray(frame).save(out / "ref.png")
    _, arrays = synthetic.load_truth(out / "dancer.mp4")
    kps, scores = arrays["keypoints"], arrays["visible"].astype(np.float32)
    with VideoWriter(out / "kps.mp4", 256, 448, 30) as w:
        for i in range(16):
            w.write(draw_pose((256, 448), kps[i][None] / np.array([256, 448], np.float32), scores[i][None]))
