"""Pose benchmarks: MediaPipe frames/s at 540p on this machine's CPU (decoding overlapped with
inference), and DWPose frames/s at batch 1, 8 and 32 when a GPU and real DWPose models are given.

    python benchmarks/pose.py mediapipe [--video PATH] [--seconds 20]
    python benchmarks/pose.py dwpose --detector yolox_l.onnx --pose-model dw-ll_ucoco_384.onnx [--video PATH]

Without --video, a 540x960 puppet video is generated. Results go to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "date": dt.date.today().isoformat()}


def puppet_video(seconds: float) -> Path:
    from animate_anyone import synthetic

    out = HERE / "work" / "pose"
    spec = synthetic.plan_video("bench_540p", 7, seconds, 540, 960)
    path = out / f"{spec.name}.mp4"
    if not path.exists():
        synthetic.write_video(spec, out)
    return path


def bench_mediapipe(video: Path, repeat: int) -> dict:
    from animate_anyone.config import MediaPipePose
    from animate_anyone.media.video import probe
    from animate_anyone.pose.backends import MediaPipeBackend
    from animate_anyone.pose.extract import extract_clip

    info = probe(video)
    backend = MediaPipeBackend(MediaPipePose())
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        poses = extract_clip(backend, video)
        runs.append(len(poses.frames) / (time.perf_counter() - t))
    found = sum(len(f) > 0 for f in poses.frames)
    return {"backend": "mediapipe", "video": video.name, "size": f"{info.width}x{info.height}", "frames": len(poses.frames),
            "frames_with_person": found, "fps_runs": [round(r, 1) for r in runs],
            "fps_median": round(sorted(runs)[len(runs) // 2], 1), "target_fps": 25}


def bench_dwpose(video: Path, detector: str, pose_model: str, device: str) -> dict:
    from animate_anyone.config import DWPose
    from animate_anyone.pose.backends import DWPoseBackend
    from animate_anyone.pose.extract import prefetch_frames

    frames = list(prefetch_frames(video))[:240]
    out = {"backend": "dwpose", "video": video.name, "frames": len(frames), "by_batch": {}}
    for batch in (1, 8, 32):
        backend = DWPoseBackend(DWPose(detector=detector, pose_model=pose_model, device=device, batch_size=batch))
        backend.process(frames[:4])  # warm-up
        t = time.perf_counter()
        n = 0
        for i in range(0, len(frames), batch):
            n += len(backend.process(frames[i: i + batch]))
        out["by_batch"][batch] = round(n / (time.perf_counter() - t), 1)
        out["provider"] = backend.provider
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["mediapipe", "dwpose"])
    ap.add_argument("--video", type=Path)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--detector")
    ap.add_argument("--pose-model")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    video = args.video or puppet_video(args.seconds)
    result = bench_mediapipe(video, args.repeat) if args.which == "mediapipe" else \
        bench_dwpose(video, args.detector, args.pose_model, args.device)
    result["machine"] = machine()
    print(json.dumps(result, indent=1))
    dest = HERE / "results" / f"pose-{args.which}-{video.stem}-{result['machine']['date']}.json"
    dest.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
