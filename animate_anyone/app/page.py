"""The web page (``animate-anyone app``): Gradio Blocks with two tabs.

Animate: a reference image, the motion (a pose video, a video whose poses are extracted here, or
a clip from the tables found by its pose summary), a model of the store and the main settings
with the command line's defaults; one button, a progress bar, the video, its reference | pose |
result grid and a download. An error goes next to the field it concerns, in the command line's
words. Browse: clips with their skeletons drawn over them, the failures table, training runs and
their loss curves, evaluation leaderboards with their grid videos.

Gradio's queue runs the requests: as many at once as the pipeline has GPU slots (``gpu_slots``);
the rest wait, and the page shows their place in the queue.
"""
from __future__ import annotations

import gradio as gr

from animate_anyone.app.service import (
    FIELDS,
    MOTION_CLIP,
    MOTION_POSE_VIDEO,
    MOTIONS,
    AppService,
    RequestError,
)

CSS = ".field-error p { color: #b91c1c; font-weight: 600; margin: 2px 0 8px; }"
CLIP_COLUMNS = ["clip_id", "source_id", "split", "seconds", "frames", "size", "body_conf", "one_person",
                "hands_visible", "motion", "pose_model"]


def _rows(rows: list[dict], columns: list[str]) -> list[list]:
    return [[r.get(c) for c in columns] for r in rows]


def _first_cell(table, evt: gr.SelectData) -> str:
    """The id (first column) of the row a click selected in a table."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    values = table.values.tolist() if hasattr(table, "values") else table
    return str(values[row][0])


def _error_box(field: str) -> gr.Markdown:
    return gr.Markdown("", visible=False, elem_id=f"{field}-error", elem_classes=["field-error"])


def _errors(exc: RequestError | None) -> list:
    """One update per error box: the message beside its field, the others cleared."""
    return [gr.update(value=f"⚠ {exc.message}", visible=True) if exc is not None and exc.field == f
            else gr.update(value="", visible=False) for f in FIELDS]


def build(service: AppService) -> gr.Blocks:
    cfg = service.cfg
    a = cfg.animate
    where = (f"as runs of the deployment `{service.deployment}` (its workers do the work)" if service.deployment
             else "in this process")
    with gr.Blocks(title="Animate Anyone", analytics_enabled=False) as page:
        gr.Markdown(f"# Animate Anyone\nPipeline `{cfg.name}`, data root `{service.root.uri}`, dataset "
                    f"`{cfg.dataset}`. Requests run {where}, {service.slots} at a time (one per GPU slot); "
                    "others wait in the queue, which shows their place.")
        with gr.Tab("Animate", id="animate-tab"):
            errors: dict[str, gr.Markdown] = {}
            with gr.Row():
                with gr.Column(scale=1):
                    reference = gr.File(label="Reference image (RGB, RGBA or greyscale)", file_types=["image"],
                                        elem_id="reference")
                    errors["reference"] = _error_box("reference")
                    preview = gr.Image(label="Fitted reference: what the model sees", interactive=False,
                                       elem_id="preview", height=260)
                    preview_note = gr.Markdown("", elem_id="preview-note")
                    kind = gr.Radio(list(MOTIONS), value=MOTION_POSE_VIDEO, label="Motion", elem_id="motion-kind")
                    motion = gr.File(label="Pose video, or a video of a person (poses extracted here)",
                                     file_types=["video"], elem_id="motion")
                    with gr.Accordion("Clip from the tables", open=False, elem_id="clip-search"):
                        with gr.Row():
                            split = gr.Dropdown(["", "train", "val", "test"], value="", label="split (blank: any)")
                            text = gr.Textbox(label="clip or source id contains", elem_id="clip-text")
                        with gr.Row():
                            min_body = gr.Slider(0, 1, 0, step=0.05, label="body confidence at least")
                            min_one = gr.Slider(0, 1, 0, step=0.05, label="share of frames with one person at least")
                        with gr.Row():
                            min_motion = gr.Slider(0, 5, 0, step=0.05, label="motion energy at least")
                            min_seconds = gr.Slider(0, 10, 0, step=0.5, label="seconds at least")
                        search = gr.Button("Search clips", elem_id="search")
                        clips = gr.Dataframe(headers=CLIP_COLUMNS, interactive=False, elem_id="clips", wrap=True)
                        clip_id = gr.Textbox(label="Clip id (click a row above, or type it)", elem_id="clip-id")
                    errors["motion"] = _error_box("motion")
                    choices = service.models()
                    model = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model (the model store: either family)",
                                        allow_custom_value=True, elem_id="model")
                    errors["model"] = _error_box("model")
                    with gr.Accordion("Settings", open=True):
                        with gr.Row():
                            frames = gr.Textbox(_text(a.frames), label="frames",
                                               info="at least 1; blank: every pose frame", elem_id="frames")
                            steps = gr.Textbox(_text(a.steps), label="steps",
                                              info="at least 1; blank: the family's (20, UniAnimate 30)",
                                              elem_id="steps")
                            guidance = gr.Textbox(_text(a.guidance), label="guidance",
                                                 info="at least 0; 1 turns it off; blank: the family's",
                                                 elem_id="guidance")
                        errors["frames"] = _error_box("frames")
                        errors["steps"] = _error_box("steps")
                        errors["guidance"] = _error_box("guidance")
                        with gr.Row():
                            width = gr.Textbox(_text(a.width), label="width",
                                              info="at least 8, a multiple of 8; blank: the poses' aspect",
                                              elem_id="width")
                            height = gr.Textbox(_text(a.height), label="height",
                                               info="at least 8; blank: the pose source's size", elem_id="height")
                            seed = gr.Textbox(_text(a.seed), label="seed", elem_id="seed")
                        errors["size"] = _error_box("size")
                        with gr.Row():
                            retarget = gr.Checkbox(a.retarget, label="retarget a clip's skeleton to the reference's body",
                                                   elem_id="retarget")
                            fit = gr.Radio(["pad", "crop", "stretch"], value=a.fit, label="fit (another aspect ratio)",
                                           elem_id="fit")
                        errors["fit"] = _error_box("fit")
                    go = gr.Button("Animate", variant="primary", elem_id="animate")
                    errors["request"] = _error_box("request")
                with gr.Column(scale=1):
                    status = gr.Markdown("", elem_id="status")
                    result = gr.Video(label="Animation", elem_id="result", interactive=False, height=420)
                    grid = gr.Video(label="reference | pose | result", elem_id="grid", interactive=False, height=300)
                    download = gr.File(label="Download", elem_id="download", interactive=False)
            boxes = [errors[f] for f in FIELDS]

            def show_preview(ref, kind_, upload, clip, w, h, fit_):
                try:
                    image, note = service.preview(ref, kind_, upload, clip, w, h, fit_)
                    return [image, note, *_errors(None)]
                except RequestError as exc:
                    return [None, "", *_errors(exc)]

            for trigger in (reference.change, motion.change, clip_id.change, kind.change, width.blur, height.blur,
                            fit.change):
                trigger(show_preview, [reference, kind, motion, clip_id, width, height, fit],
                        [preview, preview_note, *boxes], show_progress="hidden")

            def do_search(split_, text_, body, one, moved, seconds):
                rows = service.search_clips(split_, body, one, moved, seconds, text_)
                return _rows(rows, CLIP_COLUMNS)

            search.click(do_search, [split, text, min_body, min_one, min_motion, min_seconds], clips)

            def pick_clip(table, evt: gr.SelectData):
                return gr.update(value=_first_cell(table, evt)), gr.update(value=MOTION_CLIP)

            clips.select(pick_clip, clips, [clip_id, kind])

            def do_animate(ref, kind_, upload, clip, model_, frames_, steps_, guidance_, w, h, retarget_, fit_,
                           seed_, progress=gr.Progress()):
                def on_progress(what: str, done: int, total: int) -> None:
                    progress((done, total) if total else None, desc=what, unit="steps")

                def on_state(line: str) -> None:
                    progress(None, desc=line)

                try:
                    progress(0, desc="checking the request")
                    request, notes = service.request(ref, kind_, upload, clip, model_, frames_, steps_, guidance_, w, h,
                                              retarget_, fit_, seed_, on_progress=on_progress)
                    progress(0, desc="starting")
                    done = service.run(request, on_progress=on_progress, on_state=on_state)
                except RequestError as exc:
                    if exc.reason != "run_failed" and not getattr(exc, "recorded", False):
                        service.record_refusal(exc, ref, clip if kind_ == MOTION_CLIP else upload)
                    return ["", None, None, None, *_errors(exc)]
                lines = [f"**Done:** {done.summary}."] + [f"- {n}" for n in notes + done.notes]
                return ["\n".join(lines), done.video, done.grid, done.video, *_errors(None)]

            go.click(do_animate, [reference, kind, motion, clip_id, model, frames, steps, guidance, width, height,
                                  retarget, fit, seed], [status, result, grid, download, *boxes],
                     concurrency_limit=service.slots, concurrency_id="gpu", show_progress="full")

        with gr.Tab("Browse", id="browse-tab"):
            with gr.Tab("Clips"):
                with gr.Row():
                    b_split = gr.Dropdown(["", "train", "val", "test"], value="", label="split (blank: any)")
                    b_text = gr.Textbox(label="clip or source id contains")
                    b_body = gr.Slider(0, 1, 0, step=0.05, label="body confidence at least")
                b_search = gr.Button("List clips", elem_id="browse-search")
                b_clips = gr.Dataframe(headers=CLIP_COLUMNS, interactive=False, elem_id="browse-clips", wrap=True)
                b_clip = gr.Textbox(label="Clip id (click a row)", elem_id="browse-clip-id")
                b_show = gr.Button("Show its poses over its frames", elem_id="overlay-button")
                b_error = gr.Markdown("", visible=False, elem_id="overlay-error", elem_classes=["field-error"])
                b_overlay = gr.Video(label="Pose overlay (from pose_frames)", elem_id="overlay", interactive=False)
                b_search.click(lambda s, t, b: _rows(service.search_clips(s, b, text=t), CLIP_COLUMNS),
                               [b_split, b_text, b_body], b_clips)

                b_clips.select(_first_cell, b_clips, b_clip)

                def show_overlay(clip):
                    try:
                        return service.overlay((clip or "").strip()), gr.update(value="", visible=False)
                    except RequestError as exc:
                        return None, gr.update(value=f"⚠ {exc.message}", visible=True)

                b_show.click(show_overlay, b_clip, [b_overlay, b_error])
            with gr.Tab("Failures"):
                f_columns = ["at", "stage", "item_id", "reason", "message", "attempt", "source"]
                f_refresh = gr.Button("Refresh", elem_id="failures-refresh")
                f_table = gr.Dataframe(headers=f_columns, interactive=False, wrap=True, elem_id="failures")
                f_refresh.click(lambda: _rows(service.failures(), f_columns), None, f_table)
            with gr.Tab("Training runs"):
                t_columns = ["run_id", "stage", "status", "final_step", "steps", "snapshot_id", "started_at",
                             "ended_at", "error"]
                t_refresh = gr.Button("Refresh", elem_id="runs-refresh")
                t_table = gr.Dataframe(headers=t_columns, interactive=False, wrap=True, elem_id="runs")
                t_run = gr.Textbox(label="Run id (click a row)", elem_id="run-id")
                t_curve = gr.Image(label="Loss per step (from train_metrics)", elem_id="loss-curve",
                                   interactive=False)
                t_refresh.click(lambda: _rows(service.training_runs(), t_columns), None, t_table)

                def pick_run(table, evt: gr.SelectData):
                    run_id = _first_cell(table, evt)
                    curve = service.loss_curve(run_id)
                    return run_id, str(curve) if curve else None

                t_table.select(pick_run, t_table, [t_run, t_curve])
                t_run.submit(lambda r: (str(c) if (c := service.loss_curve(r.strip())) else None), t_run, t_curve)
            with gr.Tab("Leaderboard"):
                e_refresh = gr.Button("Refresh", elem_id="boards-refresh")
                e_bench = gr.Dropdown([], label="Leaderboard (a bench: one clip set and settings)",
                                      elem_id="bench")
                e_board = gr.Markdown("", elem_id="leaderboard")
                e_plot = gr.Image(label="Metrics over training steps", interactive=False, elem_id="steps-plot")
                e_grid_pick = gr.Dropdown([], label="Grid video (reference | pose | generated | real | error)",
                                          elem_id="grid-pick")
                e_grid = gr.Video(label="Grid", elem_id="board-grid", interactive=False)

                def boards():
                    names = service.leaderboards()
                    return gr.update(choices=names, value=names[0] if names else None)

                def board(bench):
                    if not bench:
                        return "No leaderboard yet: run `animate-anyone evaluate`.", None, gr.update(choices=[],
                                                                                                    value=None), None
                    text_, plot, grids = service.leaderboard(bench)
                    labels = [(g.split("/evaluations/")[-1], g) for g in grids]
                    return text_, plot, gr.update(choices=labels, value=grids[0] if grids else None), \
                        grids[0] if grids else None

                e_refresh.click(boards, None, e_bench)
                e_bench.change(board, e_bench, [e_board, e_plot, e_grid_pick, e_grid])
                e_grid_pick.change(lambda g: g, e_grid_pick, e_grid)
        page.load(boards, None, e_bench)
        page.load(lambda: _rows(service.failures(), f_columns), None, f_table)
        page.load(lambda: _rows(service.training_runs(), t_columns), None, t_table)
        page.load(lambda: _rows(service.search_clips(), CLIP_COLUMNS), None, b_clips)
    return page


def _text(value) -> str:
    """A setting's default as its box shows it (blank: the pipeline's or the family's own)."""
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def launch(service: AppService, host: str, port: int, open_browser: bool = False) -> None:
    """Serve the page until interrupted; files under the data root may be shown."""
    page = build(service)
    page.queue(default_concurrency_limit=service.slots)
    page.launch(server_name=host, server_port=port, inbrowser=open_browser, share=False, show_error=True,
                allowed_paths=[str(service.root.path)], ssr_mode=False, css=CSS)
