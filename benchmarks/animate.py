"""Animate benchmarks: the tiny pipeline's time per frame on the CPU (a regression record), and
the full SD-1.5-size pipeline on a GPU (random weights are fine for speed).

    python benchmarks/animate.py cpu-tiny [--frames 24 96] [--size 128x192] [--steps 20]
    python benchmarks/animate.py gpu-full [--frames 24 240] [--size 512x768] [--steps 20] [--peak-tflops 989]

gpu-full reports seconds, frames/s, peak memory and model FLOPs utilisation (FLOPs counted with
torch.utils.flop_counter on the real calls, over the GPU's dense fp16/bf16 peak). Targets
(issue 4): peak ≤ 10 GB, MFU ≥ 35 %, a 240-frame video's time per frame within 10 % of a
24-frame one. Results go to benchmarks/results/.
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


def _inputs(frames: int, width: int, height: int):
    import cv2

    ref = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    poses = np.zeros((frames, height, width, 3), np.uint8)
    for i in range(frames):
        cv2.circle(poses[i], (width // 4 + (i * 7) % (width // 2), height // 2), max(4, width // 20), (255, 80, 0), -1)
    return ref, poses


def _pipe(size: str, device: str, dtype):
    from animate_anyone.models.sizes import build_components
    from animate_anyone.pipeline import AnimateAnyonePipeline

    pipe = AnimateAnyonePipeline(**build_components(size, seed=0, dtype=dtype))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _count_flops(pipe, ref, poses, steps, guidance, width, height) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        pipe(ref, poses, width=width, height=height, num_inference_steps=steps, guidance_scale=guidance)
    return float(counter.get_total_flops())


def run(kind: str, frames_list: list[int], width: int, height: int, steps: int, guidance: float,
        peak_tflops: float) -> dict:
    import torch

    gpu = kind == "gpu-full"
    device = "cuda" if gpu else "cpu"
    dtype = torch.float16 if gpu else torch.float32
    pipe = _pipe("full" if gpu else "tiny", device, dtype)
    results = []
    for frames in frames_list:
        ref, poses = _inputs(frames, width, height)
        pipe(ref, poses[: min(frames, 8)], width=width, height=height, num_inference_steps=2)  # warm-up
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        pipe(ref, poses, width=width, height=height, num_inference_steps=steps, guidance_scale=guidance,
             generator=torch.Generator(device).manual_seed(0))
        if gpu:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        row = {"frames": frames, "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 3),
               "s_per_frame": round(seconds / frames, 4)}
        if gpu:
            row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 3)
            if frames <= 48:  # counting FLOPs runs the pipeline once more, slowly
                flops = _count_flops(pipe, ref, poses, steps, guidance, width, height)
                row["tflop"] = round(flops / 1e12, 2)
                row["mfu"] = round(flops / seconds / (peak_tflops * 1e12), 4)
        results.append(row)
        print(json.dumps(row))
    base = results[0]["s_per_frame"]
    for row in results[1:]:
        row["s_per_frame_vs_first"] = round(row["s_per_frame"] / base, 3)
    info = {"benchmark": f"animate-{kind}", "machine": machine(), "size": f"{width}x{height}", "steps": steps,
            "guidance": guidance, "window": 24, "overlap": 4, "dtype": str(dtype).replace("torch.", ""),
            "torch": torch.__version__, "results": results}
    if gpu:
        info["machine"]["gpu"] = torch.cuda.get_device_name()
        info["peak_tflops_assumed"] = peak_tflops
    out = HERE / "results" / f"animate-{kind}-{info['machine']['date']}.json"
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out}")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["cpu-tiny", "gpu-full"])
    ap.add_argument("--frames", type=int, nargs="+", default=None)
    ap.add_argument("--size", default=None, help="WIDTHxHEIGHT")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.5)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense fp16 peak of the GPU (H100/H200 SXM: 989)")
    a = ap.parse_args()
    gpu = a.kind == "gpu-full"
    width, height = map(int, (a.size or ("512x768" if gpu else "128x192")).split("x"))
    run(a.kind, a.frames or ([24, 240] if gpu else [24, 96]), width, height, a.steps, a.guidance, a.peak_tflops)


if __name__ == "__main__":
    main()
