"""What the web page does, without the page: uploads kept under the data root, the motion made
ready (a pose video as it is, a video's poses extracted and drawn, a clip's id), the fitted
reference's preview, the model store's list, the clip search, a request run here or as a run of
the pipeline's ``animate`` deployment, each error placed next to the field it concerns, and what
the Browse tab shows from the tables. Gradio is imported by :mod:`animate_anyone.app.page` only.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from animate_anyone import animate as lib
from animate_anyone import progress as progress_events
from animate_anyone.config import PipelineConfig, config_path
from animate_anyone.errors import AnimateAnyoneError, MediaError
from animate_anyone.files import atomic_path, check_name
from animate_anyone.ids import sha256_file
from animate_anyone.media.video import VideoWriter, probe
from animate_anyone.models import store
from animate_anyone.tables.catalog import QueryError, query
from animate_anyone.tables.io import DataRoot, Dataset

log = logging.getLogger(__name__)

MOTION_POSE_VIDEO = "Pose video"
MOTION_VIDEO = "Video (poses extracted here)"
MOTION_CLIP = "Clip from the tables"
MOTIONS = (MOTION_POSE_VIDEO, MOTION_VIDEO, MOTION_CLIP)
# the fields an error can stand beside; "request" is the button's own (what concerns no one field)
FIELDS = ("reference", "motion", "model", "frames", "steps", "guidance", "size", "fit", "request")
FLAG_FIELDS = {"--seed": "size", "--frames": "frames", "--steps": "steps", "--guidance": "guidance", "--width": "size",
               "--height": "size", "--fit": "fit", "--background": "reference", "--retarget": "motion",
               "--fps": "motion", "--window": "request", "--overlap": "request"}
REASON_FIELDS = {"bad_image": "reference", "no_person": "reference", "bad_pose_video": "motion",
                 "zero_frames": "motion", "unknown_clip": "motion", "no_poses": "motion", "fps_mismatch": "motion",
                 "size_mismatch": "size", "retarget_needs_keypoints": "motion", "bad_motion_video": "motion",
                 "bad_model": "model", "missing_model": "model", "incomplete_model": "model",
                 "unknown_family": "model", "empty_snapshot": "motion"}
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
TINY_RANDOM = "tiny-random"  # a seeded tiny model the store builds on first use (no weights needed)


class RequestError(AnimateAnyoneError):
    """A request the page cannot run; ``field`` says next to which input its message goes."""

    def __init__(self, message: str, field: str = "request", reason: str = "bad_request"):
        super().__init__(message, reason)
        self.field = field


def number(text, flag: str, whole: bool = True) -> int | float | None:
    """A setting typed into the page: blank is None (the pipeline's or the family's value), anything
    else must be a number (a whole one for counts and sizes); its limits are checked with the
    command line's (``animate.check_options``)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise RequestError(f"{flag} must be a {'whole ' if whole else ''}number; got {str(text)!r}",
                           FLAG_FIELDS.get(flag, "request"), "bad_option") from None
    if whole and value != int(value):
        raise RequestError(f"{flag} must be a whole number; got {str(text)!r}", FLAG_FIELDS.get(flag, "request"),
                           "bad_option")
    return int(value) if whole else value


def field_of(message: str, reason: str | None = None) -> str:
    """Which input an error of the animate use case concerns: by its reason, else by the flag or
    the thing its message names first (the command line's messages name them)."""
    if reason in REASON_FIELDS:
        return REASON_FIELDS[reason]
    for flag, name in FLAG_FIELDS.items():
        if message.startswith(flag) or f" {flag} " in f" {message} ":
            return name
    lowered = message.lower()
    if lowered.startswith("reference"):
        return "reference"
    if lowered.startswith(("pose video", "motion video", "clip ", "no clip")):
        return "motion"
    if lowered.startswith("model"):
        return "model"
    return "request"


@dataclass
class Motion:
    """The motion a request animates along: a pose video's path or a clip id, and its canvas."""

    pose: str
    canvas: tuple[int, int]
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    video: str
    grid: str | None
    summary: str
    notes: list[str]


class AppService:
    """The page's work on one pipeline's data root; ``deployment`` (``animate/NAME``) sends each
    request to that deployment's workers instead of running it in this process."""

    def __init__(self, cfg: PipelineConfig, config: Path | None = None, deployment: str | None = None):
        self.cfg = cfg
        self.config = config_path(config)
        self.root = DataRoot.from_uri(cfg.data_root)
        self.ds = Dataset(self.root, cfg.dataset)
        self.deployment = deployment
        self.slots = max(1, cfg.gpu_slots)
        self._extract_lock = threading.Lock()  # one pose backend at a time (MediaPipe's graph is per process)

    # --- files ------------------------------------------------------------------------------------

    @property
    def uploads_dir(self) -> Path:
        return self.root.path / "uploads"

    @property
    def app_dir(self) -> Path:
        return self.root.outputs_dir / "app"

    def keep_upload(self, path: str | Path) -> Path:
        """An uploaded file, copied under ``DATA_ROOT/uploads/SHA16/NAME`` (its name kept, so messages
        and the failures table name what the person chose; the same bytes are kept once), where this
        process, a deployment's workers and a later look at the failures can read it."""
        src = Path(path)
        if not src.is_file():
            raise RequestError(f"upload {src.name}: the file is gone (upload it again)", "request", "missing_file")
        name = src.name if not src.name.startswith(".") else "upload" + src.suffix
        dest = self.uploads_dir / sha256_file(src)[:16] / name
        if not dest.is_file():
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
        return dest

    # --- the model store --------------------------------------------------------------------------

    def models(self) -> list[tuple[str, str]]:
        """(label, value) for every model folder under ``DATA_ROOT/models`` (and its baselines), with
        its family; the pipeline's own model first when it is there; ``tiny-random`` (built on first
        use) when the store holds none of that name."""
        found: list[tuple[str, str]] = []
        folder = self.root.models_dir
        for sub in (folder, folder / "baselines"):
            if not sub.is_dir():
                continue
            for path in sorted(sub.iterdir()):
                if path.name.startswith(".") or not store.is_model(path):
                    continue
                name = path.name if sub == folder else f"baselines/{path.name}"
                trained = store.trained_by(path)
                more = f", stage {trained['stage']} step {trained.get('step')}" if trained.get("stage") is not None else ""
                found.append((f"{name} ({store.family(path)}{more})", name))
        names = {v for _, v in found}
        if TINY_RANDOM not in names:
            found.append((f"{TINY_RANDOM} (animate-anyone, untrained: built on first use)", TINY_RANDOM))
        want = self.cfg.animate.model
        found.sort(key=lambda item: item[1] != want)
        return found

    def model_path(self, value: str | None) -> str:
        """The model a request names: a store name (``baselines/NAME`` included) or a path; refused
        here when the store has no such folder (the page's message is the command line's)."""
        value = (value or "").strip()
        if not value:
            raise RequestError("choose a model (a folder of the model store, or a path to one)", "model", "missing_model")
        if value == TINY_RANDOM:
            return value
        if value.startswith("baselines/"):
            path = self.root.models_dir / "baselines" / check_name(value.split("/", 1)[1], "baseline name")
        else:
            path = store.ModelStore(self.root.path).resolve(value, self.root.path)
        try:
            store.require_model(path)
        except store.ModelFolderError as exc:
            raise RequestError(exc.message, "model", exc.reason) from exc
        return str(path)

    # --- clips ------------------------------------------------------------------------------------

    def search_clips(self, split: str | None = None, min_body: float = 0.0, min_one_person: float = 0.0,
                     min_motion: float = 0.0, min_seconds: float = 0.0, text: str = "", limit: int = 200) -> list[dict]:
        """Clips with poses, filtered on the pose summary's columns (``clip_pose_summary`` joined
        with ``clips``), most confident bodies first."""
        sql = """
            SELECT s.clip_id, s.source_id, s.split, round(s.num_frames / s.fps, 2) AS seconds, s.num_frames AS frames,
                   s.width || 'x' || s.height AS size, round(s.body_conf::DOUBLE, 3) AS body_conf,
                   round(s.one_person_ratio::DOUBLE, 3) AS one_person, round(s.hands_visible_ratio::DOUBLE, 3) AS hands_visible,
                   round(s.motion_energy::DOUBLE, 3) AS motion, s.model AS pose_model
            FROM clip_pose_summary s JOIN clips c ON c.clip_id = s.clip_id AND c.dataset = s.dataset
            WHERE s.dataset = $dataset AND ($split = '' OR s.split = $split) AND s.body_conf >= $body
              AND s.one_person_ratio >= $one AND s.motion_energy >= $motion AND s.num_frames / s.fps >= $seconds
              AND (($text = '') OR contains(lower(s.clip_id), lower($text)) OR contains(lower(s.source_id), lower($text)))
            ORDER BY s.body_conf DESC, s.clip_id
            LIMIT $limit"""
        params = {"dataset": self.cfg.dataset, "split": split or "", "body": float(min_body or 0),
                  "one": float(min_one_person or 0), "motion": float(min_motion or 0),
                  "seconds": float(min_seconds or 0), "text": (text or "").strip(), "limit": int(limit)}
        try:
            return query(self.root, sql, params=params).to_pylist()
        except QueryError as exc:  # no clips or no poses yet: nothing to list
            log.info("clip search: %s", exc)
            return []

    def clip_row(self, clip_id: str) -> dict:
        rows = self.ds.read("clips", where={"clip_id": clip_id}).to_pylist() if clip_id else []
        if not rows:
            raise RequestError(f"no clip {clip_id!r} in dataset {self.cfg.dataset!r} (search the tables for one)",
                               "motion", "unknown_clip")
        return rows[0]

    def overlay(self, clip_id: str) -> Path:
        """The clip's frames with its stored skeleton drawn over them (made once, under outputs/app/)."""
        from animate_anyone.pose.render import render_clip

        self.clip_row(clip_id)
        out = self.app_dir / "overlays" / f"{check_name(clip_id, 'clip id')}.mp4"
        if not out.is_file():
            try:
                render_clip(self.root, clip_id, out, overlay=True)
            except AnimateAnyoneError as exc:
                raise RequestError(exc.message, "motion", exc.reason) from exc
        return out

    # --- motion and preview -----------------------------------------------------------------------

    def motion(self, kind: str, upload: str | None, clip_id: str | None, frames: int | None = None,
               extract: bool = True) -> Motion:
        """The motion as the animate use case takes it. A plain video's poses are extracted with the
        pipeline's pose backend (main person per frame, the first ``frames``) and drawn as a pose
        video beside the upload; without ``extract``, only its canvas is read (the preview)."""
        if kind == MOTION_CLIP:
            clip_id = (clip_id or "").strip()
            if not clip_id:
                raise RequestError("pick a clip: search the tables and click a row, or type its id", "motion",
                                   "missing_input")
            row = self.clip_row(clip_id)
            return Motion(clip_id, (row["width"], row["height"]))
        if kind not in MOTIONS:
            raise RequestError(f"motion must be one of {', '.join(MOTIONS)}; got {kind!r}", "motion", "bad_option")
        if not upload:
            what = "a pose video (rendered skeletons)" if kind == MOTION_POSE_VIDEO else "a video of a person moving"
            raise RequestError(f"upload {what}", "motion", "missing_input")
        path = self.keep_upload(upload)
        what = "pose video" if kind == MOTION_POSE_VIDEO else "motion video"
        try:
            info = probe(path)
        except MediaError as exc:
            raise RequestError(f"{what} {path.name}: {exc}", "motion", "bad_pose_video") from exc
        if kind == MOTION_POSE_VIDEO or not extract:
            return Motion(str(path), (info.width, info.height))
        return self._extracted(path, info, frames)

    def _extracted(self, path: Path, info, frames: int | None) -> Motion:
        from animate_anyone.config import Pose
        from animate_anyone.pose.backends import load_backend
        from animate_anyone.pose.extract import prefetch_frames
        from animate_anyone.pose.render import draw_pose

        limit = frames or info.num_frames or None
        out = path.with_name(f"{path.stem}.poses-{self.cfg.pose.backend}-{limit or 'all'}.mp4")
        if out.is_file():
            return Motion(str(out), (info.width, info.height), [f"poses of {path.name}: extracted before, reused"])
        size = np.array([info.width, info.height], np.float32)
        found = total = 0
        with self._extract_lock:
            backend = load_backend(Pose(**self.cfg.pose.model_dump()), None,
                                   Path(self.cfg.base_dir) if self.cfg.base_dir else None)
            try:
                backend.start_clip()
                with VideoWriter(out, info.width, info.height, info.fps) as writer:
                    for rgb in prefetch_frames(path):
                        people = backend.process([rgb])[0].ordered()
                        if len(people):
                            found += 1
                            writer.write(draw_pose((info.width, info.height), people.keypoints[:1] / size,
                                                   people.scores[:1]))
                        else:
                            writer.write(np.zeros((info.height, info.width, 3), np.uint8))
                        total += 1
                        progress_events.report("extracting poses", total, limit or total)
                        if limit and total >= limit:
                            break
                    if found == 0:
                        raise RequestError(f"motion video {path.name}: no person found in its {total} frames by the "
                                           f"{backend.name} pose backend", "motion", "no_person")
            except MediaError as exc:
                raise RequestError(f"motion video {path.name}: {exc}", "motion", "bad_motion_video") from exc
            finally:
                backend.close()
        return Motion(str(out), (info.width, info.height),
                      [f"poses of {path.name} extracted by {self.cfg.pose.backend}: a person in {found} of {total} frames"])

    def preview(self, reference: str | None, kind: str, upload: str | None, clip_id: str | None,
                width: str | None, height: str | None, fit: str, background: str | None = None
                ) -> tuple[np.ndarray | None, str]:
        """The reference as the model will see it: read (transparent ones composited, greyscale
        converted) and fitted to the output's size when the motion is known; and a line saying so."""
        if not reference:
            return None, ""
        request = lib.AnimateRequest(width=number(width, "--width"), height=number(height, "--height"), fit=fit,
                                     background=background)
        fit, background, width, height, _, size_given = self._options(request)
        image, notes = self._reference(self.keep_upload(reference), background)
        try:
            motion = self.motion(kind, upload, clip_id, extract=False)
        except RequestError:
            h, w = image.shape[:2]
            return image, " ".join(notes + [f"{w}x{h} as uploaded; choose the motion to see it fitted"])
        try:
            w, h = lib.output_size(motion.canvas, width, height, "the motion", strict=size_given)
        except lib.AnimateInputError as exc:
            raise RequestError(exc.message, field_of(exc.message, exc.reason), exc.reason) from exc
        fitted, note = lib.fit_image(image, (w, h), fit)
        return fitted, " ".join(notes + [note or f"fitted to {w}x{h}, the output's size"])

    def _options(self, request: lib.AnimateRequest) -> tuple:
        try:
            return lib.check_options(self.cfg, request)
        except lib.AnimateInputError as exc:
            raise RequestError(exc.message, field_of(exc.message, exc.reason), exc.reason) from exc

    def _reference(self, path: Path, background: str) -> tuple[np.ndarray, list[str]]:
        """The kept reference image as RGB, or its error for the reference field."""
        try:
            return lib.read_reference(path, background)
        except lib.AnimateInputError as exc:
            raise RequestError(exc.message, "reference", exc.reason) from exc

    # --- a request --------------------------------------------------------------------------------

    def request(self, reference: str | None, kind: str, upload: str | None, clip_id: str | None, model: str | None,
                frames=None, steps=None, guidance=None, width=None, height=None, retarget: bool | None = None,
                fit: str | None = None, seed=None, on_progress: Callable[[str, int, int], None] | None = None
                ) -> tuple[lib.AnimateRequest, list[str]]:
        """The page's fields as the command line's request, checked as the command line checks them
        (options first, then the reference, the model and the motion), and what making the motion
        ready said (a video's poses: in how many frames a person was found)."""
        ints = {k: number(v, f"--{k}") for k, v in (("frames", frames), ("steps", steps), ("width", width),
                                                      ("height", height), ("seed", seed))}
        guidance = number(guidance, "--guidance", whole=False)
        probe_request = lib.AnimateRequest(frames=ints["frames"], steps=ints["steps"], guidance=guidance,
                                           width=ints["width"], height=ints["height"], fit=fit)
        _, background, *_ = self._options(probe_request)
        if not reference:
            raise RequestError("upload a reference image (RGB, RGBA or greyscale)", "reference", "missing_input")
        ref_path = self.keep_upload(reference)
        self._reference(ref_path, background)
        model_value = self.model_path(model)
        # a video's poses are extracted here, also for a deployment: its workers get the pose video
        with progress_events.listen(lambda what, done, total, _: on_progress and on_progress(what, done, total)):
            motion = self.motion(kind, upload, clip_id, ints["frames"])
        folder = self.app_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        name = f"{Path(ref_path).stem}.{Path(motion.pose).stem}.mp4"
        request = lib.AnimateRequest(reference=str(ref_path), pose=motion.pose, model=model_value,
                                     out=str(folder / name), retarget=retarget if kind == MOTION_CLIP else None,  # keypoints only
                                     frames=ints["frames"], height=ints["height"], width=ints["width"],
                                     steps=ints["steps"], guidance=guidance, seed=ints["seed"], fit=fit,
                                     base_dir=str(self.root.path))
        return request, motion.notes

    def record_refusal(self, exc: RequestError, reference: str | None, pose: str | None) -> None:
        """A request the page refused, in ``failures`` as the command line records its own (stage
        ``animate``; the same row for the same reference and pose)."""
        try:
            lib.record_failure(self.cfg, lib.AnimateRequest(reference=reference or "(no reference)",
                                                            pose=pose or "(no motion)"),
                               lib.AnimateInputError(exc.message, exc.reason))
        except Exception as err:  # noqa: BLE001 - the message on the page matters more than the row
            log.warning("could not record the refused request in failures: %s", err)

    def run(self, request: lib.AnimateRequest, on_progress: Callable[[str, int, int], None] | None = None,
            on_state: Callable[[str], None] | None = None) -> Result:
        """Animate ``request`` here, or as a run of the deployment (following its state)."""
        if self.deployment:
            return self._run_deployment(request, on_state or (lambda _: None))
        me = threading.get_ident()

        def listener(what: str, done: int, total: int, _details: dict) -> None:
            if on_progress and threading.get_ident() == me:  # another request's reports are not ours
                on_progress(what, done, total)

        try:
            with progress_events.listen(listener):
                info = lib.run_animate(self.cfg, request)
        except AnimateAnyoneError as exc:
            err = RequestError(exc.message, field_of(exc.message, exc.reason), exc.reason)
            err.recorded = isinstance(exc, lib.AnimateInputError)  # run_animate has put it in failures
            raise err from exc
        model = Path(info["model"]) if info.get("model") else Path(request.model)
        summary = (f"{info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps, generated in "
                   f"{info['generate_s']:.1f} s on {info['device']} by {model.name} ({store.family(model)})")
        return Result(info["out"], info["grid"], summary, list(info["notes"]))

    def deployment_parameters(self, request: lib.AnimateRequest) -> dict:
        """The run's parameters: the pipeline, its file and data root (as `animate-anyone deploy`
        sets them), and the request's values that are set."""
        params = {"pipeline": self.cfg.name, "config": str(self.config),
                  "data_root": self.cfg.data_root if "://" in self.cfg.data_root else str(self.root.path)}
        for key in ("reference", "pose", "model", "out", "retarget", "frames", "height", "width", "steps", "guidance",
                    "seed", "fit", "base_dir"):
            value = getattr(request, key)
            if value is not None:
                params[key] = value
        return params

    def check_deployment(self) -> str:
        """The deployment's id on the server in use, or an error that says what to run."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                return str(client.read_deployment_by_name(self.deployment).id)
        except ObjectNotFound:
            raise RequestError(f"no deployment {self.deployment} on the Prefect server in use: run `animate-anyone "
                               f"deploy --pipeline {self.cfg.name}` first", "request", "no_deployment") from None

    def _run_deployment(self, request: lib.AnimateRequest, on_state: Callable[[str], None]) -> Result:
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        run = run_deployment(self.deployment, parameters=self.deployment_parameters(request), timeout=0)
        on_state(f"run {run.name} of {self.deployment}: {run.state.name if run.state else 'Scheduled'}")
        last = None
        with get_client(sync_client=True) as client:
            while True:
                current = client.read_flow_run(run.id)
                state = current.state
                label = state.name if state else "Scheduled"
                if label != last:
                    wait = " (waiting for a GPU slot)" if label == "AwaitingConcurrencySlot" else ""
                    on_state(f"run {current.name} of {self.deployment}: {label}{wait}")
                    last = label
                if state is not None and state.type.value in FINAL_STATES:
                    break
                time.sleep(1.0)
        if state.type.value != "COMPLETED":
            message = state.message or f"the run ended {state.name}"
            if "`: " in message:  # "animate `REF + POSE`: the use case's message"
                message = message.split("`: ", 1)[1]
            raise RequestError(f"{message} (run {current.name}, {state.name})", field_of(message), "run_failed")
        out = Path(request.out)
        grid = out.with_name(out.stem + ".grid.mp4")
        for path in (out, grid):
            self.root.fetch(path)
        if not out.is_file():
            raise RequestError(f"run {current.name} completed but {out} is not there: do the deployment's workers "
                               "share this data root?", "request", "missing_output")
        return Result(str(out), str(grid) if grid.is_file() else None, f"run {current.name} on {self.deployment}",
                      [])

    # --- browse -----------------------------------------------------------------------------------

    def table(self, sql: str, params: dict | None = None) -> list[dict]:
        try:
            return query(self.root, sql, params=params).to_pylist()
        except QueryError as exc:  # the table has no rows yet
            log.info("browse: %s", exc)
            return []

    def failures(self, limit: int = 500) -> list[dict]:
        return self.table("SELECT \"at\", stage, item_id, reason, message, attempt, source FROM failures "
                          "ORDER BY \"at\" DESC LIMIT $limit", {"limit": limit})

    def training_runs(self) -> list[dict]:
        return self.table("SELECT run_id, stage, status, final_step, steps, snapshot_id, started_at, ended_at, error "
                          "FROM train_runs ORDER BY started_at DESC")

    def loss_curve(self, run_id: str) -> Path | None:
        """The run's loss per step (and its running mean) as a PNG: the one training keeps beside its
        checkpoints, else drawn from ``train_metrics`` (a run whose folder is gone)."""
        from animate_anyone.training.report import loss_curve

        kept = self.root.checkpoints_dir / check_name(run_id, "run id") / "loss.png"
        self.root.fetch(kept)
        if kept.is_file():
            return kept
        rows = self.table("SELECT stage, step, loss FROM train_metrics WHERE run_id = $run ORDER BY step",
                          {"run": run_id})
        if not rows:
            return None
        out = self.app_dir / "loss" / f"{run_id}-{len(rows)}.png"
        if not out.is_file():
            loss_curve(rows, out, f"{run_id}: stage {rows[0]['stage']}, {len(rows)} steps")
        return out

    def leaderboards(self) -> list[str]:
        """The benches with a leaderboard under DATA_ROOT/evaluations/, newest first."""
        folder = self.root.evaluations_dir
        files = sorted(folder.glob("leaderboard-*.md"), key=lambda p: p.stat().st_mtime, reverse=True) \
            if folder.is_dir() else []
        return [p.stem.removeprefix("leaderboard-") for p in files]

    def leaderboard(self, bench: str) -> tuple[str, str | None, list[str]]:
        """A leaderboard's markdown, its steps plot and its grid videos (best and worst clips)."""
        from animate_anyone.evaluation.report import bench_table

        folder = self.root.evaluations_dir
        file = folder / f"leaderboard-{check_name(bench, 'bench')}.md"
        if not file.is_file():
            return f"No leaderboard {bench!r} under {folder}.", None, []
        text = file.read_text()
        # leaderboard-PIPELINE.md is a copy of its newest bench's: that bench's evaluations are its rows
        benches = [bench] + [p.stem.removeprefix("leaderboard-") for p in sorted(folder.glob("leaderboard-*.md"))
                             if p != file and p.read_text() == text]
        eval_ids = [r["eval_id"] for b in benches for r in bench_table(self.root, b)]
        plots = [folder / f"steps-{b}.png" for b in benches if (folder / f"steps-{b}.png").is_file()]
        plot = plots[0] if plots else None
        grids = sorted(str(p) for e in eval_ids for p in (folder / e).glob("grid-*.mp4"))
        return text, str(plot) if plot else None, grids

