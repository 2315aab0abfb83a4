"""The two model families side by side: trained on one snapshot, scored on one bench.

    python benchmarks/families.py --data-root DATA [--pipelines demo demo-unianimate]

DATA is a data root where the first pipeline has run (`make demo`). Each pipeline's training runs
(finished stages are reused), then `evaluate` scores its trained model on its bench; pipelines
with the same snapshot and `evaluate` settings share one bench, so one leaderboard holds every
family beside the baselines (still reference, pose-only drawing, each family's untrained model).
Recorded per pipeline: its family, the seconds each training stage took (from `train_runs`: a
reused stage keeps the time it took when it ran) and the bench's metrics (mean and sd over clips).
Results: benchmarks/results/families-<first pipeline>-<date>.json.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--pipelines", nargs="+", default=["demo", "demo-unianimate"])
    args = ap.parse_args()

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
