"""What people look at instead of reading the tables: a markdown leaderboard of a bench (every
model beside its baselines), metric-over-steps plots of training runs (PNG), and per-clip grid
videos (reference | pose | generated | real | error heat map) of the best and worst clips."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import duckdb
import numpy as np

from animate_anyone.clipstore import ClipStore
from animate_anyone.evaluation.columns import COLUMNS, KIND_ORDER
from animate_anyone.files import atomic_path, write_text
from animate_anyone.media.frames import to_uint8
from animate_anyone.media.video import VideoWriter, iter_frames
from animate_anyone.models import store
from animate_anyone.tables.catalog import QueryError, query


def bench_table(root, bench: str) -> list[dict]:
    """One row per evaluation of ``bench``: its run's fields, each metric's mean over clips and, as
    ``METRIC_sd``, its standard deviation over clips (none for one clip, nor for a whole-set value)."""
    rows = query(root, """
        SELECT r.eval_id, r.model, r.model_name, r.kind, r.checkpoint_step, r.train_run_id, r.stage, r.status,
               r.clips_done, r.num_clips, x.metric, avg(x.value) AS value, stddev_samp(x.value) AS sd,
               count(*) AS clips
        FROM eval_runs r JOIN eval_results x USING (eval_id)
        WHERE r.bench = $bench AND x.frame_idx IS NULL
        GROUP BY ALL""", params={"bench": bench}).to_pylist()
    by: dict[str, dict] = {}
    for r in rows:
        item = by.setdefault(r["eval_id"], {k: r[k] for k in ("eval_id", "model", "model_name", "kind", "checkpoint_step",
                                                              "train_run_id", "stage", "status", "clips_done",
                                                              "num_clips")})
        item[r["metric"]] = r["value"]
        if r["sd"] is not None and r["clips"] > 1:
            item[f"{r['metric']}_sd"] = r["sd"]
    table = sorted(by.values(), key=lambda d: (KIND_ORDER.get(d["kind"], 3), d["train_run_id"] or "",
                                               d["checkpoint_step"] or 0, d["model_name"]))
    families = _families(root, table)
    for item in table:
        item["family"] = families.get(item["eval_id"])
    return table


def _families(root, table: list[dict]) -> dict[str, str]:
    """eval_id → the model family of each scored model: from the training run that made it
    (``train_runs.config``; a run from before families were recorded trained Animate Anyone), else
    from the model folder's manifest while the folder is there; none for the still reference and
    the pose-only drawing."""
    out: dict[str, str] = {}
    runs = sorted({r["train_run_id"] for r in table if r["train_run_id"]})
    if runs:
        try:
            rows = query(root, "SELECT run_id, json_extract_string(config, '$.train.family') AS family FROM train_runs "
                               "WHERE list_contains($runs, run_id)", params={"runs": runs}).to_pylist()
        except (QueryError, duckdb.Error):  # no train_runs table: the runs' rows are gone
            rows = []
        by_run = {r["run_id"]: r["family"] or store.DEFAULT_FAMILY for r in rows}
        out |= {r["eval_id"]: by_run[r["train_run_id"]] for r in table if r["train_run_id"] in by_run}
    for r in table:
        if r["eval_id"] not in out and r["model"] and store.is_model(Path(r["model"])):
            out[r["eval_id"]] = store.family(Path(r["model"]))
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"


def _spread(row: dict, metric: str) -> str:
    sd = row.get(f"{metric}_sd")
    return _fmt(row.get(metric)) + (f" ± {_fmt(sd)}" if sd is not None and row.get(metric) is not None else "")


def leaderboard_markdown(table: list[dict], title: str, notes: list[str] = ()) -> str:
    """The bench as a markdown table, each value as its mean over clips ± their standard deviation; a
    number is shown only beside the still reference's."""
    if not any(r["model_name"] == "still-reference" for r in table):
        return f"# {title}\n\nNo still-reference baseline on this bench: its numbers are not shown.\n"
    cols = [c for c in COLUMNS if any(c[0] in r for r in table)]
    head = ["model", "family", "kind", "step", "clips"] + [f"{label} {'↑' if up else '↓'}" for _, up, label in cols]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [f"`{r['model_name']}`", r.get("family") or "", r["kind"], str(r["checkpoint_step"] or ""),
                 f"{r['clips_done']}/{r['num_clips']}"] + [_spread(r, m) for m, _, _ in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def steps_plot(table: list[dict], out: Path) -> Path | None:
    """Metric over training steps, one line per training run, baselines as dashed lines."""
    runs = sorted({r["train_run_id"] for r in table if r["kind"] in ("checkpoint", "model") and r["checkpoint_step"]
                   and r["train_run_id"]})
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a run's line is named by what it trained (checkpoint names: OUTPUT-sSTAGE-RUN@STEP) and its family
    labels = {}
    for r in table:
        if r["train_run_id"] in runs and r["train_run_id"] not in labels:
            name = r["model_name"].split("@")[0] if r["kind"] == "checkpoint" else f"{r['model_name']} (stage {r['stage']})"
            labels[r["train_run_id"]] = f"{name}, {r['family']}" if r.get("family") else name
    metrics = [c for c in ("psnr", "ssim", "pck10_body_moving", "person") if any(c in r for r in table)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for run in runs:
            pts = sorted((r["checkpoint_step"], r[metric]) for r in table
                         if r["train_run_id"] == run and metric in r and r["checkpoint_step"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=labels[run])
        for r in table:
            if r["kind"] == "baseline" and metric in r:
                ax.axhline(r[metric], linestyle="--", linewidth=1, color="grey" if "still" in r["model_name"] else "k",
                           label=r["model_name"])
        ax.set_title(metric)
        ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def clip_values(root, eval_id: str, metric: str = "psnr") -> dict[str, float]:
    rows = query(root, """SELECT clip_id, value FROM eval_results WHERE eval_id = $eval_id
                          AND metric = $metric AND frame_idx IS NULL AND clip_id IS NOT NULL""",
                 params={"eval_id": eval_id, "metric": metric}).to_pylist()
    return {r["clip_id"]: r["value"] for r in rows}


def grid_video(b, eval_id: str, clip, out: Path) -> Path | None:
    """reference | pose | generated | real | error heat map (|generated − real|, ×4, jet)."""
    video = b.ds.root.evaluations_dir / eval_id / "videos" / f"{clip.clip_id}.mp4"
    if not video.is_file():
        return None
    gen = np.stack([f.to_ndarray(format="rgb24") for f in iter_frames(video)])
    real, poses = ClipStore(b.ds, b.cfg.evaluate.width, b.cfg.evaluate.height, cache=0).get(clip)
    n = min(len(gen), len(real))
    real8 = to_uint8((real[:n] / 2 + 0.5).clamp(0, 1))
    pose8 = to_uint8(poses[:n])
    err = np.abs(gen[:n].astype(np.float32) - real8.astype(np.float32)).mean(axis=3)
    heat = np.stack([cv2.cvtColor(cv2.applyColorMap(np.clip(e * 4, 0, 255).astype(np.uint8), cv2.COLORMAP_JET),
                                  cv2.COLOR_BGR2RGB) for e in err])
    ref = np.repeat(real8[:1], n, axis=0)
    grid = np.concatenate([ref, pose8, gen[:n], real8, heat], axis=2)
    with VideoWriter(out, grid.shape[2], grid.shape[1], clip.fps) as writer:
        for frame in grid:
            writer.write(frame)
    return out


def write_reports(b, rows: list[dict]) -> dict:
    """The bench's leaderboard (markdown), its steps plot (PNG) and, for the models just scored, the
    grid videos of their best and worst clips by PSNR; files under DATA_ROOT/evaluations/."""
    root = b.ds.root
    folder = root.evaluations_dir
    table = bench_table(root, b.bench_id)
    notes = [f"snapshot {b.snapshot['snapshot_id']}, split {b.split}, {len(b.clips)} clips × up to "
             f"{b.settings['frames']} frames at {b.settings['width']}x{b.settings['height']}; {b.settings['steps']} "
             f"steps, guidance {b.settings['guidance']}, seed {b.settings['seed']}; frame 0 (the reference) not scored",
             "pose fidelity: the pipeline's pose backend on the generated frames against the driving pose "
             "(PCK at 0.05 and 0.1 of the person's box size); 'moved frames': frames whose driving body moved "
             "clearly from the reference's; 'moving points': the points that moved more than 0.2 of the box "
             "size from the reference's (a still reference scores near 0 there)",
             "appearance: CIEDE2000 between the mean Lab colours of body regions (head, torso, upper and lower "
             "limbs) placed by the driving keypoints, generated against the real person, and against the "
             "reference's person; 2.3 is about a just-noticeable difference",
             "baselines: the reference held still, the driving skeleton drawn in the training clips' mean "
             "colours (pose-only-drawing: follows the poses, takes nothing from the reference) and the "
             "untrained model; every value is the mean over clips ± their standard deviation"]
    for name in ("lpips", "fid", "fvd", "identity"):
        if not b.settings.get(name) or (isinstance(b.settings[name], dict) and not b.settings[name].get("weights")):
            notes.append(f"{name}: not configured (evaluate.{name}); no weights given")
    title = f"{b.cfg.name}: bench {b.bench_id}"
    markdown = leaderboard_markdown(table, title, notes)
    board = write_text(folder / f"leaderboard-{b.bench_id}.md", markdown)
    write_text(folder / f"leaderboard-{b.cfg.name}.md", markdown)  # the pipeline's latest
    plot = steps_plot(table, folder / f"steps-{b.bench_id}.png")
    grids = []
    scored = [r for r in rows if r.get("status") in ("finished", "partial") and r["kind"] != "baseline"]
    models = [r for r in scored if r["kind"] == "model"] or sorted(scored, key=lambda r: r["checkpoint_step"] or 0)[-1:]
    clips = {c.clip_id: c for c in b.clips}
    for r in models:
        values = clip_values(root, r["eval_id"])
        if not values:
            continue
        ranked = sorted(values, key=values.get)
        for label, clip_id in (("worst", ranked[0]), ("best", ranked[-1])):
            out = grid_video(b, r["eval_id"], clips[clip_id], folder / r["eval_id"] / f"grid-{label}-{clip_id}.mp4")
            if out:
                grids.append(str(out))
    return {"leaderboard": str(board), "markdown": markdown, "table": table, "plot": str(plot) if plot else None,
            "grids": grids}
