"""The demo model's level on held-out dancers, over training seeds: one draw is never the model's level.

    python benchmarks/seeds.py --data-root DATA [--pipeline demo] [--seeds 0 1 2]

DATA is a data root where the pipeline has run (`make demo`): its snapshot and its held-out
bench are reused. For each seed the pipeline's training runs again with ``train.seed`` set and
``train.output`` = OUTPUT-seedK (seed 0 of the demo is `make demo`'s own model when the settings
match, so it is reused), then the bench scores it beside the baselines. The summary gives, for
the issue's three numbers (moving-point PCK@0.1 of the body, person found, the colour distance to
the real person) and the others, every seed's mean over clips, the mean over seeds, their
standard deviation and the largest deviation from the mean in %. Results go to
benchmarks/results/seeds-<pipeline>-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pose import HERE, machine  # noqa: E402

METRICS = ("pck10_body_moving", "person", "appearance_real", "appearance_reference", "pck10_body", "psnr", "ssim")


def summary(values: list[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not len(v):
        return {}
    mean = float(v.mean())
    return {"mean": round(mean, 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "max_deviation_pct": round(float(np.abs(v - mean).max() / abs(mean) * 100), 1) if mean else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--pipeline", default="demo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()

    from animate_anyone.config import load_config
    from animate_anyone.evaluation.report import bench_table
    from animate_anyone.evaluation.run import evaluate
    from animate_anyone.tables import DataRoot
    from animate_anyone.training.run import train

    base = load_config(args.pipeline, data_root=str(args.data_root))
    per_seed, baselines, seconds = {}, {}, {}
    for seed in args.seeds:
        output = base.train.output if seed == base.train.seed else f"{base.train.output}-seed{seed}"
        cfg = base.model_copy(update={"train": base.train.model_copy(update={"seed": seed, "output": output})})
        t0 = time.perf_counter()
        train(cfg, "all")
        seconds[seed] = round(time.perf_counter() - t0, 1)
        result = evaluate(cfg, output, log=print, pictures=False)
        table = {r["model_name"]: r for r in result["runs"]}
        rows = {r["model_name"]: r for r in bench_table(DataRoot.from_uri(cfg.data_root), result["bench"])}
        per_seed[seed] = {m: rows[output].get(m) for m in METRICS} | {f"{m}_sd_over_clips": rows[output].get(f"{m}_sd")
                                                                      for m in METRICS}
        baselines = {name: {m: r.get(m) for m in METRICS} for name, r in rows.items() if r["kind"] == "baseline"}
        print(json.dumps({"seed": seed, "model": output, "status": table[output]["status"], **per_seed[seed]}), flush=True)
    out = {"machine": machine(), "pipeline": base.name, "seeds": args.seeds, "training_seconds": seconds,
           "per_seed": per_seed, "over_seeds": {m: summary([per_seed[s][m] for s in args.seeds]) for m in METRICS},
           "baselines": baselines, "bench_clips": base.evaluate.clips, "frames": base.evaluate.frames}
    path = HERE / "results" / f"seeds-{base.name}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["over_seeds"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
