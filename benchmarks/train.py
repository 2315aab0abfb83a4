"""Training benchmarks.

    python benchmarks/train.py cpu --data-root DATA [--pipeline demo]
        Per stage of the pipeline: steps/s and samples/s as the run recorded them (train_metrics),
        and the trained model's pose-following on the snapshot's clips against the still
        reference (frame 0 held). DATA is a data root the pipeline has trained in (`make demo`).
    python benchmarks/train.py follow --model DIR --data-root DATA [--clips N] [--frames F]
        Pose-following of any model folder on the latest snapshot's clips.
    python benchmarks/train.py curve --data-root DATA [--pipeline puppet] [--every 500] [--restart]
        A learning curve of stage 1 over training time: the real `animate-anyone train --stage 1
        --max-steps K` in a new process for K = every, 2·every, … (each resumes the last), and
        after each: the step time so far, validation PSNR/SSIM and pose-following. Stage 0 must be
        done; --restart starts stage 1 over (its checkpoints are removed).
    python benchmarks/train.py data --data-root DATA [--pipeline demo] [--clips 12]
        Training's data loading, per stage of the pipeline, one thread (as each training process
        has): the seconds of a clip's first sample in a new ClipStore (decoding the clip and the
        pose images the sample needs) and of a sample of a clip already held, over --clips of the
        snapshot's training clips; the clip count and frames per clip, so the one-off cost of a
        stage's cold store can be read off.
    python benchmarks/train.py gpu [--peak-tflops 989]
        The full SD-1.5-size model (random weights): stage 1 at 512x768 and stage 2 at 24 frames;
        seconds/step, samples/s, peak memory, MFU. Targets: both fit in 24 GB; MFU >= 40 % on an
        H100-class GPU.

Pose-following: every generated frame (upscaled x4, the puppets are small) goes through the
project's MediaPipe backend. "person" is the share of frames where a person is found;
"follows" counts frames whose driving wrists moved away from the reference's (by more than
`--moved` of the frame height) and where a wrist was found: the share where the found wrist is
closer to the driving wrist than to the reference's. The still reference scores 0 on "follows"
by construction and near 1 on "person". Results go to benchmarks/results/.
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

WRISTS = (9, 10)  # COCO-WholeBody left, right wrist


def follow(model: Path, data_root: Path, pipeline: str = "demo", clips: int = 4, frames: int = 32,
           steps: int = 20, guidance: float = 1.0, moved: float = 0.05) -> dict:
    import torch

    from animate_anyone.clipstore import ClipStore, snapshot_clips
    from animate_anyone.config import load_config
    from animate_anyone.evaluation.pose_fidelity import detect_enlarged
    from animate_anyone.evaluation.scoring import driving_pixels
    from animate_anyone.pipeline import load_animate_pipeline
    from animate_anyone.pose.backends import load_backend
    from animate_anyone.tables.io import Dataset
    from animate_anyone.tables.selection import load_snapshot

    cfg = load_config(pipeline, data_root=str(data_root))
    ds = Dataset.of(cfg)
    pipe = load_animate_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    vae_scale = pipe.vae_scale_factor
    stage = cfg.train.stage1
    width, height = stage.width, stage.height
    assert width % vae_scale == 0
    backend = load_backend(cfg.pose, "mediapipe", Path(cfg.base_dir))
    snap = load_snapshot(ds)
    chosen = snapshot_clips(ds, snap)
    chosen = sorted(chosen, key=lambda c: c.split != "val")[:clips]  # validation clips first
    store = ClipStore(ds, width, height, cache=0)
    totals = {"generated": {"person": [], "follows": [], "psnr": []}, "still": {"person": [], "follows": [], "psnr": []}}
    per_clip = []
    for clip in chosen:
        real, poses = store.get(clip)
        n = min(frames, len(real))
        real01 = (real[:n] / 2 + 0.5).clamp(0, 1)
        ref = (real01[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        t0 = time.perf_counter()
        gen = pipe(ref, poses[:n], height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
                   window=min(16, n), overlap=4, generator=torch.Generator().manual_seed(0), output_type="pt").frames
        seconds = time.perf_counter() - t0
        # driving points in the frames' [0, 1] coordinates (the same crop and resize as the frames)
        size = np.array([width, height])
        drive = [None if d is None else d[0] / size for d in driving_pixels(ds, clip, width, height, n)]
        row = {"clip_id": clip.clip_id, "split": clip.split, "frames": n, "seconds": round(seconds, 1)}
        for name, video in (("generated", gen), ("still", real01[:1].expand(n, -1, -1, -1))):
            arr = (video.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            found, _ = detect_enlarged(backend, arr, min_side=4 * min(width, height))  # x4, as measured before
            person = [len(f) > 0 for f in found[1:]]
            follows = []
            for i in range(1, n):
                if drive[i] is None or drive[0] is None or not len(found[i]):
                    continue
                kp = found[i].keypoints[0] / size
                for w in WRISTS:
                    if np.linalg.norm(drive[i][w] - drive[0][w]) < moved or found[i].scores[0][w] < 0.3:
                        continue
                    follows.append(np.linalg.norm(kp[w] - drive[i][w]) < np.linalg.norm(kp[w] - drive[0][w]))
            mse = float(((video[1:] - real01[1:]) ** 2).mean())
            psnr = 10 * np.log10(1 / max(mse, 1e-10))
            totals[name]["person"] += person
            totals[name]["follows"] += follows
            totals[name]["psnr"].append(psnr)
            row[name] = {"person": float(np.mean(person)) if person else None,
                         "follows": float(np.mean(follows)) if follows else None, "moved_wrists": len(follows),
                         "psnr": round(psnr, 2)}
        per_clip.append(row)
        print(json.dumps(row), flush=True)
    backend.close()
    summary = {k: {"person": float(np.mean(v["person"])) if v["person"] else None,
                   "follows": float(np.mean(v["follows"])) if v["follows"] else None,
                   "moved_wrists": len(v["follows"]), "psnr": float(np.mean(v["psnr"]))} for k, v in totals.items()}
    return {"model": str(model), "snapshot": snap["snapshot_id"], "steps": steps, "guidance": guidance,
            "size": [width, height], "summary": summary, "clips": per_clip}


def curve(data_root: Path, pipeline: str, every: int, restart: bool, clips: int, frames: int, steps: int,
          guidance: float) -> dict:
    import subprocess

    from animate_anyone.config import load_config
    from animate_anyone.tables import DataRoot, query, refresh_catalog
    from animate_anyone.tables.io import Dataset
    from animate_anyone.tables.selection import load_snapshot
    from animate_anyone.training.run import plan_stage, stage_output

    cfg = load_config(pipeline, data_root=str(data_root))
    run_id = plan_stage(cfg, 1, load_snapshot(Dataset.of(cfg), cfg.train.snapshot)).run_id  # the run the CLI trains
    stage = cfg.train.stage1
    global_batch = stage.batch * stage.grad_accum * max(1, cfg.train.processes)
    root = DataRoot.from_uri(cfg.data_root)
    cli = Path(sys.executable).parent / "animate-anyone"
    points, wall = [], 0.0
    for k, upto in enumerate(list(range(every, stage.steps, every)) + [stage.steps]):
        cmd = [str(cli), "train", "--pipeline", pipeline, "--stage", "1", "--max-steps", str(upto),
               "--data-root", str(root.path)] + (["--no-resume"] if restart and k == 0 else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall += time.perf_counter() - t0
        refresh_catalog(root)
        rows = query(root, f"""
            SELECT step, samples_per_s, val_psnr, val_ssim, val_psnr_still, val_ssim_still
            FROM train_metrics WHERE run_id = '{run_id}' ORDER BY step""").to_pylist()
        seen = [r for r in rows if r["step"] <= upto]
        last = seen[-1]
        found = follow(stage_output(cfg, 1), data_root, pipeline, clips, frames, steps, guidance)["summary"]
        point = {"step": upto, "samples": upto * global_batch,
                 "step_seconds": round(sum(global_batch / r["samples_per_s"] for r in seen if r["samples_per_s"]), 1),
                 "wall_seconds": round(wall, 1), **{k: last[k] for k in ("val_psnr", "val_ssim", "val_psnr_still",
                                                                        "val_ssim_still")},
                 "person": found["generated"]["person"], "follows": found["generated"]["follows"],
                 "still": found["still"]}
        points.append(point)
        print(json.dumps(point), flush=True)
    return {"stage": 1, "every": every, "global_batch": global_batch, "points": points}


def stage_speeds(data_root: Path, pipeline: str) -> list[dict]:
    from animate_anyone.tables import DataRoot, query, refresh_catalog

    root = DataRoot.from_uri(data_root)
    refresh_catalog(root)
    rows = query(root, f"""
        SELECT r.stage, r.run_id, r.final_step AS steps, r.started_at, r.ended_at,
               median(m.samples_per_s) AS samples_per_s,
               arg_max(m.val_psnr, m.step) AS val_psnr, arg_max(m.val_psnr_still, m.step) AS val_psnr_still,
               arg_max(m.val_ssim, m.step) AS val_ssim, arg_max(m.val_ssim_still, m.step) AS val_ssim_still
        FROM train_runs r JOIN train_metrics m USING (run_id)
        WHERE r.pipeline = '{pipeline}' AND r.status = 'finished'
        GROUP BY r.stage, r.run_id, r.final_step, r.started_at, r.ended_at ORDER BY r.stage""").to_pylist()
    for r in rows:  # wall clock of the stage (validation and saving included)
        r["seconds"] = round((r.pop("ended_at") - r.pop("started_at")).total_seconds(), 1)
        r["steps_per_s"] = round(r["steps"] / r["seconds"], 3)
    return rows


def _gpu_stage(stage_no: int, stage, dev, peak_tflops: float) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from animate_anyone.models.denoiser import AnimateModel
    from animate_anyone.models.sizes import build_components, zero_motion_outputs
    from animate_anyone.training.model import set_trainable
    from animate_anyone.training.objective import diffusion_loss

    c = build_components("full", seed=0)
    zero_motion_outputs(c["unet"])
    set_trainable(stage_no, c)
    for name in ("unet", "reference_unet"):
        c[name].enable_gradient_checkpointing()
    for name in ("vae", "image_encoder", "reference_unet", "unet", "pose_guider"):
        c[name].to(dev)
    model = AnimateModel(c["reference_unet"], c["unet"], c["pose_guider"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    b, f = stage.batch, stage.frames
    batch = {"pixels": torch.rand(b, f, 3, stage.height, stage.width) * 2 - 1,
             "poses": torch.rand(b, f, 3, stage.height, stage.width),
             "reference": torch.rand(b, 3, stage.height, stage.width) * 2 - 1, "seed": torch.arange(b)}
    torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = diffusion_loss(model, c, batch, stage, dev)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    with FlopCounterMode(display=False) as counter:
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / 5
    flops = counter.get_total_flops()
    return {"stage": stage_no, "batch": b, "frames": f, "size": [stage.width, stage.height],
            "seconds_per_step": round(sec, 3), "samples_per_s": round(b / sec, 2),
            "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "tflops_per_step": round(flops / 1e12, 1), "mfu": round(flops / sec / (peak_tflops * 1e12), 3)}


def gpu(peak_tflops: float) -> dict:
    import torch

    from animate_anyone.config import TrainStage

    assert torch.cuda.is_available(), "gpu: no CUDA device"
    dev = torch.device("cuda")
    out = {"machine": {**machine(), "gpu": torch.cuda.get_device_name(0)}, "stages": []}
    for stage_no, stage in ((1, TrainStage(batch=4, width=512, height=768, gradient_checkpointing=True)),
                            (2, TrainStage(batch=1, width=512, height=512, frames=24, gradient_checkpointing=True))):
        out["stages"].append(_gpu_stage(stage_no, stage, dev, peak_tflops))
        print(json.dumps(out["stages"][-1]), flush=True)
        torch.cuda.empty_cache()
    return out


def data_loading(data_root: Path, pipeline: str, clips: int) -> dict:
    import torch

    from animate_anyone.clipstore import ClipStore, snapshot_clips
    from animate_anyone.config import load_config
    from animate_anyone.tables.io import Dataset
    from animate_anyone.tables.selection import load_snapshot
    from animate_anyone.training.data import TrainSamples

    torch.set_num_threads(1)
    cfg = load_config(pipeline, data_root=str(data_root))
    ds = Dataset.of(cfg)
    train = snapshot_clips(ds, load_snapshot(ds), ("train",))
    out = {"train_clips": len(train), "frames_per_clip": round(float(np.mean([c.num_frames for c in train])), 1)}
    for no in (1, 2):
        stage = getattr(cfg.train, f"stage{no}")
        store = ClipStore(ds, stage.width, stage.height, cache=len(train), mirror=stage.augment.flip > 0)
        samples = TrainSamples(train, store, seed=0, frames=stage.frames, stride=stage.stride, augment=stage.augment)
        cold, warm, seen, key = [], [], set(), 0
        while len(cold) < min(clips, len(samples.clips)) and key < 100 * clips:
            t0 = time.perf_counter()  # pick reads the clip's body points: a cold clip loads there
            clip = samples.pick(key, 0)[0]
            samples[(key, 0)]
            (warm if clip.clip_id in seen else cold).append(time.perf_counter() - t0)
            seen.add(clip.clip_id)
            key += 1
        out[f"stage{no}"] = {"frames": stage.frames, "size": [stage.width, stage.height], "cold_samples": len(cold),
                             "first_sample_s": round(float(np.median(cold)), 3),
                             "held_sample_s": round(float(np.median(warm)), 4) if warm else None,
                             "cold_store_s": round(float(np.median(cold)) * len(samples.clips), 1)}
        print(json.dumps({f"stage{no}": out[f"stage{no}"]}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["cpu", "follow", "curve", "gpu", "data"])
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--restart", action="store_true")
    ap.add_argument("--data-root", type=Path)
    ap.add_argument("--pipeline", default="demo")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--peak-tflops", type=float, default=989.0)  # H100 SXM dense bf16
    args = ap.parse_args()
    results = HERE / "results"
    results.mkdir(parents=True, exist_ok=True)
    if args.mode == "gpu":
        out = gpu(args.peak_tflops)
        name = f"train-gpu-{out['machine']['date']}.json"
    else:
        from animate_anyone.config import load_config
        from animate_anyone.tables.io import DataRoot

        cfg = load_config(args.pipeline, data_root=str(args.data_root))
        model = args.model or DataRoot.from_uri(cfg.data_root).path / "models" / cfg.train.output
        out = {"machine": machine(), "pipeline": args.pipeline}
        if args.every < 1:
            ap.error(f"--every must be at least 1; got {args.every}")
        if args.mode == "data":
            if args.clips < 1:
                ap.error(f"--clips must be at least 1; got {args.clips}")
            out["data"] = data_loading(args.data_root, args.pipeline, args.clips)
            name = f"train-data-{args.pipeline}-{out['machine']['date']}.json"
            (results / name).write_text(json.dumps(out, indent=1, default=str))
            print(f"wrote {results / name}")
            return
        if args.mode == "curve":
            out["curve"] = curve(args.data_root, args.pipeline, args.every, args.restart, args.clips, args.frames,
                                 args.steps, args.guidance)
            name = f"train-curve-{args.pipeline}-{out['machine']['date']}.json"
            (results / name).write_text(json.dumps(out, indent=1, default=str))
            print(f"wrote {results / name}")
            return
        if args.mode == "cpu":
            out["stages"] = stage_speeds(args.data_root, args.pipeline)
            print(json.dumps(out["stages"], indent=1, default=str))
        out["pose_following"] = follow(model, args.data_root, args.pipeline, args.clips, args.frames, args.steps,
                                       args.guidance)
        print(json.dumps(out["pose_following"]["summary"], indent=1))
        # follow: named by the model too, so two models measured on one day keep both results
        which = args.pipeline if args.mode == "cpu" else f"{args.pipeline}-{Path(model).name}"
        name = f"train-{args.mode}-{which}-{out['machine']['date']}.json"
    (results / name).write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {results / name}")


if __name__ == "__main__":
    main()
