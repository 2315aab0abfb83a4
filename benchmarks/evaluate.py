"""Evaluation benchmark: seconds per clip-second of each metric group, and the evaluation's cost
against the training's.

    python benchmarks/evaluate.py --data-root DATA [--pipeline demo] [--model MODEL]

DATA is a data root the pipeline has trained in (`make demo`). The pipeline's evaluate settings
score MODEL (default: the trained model, `train.output`) and the baselines; the timings are what
the evaluation recorded in `eval_runs.timings` (generation, L1/PSNR/SSIM, pose fidelity, and
LPIPS, identity, FID, FVD where configured), divided by the seconds of video scored. The training
time is the wall clock of the pipeline's finished runs in `train_runs`. Results go to
benchmarks/results/evaluate-<pipeline>-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pose import HERE, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--pipeline", default="demo")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    from animate_anyone.config import load_config
    from animate_anyone.evaluation.run import evaluate
    from animate_anyone.tables import DataRoot, query

    cfg = load_config(args.pipeline, data_root=str(args.data_root))
    t0 = time.perf_counter()
    result = evaluate(cfg, args.model or cfg.train.output, log=print)
    wall = time.perf_counter() - t0
    root = DataRoot.from_uri(cfg.data_root)
    runs = []
    for r in result["runs"]:
        timings = json.loads(r["timings"] or "{}")
        clip_s = timings.get("clip_seconds") or float("nan")
        per = {k: round(v / clip_s, 3) for k, v in timings.items() if k not in ("clip_seconds", "frames_scored")}
        runs.append({"model": r["model_name"], "kind": r["kind"], "status": r["status"], "cached": bool(r.get("cached")),
                     "clip_seconds": round(clip_s, 2), "frames_scored": timings.get("frames_scored"),
                     "seconds": {k: round(v, 2) for k, v in timings.items() if k not in ("clip_seconds", "frames_scored")},
                     "seconds_per_clip_second": per})
        print(json.dumps(runs[-1]), flush=True)
    train = query(root, f"""SELECT stage, epoch(ended_at) - epoch(started_at) AS seconds FROM train_runs
                            WHERE pipeline = '{cfg.name}' AND status = 'finished' ORDER BY stage""").to_pylist()
    evaluated = sum(sum(x["seconds"].values()) for x in runs)
    out = {"machine": machine(), "pipeline": cfg.name, "bench": result["bench"], "clips": result["clips"],
           "settings": {k: v for k, v in cfg.evaluate.model_dump().items() if k in (
               "split", "frames", "width", "height", "steps", "guidance", "pose_min_side")},
           "runs": runs, "wall_seconds_this_call": round(wall, 1),
           "evaluation_seconds": round(evaluated, 1), "training_seconds": round(sum(t["seconds"] for t in train), 1),
           "training_stages": train, "table": result["table"]}
    out["evaluation_over_training"] = round(out["evaluation_seconds"] / out["training_seconds"], 3) \
        if out["training_seconds"] else None
    results = HERE / "results"
    results.mkdir(parents=True, exist_ok=True)
    name = results / f"evaluate-{cfg.name}-{out['machine']['date']}.json"
    name.write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({k: out[k] for k in ("evaluation_seconds", "training_seconds", "evaluation_over_training")}))
    print(f"wrote {name}")


if __name__ == "__main__":
    main()
