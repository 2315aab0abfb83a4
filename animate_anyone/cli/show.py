"""What the commands print: the training and evaluation summaries, the training's progress bars."""
from __future__ import annotations

from pathlib import Path

from rich.progress import Progress
from rich.table import Table

from animate_anyone.cli.app import out
from animate_anyone.evaluation.columns import COLUMNS, TERMINAL
from animate_anyone.storage import shown


def _train_bar(bar: Progress):
    """A ``progress`` listener: one bar per training stage with its loss, samples/s and the time left."""
    tasks: dict[str, int] = {}

    def on(what: str, done: int, total: int, details: dict) -> None:
        if "loss" not in details:
            return
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total, completed=details.get("first", 0))
        bar.update(tasks[what], completed=done, description=f"{what} loss {details['loss']:.4f} "
                                                             f"{details['samples_per_s']:.1f} samples/s")
    return on


def _print_train(result: dict) -> None:
    table = Table(title=f"training on snapshot {result['snapshot_id']}")
    for col in ("stage", "run", "steps", "loss", "val PSNR (still ref.)", "model"):
        table.add_column(col, overflow="fold")
    for s in result["stages"]:
        val = "" if s.get("val_psnr") is None else f"{s['val_psnr']:.2f} ({s['val_psnr_still']:.2f})"
        loss = "cached" if s.get("cached") else ("" if s.get("loss") is None else f"{s['loss']:.4f}")
        table.add_row(str(s["stage"]), s["run_id"], str(s["step"]), loss, val, s["output"])
    out.print(table)
    out.print(f"trained model: {shown(result['model'])} (animate-anyone animate --model {Path(result['model']).name} ...)",
              highlight=False)


def _print_evaluation(result: dict) -> None:
    """The bench's leaderboard as a table, with where its files are."""
    rows = result.get("table", [])
    cols = [c for c in COLUMNS if c[0] in TERMINAL and any(c[0] in r for r in rows)]
    table = Table(title=f"evaluation: snapshot {result['snapshot_id']}, split {result['split']}, "
                        f"{len(result['clips'])} clips (bench {result['bench']})")
    for col in ["model", "kind", "step", "clips"] + [f"{m} {'↑' if up else '↓'}" for m, up, _ in cols]:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["model_name"], r["kind"], str(r["checkpoint_step"] or ""), f"{r['clips_done']}/{r['num_clips']}",
                      *[("–" if r.get(m) is None else f"{r[m]:.3g}") for m, _, _ in cols])
    out.print(table)
    for name, message in result.get("unavailable", {}).items():
        out.print(f"not scored: {name}: {message}", highlight=False)
    out.print(f"leaderboard: {shown(result['leaderboard'])}", highlight=False)
    if result.get("plot"):
        out.print(f"metrics over training steps: {shown(result['plot'])}", highlight=False)
    for grid in result.get("grids", []):
        out.print(f"grid (reference | pose | generated | real | error): {shown(grid)}", highlight=False)
