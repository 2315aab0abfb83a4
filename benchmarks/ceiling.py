"""What the bench allows at the model's size: the pipeline's held-out clips scored as if they were
a model's output, twice: the real frames themselves (the pose backend's limit at this size), and
the real frames through a trained model's VAE (the most a diffusion model with that VAE can give).

    python benchmarks/ceiling.py --data-root DATA [--pipeline demo] [--model demo] [--split test] [--out FILE]

If the VAE's round trip already loses the person, no amount of training of the other parts can
bring them back: the numbers tell whether to look at the VAE, the resolution or the denoiser.
Results go to benchmarks/results/ceiling-<pipeline>-<date>.json, with the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pose import HERE, machine  # noqa: E402
from benchmarks.seeds import summary  # noqa: E402

METRICS = ("pck10_body_moving", "person", "appearance_real", "pck10_body", "psnr", "ssim")


@torch.no_grad()
def round_trip(vae, frames01: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) in [0, 1] → encoded (the posterior's mean) and decoded by ``vae``."""
    latents = vae.encode(frames01 * 2 - 1).latent_dist.mean
    return (vae.decode(latents).sample / 2 + 0.5).clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--pipeline", default=None, help="default: the pipelines file's default")
    ap.add_argument("--config", default=None)
    ap.add_argument("--model", default=None, help="model folder or name under DATA/models (default: train.output)")
    ap.add_argument("--split", default=None)
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--out", default=None, help="the JSON file (default: benchmarks/results/ceiling-PIPELINE-DATE.json)")
    args = ap.parse_args()

    from animate_anyone.clipstore import ClipStore
    from animate_anyone.config import load_config
    from animate_anyone.evaluation.run import make_scorers, prepare, score_clip
    from animate_anyone.models import store
    from animate_anyone.pipeline import resolve_model

    cfg = load_config(args.pipeline, args.config, data_root=args.data_root)
    e = cfg.evaluate
    b = prepare(cfg, None, args.split, args.clips)
    model = resolve_model(args.model or cfg.train.output, b.ds.root.path, Path.cwd())
    vae = store.load_components(store.require_model(model))["vae"].eval()
    scorers = make_scorers(cfg, "cpu")
    frames = ClipStore(b.ds, e.width, e.height, cache=len(b.clips))
    per = {"real frames": {m: [] for m in METRICS}, "VAE round trip": {m: [] for m in METRICS}}
    t0 = time.perf_counter()
    try:
        for clip in b.clips:
            real, _ = frames.get(clip)
            n = min(e.frames, len(real))
            real01 = (real[:n] / 2 + 0.5).clamp(0, 1)
            for name, video in (("real frames", real01), ("VAE round trip", round_trip(vae, real01))):
                rows, _ = score_clip(b.ds, clip, real01, video, scorers, cfg, {})
                means = {r["metric"]: r["value"] for r in rows if r["frame_idx"] is None}
                for m in METRICS:
                    per[name][m].append(means.get(m))
    finally:
        scorers.close()
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "pipeline": cfg.name, "model": str(model),
           "bench": b.bench_id, "split": b.split, "clips": [c.clip_id for c in b.clips],
           "size": [e.width, e.height], "frames": e.frames, "seconds": round(time.perf_counter() - t0, 1),
           "results": {name: {m: {"per_clip": v, **summary(v)} for m, v in values.items()} for name, values in per.items()}}
    dest = Path(args.out) if args.out else HERE / "results" / f"ceiling-{cfg.name}-{out['date']}.json"
    dest.write_text(json.dumps(out, indent=1))
    for name, values in out["results"].items():
        print(name + ": " + ", ".join(f"{m} {v.get('mean', float('nan')):.3f} ± {v.get('sd', float('nan')):.3f}"
                                      for m, v in values.items()))
    print(f"written {dest}")


if __name__ == "__main__":
    main()
