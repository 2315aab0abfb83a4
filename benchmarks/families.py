"""The two model families side by side: trained on one snapshot, scored on one bench.

    python benchmarks/families.py --data-root DATA [--pipelines demo demo-unianimate]
    python benchmarks/families.py --calibrate [--pipelines demo demo-unianimate] [--repeats 5]

DATA is a data root where the first pipeline has run (`make demo`). Each pipeline's training runs
(finished stages are reused), then `evaluate` scores its trained model on its bench; pipelines
with the same snapshot and `evaluate` settings share one bench, so one leaderboard holds every
family beside the baselines (still reference, pose-only drawing, each family's untrained model).
Recorded per pipeline: its family, the seconds each training stage took (from `train_runs`: a
reused stage keeps the time it took when it ran) and the bench's metrics (mean and sd over clips).
Results: benchmarks/results/families-<first pipeline>-<date>.json.

``--calibrate`` sets equal training time without data: one training step of each pipeline's
stages 1 and 2 (random weights at its size, random samples of its batch, frames and size, one
thread, as each of the demo's training processes has), the median of ``--repeats`` after a
warm-up, the stages taking turns so that both see the same machine load; then the stage-1 steps
that give the second pipeline the first one's stage 1 + 2 time at its own stage-2 steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pose import HERE, machine  # noqa: E402

METRICS = ("pck10_body_moving", "person", "appearance_real", "appearance_reference", "pck10_body", "psnr", "ssim")


def stage_seconds(root, output_prefix: str) -> dict:
    """Seconds per stage of the newest finished run of each stage whose model is ``output_prefix``-stageK."""
    from animate_anyone.tables import query, refresh_catalog

    refresh_catalog(root)
    rows = query(root, "SELECT stage, output, epoch(ended_at) - epoch(started_at) AS s, steps FROM train_runs "
                       "WHERE status = 'finished' ORDER BY ended_at").to_pylist()
    out = {}
    for r in rows:
        if r["output"] and Path(r["output"]).name == f"{output_prefix}-stage{r['stage']}":
            out[int(r["stage"])] = {"seconds": round(float(r["s"]), 1), "steps": r["steps"]}
    return out


def calibrate(names: list[str], repeats: int) -> dict:
    """Seconds per training step of stages 1 and 2 of each pipeline (see the module's docstring)."""
    import torch

    from animate_anyone.config import load_config
    from animate_anyone.models.denoiser import AnimateModel
    from animate_anyone.training import model as tm
    from animate_anyone.training import objective
    from animate_anyone.training import unianimate as ua

    torch.set_num_threads(1)
    cases = {}
    for name in names:
        train = load_config(name).train
        c = tm.initial_components(train.model_copy(update={"init": train.init.model_copy(update={"vae": None})}), None)
        tm.set_trainable(1, c)
        for part in ("unet", "reference_unet"):
            if part in c:
                c[part].train()
        if train.family == "unianimate":
            module, loss = ua.UniAnimateModel(c["unet"], c["conditioner"]), ua.diffusion_loss
        else:
            module, loss = AnimateModel(c["reference_unet"], c["unet"], c["pose_guider"]), objective.diffusion_loss
        for k, stage in ((1, train.stage1), (2, train.stage2)):
            g = torch.Generator().manual_seed(0)
            b, f, h, w = stage.batch, stage.frames, stage.height, stage.width
            batch = {"pixels": torch.rand(b, f, 3, h, w, generator=g) * 2 - 1, "poses": torch.rand(b, f, 3, h, w, generator=g),
                     "reference": torch.rand(b, 3, h, w, generator=g) * 2 - 1,
                     "reference_pose": torch.rand(b, 3, h, w, generator=g), "seed": torch.arange(b)}
            cases[(name, k)] = (module, loss, c, batch, stage, k)
    times = {key: [] for key in cases}
    for rep in range(repeats + 1):
        for key, (module, loss, c, batch, stage, k) in cases.items():
            if hasattr(module, "motion"):
                module.motion = k != 1  # stage 1 skips the motion modules, as training does
            t0 = time.perf_counter()
            value, _ = loss(module, c, batch, stage, "cpu")
            value.backward()
            module.zero_grad(set_to_none=True)
            if rep:
                times[key].append(time.perf_counter() - t0)
    step = {f"{n} stage {k}": round(sorted(v)[len(v) // 2], 3) for (n, k), v in times.items()}
    first, second = names[0], names[1]
    s1 = load_config(first).train
    s2 = load_config(second).train
    budget = s1.stage1.steps * step[f"{first} stage 1"] + s1.stage2.steps * step[f"{first} stage 2"]
    left = budget - s2.stage2.steps * step[f"{second} stage 2"]
    return {"machine": machine(), "seconds_per_step": step,
            f"{first} stages 1+2 (s, one thread)": round(budget, 1),
            f"{second} stage 1 steps for the same time": int(left / step[f"{second} stage 1"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--pipelines", nargs="+", default=["demo", "demo-unianimate"])
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.calibrate:
        print(json.dumps(calibrate(args.pipelines, args.repeats), indent=1))
        return
    if args.data_root is None:
        ap.error("--data-root is needed (a data root where the first pipeline ran)")

    from animate_anyone.config import load_config
    from animate_anyone.evaluation.report import bench_table
    from animate_anyone.evaluation.run import evaluate
    from animate_anyone.tables import DataRoot
    from animate_anyone.training.run import train

    results, benches, boards = {}, set(), {}
    for name in args.pipelines:
        cfg = load_config(name, data_root=str(args.data_root))
        root = DataRoot.from_uri(cfg.data_root)
        train(cfg, "all")
        result = evaluate(cfg, cfg.train.output, log=print)
        benches.add(result["bench"])
        rows = {r["model_name"]: r for r in bench_table(root, result["bench"])}
        mine = rows[cfg.train.output]
        results[name] = {"family": cfg.train.family, "temporal": cfg.train.temporal, "model": cfg.train.output,
                         "stages": stage_seconds(root, cfg.train.output),
                         "metrics": {m: mine.get(m) for m in METRICS}, "sd_over_clips": {m: mine.get(f"{m}_sd")
                                                                                          for m in METRICS}}
        results[name]["training_seconds_1_2"] = round(sum(s["seconds"] for k, s in results[name]["stages"].items()
                                                          if k > 0), 1)
        boards = {n: {m: r.get(m) for m in METRICS} for n, r in rows.items() if r["kind"] == "baseline"}
        print(json.dumps({name: results[name]}), flush=True)
    out = {"machine": machine(), "pipelines": args.pipelines, "benches": sorted(benches), "families": results,
           "baselines": boards}
    path = HERE / "results" / f"families-{args.pipelines[0]}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
